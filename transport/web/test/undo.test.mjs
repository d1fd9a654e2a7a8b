// Tests of undo.js (node --test, run by make web-test): undo and redo of
// one's own edits in a text others change too.
import assert from 'node:assert/strict';
import test from 'node:test';
import { applyPrims, cpLen, xf } from '../src/ot.js';
import { invert, UndoHistory } from '../src/undo.js';

const ins = (pos, text) => ({ t: 'i', pos, n: cpLen(text), text });
const del = (pos, n) => ({ t: 'd', pos, n });

// A text edited by us (local) and others (remote), as the page does it.
class Doc {
  constructor(text, groupMs = 500) {
    this.text = text;
    this.h = new UndoHistory({ groupMs });
    this.now = 0;
  }
  local(ps, dt = 1000) {
    this.now += dt;
    this.h.local(ps, this.text, this.now);
    this.text = applyPrims(this.text, ps);
  }
  remote(ps) {
    this.h.remote(ps);
    this.text = applyPrims(this.text, ps);
  }
  undo() {
    const ps = this.h.undo(this.text);
    if (ps) this.text = applyPrims(this.text, ps);
    return ps;
  }
  redo() {
    const ps = this.h.redo(this.text);
    if (ps) this.text = applyPrims(this.text, ps);
    return ps;
  }
}

test('invert undoes inserts, deletes and replaces, with code points', () => {
  const text = 'a😀bc𝄞d';
  for (const ps of [[ins(1, 'xy')], [del(1, 2)], [ins(2, '🎉'), del(4, 2)], [del(0, 6)], [ins(6, 'é'), del(0, 1), ins(0, 'Z')]]) {
    const after = applyPrims(text, ps);
    assert.equal(applyPrims(after, invert(ps, text)), text, JSON.stringify(ps));
  }
  assert.throws(() => invert([del(3, 9)], 'abc'));
});

test('undo and redo alone', () => {
  const d = new Doc('hello');
  d.local([ins(5, ' ')]);
  d.local([ins(6, 'world')]);
  d.undo();
  assert.equal(d.text, 'hello ');
  d.undo();
  assert.equal(d.text, 'hello');
  assert.equal(d.undo(), null);
  d.redo();
  assert.equal(d.text, 'hello ');
  d.redo();
  assert.equal(d.text, 'hello world');
  assert.equal(d.redo(), null);
});

test('typing in a row is one step; a pause or a jump starts another', () => {
  const d = new Doc('');
  for (const [i, c] of [...'abc'].entries()) d.local([ins(i, c)], 100);
  d.local([ins(3, 'd')], 2000); // after a pause
  d.local([ins(0, 'X')], 100); // elsewhere
  d.local([del(0, 1)], 100); // backspace right after it: joins
  assert.equal(d.text, 'abcd');
  d.undo();
  assert.equal(d.text, 'abcd'); // the X typed and erased: one step
  d.undo();
  assert.equal(d.text, 'abc');
  d.undo();
  assert.equal(d.text, '');
});

test('backspacing in a row is one step', () => {
  const d = new Doc('abcdef');
  for (const p of [5, 4, 3]) d.local([del(p, 1)], 100);
  assert.equal(d.text, 'abc');
  d.undo();
  assert.equal(d.text, 'abcdef');
});

test('undo removes our last edit and keeps a later one of someone else', () => {
  const d = new Doc('');
  d.local([ins(0, 'mine ')]);
  d.remote([ins(5, 'theirs')]);
  d.undo();
  assert.equal(d.text, 'theirs');
  d.redo();
  assert.equal(d.text, 'mine theirs');
});

test('text others typed inside ours survives its undo', () => {
  const d = new Doc('');
  d.local([ins(0, 'abc')]);
  d.remote([ins(2, 'X')]);
  d.undo();
  assert.equal(d.text, 'X');
});

test('undoing a delete brings the text back around what others inserted', () => {
  const d = new Doc('abcde');
  d.local([del(1, 3)]);
  d.remote([ins(1, 'Z')]);
  d.undo();
  assert.equal(d.text.replace('Z', ''), 'abcde');
  assert.ok(d.text.includes('Z'));
});

test('an edit others deleted entirely is skipped', () => {
  const d = new Doc('0');
  d.local([ins(1, 'one')]);
  d.local([ins(4, 'two')]);
  d.remote([del(4, 3)]);
  assert.equal(d.text, '0one');
  d.undo(); // "two" is gone already: undoes "one"
  assert.equal(d.text, '0');
});

test('a new edit ends the redo history', () => {
  const d = new Doc('');
  d.local([ins(0, 'a')]);
  d.undo();
  d.local([ins(0, 'b')]);
  assert.equal(d.redo(), null);
  assert.equal(d.text, 'b');
});

// rng: a small deterministic generator.
function rng(seed) {
  return (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
}

test('random: undoing all our inserts leaves exactly the others\' text', () => {
  for (let round = 0; round < 300; round++) {
    const r = rng(round + 1);
    const d = new Doc('0123456789', 0);
    const our = 'abcdefgh';
    const their = 'ABCDEFGH😀';
    for (let i = 0; i < 12; i++) {
      const pos = r(cpLen(d.text) + 1);
      if (r(2)) d.local([ins(pos, our[r(our.length)])], 1000);
      else if (r(3) || cpLen(d.text) === 0) d.remote([ins(pos, [...their][r(9)])]);
      else d.remote([del(Math.min(pos, cpLen(d.text) - 1), 1)]);
    }
    const full = d.text;
    while (d.undo());
    assert.equal(d.text, full.replace(/[a-h]/g, ''), 'round ' + round);
    while (d.redo());
    assert.equal(d.text, full, 'redo, round ' + round);
  }
});

test('random: our undo converges with the others as any edit does', () => {
  // Two sites: we undo while they edit concurrently; after exchanging
  // (transformed) changes both texts are equal.
  for (let round = 0; round < 300; round++) {
    const r = rng(round + 7);
    const d = new Doc('hello world', 0);
    for (let i = 0; i < 6; i++) {
      const pos = r(cpLen(d.text) + 1);
      if (r(2)) d.local([ins(pos, 'xy')]);
      else if (cpLen(d.text) > pos + 1) d.local([del(pos, 2)]);
    }
    const start = d.text;
    const u = d.undo() || [];
    const pos = r(cpLen(start) + 1);
    const theirs = [ins(pos, 'Q')];
    const [u2, theirs2] = xf(u, theirs, false);
    assert.equal(applyPrims(applyPrims(start, theirs), u2), applyPrims(applyPrims(start, u), theirs2));
  }
});
