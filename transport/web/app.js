// troupe's browser editor: log in, list and create documents, and edit one
// together with others over the document's WebSocket (API.md, Documents).
//
// Editing follows ShareDB's client: local edits apply at once; at most one
// op list is in flight (sent, not yet seen committed); edits made while it
// is in flight are composed into a pending list, sent when the in-flight
// one comes back as a change with our client_id. A change from someone
// else is transformed against the in-flight and pending lists (ties: the
// committed change first, as the server does) and applied to the text,
// keeping the caret in place. Positions count Unicode code points, as the
// server's do, not the UTF-16 units JavaScript strings use.
'use strict';

// ---- Operational transformation (a mirror of storage/ot.go) ------------
//
// A primitive is {t:'i', pos, n, text} (insert n code points) or
// {t:'d', pos, n} (delete n code points). A replace(p, len, s) is the
// insert of s at p followed by the delete of len from p+|s|, as on the
// server, so both sides break the same op into the same primitives.
const OT = (() => {
  const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
  const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;
  const pairAt = (s, i) => isHigh(s.charCodeAt(i)) && i + 1 < s.length && isLow(s.charCodeAt(i + 1));

  // cpLen: the number of code points of s.
  function cpLen(s) {
    let n = 0;
    for (let i = 0; i < s.length; i += pairAt(s, i) ? 2 : 1) n++;
    return n;
  }

  // cpToUnit: the UTF-16 index after cp code points of s from unit index
  // from, or -1 when s is shorter.
  function cpToUnit(s, cp, from = 0) {
    let i = from;
    for (; cp > 0; cp--) {
      if (i >= s.length) return -1;
      i += pairAt(s, i) ? 2 : 1;
    }
    return i;
  }

  const unitToCp = (s, u) => cpLen(s.slice(0, u));

  function toPrims(ops) {
    const ps = [];
    for (const op of ops) {
      if (op.op === 'insert') {
        ps.push({ t: 'i', pos: op.pos, n: cpLen(op.text), text: op.text });
      } else if (op.op === 'delete' || (op.op === 'replace' && op.text === '')) {
        ps.push({ t: 'd', pos: op.pos, n: op.len });
      } else if (op.op === 'replace') {
        const k = cpLen(op.text);
        ps.push({ t: 'i', pos: op.pos, n: k, text: op.text }, { t: 'd', pos: op.pos + k, n: op.len });
      } else {
        throw new Error('unknown op ' + JSON.stringify(op));
      }
    }
    return ps;
  }

  // fromPrims: API ops; an insert directly followed by a delete just after
  // its text is sent as one replace (the same primitives on the server).
  function fromPrims(ps) {
    const ops = [];
    for (let i = 0; i < ps.length; i++) {
      const p = ps[i];
      const q = ps[i + 1];
      if (p.t === 'i' && q && q.t === 'd' && q.pos === p.pos + p.n) {
        ops.push({ op: 'replace', pos: p.pos, len: q.n, text: p.text });
        i++;
      } else if (p.t === 'i') {
        ops.push({ op: 'insert', pos: p.pos, text: p.text });
      } else {
        ops.push({ op: 'delete', pos: p.pos, len: p.n });
      }
    }
    return ops;
  }

  // applyPrims applies primitives in order to s; it throws when one reaches
  // past the text (a bug: the local text and the ops disagree).
  function applyPrims(s, ps) {
    for (const p of ps) {
      const u = cpToUnit(s, p.pos);
      const e = p.t === 'd' ? cpToUnit(s, p.n, u) : u;
      if (u < 0 || e < 0) throw new Error('op out of range: ' + JSON.stringify(p));
      s = s.slice(0, u) + (p.t === 'i' ? p.text : '') + s.slice(e);
    }
    return s;
  }

  // posPastDel maps a position through the delete d.
  function posPastDel(p, d) {
    if (p <= d.pos) return p;
    if (p >= d.pos + d.n) return p - d.n;
    return d.pos;
  }

  // delPastIns rewrites the delete d to apply after the insert i: split
  // around it when i is strictly inside (inserted text survives).
  function delPastIns(d, i) {
    if (i.pos <= d.pos) return [{ ...d, pos: d.pos + i.n }];
    if (i.pos >= d.pos + d.n) return [d];
    const first = i.pos - d.pos;
    return [{ ...d, n: first }, { ...d, pos: d.pos + i.n, n: d.n - first }];
  }

  function delPastDel(d, e) {
    const start = posPastDel(d.pos, e);
    const end = posPastDel(d.pos + d.n, e);
    return end === start ? [] : [{ ...d, pos: start, n: end - start }];
  }

  // xfPair: x and y written against the same text; returns [x after y,
  // y after x]. xFirst: x's insert goes first at equal positions.
  function xfPair(x, y, xFirst) {
    if (x.t === 'i' && y.t === 'i') {
      if (x.pos < y.pos || (x.pos === y.pos && xFirst)) return [[x], [{ ...y, pos: y.pos + x.n }]];
      return [[{ ...x, pos: x.pos + y.n }], [y]];
    }
    if (x.t === 'i') return [[{ ...x, pos: posPastDel(x.pos, y) }], delPastIns(y, x)];
    if (y.t === 'i') return [delPastIns(x, y), [{ ...y, pos: posPastDel(y.pos, x) }]];
    return [delPastDel(x, y), delPastDel(y, x)];
  }

  // xf transforms the sequential lists b and a (written against the same
  // text): returns [b after a, a after b]. bFirst: b wins ties.
  function xf(b, a, bFirst) {
    const bOut = [];
    for (const x of b) {
      const [xs, a2] = xfOne(x, a, bFirst);
      bOut.push(...xs);
      a = a2;
    }
    return [bOut, a];
  }

  function xfOne(x, a, bFirst) {
    const aOut = [];
    for (let i = 0; i < a.length; i++) {
      const [xs, ys] = xfPair(x, a[i], bFirst);
      aOut.push(...ys);
      if (xs.length === 0) return [[], aOut.concat(a.slice(i + 1))];
      if (xs.length === 2) {
        const [rest, aRest] = xf(xs, a.slice(i + 1), bFirst);
        return [rest, aOut.concat(aRest)];
      }
      x = xs[0];
    }
    return [[x], aOut];
  }

  // mapPos moves a caret position through primitives (an insert at the
  // caret puts the caret after it, as the server orders committed text
  // first).
  function mapPos(p, ps) {
    for (const q of ps) p = q.t === 'i' ? (p >= q.pos ? p + q.n : p) : posPastDel(p, q);
    return p;
  }

  // diff finds the one edit turning a into b: the common prefix and suffix
  // (never splitting a surrogate pair) around a replaced middle. caret,
  // the UTF-16 caret in b, bounds the suffix, so that typing "a" into "aa"
  // inserts where the caret is.
  function diff(a, b, caret) {
    if (a === b) return [];
    const la = a.length;
    const lb = b.length;
    let maxSuffix = Math.min(la, lb);
    if (Number.isInteger(caret) && caret >= 0 && caret <= lb) maxSuffix = Math.min(maxSuffix, lb - caret);
    let s = 0;
    while (s < maxSuffix && a.charCodeAt(la - 1 - s) === b.charCodeAt(lb - 1 - s)) s++;
    if (s > 0 && isLow(a.charCodeAt(la - s))) s--;
    const maxPrefix = Math.min(la, lb) - s;
    let p = 0;
    while (p < maxPrefix && a.charCodeAt(p) === b.charCodeAt(p)) p++;
    if (p > 0 && isHigh(a.charCodeAt(p - 1))) p--;
    const pos = cpLen(a.slice(0, p));
    const removed = a.slice(p, la - s);
    const added = b.slice(p, lb - s);
    const ps = [];
    if (added) ps.push({ t: 'i', pos, n: cpLen(added), text: added });
    if (removed) ps.push({ t: 'd', pos: pos + (added ? ps[0].n : 0), n: cpLen(removed) });
    return ps;
  }

  // compose appends primitives to a list, merging with its last one when
  // the two are one edit (typing on, deleting on, erasing what was just
  // typed). The result applies exactly as the list followed by ps.
  function compose(list, ps) {
    const out = list.slice();
    for (const n of ps) {
      const l = out[out.length - 1];
      if (l && l.t === 'i' && n.t === 'i' && n.pos >= l.pos && n.pos <= l.pos + l.n) {
        const u = cpToUnit(l.text, n.pos - l.pos);
        out[out.length - 1] = { t: 'i', pos: l.pos, n: l.n + n.n, text: l.text.slice(0, u) + n.text + l.text.slice(u) };
      } else if (l && l.t === 'd' && n.t === 'd' && n.pos === l.pos) {
        out[out.length - 1] = { t: 'd', pos: l.pos, n: l.n + n.n };
      } else if (l && l.t === 'd' && n.t === 'd' && n.pos + n.n === l.pos) {
        out[out.length - 1] = { t: 'd', pos: n.pos, n: l.n + n.n };
      } else if (l && l.t === 'i' && n.t === 'd' && n.pos >= l.pos && n.pos + n.n <= l.pos + l.n) {
        const u = cpToUnit(l.text, n.pos - l.pos);
        const e = cpToUnit(l.text, n.n, u);
        const text = l.text.slice(0, u) + l.text.slice(e);
        if (text) out[out.length - 1] = { t: 'i', pos: l.pos, n: l.n - n.n, text };
        else out.pop();
      } else {
        out.push(n);
      }
    }
    return out;
  }

  return { cpLen, cpToUnit, unitToCp, toPrims, fromPrims, applyPrims, xf, mapPos, diff, compose };
})();
window.troupeOT = OT;

