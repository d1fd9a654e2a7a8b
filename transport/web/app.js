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

// The OT functions (src/ot.js), the CodeMirror editor (src/editor.js) and
// the undo history (src/undo.js) come from the bundle, editor.js, loaded
// before this script.
//
// Who may do what: the page shows the open document as its caller's role
// allows (S.role: the document's "access" as the server answers it: owner,
// admin, editor or viewer); a viewer's page is read-only. The server decides: an
// edit it refuses (forbidden) turns the page read-only too. A page opened
// from a share link (share.js) is a guest's: no sign-in, the link's token
// on the document's routes.
const OT = window.troupeOT;
const { Editor, UndoHistory } = window.troupeEditor;

// ---- State --------------------------------------------------------------

const MAX_OPS = 1000; // storage.MaxOpsPerList

const S = {
  tokens: null, // {access, refresh, expiresAt}
  user: null,
  insecure: false,
  share: null, // {doc, token, role}: the share link the page was opened with
  role: '', // the caller's on the open document: owner, admin, editor, viewer
  readOnly: false, // the open document may only be read (a viewer)
  ended: false, // the open document may no longer be edited here (endDoc)
  clientId: randomId(),
  seq: 0, // increases over the tab's life, across documents
  names: new Map(), // user id → display name
  doc: null, // {id, title, owner}
  text: '', // the local text, as shown
  version: 0, // the last server version integrated into text
  inflight: null, // {seq, base, ops (as sent), prims (transformed since), acked, edits}
  pending: [], // primitives after inflight, not yet sent
  pendingBase: '', // the text the pending list applies to
  edits: 0, // local edits in pending (as made: what "N changes pending" counts)
  ed: null, // the Editor (CodeMirror), which shows text
  undo: new UndoHistory(), // undo and redo of this tab's own edits
  offline: !navigator.onLine, // the browser says it has no network
  opened: false, // the document was shown (after its load or a restore)
  cutOff: false, // its socket was lost (or never opened after a restore)
  ws: null,
  retries: 0,
  reconnectTimer: null,
  opRetryTimer: null,
  opRetries: 0,
  busy: false, // reloading or resynchronising: no socket on purpose
  presence: new Map(), // client id → {user, pos}: the others
  lastCursor: '', // the caret and anchor last sent
  cursorTimer: null,
  refreshTimer: null,
  next: null, // cursor of the document list
  // What happened so far (for tests and the curious).
  stats: { changes: 0, transformed: 0, acks: 0, resent: 0, connects: 0, resyncs: 0, reloads: 0, restored: 0, undos: 0 },
};

const $ = (id) => document.getElementById(id);

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
  showVersion();
}

// unsentEdits counts the local edits not yet seen committed.
const unsentEdits = () => (S.inflight ? S.inflight.edits : 0) + S.edits;

