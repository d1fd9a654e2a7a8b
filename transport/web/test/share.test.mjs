// share.js's addresses and headers: a share URL opens its document with
// its token and role, and the token goes only to that document's routes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import test from 'node:test';

// load runs share.js (a plain script) with the page's state S and its
// location, and returns its functions.
function load(S, origin = 'http://127.0.0.1:8080') {
  const src = readFileSync(new URL('../share.js', import.meta.url), 'utf8');
  return new Function('S', 'location', src + '\nreturn { parseDocHash, shareURL, shareHeaders, shareEnded };')(S, { origin });
}

test('a share URL opens its document with its token and role', () => {
  const { parseDocHash, shareURL } = load({});
  for (const role of ['viewer', 'editor']) {
    const u = new URL(shareURL('06h4 sk/rb', '9d2c0f', role));
    assert.equal(u.origin, 'http://127.0.0.1:8080');
    assert.equal(u.pathname, '/');
    assert.equal(u.search, '', 'the token stays in the fragment');
    assert.deepEqual(parseDocHash(u.hash), { id: '06h4 sk/rb', share: '9d2c0f', role });
  }
});

test('parseDocHash reads document addresses only', () => {
  const { parseDocHash } = load({});
  assert.deepEqual(parseDocHash('#/doc/abc'), { id: 'abc', share: '', role: '' });
  assert.deepEqual(parseDocHash('#/doc/abc?share=t'), { id: 'abc', share: 't', role: '' });
  assert.deepEqual(parseDocHash('#/doc/abc?share=t&role=owner'), { id: 'abc', share: 't', role: '' }, 'no role but viewer or editor');
  assert.equal(parseDocHash('#/'), null);
  assert.equal(parseDocHash(''), null);
  assert.equal(parseDocHash('#/doc/'), null);
});

test('the token goes only to its document routes', () => {
  const S = { share: { doc: 'abc', token: 't0k', role: 'viewer' } };
  const { shareHeaders } = load(S);
  const sent = { 'X-Troupe-Share': 't0k' };
  assert.deepEqual(shareHeaders('/v1/docs/abc'), sent);
  assert.deepEqual(shareHeaders('/v1/docs/abc?consistency=stale'), sent);
  assert.deepEqual(shareHeaders('/v1/docs/abc/ops?since=3'), sent);
  assert.deepEqual(shareHeaders('/v1/docs/abcd'), {}, 'another document');
  assert.deepEqual(shareHeaders('/v1/docs?limit=50'), {});
  assert.deepEqual(shareHeaders('/v1/auth/me'), {});
  S.share = null;
  assert.deepEqual(shareHeaders('/v1/docs/abc'), {});
});

test('a refused link is explained to a guest', () => {
  const S = { share: { doc: 'abc', token: 't', role: '' }, user: null };
  const { shareEnded } = load(S);
  assert.match(shareEnded('link_expired'), /expired/);
  assert.match(shareEnded('unauthenticated'), /revoked/);
  assert.match(shareEnded('access_revoked'), /revoked/);
  assert.equal(shareEnded('not_found'), '');
  S.user = { id: 'u1' };
  assert.equal(shareEnded('unauthenticated'), '', 'a signed-in user is not a guest');
});