// ---- State --------------------------------------------------------------

const MAX_OPS = 1000; // storage.MaxOpsPerList

const S = {
  tokens: null, // {access, refresh, expiresAt}
  user: null,
  insecure: false,
  clientId: randomId(),
  seq: 0, // increases over the tab's life, across documents
  names: new Map(), // user id → display name
  doc: null, // {id, title}
  text: '', // the local text, as shown
  version: 0, // the last server version integrated into text
  inflight: null, // {seq, base, ops (as sent), prims (transformed since), acked}
  pending: [], // primitives after inflight, not yet sent
  pendingBase: '', // the text the pending list applies to
  ws: null,
  retries: 0,
  reconnectTimer: null,
  opRetryTimer: null,
  opRetries: 0,
  busy: false, // reloading or resynchronising: no socket on purpose
  presence: new Map(), // client id → {user, pos}
  lastCursor: -1,
  cursorTimer: null,
  refreshTimer: null,
  next: null, // cursor of the document list
  // What happened so far (for tests and the curious).
  stats: { changes: 0, transformed: 0, acks: 0, resent: 0, connects: 0, resyncs: 0, reloads: 0 },
};

const $ = (id) => document.getElementById(id);
const ta = () => $('text');

function randomId() {
  const b = new Uint8Array(9);
  crypto.getRandomValues(b);
  return 'tab-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---- Status line ----------------------------------------------------------

function say(msg, kind = 'info') {
  const el = $('status');
  el.textContent = msg;
  el.dataset.kind = kind;
}

function setConn(state, label) {
  const el = $('conn');
  el.dataset.state = state;
  el.textContent = label || state;
}

function showVersion() {
  if (!S.doc) {
    $('version').textContent = '';
    return;
  }
  const unsent = (S.inflight ? 1 : 0) + S.pending.length;
  $('version').textContent = 'version ' + S.version + (unsent ? ' · saving…' : ' · saved');
}

// ---- HTTP API and tokens ------------------------------------------------

class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body, headers = {}, retried = false) {
  const h = { ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (S.tokens) h.Authorization = 'Bearer ' + S.tokens.access;
  let r;
  try {
    r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new APIError(0, 'network', 'cannot reach the server');
  }
  if (r.status === 401 && S.tokens && !retried && (await refreshTokens())) {
    return api(method, path, body, headers, true);
  }
  const raw = await r.text();
  let data = null;
  try {
    data = raw ? JSON.parse(raw) : null;
  } catch (e) {
    data = null;
  }
  if (!r.ok) {
    const err = (data && data.error) || {};
    throw new APIError(r.status, err.code || 'http_' + r.status, err.message || r.statusText);
  }
  return data;
}

function setTokens(t) {
  clearTimeout(S.refreshTimer);
  if (!t) {
    S.tokens = null;
    sessionStorage.removeItem('troupe.tokens');
    return;
  }
  S.tokens = { access: t.access_token || t.access, refresh: t.refresh_token || t.refresh,
    expiresAt: t.expiresAt || Date.now() + (t.expires_in || 900) * 1000 };
  sessionStorage.setItem('troupe.tokens', JSON.stringify(S.tokens));
  // An open socket ends when its token expires: hand it the new one.
  if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify({ type: 'auth', access_token: S.tokens.access }));
  // Refresh at 80% of the lifetime, so a token never expires in use.
  const left = S.tokens.expiresAt - Date.now();
  S.refreshTimer = setTimeout(() => refreshTokens(), Math.max(1000, left * 0.8));
}