// showVersion shows the version, whether all is saved, the offline
// indicator and the undo buttons; and keeps unsent edits in storage.
function showVersion() {
  const off = $('offline');
  if (!S.doc) {
    $('version').textContent = '';
    off.hidden = true;
    return;
  }
  const unsent = unsentEdits();
  $('version').textContent = 'version ' + S.version + (unsent ? ' · saving…' : ' · saved');
  off.hidden = !(S.opened && !wsOpen() && (S.offline || S.cutOff));
  off.textContent = 'offline — ' + unsent + (unsent === 1 ? ' change' : ' changes') + ' pending';
  $('undo').disabled = S.readOnly || !S.undo.canUndo;
  $('redo').disabled = S.readOnly || !S.undo.canRedo;
  Outbox.save(false);
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
  const h = { ...shareHeaders(path), ...headers };
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
    sessionStorage.removeItem('troupe.user');
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
  } else if (S.share) {
    $('user-name').textContent = 'a guest (through a share link)';
    $('logout').textContent = 'Log in';
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
  const h = parseDocHash(location.hash);
  S.share = h && h.share ? { doc: h.id, token: h.share, role: h.role } : null;
  // A share link opens its document without signing in.
  if (!S.user && !S.insecure && !S.share) {
    showAuth();
    return;
  }
  showWho();
  if (h) {
    await openDoc(h.id);
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
  S.ed.setReadOnly(true);
  // Edits this tab (before a reload) or a closed one could not send.
  const kept = Outbox.take(id, S.user ? S.user.id : '');
  if (kept) {
    restore(kept);
    return;
  }
  // A new client id for each opening: a client's seqs must only grow,
  // and an adopted outbox may carry this tab's last id.
  S.clientId = randomId();
  setConn('connecting', 'loading');
  let d;
  try {
    d = await api('GET', '/v1/docs/' + encodeURIComponent(id));
  } catch (e) {
    if (S.doc && S.doc.id === id) {
      setConn('closed', 'not connected');
      $('doc-title').textContent = 'Cannot open the document';
      say(shareEnded(e.code) || 'Cannot open the document: ' + e.message, 'error');
    }
    return;
  }
  if (!S.doc || S.doc.id !== id) return; // gone elsewhere meanwhile
  showTitle(d.title);
  S.doc.owner = d.owner;
  load(d.content, d.version);
  S.role = accessOf(d);
  applyAccess();
  S.ed.focus();
  if (d.content.includes('\r')) say('This document has carriage returns; the browser shows (and saves) them as plain line ends.', 'error');
  else say('');
  connect();
}

// accessOf is the caller's access to document d as the server states it
// (d.access: owner, admin, editor or viewer; storage.Doc.Access decides
// it). Nothing is worked out here from the members or the share URL: a
// document answered without it is shown read-only.
function accessOf(d) {
  return d.access || 'viewer';
}

// applyAccess shows the open document as S.role allows: a viewer's text,
// undo, redo and restore are locked and the status line says read-only;
// the owner and admins get the share dialog.
function applyAccess() {
  S.readOnly = S.role === 'viewer';
  S.ed.setReadOnly(S.readOnly || S.ended);
  $('access').textContent = 'read-only';
  $('access').hidden = !S.readOnly;
  $('share').hidden = !canShare();
  $('name-form').hidden = !canName();
  if (S.readOnly) $('restore-version').disabled = true;
  if (H.open) loadNamed(); // its restore and delete buttons follow the access
  showVersion();
}

// learnRole finds the caller's role when the document was shown from a
// kept outbox, without a load.
async function learnRole(id) {
  try {
    const d = await api('GET', '/v1/docs/' + encodeURIComponent(id) + '?consistency=stale');
    if (!S.doc || S.doc.id !== id) return;
    S.doc.owner = d.owner;
    S.role = accessOf(d);
    applyAccess();
  } catch (e) {
    // Offline: the edits are sent once connected, and refused if they
    // may not be.
  }
}

function showTitle(title) {
  S.doc.title = title;
  $('doc-title').textContent = title || '(untitled)';
  document.title = (title || 'untitled') + ' · troupe';
}

// restore shows a document as a kept outbox left it, unsent edits
// included, and connects: the stream resumes from the kept version, so
// the changes made since are transformed past the edits like any others,
// and the in-flight op is sent again with its client_id and seq (once
// committed, a repeat only gets its ack).
function restore(k) {
  showTitle(k.title);
  S.clientId = k.clientId;
  S.seq = Math.max(S.seq, k.seq);
  S.text = k.text;
  S.version = k.version;
  S.inflight = k.inflight ? { ...k.inflight, acked: null } : null;
  S.pending = k.pending;
  S.pendingBase = k.pendingBase;
  S.edits = k.edits;
  S.ed.load(S.text);
  S.undo.clear();
  S.opened = true;
  S.role = '';
  S.ed.setReadOnly(false);
  S.ed.focus();
  learnRole(S.doc.id);
  const n = unsentEdits();
  say(n + (n === 1 ? ' change' : ' changes') + ' not sent before were kept in this browser; they are sent once connected.');
  S.stats.restored++;
  connect();
}

function load(content, version) {
  S.text = content;
  S.version = version;
  S.inflight = null;
  S.pending = [];
  S.pendingBase = content;
  S.edits = 0;
  S.ed.load(content);
  S.undo.clear();
  S.opened = true;
  showVersion();
}

function closeDoc() {
  if (S.doc) Outbox.save(true);
  dropSocket();
  clearTimeout(S.opRetryTimer);
  S.doc = null;
  S.opened = false;
  S.cutOff = false;
  S.inflight = null;
  S.pending = [];
  S.edits = 0;
  S.busy = false;
  S.presence.clear();
  S.undo.clear();
  S.role = '';
  S.readOnly = false;
  S.ended = false;
  $('access').hidden = true;
  $('share').hidden = true;
  if ($('share-dialog').open) $('share-dialog').close();
  renderPeople();
  setConn('idle', 'not connected');
  document.title = 'troupe';
  closeHistory();
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
  if (!S.doc || S.busy || S.ended) return;
  const q = new URLSearchParams({ client_id: S.clientId, last_event_id: String(S.version) });
  if (S.tokens) q.set('access_token', S.tokens.access);
  if (S.share && S.share.doc === S.doc.id) q.set('share', S.share.token); // a WebSocket takes no headers
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(scheme + '//' + location.host + '/v1/docs/' + encodeURIComponent(S.doc.id) + '/ws?' + q);
  S.ws = ws;
  setConn(S.retries ? 'reconnecting' : 'connecting', S.retries ? 'reconnecting…' : 'connecting…');
  ws.onopen = () => {
    if (S.ws !== ws) return;
    S.retries = 0;
    S.cutOff = false;
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
    S.lastCursor = '';
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
    S.cutOff = true;
    S.presence.clear();
    renderPeople();
    if (S.offline) setConn('reconnecting', 'offline');
    else scheduleReconnect();
  };
}

// scheduleReconnect reconnects with exponential backoff and jitter; before
// a retry it checks that the document is still there (and the token good:
// api() refreshes it), since a refused upgrade tells the page nothing.
function scheduleReconnect() {
  if (!S.doc || S.reconnectTimer) return;
  if (S.offline) {
    // The browser has no network: the online event reconnects.
    setConn('reconnecting', 'offline');
    return;
  }
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
        const ended = shareEnded(e.code);
        if (ended) {
          endDoc(ended);
          return;
        }
        if (e.code === 'not_found' || e.code === 'forbidden') {
          endDoc('The document is gone or no longer yours: ' + e.message);
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
  const edits = S.pending.length ? Math.min(1, S.edits) : S.edits;
  S.edits -= edits;
  S.inflight = { seq: ++S.seq, base: S.version, ops: OT.fromPrims(prims), prims, acked: null, edits };
  S.opRetries = 0;
  // Kept before it is sent: a reload must send it again with this seq.
  Outbox.save(true);
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
        endDoc('This document was deleted.');
      } else {
        resync('the server restarted this document’s stream');
      }
      break;
    case 'error':
      onOpError(m);
      break;
    case 'closed':
      onClosed(m.reason);
      break;
  }
}

