// The history panel: a document's named versions (GET
// /v1/docs/{id}/versions), which the owner, editors and admins name (POST)
// and delete (DELETE), and its kept changes (GET
// /v1/docs/{id}/history), newest first; a click previews the text as it
// was at that version (GET /v1/docs/{id}?version=N), which may be
// restored (POST /v1/docs/{id}/restore: one change, authored by us, that
// others receive like any edit). A named version can be read and restored
// however old it is. Loaded before app.js, whose state (S) and helpers it
// uses when called.
'use strict';

const H = {
  open: false,
  next: null, // the before of the next (older) page
  version: null, // the version previewed
  refreshTimer: null,
  loading: 0, // increases with every load: a stale answer is dropped
  loadingNamed: 0, // the same, for the named versions
};

function wireHistory() {
  $('history').addEventListener('click', () => (H.open ? closeHistory() : openHistory()));
  $('history-close').addEventListener('click', closeHistory);
  $('history-more').addEventListener('click', () => loadHistory(true));
  $('restore-version').addEventListener('click', () => restoreVersion(H.version));
  $('name-form').addEventListener('submit', (e) => {
    e.preventDefault();
    nameVersion();
  });
}

// canName: whether the caller may name and delete versions: its own
// account's edit rights (the owner, an admin, an editor member); a share
// link's guest may not. The server decides: a refusal is said.
const canName = () => S.role === 'owner' || S.role === 'admin' || (S.role === 'editor' && !!S.user);

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
  if (!more) loadNamed();
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
  for (const b of document.querySelectorAll('#history-panel button.version')) b.setAttribute('aria-pressed', String(Number(b.dataset.version) === v));
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

// loadNamed lists the named versions, newest first: each previews on a
// click, and has a restore (unless the page is read-only) and a delete
// (for those who may name).
async function loadNamed() {
  const id = S.doc.id;
  const ticket = ++H.loadingNamed;
  let page;
  try {
    page = await api('GET', '/v1/docs/' + encodeURIComponent(id) + '/versions');
  } catch (e) {
    if (ticket === H.loadingNamed) say('Cannot list the named versions: ' + e.message, 'error');
    return;
  }
  if (ticket !== H.loadingNamed || !H.open || !S.doc || S.doc.id !== id) return;
  $('named-list').replaceChildren(...page.items.map(namedItem));
  $('named-none').hidden = page.items.length > 0;
  $('name-form').hidden = !canName();
}

function namedItem(nv) {
  const li = document.createElement('li');
  li.dataset.version = nv.version;
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'version';
  b.dataset.version = nv.version;
  b.setAttribute('aria-pressed', String(nv.version === H.version));
  const head = document.createElement('span');
  head.className = 'name';
  head.textContent = nv.name;
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = 'version ' + nv.version + ' · ' + nameOf(nv.author) + (nv.at ? ' · ' + new Date(nv.at).toLocaleString() : '');
  b.append(head, meta);
  b.addEventListener('click', () => previewVersion(nv.version));
  li.append(b);
  if (!S.ed.readOnly) {
    const r = document.createElement('button');
    r.type = 'button';
    r.className = 'link restore-named';
    r.textContent = 'Restore';
    r.addEventListener('click', () => restoreVersion(nv.version));
    li.append(r);
  }
  if (canName()) {
    const d = document.createElement('button');
    d.type = 'button';
    d.className = 'link delete-named';
    d.textContent = 'Delete';
    d.addEventListener('click', () => deleteNamed(nv));
    li.append(d);
  }
  return li;
}

// nameVersion names the current version with the form's name.
async function nameVersion() {
  if (!S.doc) return;
  const input = $('version-name');
  const name = input.value.trim();
  if (!name) return;
  const btn = $('name-version');
  btn.disabled = true;
  try {
    const nv = await api('POST', '/v1/docs/' + encodeURIComponent(S.doc.id) + '/versions', { name }, { 'Idempotency-Key': randomId() });
    input.value = '';
    say('Version ' + nv.version + ' is named "' + nv.name + '".');
    loadNamed();
  } catch (e) {
    say('Cannot name the version: ' + e.message, 'error');
  } finally {
    btn.disabled = false;
  }
}

async function deleteNamed(nv) {
  if (!S.doc) return;
  try {
    await api('DELETE', '/v1/docs/' + encodeURIComponent(S.doc.id) + '/versions/' + nv.version, undefined, { 'Idempotency-Key': randomId() });
    say('The name "' + nv.name + '" of version ' + nv.version + ' is deleted.');
    loadNamed();
  } catch (e) {
    say('Cannot delete the name: ' + e.message, 'error');
  }
}

async function restoreVersion(v) {
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