let refreshing = null;

// refreshTokens trades the refresh token for a new pair (one request at a
// time); false when the session is over.
function refreshTokens() {
  if (!refreshing) {
    refreshing = (async () => {
      if (!S.tokens) return false;
      try {
        const r = await fetch('/v1/auth/refresh', { method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ refresh_token: S.tokens.refresh }) });
        if (r.ok) {
          setTokens(await r.json());
          return true;
        }
        if (r.status === 401) sessionEnded();
      } catch (e) {
        // Offline: the caller retries later.
      }
      return false;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

function sessionEnded() {
  setTokens(null);
  S.user = null;
  closeDoc();
  showAuth();
  say('Your session has ended: please log in again.', 'error');
}

// ---- Views ----------------------------------------------------------------

function show(view) {
  for (const v of ['auth-view', 'docs-view', 'editor-view']) $(v).hidden = v !== view;
}

function showWho() {
  const who = $('whoami');
  who.hidden = false;
  if (S.user) {
    $('user-name').textContent = S.user.name + ' <' + S.user.email + '>';
    $('logout').textContent = 'Log out';
  } else {
    $('user-name').textContent = 'not logged in (the server runs --insecure)';
    $('logout').textContent = 'Log in';
  }
}

function showAuth() {
  $('whoami').hidden = true;
  $('insecure-note').hidden = !S.insecure;
  show('auth-view');
  $('login-email').focus();
}

async function route() {
  if (!S.user && !S.insecure) {
    showAuth();
    return;
  }
  showWho();
  const m = /^#\/doc\/(.+)$/.exec(location.hash);
  if (m) {
    await openDoc(decodeURIComponent(m[1]));
  } else {
    closeDoc();
    show('docs-view');
    await listDocs(false);
  }
}

async function listDocs(more) {
  const ul = $('doc-list');
  try {
    const q = more && S.next ? '&after=' + encodeURIComponent(S.next) : '';
    const page = await api('GET', '/v1/docs?limit=50' + q);
    if (!more) ul.replaceChildren();
    for (const d of page.items) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.docId = d.id;
      const title = document.createElement('span');
      title.textContent = d.title || '(untitled)';
      const meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = 'version ' + d.version + ' · ' + new Date(d.updated_at).toLocaleString();
      b.append(title, meta);
      b.addEventListener('click', () => {
        location.hash = '#/doc/' + encodeURIComponent(d.id);
      });
      li.append(b);
      ul.append(li);
    }
    S.next = page.next;
    $('more-docs').hidden = !page.next;
    if (!ul.children.length) say('No documents yet: create one.');
  } catch (e) {
    say('Cannot list documents: ' + e.message, 'error');
  }
}

// ---- Documents and the socket ---------------------------------------------

async function openDoc(id) {
  closeDoc();
  S.doc = { id, title: '' };
  show('editor-view');
  $('doc-title').textContent = 'Loading…';
  ta().disabled = true;
  setConn('connecting', 'loading');
  let d;
  try {
    d = await api('GET', '/v1/docs/' + encodeURIComponent(id));
  } catch (e) {
    if (S.doc && S.doc.id === id) {
      setConn('closed', 'not connected');
      say('Cannot open the document: ' + e.message, 'error');
    }
    return;
  }
  if (!S.doc || S.doc.id !== id) return; // gone elsewhere meanwhile
  S.doc.title = d.title;
  $('doc-title').textContent = d.title || '(untitled)';
  document.title = (d.title || 'untitled') + ' · troupe';
  load(d.content, d.version);
  ta().disabled = false;
  ta().focus();
  if (d.content.includes('\r')) say('This document has carriage returns; the browser shows (and saves) them as plain line ends.', 'error');
  else say('');
  connect();
}

function load(content, version) {
  S.text = content;
  S.version = version;
  S.inflight = null;
  S.pending = [];
  S.pendingBase = content;
  ta().value = content;
  showVersion();
}

function closeDoc() {
  dropSocket();
  clearTimeout(S.opRetryTimer);
  S.doc = null;
  S.inflight = null;
  S.pending = [];
  S.busy = false;
  S.presence.clear();
  renderPeople();
  setConn('idle', 'not connected');
  showVersion();
  document.title = 'troupe';
}

function dropSocket() {
  clearTimeout(S.reconnectTimer);
  S.reconnectTimer = null;
  const ws = S.ws;
  S.ws = null;
  if (ws) ws.close();
}

const wsOpen = () => S.ws && S.ws.readyState === WebSocket.OPEN;

function connect() {
  if (!S.doc || S.busy) return;
  const q = new URLSearchParams({ client_id: S.clientId, last_event_id: String(S.version) });
  if (S.tokens) q.set('access_token', S.tokens.access);
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(scheme + '//' + location.host + '/v1/docs/' + encodeURIComponent(S.doc.id) + '/ws?' + q);
  S.ws = ws;
  setConn(S.retries ? 'reconnecting' : 'connecting', S.retries ? 'reconnecting…' : 'connecting…');
  ws.onopen = () => {
    if (S.ws !== ws) return;
    S.retries = 0;
    S.stats.connects++;
    setConn('open', 'connected');
    S.presence.clear();
    renderPeople();
    // An op sent on the last socket may or may not have been committed:
    // sending it again with its seq is safe (a repeat gets the first ack).
    if (S.inflight && S.inflight.acked == null) {
      S.stats.resent++;
      sendInflight();
    } else {
      flush();
    }
    S.lastCursor = -1;
    sendCursor();
  };
  ws.onmessage = (e) => {
    if (S.ws !== ws) return;
    let m;
    try {
      m = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    onMessage(m);
  };
  ws.onclose = () => {
    if (S.ws !== ws) return;
    S.ws = null;
    S.presence.clear();
    renderPeople();
    scheduleReconnect();
  };
}

// scheduleReconnect reconnects with exponential backoff and jitter; before
// a retry it checks that the document is still there (and the token good:
// api() refreshes it), since a refused upgrade tells the page nothing.
function scheduleReconnect() {
  if (!S.doc || S.reconnectTimer) return;
  const delay = Math.min(250 * 2 ** S.retries, 8000) * (0.5 + Math.random() / 2);
  S.retries++;
  setConn('reconnecting', 'reconnecting in ' + (delay / 1000).toFixed(1) + ' s');
  S.reconnectTimer = setTimeout(async () => {
    S.reconnectTimer = null;
    if (!S.doc) return;
    if (S.retries > 1) {
      try {
        await api('GET', '/v1/docs/' + encodeURIComponent(S.doc.id) + '?consistency=stale');
      } catch (e) {
        if (e.code === 'not_found' || e.code === 'forbidden') {
          setConn('closed', 'closed');
          say('The document is gone or no longer yours: ' + e.message, 'error');
          ta().disabled = true;
          return;
        }
        if (!S.doc) return;
        scheduleReconnect();
        return;
      }
    }
    if (S.tokens && S.tokens.expiresAt - Date.now() < 30000) await refreshTokens();
    if (S.doc && !S.ws) connect();
  }, delay);
}

function send(m) {
  if (!wsOpen()) return false;
  S.ws.send(JSON.stringify(m));
  return true;
}

function sendInflight() {
  const f = S.inflight;
  send({ type: 'op', seq: f.seq, base_version: f.base, ops: f.ops });
}

// flush sends the pending list when nothing is in flight.
function flush() {
  showVersion();
  if (S.inflight || !S.pending.length || !wsOpen() || S.busy) return;
  const prims = S.pending.slice(0, MAX_OPS);
  S.pending = S.pending.slice(MAX_OPS);
  S.pendingBase = OT.applyPrims(S.pendingBase, prims);
  S.inflight = { seq: ++S.seq, base: S.version, ops: OT.fromPrims(prims), prims, acked: null };
  S.opRetries = 0;
  sendInflight();
  showVersion();
}

function onMessage(m) {
  switch (m.type) {
    case 'change':
      onChange(m);
      break;
    case 'ack':
      // The change itself, in order among the others, completes the op.
      if (S.inflight && m.seq === S.inflight.seq) {
        S.inflight.acked = m.version;
        S.stats.acks++;
      }
      break;
    case 'presence':
      onPresence(m);
      break;
    case 'reset':
      if (m.deleted) {
        dropSocket();
        setConn('closed', 'closed');
        ta().disabled = true;
        say('This document was deleted.', 'error');
      } else {
        resync('the server restarted this document’s stream');
      }
      break;
    case 'error':
      onOpError(m);
      break;
  }
}

// onChange integrates one committed change; false when it started a
// reload instead.
function onChange(c) {
  if (c.version <= S.version) return true; // seen already (a replay)
  if (c.version !== S.version + 1) {
    resync('a change was missed');
    return false;
  }
  if (c.client_id === S.clientId) {
    if (S.inflight && c.seq === S.inflight.seq) {
      S.version = c.version;
      S.inflight = null;
      flush();
      showVersion();
      return true;
    }
    hardReload('A change of this tab came back unexpectedly');
    return false;
  }
  S.stats.changes++;
  if (S.inflight || S.pending.length) S.stats.transformed++;
  let theirs = OT.toPrims(c.ops);
  if (S.inflight) [S.inflight.prims, theirs] = OT.xf(S.inflight.prims, theirs, false);
  if (S.pending.length) {
    S.pendingBase = OT.applyPrims(S.pendingBase, theirs);
    [S.pending, theirs] = OT.xf(S.pending, theirs, false);
  }
  applyRemote(theirs);
  if (!S.pending.length) S.pendingBase = S.text;
  S.version = c.version;
  showVersion();
  scheduleCursor();
  return true;
}

// applyRemote applies primitives to the text and the textarea, moving the
// selection through them.
function applyRemote(ps) {
  const el = ta();
  const start = OT.unitToCp(S.text, el.selectionStart);
  const end = OT.unitToCp(S.text, el.selectionEnd);
  const dir = el.selectionDirection;
  S.text = OT.applyPrims(S.text, ps);
  setText(OT.mapPos(start, ps), OT.mapPos(end, ps), dir);
}

function setText(start, end, dir) {
  const el = ta();
  const top = el.scrollTop;
  el.value = S.text;
  const u = (p) => {
    const i = OT.cpToUnit(S.text, p);
    return i < 0 ? S.text.length : i;
  };
  el.setSelectionRange(u(start), u(end), dir || 'none');
  el.scrollTop = top;
}

// onInput turns what the user did into primitives. It runs during a
// reload too: hardReload takes the pending list as it is when it is done.
function onInput() {
  if (!S.doc) return;
  const el = ta();
  const ps = OT.diff(S.text, el.value, el.selectionEnd);
  if (!ps.length) return;
  if (!S.pending.length) S.pendingBase = S.text;
  S.text = el.value;
  S.pending = OT.compose(S.pending, ps);
  if (!S.pending.length) S.pendingBase = S.text;
  flush();
  scheduleCursor();
}

function onOpError(m) {
  const err = m.error || {};
  if (m.seq == null || !S.inflight || m.seq !== S.inflight.seq) {
    say('The server refused a message: ' + (err.message || err.code), 'error');
    return;
  }
  const seq = m.seq;
  switch (err.code) {
    case 'unavailable':
    case 'timeout':
    case 'rate_limited':
    case 'internal':
      // The outcome is unknown or the cluster is busy: the same seq again.
      if (++S.opRetries > 8) {
        hardReload('Saving kept failing (' + err.message + ')');
        return;
      }
      say('Saving is delayed (' + err.message + '); retrying…');
      clearTimeout(S.opRetryTimer);
      S.opRetryTimer = setTimeout(() => {
        if (S.inflight && S.inflight.seq === seq && S.inflight.acked == null) sendInflight();
      }, Math.min(200 * 2 ** S.opRetries, 5000));
      return;
    case 'unauthenticated':
      if (!S.tokens) break;
      // The socket's token expired: a new one and a new socket.
      refreshTokens().then(() => {
        if (S.ws) S.ws.close();
      });
      return;
  }
  hardReload('An edit was refused (' + err.code + ': ' + err.message + ')');
}

// resync catches up after a reset or a gap: the changes since our version
// if the server still has them, else a reload.
async function resync(why) {
  if (S.busy || !S.doc) return;
  S.busy = true;
  S.stats.resyncs++;
  dropSocket();
  setConn('reconnecting', 'catching up');
  const id = S.doc.id;
  try {
    const r = await api('GET', '/v1/docs/' + encodeURIComponent(id) + '/ops?since=' + S.version);
    S.busy = false;
    if (!S.doc || S.doc.id !== id) return;
    for (const c of r.changes) {
      if (!onChange({ ...c, type: 'change' })) return;
    }
    connect();
  } catch (e) {
    S.busy = false;
    if (!S.doc || S.doc.id !== id) return;
    if (e.code === 'version_too_old' || e.code === 'bad_request') {
      hardReload('The document moved on too far (' + why + ')');
    } else {
      say('Cannot catch up: ' + e.message, 'error');
      scheduleReconnect();
    }
  }
}

// hardReload reloads the document when local edits cannot be rebased
// through the change stream: the in-flight op is settled first (sent again
// over HTTP with its seq: committed once, or refused), then pending edits
// are kept only if nobody else changed the text meanwhile.
async function hardReload(why) {
  if (S.busy || !S.doc) return;
  S.busy = true;
  S.stats.reloads++;
  dropSocket();
  clearTimeout(S.opRetryTimer);
  setConn('reconnecting', 'reloading');
  const id = S.doc.id;
  const path = '/v1/docs/' + encodeURIComponent(id);
  try {
    let lost = 0;
    const f = S.inflight;
    if (f && f.acked == null) {
      try {
        await api('POST', path + '/ops', { client_id: S.clientId, seq: f.seq, base_version: f.base, ops: f.ops });
      } catch (e) {
        if (e.status === 0 || e.status >= 500) throw e;
        lost = f.ops.length;
      }
    }
    const d = await api('GET', path); // linearizable: includes that op
    if (!S.doc || S.doc.id !== id) return;
    const el = ta();
    const start = OT.unitToCp(S.text, el.selectionStart);
    const end = OT.unitToCp(S.text, el.selectionEnd);
    const pending = S.pending;
    const local = S.text;
    const base = S.pendingBase;
    load(d.content, d.version);
    if (pending.length && !lost && d.content === base) {
      S.pending = pending;
      S.text = local;
    } else {
      lost += pending.length;
    }
    setText(start, end);
    S.busy = false;
    say(why + '. The document was reloaded' + (lost ? '; ' + lost + ' local edit(s) could not be applied and were dropped.' : '.'), lost ? 'error' : 'info');
    connect();
  } catch (e) {
    S.busy = false;
    say(why + '. Reloading failed (' + e.message + '); retrying…', 'error');
    setTimeout(() => {
      if (S.doc && S.doc.id === id) hardReload(why);
    }, 2000);
  }
}

// ---- Presence ---------------------------------------------------------------

function caret() {
  return OT.unitToCp(S.text, ta().selectionEnd);
}

function scheduleCursor() {
  if (S.cursorTimer) return;
  S.cursorTimer = setTimeout(() => {
    S.cursorTimer = null;
    sendCursor();
  }, 150);
}

function sendCursor() {
  if (!S.doc) return;
  const pos = caret();
  if (pos !== S.lastCursor && send({ type: 'cursor', pos })) S.lastCursor = pos;
  renderPeople();
}

function onPresence(p) {
  if (p.client_id === S.clientId) return;
  if (p.state === 'leave') S.presence.delete(p.client_id);
  else {
    const was = S.presence.get(p.client_id);
    S.presence.set(p.client_id, { user: p.user, pos: p.pos != null ? p.pos : was ? was.pos : null });
  }
  renderPeople();
}

function nameOf(uid) {
  if (!uid) return 'anonymous';
  if (S.user && uid === S.user.id) return S.user.name;
  if (!S.names.has(uid)) {
    S.names.set(uid, uid);
    // Users may read only themselves; admins anyone. Else the id stays.
    api('GET', '/v1/users/' + encodeURIComponent(uid)).then((u) => {
      S.names.set(uid, u.name);
      renderPeople();
    }, () => {});
  }
  return S.names.get(uid);
}

function hue(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) % 360;
  return h;
}

function renderPeople() {
  const ul = $('people');
  const items = [];
  const add = (id, label) => {
    const li = document.createElement('li');
    li.dataset.clientId = id;
    const dot = document.createElement('span');
    dot.className = 'dot';
    dot.style.background = 'hsl(' + hue(id) + ' 65% 50%)';
    li.append(dot, label);
    items.push(li);
  };
  if (S.doc) add(S.clientId, 'You at ' + caret());
  for (const [id, p] of S.presence) add(id, nameOf(p.user) + (p.pos != null ? ' at ' + p.pos : ''));
  ul.replaceChildren(...items);
}

// ---- Forms and startup ----------------------------------------------------

async function loggedIn(tokens) {
  setTokens(tokens);
  S.user = await api('GET', '/v1/auth/me');
  say('Logged in as ' + S.user.name + '.');
  await route();
}

function onSubmit(id, fn) {
  $(id).addEventListener('submit', async (e) => {
    e.preventDefault();
    const form = e.target;
    const buttons = form.querySelectorAll('button');
    buttons.forEach((b) => (b.disabled = true));
    try {
      await fn(new FormData(form));
    } catch (err) {
      say(err.message, 'error');
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
}

function wire() {
  onSubmit('login-form', async (f) => {
    const t = await api('POST', '/v1/auth/login', { email: f.get('email'), password: f.get('password') });
    $('login-password').value = '';
    await loggedIn(t);
  });
  onSubmit('register-form', async (f) => {
    const cred = { email: f.get('email'), password: f.get('password') };
    await api('POST', '/v1/auth/register', { name: f.get('name'), ...cred });
    $('reg-password').value = '';
    await loggedIn(await api('POST', '/v1/auth/login', cred));
  });
  onSubmit('new-doc-form', async (f) => {
    const d = await api('POST', '/v1/docs', { title: f.get('title') }, { 'Idempotency-Key': randomId() });
    $('new-title').value = '';
    location.hash = '#/doc/' + encodeURIComponent(d.id);
  });
  $('refresh-docs').addEventListener('click', () => listDocs(false));
  $('more-docs').addEventListener('click', () => listDocs(true));
  $('close-doc').addEventListener('click', () => {
    location.hash = '#/';
  });
  $('skip-login').addEventListener('click', () => route());
  $('logout').addEventListener('click', async () => {
    if (!S.user) {
      closeDoc();
      showAuth();
      return;
    }
    const t = S.tokens;
    if (t) api('POST', '/v1/auth/logout', { refresh_token: t.refresh }).catch(() => {});
    setTokens(null);
    S.user = null;
    closeDoc();
    location.hash = '#/';
    showAuth();
    say('Logged out.');
  });
  const el = ta();
  el.addEventListener('input', onInput);
  for (const ev of ['keyup', 'mouseup', 'focus', 'select']) el.addEventListener(ev, scheduleCursor);
  document.addEventListener('selectionchange', () => {
    if (document.activeElement === el) scheduleCursor();
  });
  window.addEventListener('hashchange', route);
}

async function boot() {
  wire();
  try {
    const saved = JSON.parse(sessionStorage.getItem('troupe.tokens') || 'null');
    if (saved) setTokens(saved);
  } catch (e) {
    setTokens(null);
  }
  if (S.tokens) {
    try {
      S.user = await api('GET', '/v1/auth/me');
    } catch (e) {
      setTokens(null);
    }
  }
  if (!S.user) {
    // A server started with --insecure lists documents without a token.
    try {
      await api('GET', '/v1/docs?limit=1');
      S.insecure = true;
    } catch (e) {
      S.insecure = false;
    }
  }
  await route();
}

// For tests and the curious: the state, and whether all edits are saved.
window.troupe = {
  state: S,
  idle: () => !!S.doc && wsOpen() && !S.busy && !S.inflight && S.pending.length === 0,
  dropSocket: () => S.ws && S.ws.close(),
  receive: onMessage, // a message as if from the socket
};

boot();