// onClosed: the server ends the stream for our sake. A right lost ends
// the page's editing; an expired token or a rate limit only this socket
// (it reconnects, with a fresh token).
function onClosed(reason) {
  let msg = shareEnded(reason);
  if (!msg && reason === 'access_revoked') msg = 'You no longer have access to this document.';
  if (!msg && reason === 'document_deleted') msg = 'This document was deleted.';
  if (msg) endDoc(msg);
}

// endDoc stops editing the open document for good: no socket, no
// reconnecting, the text locked, and why on the status line.
function endDoc(msg) {
  S.ended = true;
  dropSocket();
  clearTimeout(S.opRetryTimer);
  S.presence.clear();
  renderPeople();
  setConn('closed', 'closed');
  S.ed.setReadOnly(true);
  $('share').hidden = true;
  say(msg, 'error');
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
      historyChanged();
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
  historyChanged();
  return true;
}

// applyRemote applies others' primitives to the text and the editor
// (which moves the selection through them) and past the undo history.
function applyRemote(ps) {
  S.text = OT.applyPrims(S.text, ps);
  S.undo.remote(ps);
  S.ed.apply(ps, 'remote');
}

// setText shows S.text whole, the selection at start..end (code points).
function setText(start, end) {
  S.ed.load(S.text);
  S.ed.select(start, end);
}

