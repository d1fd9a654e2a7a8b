// A ShareDB 7 server for the peers report (make bench-peers): documents
// of type text-unicode (ot-text-unicode) kept in ShareDB's in-memory
// backend, one JSON stream per WebSocket, on 127.0.0.1 only. Its modules
// come from a scratch directory outside the repository (NODE_PATH).
//
//   node server.js --port 9100
'use strict';

const ShareDB = require('sharedb');
const otText = require('ot-text-unicode');
const WebSocket = require('ws');
const WebSocketJSONStream = require('@teamwork/websocket-json-stream');

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const port = Number(arg('port', '9100'));
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('sharedb server: --port must be 1..65535');
  process.exit(2);
}

ShareDB.types.register(otText.type);
const backend = new ShareDB();
const wss = new WebSocket.Server({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('connection', (ws) => {
  const stream = new WebSocketJSONStream(ws);
  // A client that goes away mid-message must not end the server.
  stream.on('error', () => {});
  backend.listen(stream);
});
wss.on('listening', () => console.log('listening on 127.0.0.1:' + port));
wss.on('error', (err) => {
  console.error('sharedb server:', err.message);
  process.exit(1);
});
const stop = () => wss.close(() => backend.close(() => process.exit(0)));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
