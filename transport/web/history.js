// The history panel: a document's kept changes (GET /v1/docs/{id}/history),
// newest first; a click previews the text as it was at that version
// (GET /v1/docs/{id}?version=N), which may be restored (POST
// /v1/docs/{id}/restore: one change, authored by us, that others receive
// like any edit). Loaded before app.js, whose state (S) and helpers it
// uses when called.
'use strict';

const H = {
  open: false,
  next: null, // the before of the next (older) page
  version: null, // the version previewed
  refreshTimer: null,
  loading: 0, // increases with every load: a stale answer is dropped
};

function wireHistory() {
  $('history').addEventListener('click', () => (H.open ? closeHistory() : openHistory()));
  $('history-close').addEventListener('click', closeHistory);
  $('history-more').addEventListener('click', () => loadHistory(true));
  $('restore-version').addEventListener('click', restoreVersion);
}

function openHistory() {
  if (!S.doc) return;
  H.open = true;
  $('history-panel').hidden = false;
  $('history').setAttribute('aria-expanded', 'true');
  loadHistory(false);
}

function closeHistory() {
  H.open = false;
  H.version = null;
  clearTimeout(H.refreshTimer);
  H.refreshTimer = null;
  $('history-panel').hidden = true;
  $('history-preview').hidden = true;
  $('history').setAttribute('aria-expanded', 'false');
}

// historyChanged: a new version came in; an open list shows it within a
// second (one reload for a burst of changes).
function historyChanged() {
  if (!H.open || H.refreshTimer) return;
  H.refreshTimer = setTimeout(() => {
    H.refreshTimer = null;
    if (H.open) loadHistory(false);
  }, 1000);
}

async function loadHistory(more) {
  const id = S.doc.id;
  const ticket = ++H.loading;
  const q = more && H.next != null ? '&before=' + H.next : '';
  let page;
  try {
    page = await api('GET', '/v1/docs/' + encodeURIComponent(id) + '/history?limit=50' + q);
  } catch (e) {
    if (ticket === H.loading) say('Cannot read the history: ' + e.message, 'error');
    return;
  }
  if (ticket !== H.loading || !H.open || !S.doc || S.doc.id !== id) return;
  const ol = $('history-list');
  if (!more) ol.replaceChildren();
  for (const it of page.items) ol.append(historyItem(it));
  H.next = page.next;
  $('history-more').hidden = page.next == null;
  $('history-oldest').textContent = page.oldest != null ? 'Versions from ' + page.oldest + ' on can be read.' : '';
}

function historyItem(it) {
  const li = document.createElement('li');
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'version';
  b.dataset.version = it.version;
  b.setAttribute('aria-pressed', String(it.version === H.version));
  const who = (it.client_id || '').startsWith('restore:') ? nameOf(it.author) + ' (restore)' : it.author == null ? 'unknown' : nameOf(it.author);
  const head = document.createElement('span');
  head.textContent = 'version ' + it.version + ' · ' + who;
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = '+' + it.inserted + ' −' + it.deleted + (it.at ? ' · ' + new Date(it.at).toLocaleString() : '');
  b.append(head, meta);
  b.addEventListener('click', () => previewVersion(it.version));
  li.append(b);
  return li;
}

async function previewVersion(v) {
  const id = S.doc.id;
  H.version = v;
  for (const b of $('history-list').querySelectorAll('button.version')) b.setAttribute('aria-pressed', String(Number(b.dataset.version) === v));
  let d;
  try {
    d = await api('GET', '/v1/docs/' + encodeURIComponent(id) + '?version=' + v);
  } catch (e) {
    say('Cannot read version ' + v + ': ' + e.message, 'error');
    return;
  }
  if (!S.doc || S.doc.id !== id || H.version !== v) return;
  $('preview-title').textContent = 'Version ' + v;
  $('preview-text').textContent = d.content;
  $('history-preview').hidden = false;
  $('restore-version').disabled = S.ed.readOnly;
}

async function restoreVersion() {
  const v = H.version;
  if (v == null || !S.doc) return;
  const btn = $('restore-version');
  btn.disabled = true;
  try {
    const r = await api('POST', '/v1/docs/' + encodeURIComponent(S.doc.id) + '/restore', { version: v }, { 'Idempotency-Key': randomId() });
    say(r.version === S.version && r.restored === v ? 'The text is already version ' + v + '.' : 'Version ' + v + ' restored (as version ' + r.version + ').');
    loadHistory(false);
  } catch (e) {
    say('Cannot restore version ' + v + ': ' + e.message, 'error');
  } finally {
    btn.disabled = S.ed.readOnly;
  }
}