// onLocal takes an edit made in the editor: typed ('input'), or an undo
// or redo. It runs during a reload too: hardReload takes the pending list
// as it is when it is done.
function onLocal(ps, kind) {
  if (!S.doc || !ps.length) return;
  const before = S.text;
  if (kind === 'input') S.undo.local(ps, before, Date.now());
  if (!S.pending.length) S.pendingBase = before;
  S.text = OT.applyPrims(before, ps);
  S.pending = OT.compose(S.pending, ps);
  S.edits++;
  if (!S.pending.length) {
    // Typed and erased: nothing to send.
    S.pendingBase = S.text;
    S.edits = 0;
  }
  flush();
  scheduleCursor();
}

// undo takes back this tab's last edit (only its own: what others wrote
// since stays); redo makes it again.
function undo() {
  undoStep(S.undo.undo(S.text), 'undo');
}

function redo() {
  undoStep(S.undo.redo(S.text), 'redo');
}

function undoStep(ps, kind) {
  if (ps && S.doc && !S.readOnly) {
    S.stats.undos++;
    S.ed.apply(ps, kind); // reported back through onLocal
  }
  S.ed.focus();
  showVersion();
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
    case 'forbidden':
      // We may only read it (a viewer; or a member demoted meanwhile).
      S.role = 'viewer';
      applyAccess();
      hardReload('The server refused an edit: this document is read-only for you');
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
    const ended = shareEnded(e.code);
    if (ended) {
      endDoc(ended);
    } else if (e.code === 'version_too_old' || e.code === 'bad_request') {
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
    const { anchor: start, head: end } = S.ed.selection();
    const pending = S.pending;
    const edits = S.edits;
    const local = S.text;
    const base = S.pendingBase;
    load(d.content, d.version);
    if (pending.length && !lost && d.content === base) {
      S.pending = pending;
      S.edits = edits;
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
    if (!S.doc || S.doc.id !== id) return;
    const ended = shareEnded(e.code);
    if (ended || e.code === 'not_found' || e.code === 'forbidden') {
      endDoc(ended || 'The document is gone or no longer yours: ' + e.message);
      return;
    }
    say(why + '. Reloading failed (' + e.message + '); retrying…', 'error');
    setTimeout(() => {
      if (S.doc && S.doc.id === id) hardReload(why);
    }, 2000);
  }
}

// ---- Presence ---------------------------------------------------------------

function caret() {
  return S.ed.selection().head;
}

function scheduleCursor() {
  if (S.cursorTimer) return;
  S.cursorTimer = setTimeout(() => {
    S.cursorTimer = null;
    sendCursor();
  }, 150);
}

// sendCursor tells the others where our caret is, and what we selected
// (anchor, when it is not at the caret).
function sendCursor() {
  if (!S.doc) return;
  const { anchor, head } = S.ed.selection();
  const key = head + ':' + anchor;
  const m = anchor === head ? { type: 'cursor', pos: head } : { type: 'cursor', pos: head, anchor };
  if (key !== S.lastCursor && send(m)) S.lastCursor = key;
  renderPeople();
}

function onPresence(p) {
  if (p.client_id === S.clientId) return;
  if (p.state === 'leave') S.presence.delete(p.client_id);
  else {
    const was = S.presence.get(p.client_id);
    const pos = p.pos != null ? p.pos : was ? was.pos : null;
    const anchor = p.pos != null ? (p.anchor != null ? p.anchor : p.pos) : was ? was.anchor : null;
    S.presence.set(p.client_id, { user: p.user, pos, anchor });
  }
  renderPeople();
}

function nameOf(uid) {
  if (!uid) return 'anonymous';
  if (S.user && uid === S.user.id) return S.user.name;
  // A guest: guest-xxxx in presence, guest:<link id> in the history.
  if (uid.startsWith('guest-')) return uid;
  if (uid.startsWith('guest:')) return 'guest-' + uid.slice(6, 10);
  // A guest may not read users: the owner is named as such, others by id.
  if (!S.tokens && !S.insecure) return S.doc && uid === S.doc.owner ? 'the owner' : uid;
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

// colourOf: a user's colour, one of the palette's (style.css,
// .troupe-colour-N), the same on every page and every visit.
const COLOURS = 12;
function colourOf(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) % 1000003;
  return h % COLOURS;
}

function renderPeople() {
  const ul = $('people');
  const items = [];
  const add = (id, user, label) => {
    const li = document.createElement('li');
    li.dataset.clientId = id;
    const dot = document.createElement('span');
    dot.className = 'dot troupe-colour-' + colourOf(user || id);
    li.append(dot, label);
    items.push(li);
  };
  if (S.doc) add(S.clientId, S.user && S.user.id, (S.user || !S.share ? 'You' : 'You (a guest)') + ' at ' + caret());
  for (const [id, p] of S.presence) add(id, p.user, nameOf(p.user) + (p.pos != null ? ' at ' + p.pos : ''));
  ul.replaceChildren(...items);
  renderCarets();
}

// renderCarets draws the others' carets (and selections, when their
// presence carries an anchor) in the text, with their names.
function renderCarets() {
  const list = [];
  if (S.doc) {
    for (const [id, p] of S.presence) {
      if (p.pos == null) continue;
      list.push({ id, name: nameOf(p.user), colour: colourOf(p.user || id), head: p.pos, anchor: p.anchor });
    }
  }
  S.ed.setCarets(list);
}

// ---- Forms and startup ----------------------------------------------------

async function loggedIn(tokens) {
  setTokens(tokens);
  S.user = await api('GET', '/v1/auth/me');
  sessionStorage.setItem('troupe.user', JSON.stringify(S.user));
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
    const unsent = S.doc ? unsentEdits() : 0;
    const user = S.user.id;
    setTokens(null);
    S.user = null;
    closeDoc();
    // Nothing of the user's documents stays in this browser.
    const dropped = Outbox.drop(user) ? ' Changes not yet sent were dropped' + (unsent ? ' (' + unsent + ')' : '') + '.' : '';
    location.hash = '#/';
    showAuth();
    say('Logged out.' + dropped, dropped ? 'error' : 'info');
  });
  S.ed = new Editor($('text'), { onLocal, onSelection: scheduleCursor, onUndo: undo, onRedo: redo });
  $('undo').addEventListener('click', undo);
  $('redo').addEventListener('click', redo);
  wireHistory();
  wireShare();
  window.addEventListener('hashchange', route);
  window.addEventListener('offline', () => {
    S.offline = true;
    // The socket may linger a while: edits wait from now on.
    if (S.ws) dropSocket();
    if (S.doc) setConn('reconnecting', 'offline');
  });
  window.addEventListener('online', () => {
    S.offline = false;
    if (S.doc && !S.opened) {
      // It could not be loaded while offline: again.
      route();
      return;
    }
    if (!S.doc || S.ws || S.busy) return;
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = null;
    S.retries = 0;
    connect();
  });
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
      sessionStorage.setItem('troupe.user', JSON.stringify(S.user));
    } catch (e) {
      // Offline: the session stays, as it was last known.
      S.user = e.status === 0 ? JSON.parse(sessionStorage.getItem('troupe.user') || 'null') : null;
      if (!S.user) setTokens(null);
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
  shown: () => S.ed.text(),
  selection: () => S.ed.selection(),
  select: (anchor, head) => {
    S.ed.focus();
    S.ed.select(anchor, head);
  },
  insert: (text) => S.ed.insert(text),
  caretOf: (clientId) => S.ed.caretPosition(clientId), // where its widget is drawn
};

boot();
