// Offline editing: edits not yet seen committed are kept in localStorage
// (the outbox), so that a reload, a crash or a closed tab loses nothing;
// and a service worker keeps the page itself, so that it reloads without
// a network. Loaded before app.js, whose state (S) it reads.
//
// An outbox is one document's unsent work in one tab, under
// troupe.outbox.<doc id>.<client id>: the local text, the version it is
// based on, the op in flight (with its seq) and the pending edits, and
// the client id they are sent with, so that an op sent before a reload is
// sent again with the same (client_id, seq) and applies once. Its owner is
// the tab (an id in sessionStorage, which a reload keeps); the owner
// renews it every few seconds, and another tab adopts it only when it has
// not been renewed for a while (its tab was closed).
'use strict';

const Outbox = (() => {
  const PREFIX = 'troupe.outbox.';
  const STALE_MS = 20000; // an owner renews every RENEW_MS
  const RENEW_MS = 5000;
  let tab = sessionStorage.getItem('troupe.tab');
  if (!tab) {
    const b = new Uint8Array(9);
    crypto.getRandomValues(b);
    tab = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    sessionStorage.setItem('troupe.tab', tab);
  }
  let timer = null;
  let warned = false;

  const keyOf = (docId, clientId) => PREFIX + docId + '.' + clientId;

  // save writes the open document's outbox now (or within 200 ms when
  // soon is false: typing saves at most five times a second), or removes
  // it when everything was sent.
  function save(now) {
    if (!S.doc || !S.opened) return;
    if (!now) {
      if (!timer) timer = setTimeout(() => save(true), 200);
      return;
    }
    clearTimeout(timer);
    timer = null;
    const key = keyOf(S.doc.id, S.clientId);
    try {
      if (!S.inflight && !S.pending.length) {
        localStorage.removeItem(key);
        return;
      }
      const f = S.inflight;
      localStorage.setItem(key, JSON.stringify({
        owner: tab, beat: Date.now(), user: S.user ? S.user.id : '', title: S.doc.title,
        clientId: S.clientId, seq: S.seq, version: S.version, text: S.text,
        inflight: f && { seq: f.seq, base: f.base, ops: f.ops, prims: f.prims, edits: f.edits },
        pending: S.pending, pendingBase: S.pendingBase, edits: S.edits,
      }));
      warned = false;
    } catch (e) {
      if (!warned) say('This browser cannot keep unsent changes (' + e.message + '): do not reload before they are saved.', 'error');
      warned = true;
    }
  }

  // take adopts the outbox of a document for this tab: its own, or one
  // whose tab is gone, of the same user; null if there is none.
  function take(docId, user) {
    const now = Date.now();
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (!key || !key.startsWith(PREFIX + docId + '.')) continue;
      let k;
      try {
        k = JSON.parse(localStorage.getItem(key));
      } catch (e) {
        continue;
      }
      if (!k || k.user !== user || (k.owner !== tab && now - k.beat < STALE_MS)) continue;
      k.owner = tab;
      k.beat = now;
      localStorage.setItem(key, JSON.stringify(k));
      return k;
    }
    return null;
  }

  // drop removes every outbox of a user (at logout: no text of theirs
  // stays in the browser); true if there was one.
  function drop(user) {
    const keys = [];
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (!key || !key.startsWith(PREFIX)) continue;
      try {
        const k = JSON.parse(localStorage.getItem(key));
        if (k && k.user === user) keys.push(key);
      } catch (e) {
        keys.push(key);
      }
    }
    for (const key of keys) localStorage.removeItem(key);
    return keys.length > 0;
  }

  setInterval(() => {
    if (S.doc && (S.inflight || S.pending.length)) save(true);
  }, RENEW_MS);
  // A reload or a closed tab: what was typed in the last 200 ms too.
  window.addEventListener('pagehide', () => save(true));

  return { save, take, drop, worker: 'none' };
})();

// The service worker (sw.js) serves the page and its assets from its
// cache when the network is gone. Browsers allow it on https and on
// localhost only; elsewhere a reload needs the network (the outbox still
// keeps the edits).
if ('serviceWorker' in navigator && window.isSecureContext) {
  Outbox.worker = 'registering';
  navigator.serviceWorker.register('/assets/sw.js', { scope: '/' }).then(() => {
    Outbox.worker = 'registered';
  }, (e) => {
    // Reloads then need the network; the edits are kept all the same.
    Outbox.worker = 'failed: ' + e.message;
  });
}
