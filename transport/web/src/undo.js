// Undo and redo of one's own changes only, in a shared document.
//
// Each undo entry holds the inverse of a local edit, kept valid against the
// current text: every change applied after it — someone else's, a later
// local edit, an undo or a redo — is transformed past it (the later change
// treated as committed first, as the server orders a tie). Undoing applies
// the top entry's primitives as a new local edit, so it reaches the others
// like any typing, and what it removed of one's own text stays removed
// while text others wrote meanwhile (even inside it) stays.
//
// Edits that follow one another within groupMs, each starting where the
// last ended, are one entry (typing a word is undone at once). Pure: no
// DOM, no clock of its own (callers pass the time), so node can test it.
import { applyPrims, cpToUnit, xf } from './ot.js';

// invert returns the primitives that undo ps, a list applied in order to
// text. Throws (as applyPrims does) when ps does not fit text.
export function invert(ps, text) {
  const inv = [];
  let t = text;
  for (const p of ps) {
    if (p.t === 'i') {
      inv.push({ t: 'd', pos: p.pos, n: p.n });
    } else {
      const u = cpToUnit(t, p.pos);
      const e = u < 0 ? -1 : cpToUnit(t, p.n, u);
      if (u < 0 || e < 0) throw new Error('op out of range: ' + JSON.stringify(p));
      inv.push({ t: 'i', pos: p.pos, n: p.n, text: t.slice(u, e) });
    }
    t = applyPrims(t, [p]);
  }
  return inv.reverse();
}

// past transforms the entry list ps (valid on some text) past the change
// c (valid on the same text): the entry as it applies after c.
const past = (ps, c) => (c.length && ps.length ? xf(ps, c, false)[0] : ps);

// end is where a list's last primitive leaves the caret.
function end(ps) {
  const p = ps[ps.length - 1];
  return p.t === 'i' ? p.pos + p.n : p.pos;
}

export class UndoHistory {
  constructor({ groupMs = 500, limit = 500 } = {}) {
    this.groupMs = groupMs;
    this.limit = limit;
    this.undos = []; // [{ps, at, caret}]: ps undoes one of our edits
    this.redos = [];
  }

  get canUndo() {
    return this.undos.length > 0;
  }

  get canRedo() {
    return this.redos.length > 0;
  }

  // local records an edit of ours (ps, applied to text before) made at
  // time now (ms). It ends the redo history, as in any editor.
  local(ps, before, now) {
    if (!ps.length) return;
    const inv = invert(ps, before);
    this.redos = [];
    const top = this.undos[this.undos.length - 1];
    const first = ps[0];
    const joins = top && now - top.at <= this.groupMs &&
      (first.pos === top.caret || (first.t === 'd' && first.pos + first.n === top.caret));
    const n = joins ? this.undos.length - 1 : this.undos.length;
    for (let i = 0; i < n; i++) this.undos[i] = { ...this.undos[i], ps: past(this.undos[i].ps, ps) };
    if (joins) {
      // Undo the new edit first, then the rest of the group: the group's
      // list was valid on the text before the new edit.
      top.ps = inv.concat(top.ps);
      top.at = now;
      top.caret = end(ps);
      return;
    }
    this.undos.push({ ps: inv, at: now, caret: end(ps) });
    if (this.undos.length > this.limit) this.undos.shift();
  }

  // remote records a change someone else made, applied after everything
  // recorded so far.
  remote(ps) {
    if (!ps.length) return;
    const move = (e) => ({ ...e, ps: past(e.ps, ps), caret: -1 });
    this.undos = this.undos.map(move);
    this.redos = this.redos.map(move);
  }

  // undo returns the primitives that undo our last edit still visible in
  // text (the current text), or null when there is none; the caller
  // applies them as a local edit without passing them to local. Entries
  // that others' changes emptied (they deleted all we wrote) are skipped.
  undo(text) {
    return this.step(this.undos, this.redos, text);
  }

  // redo is undo's opposite: it returns the primitives that make the last
  // undo again, or null.
  redo(text) {
    return this.step(this.redos, this.undos, text);
  }

  step(from, to, text) {
    while (from.length) {
      const e = from.pop();
      if (!e.ps.length) continue;
      const back = invert(e.ps, text);
      for (const list of [from, to]) {
        for (let i = 0; i < list.length; i++) list[i] = { ...list[i], ps: past(list[i].ps, e.ps), caret: -1 };
      }
      to.push({ ps: back, at: -Infinity, caret: -1 });
      return e.ps;
    }
    return null;
  }

  clear() {
    this.undos = [];
    this.redos = [];
  }
}

// caretAfter is where the caret goes after applying ps (code points).
export const caretAfter = (ps) => (ps.length ? end(ps) : 0);
