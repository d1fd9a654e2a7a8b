// The ShareDB side of troupe's docs-ws scenario (make bench-peers):
// --clients ShareDB clients, each on its own WebSocket, spread
// round-robin over --docs text-unicode documents. Each subscribes to its
// document and keeps one insert of one letter in flight at a random
// position of the text it has: the next is submitted when ShareDB
// acknowledges the last. Latency runs from submit to acknowledgement;
// every change a client's document receives (the others' and its own)
// counts as an event. After --warmup seconds it measures for --duration
// seconds and prints one JSON line:
//
//   {"system":"sharedb","clients":64,"docs":1,"duration_s":5.0,"ops":…,
//    "ops_per_s":…,"events_per_s":…,"errors":0,
//    "latency_us":{"p50":…,"p90":…,"p99":…,"p999":…,"max":…},
//    "first_rps":…,"last_rps":…}
//
// One Node process drives every client (ShareDB's server is one Node
// process too).
'use strict';

const ShareDB = require('sharedb/lib/client');
const otText = require('ot-text-unicode');
const WebSocket = require('ws');

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const url = arg('url', 'ws://127.0.0.1:9100');
const clients = Number(arg('clients', '64'));
const docs = Number(arg('docs', '1'));
const duration = Number(arg('duration', '5'));
const warmup = Number(arg('warmup', '1'));
if (!(clients >= 1 && clients <= 10000 && docs >= 1 && docs <= clients && duration > 0 && warmup >= 0)) {
  console.error('sharedb load: need 1 ≤ --docs ≤ --clients ≤ 10000, --duration > 0, --warmup ≥ 0');
  process.exit(2);
}

ShareDB.types.register(otText.type);
const collection = 'bench';
const runID = Date.now().toString(36) + '-' + process.pid;

// A bound on the whole run, whatever the server does.
const deadline = setTimeout(() => {
  console.error('sharedb load: the run did not finish in time');
  process.exit(1);
}, (warmup + duration + 60) * 1000);

function connect() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve({ ws, conn: new ShareDB.Connection(ws) }));
    ws.once('error', reject);
  });
}

function call(fn) {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

let measuring = false;
let start = 0;
let errors = 0;
const lats = []; // µs, measured acks only
const tenths = new Array(10).fill(0);
let events = 0;

function client(doc) {
  const submit = () => {
    if (stopped) return;
    const pos = Math.floor(Math.random() * (doc.data.length + 1));
    const text = String.fromCharCode(97 + Math.floor(Math.random() * 26));
    const sent = process.hrtime.bigint();
    doc.submitOp([pos, text], (err) => {
      if (measuring) {
        if (err) {
          errors++;
        } else {
          const now = process.hrtime.bigint();
          lats.push(Number(now - sent) / 1000);
          events++; // its own change, now in the document
          const t = Math.floor((Number(now - start) / 1e9 / duration) * 10);
          if (t >= 0 && t < 10) tenths[t]++;
        }
      }
      setImmediate(submit);
    });
  };
  doc.on('op', (op, source) => {
    if (measuring && !source) events++;
  });
  return submit;
}

function pct(sorted, p) {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round(sorted[Math.max(0, i)]);
}

let stopped = false;

async function main() {
  const ids = [];
  const setup = await connect();
  for (let i = 0; i < docs; i++) {
    const id = runID + '-' + i;
    ids.push(id);
    await call((cb) => setup.conn.get(collection, id).create('', otText.type.uri, cb));
  }
  const all = [setup];
  const submits = [];
  for (let i = 0; i < clients; i++) {
    const c = await connect();
    all.push(c);
    const doc = c.conn.get(collection, ids[i % docs]);
    await call((cb) => doc.subscribe(cb));
    submits.push(client(doc));
  }
  submits.forEach((s) => s());
  await new Promise((r) => setTimeout(r, warmup * 1000));
  start = process.hrtime.bigint();
  measuring = true;
  await new Promise((r) => setTimeout(r, duration * 1000));
  measuring = false;
  stopped = true;
  const took = Number(process.hrtime.bigint() - start) / 1e9;
  lats.sort((a, b) => a - b);
  const tenth = duration / 10;
  console.log(JSON.stringify({
    system: 'sharedb',
    clients,
    docs,
    duration_s: took,
    ops: lats.length,
    ops_per_s: lats.length / took,
    events_per_s: events / took,
    errors,
    latency_us: {
      p50: pct(lats, 50), p90: pct(lats, 90), p99: pct(lats, 99), p999: pct(lats, 99.9),
      max: lats.length ? Math.round(lats[lats.length - 1]) : 0,
    },
    first_rps: tenths[0] / tenth,
    last_rps: tenths[9] / tenth,
  }));
  clearTimeout(deadline);
  for (const c of all) c.ws.terminate();
  process.exit(0);
}

main().catch((err) => {
  console.error('sharedb load:', err && err.message ? err.message : err);
  process.exit(1);
});
