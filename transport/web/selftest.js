// A self-test of the editor's diff, transform and undo (src/ot.js,
// src/undo.js, as bundled in editor.js), run by the browser test:
// troupeSelfTest() returns the failures, [] when all pass.
// The transform cases are storage/ot_test.go's TestTransformRules, so the
// client and the server agree on every rule of API.md.
'use strict';

window.troupeSelfTest = () => {
  const OT = window.troupeOT;
  const fails = [];
  const eq = (what, got, want) => {
    const g = JSON.stringify(got);
    const w = JSON.stringify(want);
    if (g !== w) fails.push(what + ': got ' + g + ', want ' + w);
  };
  const ins = (pos, text) => ({ op: 'insert', pos, text });
  const del = (pos, len) => ({ op: 'delete', pos, len });
  const rep = (pos, len, text) => ({ op: 'replace', pos, len, text });

  // Code points, not UTF-16 units.
  eq('cpLen', OT.cpLen('a😀b𝄞'), 4);
  eq('cpToUnit', OT.cpToUnit('a😀b', 2), 3);
  eq('cpToUnit past the end', OT.cpToUnit('a😀', 3), -1);
  eq('unitToCp', OT.unitToCp('😀😀x', 4), 2);

  // diff(old, new, caret in new) → ops.
  const diffs = [
    ['insert after an emoji', 'a😀b', 'a😀xb', 4, [ins(2, 'x')]],
    ['delete an emoji', 'x😀y', 'xy', 1, [del(1, 1)]],
    ['delete the second of two emoji', '😀😀', '😀', 2, [del(1, 1)]],
    ['emoji sharing a high surrogate', 'a😀', 'a😃', 3, [rep(1, 1, '😃')]],
    ['insert an emoji', 'ab', 'a🎉b', 3, [ins(1, '🎉')]],
    ['the caret places a repeated insert', 'aaa', 'aaaa', 1, [ins(0, 'a')]],
    ['no caret: the longest common suffix', 'aaa', 'aaaa', null, [ins(0, 'a')]],
    ['replace a selection', 'hello world', 'hello there', 11, [rep(6, 5, 'there')]],
    ['no change', 'same', 'same', 2, []],
    ['from empty', '', '👋 hi', 4, [ins(0, '👋 hi')]],
    ['to empty', '👋 hi', '', 0, [del(0, 4)]],
  ];
  for (const [name, a, b, caret, want] of diffs) {
    const ps = OT.diff(a, b, caret);
    eq('diff: ' + name, OT.fromPrims(ps), want);
    try {
      eq('diff applies: ' + name, OT.applyPrims(a, ps), b);
    } catch (e) {
      fails.push('diff applies: ' + name + ': ' + e.message);
    }
  }

  // The server's transform rules, with the text after.
  const base = '0123456789';
  const rules = [
    ['insert: after moves right', [[ins(3, 'ab')]], [ins(5, 'X')], [ins(7, 'X')], '012ab34X56789'],
    ['insert: before stays', [[ins(3, 'ab')]], [ins(2, 'X')], [ins(2, 'X')], '01X2ab3456789'],
    ['insert: equal positions, committed first', [[ins(3, 'ab')]], [ins(3, 'X')], [ins(5, 'X')], '012abX3456789'],
    ['insert: a delete around p is split', [[ins(3, 'ab')]], [del(1, 4)], [del(1, 2), del(3, 2)], '0ab56789'],
    ['insert: a delete from p moves', [[ins(3, 'ab')]], [del(3, 2)], [del(5, 2)], '012ab56789'],
    ['insert: a delete up to p stays', [[ins(3, 'ab')]], [del(1, 2)], [del(1, 2)], '0ab3456789'],
    ['insert: a split replace keeps its text first', [[ins(3, 'ab')]], [rep(1, 4, 'XY')], [rep(1, 2, 'XY'), del(5, 2)], '0XYab56789'],
    ['insert: a replace from p moves', [[ins(3, 'ab')]], [rep(3, 2, 'XY')], [rep(5, 2, 'XY')], '012abXY56789'],
    ['insert: a replace up to p stays', [[ins(3, 'ab')]], [rep(1, 2, 'XY')], [rep(1, 2, 'XY')], '0XYab3456789'],
    ['delete: inside moves to p', [[del(3, 4)]], [ins(5, 'X')], [ins(3, 'X')], '012X789'],
    ['delete: at its end moves to p', [[del(3, 4)]], [ins(7, 'X')], [ins(3, 'X')], '012X789'],
    ['delete: after moves left', [[del(3, 4)]], [ins(8, 'X')], [ins(4, 'X')], '0127X89'],
    ['delete: at p stays', [[del(3, 4)]], [ins(3, 'X')], [ins(3, 'X')], '012X789'],
    ['delete: overlapping start shrinks', [[del(3, 4)]], [del(1, 4)], [del(1, 2)], '0789'],
    ['delete: overlapping end shrinks', [[del(3, 4)]], [del(5, 4)], [del(3, 2)], '0129'],
    ['delete: containing shrinks', [[del(3, 4)]], [del(2, 6)], [del(2, 2)], '0189'],
    ['delete: wholly deleted vanishes', [[del(3, 4)]], [del(4, 2)], [], '012789'],
    ['delete: a replace shrinks', [[del(3, 4)]], [rep(5, 4, 'XY')], [rep(3, 2, 'XY')], '012XY9'],
    ['delete: a replace wholly deleted inserts', [[del(3, 4)]], [rep(4, 2, 'XY')], [ins(3, 'XY')], '012XY789'],
    ['replace: inside goes after the new text', [[rep(3, 4, 'ab')]], [ins(5, 'X')], [ins(5, 'X')], '012abX789'],
    ['replace: at p goes after the new text', [[rep(3, 4, 'ab')]], [ins(3, 'X')], [ins(5, 'X')], '012abX789'],
    ['replace: a delete overlapping shrinks', [[rep(3, 4, 'ab')]], [del(5, 4)], [del(5, 2)], '012ab9'],
    ['replace: a replace inside inserts after', [[rep(3, 4, 'ab')]], [rep(4, 2, 'XY')], [ins(5, 'XY')], '012abXY789'],
    ['ties keep log order', [[ins(3, 'a')], [ins(3, 'b')]], [ins(3, 'X')], [ins(5, 'X')], '012baX3456789'],
    ['lists: sequential incoming', [[ins(2, 'ab')]], [ins(0, 'X'), del(4, 2)], [ins(0, 'X'), del(6, 2)], 'X01ab256789'],
    ['lists: sequential committed', [[del(0, 2), ins(3, 'ab')]], [ins(4, 'X'), del(8, 1)], [ins(2, 'X'), del(8, 1)], '23X4ab5689'],
    ['lists: code points', [[ins(1, 'é€𝄞')]], [ins(2, 'ü')], [ins(5, 'ü')], '0é€𝄞1ü23456789'],
  ];
  for (const [name, committed, ops, want, text] of rules) {
    try {
      let ps = OT.toPrims(ops);
      let t = base;
      for (const c of committed) {
        [ps] = OT.xf(ps, OT.toPrims(c), false);
        t = OT.applyPrims(t, OT.toPrims(c));
      }
      eq('transform: ' + name, OT.fromPrims(ps), want);
      eq('transform text: ' + name, OT.applyPrims(t, ps), text);
    } catch (e) {
      fails.push('transform: ' + name + ': ' + e.message);
    }
  }

  // Random convergence (TP1) and composition, on text with emoji.
  let seed = 42;
  const rnd = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const alphabet = ['a', 'b', 'c', '😀', '𝄞', 'é'];
  const word = () => Array.from({ length: 1 + rnd(3) }, () => alphabet[rnd(alphabet.length)]).join('');
  const randOps = (t) => {
    const ps = [];
    for (let k = 1 + rnd(3); k > 0; k--) {
      const len = OT.cpLen(t);
      const pos = rnd(len + 1);
      const p = len > pos && rnd(2) ? { t: 'd', pos, n: 1 + rnd(len - pos) } : { t: 'i', pos, n: 0, text: word() };
      if (p.t === 'i') p.n = OT.cpLen(p.text);
      ps.push(p);
      t = OT.applyPrims(t, [p]);
    }
    return ps;
  };
  for (let i = 0; i < 500 && fails.length < 20; i++) {
    const t = word() + word() + word();
    const a = randOps(t);
    const b = randOps(t);
    try {
      const [b2, a2] = OT.xf(b, a, i % 2 === 0);
      const left = OT.applyPrims(OT.applyPrims(t, a), b2);
      const right = OT.applyPrims(OT.applyPrims(t, b), a2);
      if (left !== right) fails.push('TP1 ' + JSON.stringify({ t, a, b }) + ': ' + left + ' ≠ ' + right);
      const c = randOps(OT.applyPrims(t, a));
      const composed = OT.compose(a, c);
      eq('compose ' + i, OT.applyPrims(t, composed), OT.applyPrims(OT.applyPrims(t, a), c));
    } catch (e) {
      fails.push('random ' + i + ': ' + e.message);
    }
  }
  // Undo of one's own edits past others' (src/undo.js; make web-test
  // runs its full tests with node): undoing all of ours leaves exactly
  // the others' text, and redoing all brings ours back.
  const { UndoHistory } = window.troupeEditor;
  const pins = (pos, text) => ({ t: 'i', pos, n: OT.cpLen(text), text });
  for (let round = 0; round < 200 && fails.length < 20; round++) {
    const h = new UndoHistory({ groupMs: 0 });
    let t = '0123456789';
    let now = 0;
    try {
      for (let i = 0; i < 12; i++) {
        const pos = rnd(OT.cpLen(t) + 1);
        if (rnd(2)) {
          const ps = [pins(pos, 'abcdefgh'[rnd(8)])];
          h.local(ps, t, (now += 1000));
          t = OT.applyPrims(t, ps);
        } else {
          const ps = rnd(3) || OT.cpLen(t) === 0 ? [pins(pos, ['X', 'Y', '😀'][rnd(3)])] : [{ t: 'd', pos: Math.min(pos, OT.cpLen(t) - 1), n: 1 }];
          h.remote(ps);
          t = OT.applyPrims(t, ps);
        }
      }
      const full = t;
      for (let ps = h.undo(t); ps; ps = h.undo(t)) t = OT.applyPrims(t, ps);
      eq('undo all ours ' + round, t, full.replace(/[a-h]/g, ''));
      for (let ps = h.redo(t); ps; ps = h.redo(t)) t = OT.applyPrims(t, ps);
      eq('redo all ours ' + round, t, full);
    } catch (e) {
      fails.push('undo ' + round + ': ' + e.message);
    }
  }
  return fails;
};
