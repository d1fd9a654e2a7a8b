// Sharing a document: the share dialog of its owner (or an admin), which
// creates share links (POST /v1/docs/{id}/links), shows a new link's URL
// once with a copy button, lists the links (GET) and revokes them
// (DELETE); and the page opened from such a URL, whose requests present
// the link's token instead of an account (API.md, "Roles and share
// links"). Loaded before app.js, whose state (S) and helpers it uses when
// called.
//
// A share URL is /#/doc/<doc id>?share=<token>&role=<viewer|editor>. The
// token is in the fragment, which the browser never sends: it stays out of
// the server's access logs, of proxies' and of Referer headers; the page
// sends it only to that document's routes (X-Troupe-Share, and ?share= on
// the WebSocket, which takes no headers). role only says what the link is
// for to whoever reads the URL: the page shows the document as the
// server's answer says (the document's "access"), and a page whose edit is
// refused turns read-only.
'use strict';

const SH = {
  links: [], // the open document's links, as last listed
  loading: 0, // increases with every listing: a stale answer is dropped
};

// parseDocHash reads #/doc/<id>[?share=<token>&role=<role>]: {id, share,
// role}, or null for any other hash.
function parseDocHash(hash) {
  const m = /^#\/doc\/([^?]+)(?:\?(.*))?$/.exec(hash);
  if (!m) return null;
  const q = new URLSearchParams(m[2] || '');
  const role = q.get('role');
  return { id: decodeURIComponent(m[1]), share: q.get('share') || '', role: role === 'viewer' || role === 'editor' ? role : '' };
}

// shareURL is the address that opens document id with a link's token.
function shareURL(id, token, role) {
  const q = new URLSearchParams({ share: token, role });
  return location.origin + '/#/doc/' + encodeURIComponent(id) + '?' + q;
}

// shareHeaders: the header that presents the page's share token, for a
// request to path (only the shared document's routes).
function shareHeaders(path) {
  if (!S.share) return {};
  const base = '/v1/docs/' + encodeURIComponent(S.share.doc);
  if (path !== base && !path.startsWith(base + '/') && !path.startsWith(base + '?')) return {};
  return { 'X-Troupe-Share': S.share.token };
}

// shareEnded explains a refused share token (401 unauthenticated or
// link_expired) in words; '' for any other error.
function shareEnded(code) {
  if (!S.share || S.user) return '';
  if (code === 'link_expired') return 'This share link has expired: ask the document’s owner for a new one.';
  if (code === 'unauthenticated' || code === 'access_revoked') return 'This share link is no longer valid: it was revoked, or it is not a link of this document.';
  return '';
}

function wireShare() {
  $('share').addEventListener('click', openShare);
  $('share-close').addEventListener('click', () => $('share-dialog').close());
  $('share-copy').addEventListener('click', copyShareURL);
  $('share-form').addEventListener('submit', (e) => {
    e.preventDefault();
    createLink();
  });
  $('share-dialog').addEventListener('close', () => {
    // The token is shown once: not again after the dialog is closed.
    $('share-new').hidden = true;
    $('share-url').value = '';
  });
}

// canShare: whether the caller may manage the open document's links.
const canShare = () => !!S.doc && (S.role === 'owner' || S.role === 'admin');

function openShare() {
  if (!canShare()) return;
  $('share-new').hidden = true;
  $('share-url').value = '';
  $('share-error').textContent = '';
  const d = $('share-dialog');
  if (!d.open) d.showModal();
  listLinks();
}

async function listLinks() {
  const id = S.doc.id;
  const ticket = ++SH.loading;
  let r;
  try {
    r = await api('GET', '/v1/docs/' + encodeURIComponent(id) + '/links');
  } catch (e) {
    if (ticket === SH.loading) $('share-error').textContent = 'Cannot list the links: ' + e.message;
    return;
  }
  if (ticket !== SH.loading || !S.doc || S.doc.id !== id) return;
  SH.links = r.items;
  const ul = $('share-links');
  ul.replaceChildren(...r.items.map(linkItem));
  $('share-none').hidden = r.items.length > 0;
}

function linkItem(l) {
  const li = document.createElement('li');
  li.dataset.linkId = l.id;
  const what = document.createElement('span');
  what.className = 'link-role';
  what.textContent = (l.role === 'editor' ? 'Can edit' : 'Can view') + ' · ' + l.id.slice(0, 4);
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = l.expires_at ? 'until ' + new Date(l.expires_at).toLocaleString() : 'until revoked';
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'link revoke';
  b.textContent = 'Revoke';
  b.addEventListener('click', () => revokeLink(l.id, b));
  li.append(what, meta, b);
  return li;
}

async function createLink() {
  const id = S.doc.id;
  const role = $('share-role').value;
  const expires = Number($('share-expiry').value);
  const body = expires > 0 ? { role, expires_in_s: expires } : { role };
  const btn = $('share-create');
  btn.disabled = true;
  $('share-error').textContent = '';
  try {
    const l = await api('POST', '/v1/docs/' + encodeURIComponent(id) + '/links', body, { 'Idempotency-Key': randomId() });
    if (!S.doc || S.doc.id !== id) return;
    $('share-url').value = shareURL(id, l.token, l.role);
    $('share-new-role').textContent = l.role === 'editor' ? 'edit' : 'read';
    $('share-new').hidden = false;
    $('share-url').select();
    listLinks();
  } catch (e) {
    $('share-error').textContent = 'Cannot create a link: ' + e.message;
  } finally {
    btn.disabled = false;
  }
}

async function copyShareURL() {
  const input = $('share-url');
  try {
    await navigator.clipboard.writeText(input.value);
  } catch (e) {
    // No clipboard API (not a secure context): the selection and the
    // older command.
    input.select();
    if (!document.execCommand('copy')) {
      $('share-error').textContent = 'Cannot copy: select the address and copy it.';
      return;
    }
  }
  $('share-copy').textContent = 'Copied';
  setTimeout(() => ($('share-copy').textContent = 'Copy'), 2000);
}

async function revokeLink(linkId, btn) {
  const id = S.doc.id;
  btn.disabled = true;
  try {
    await api('DELETE', '/v1/docs/' + encodeURIComponent(id) + '/links/' + encodeURIComponent(linkId));
  } catch (e) {
    if (e.code !== 'not_found') {
      $('share-error').textContent = 'Cannot revoke the link: ' + e.message;
      btn.disabled = false;
      return;
    }
  }
  listLinks();
}
