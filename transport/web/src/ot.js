// Operational transformation on the client: a mirror of storage/ot.go.
// Positions count Unicode code points, as the server's do, not the UTF-16
// units JavaScript strings use.
//
// A primitive is {t:'i', pos, n, text} (insert n code points) or
// {t:'d', pos, n} (delete n code points); a list of primitives applies in
// order. A replace(p, len, s) is the insert of s at p followed by the
// delete of len from p+|s|, as on the server, so both sides break the same
// op into the same primitives.
const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;
const pairAt = (s, i) => isHigh(s.charCodeAt(i)) && i + 1 < s.length && isLow(s.charCodeAt(i + 1));

// cpLen: the number of code points of s.
function cpLen(s) {
  let n = 0;
  for (let i = 0; i < s.length; i += pairAt(s, i) ? 2 : 1) n++;
  return n;
}

// cpToUnit: the UTF-16 index after cp code points of s from unit index
// from, or -1 when s is shorter.
function cpToUnit(s, cp, from = 0) {
  let i = from;
  for (; cp > 0; cp--) {
    if (i >= s.length) return -1;
    i += pairAt(s, i) ? 2 : 1;
  }
  return i;
}

const unitToCp = (s, u) => cpLen(s.slice(0, u));

function toPrims(ops) {
  const ps = [];
  for (const op of ops) {
    if (op.op === 'insert') {
      ps.push({ t: 'i', pos: op.pos, n: cpLen(op.text), text: op.text });
    } else if (op.op === 'delete' || (op.op === 'replace' && op.text === '')) {
      ps.push({ t: 'd', pos: op.pos, n: op.len });
    } else if (op.op === 'replace') {
      const k = cpLen(op.text);
      ps.push({ t: 'i', pos: op.pos, n: k, text: op.text }, { t: 'd', pos: op.pos + k, n: op.len });
    } else {
      throw new Error('unknown op ' + JSON.stringify(op));
    }
  }
  return ps;
}

// fromPrims: API ops; an insert directly followed by a delete just after
// its text is sent as one replace (the same primitives on the server).
function fromPrims(ps) {
  const ops = [];
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i];
    const q = ps[i + 1];
    if (p.t === 'i' && q && q.t === 'd' && q.pos === p.pos + p.n) {
      ops.push({ op: 'replace', pos: p.pos, len: q.n, text: p.text });
      i++;
    } else if (p.t === 'i') {
      ops.push({ op: 'insert', pos: p.pos, text: p.text });
    } else {
      ops.push({ op: 'delete', pos: p.pos, len: p.n });
    }
  }
  return ops;
}

// applyPrims applies primitives in order to s; it throws when one reaches
// past the text (a bug: the local text and the ops disagree).
function applyPrims(s, ps) {
  for (const p of ps) {
    const u = cpToUnit(s, p.pos);
    const e = p.t === 'd' ? cpToUnit(s, p.n, u) : u;
    if (u < 0 || e < 0) throw new Error('op out of range: ' + JSON.stringify(p));
    s = s.slice(0, u) + (p.t === 'i' ? p.text : '') + s.slice(e);
  }
  return s;
}

// posPastDel maps a position through the delete d.
function posPastDel(p, d) {
  if (p <= d.pos) return p;
  if (p >= d.pos + d.n) return p - d.n;
  return d.pos;
}

// delPastIns rewrites the delete d to apply after the insert i: split
// around it when i is strictly inside (inserted text survives).
function delPastIns(d, i) {
  if (i.pos <= d.pos) return [{ ...d, pos: d.pos + i.n }];
  if (i.pos >= d.pos + d.n) return [d];
  const first = i.pos - d.pos;
  return [{ ...d, n: first }, { ...d, pos: d.pos + i.n, n: d.n - first }];
}

function delPastDel(d, e) {
  const start = posPastDel(d.pos, e);
  const end = posPastDel(d.pos + d.n, e);
  return end === start ? [] : [{ ...d, pos: start, n: end - start }];
}

// xfPair: x and y written against the same text; returns [x after y,
// y after x]. xFirst: x's insert goes first at equal positions.
function xfPair(x, y, xFirst) {
  if (x.t === 'i' && y.t === 'i') {
    if (x.pos < y.pos || (x.pos === y.pos && xFirst)) return [[x], [{ ...y, pos: y.pos + x.n }]];
    return [[{ ...x, pos: x.pos + y.n }], [y]];
  }
  if (x.t === 'i') return [[{ ...x, pos: posPastDel(x.pos, y) }], delPastIns(y, x)];
  if (y.t === 'i') return [delPastIns(x, y), [{ ...y, pos: posPastDel(y.pos, x) }]];
  return [delPastDel(x, y), delPastDel(y, x)];
}

// xf transforms the sequential lists b and a (written against the same
// text): returns [b after a, a after b]. bFirst: b wins ties.
function xf(b, a, bFirst) {
  const bOut = [];
  for (const x of b) {
    const [xs, a2] = xfOne(x, a, bFirst);
    bOut.push(...xs);
    a = a2;
  }
  return [bOut, a];
}

function xfOne(x, a, bFirst) {
  const aOut = [];
  for (let i = 0; i < a.length; i++) {
    const [xs, ys] = xfPair(x, a[i], bFirst);
    aOut.push(...ys);
    if (xs.length === 0) return [[], aOut.concat(a.slice(i + 1))];
    if (xs.length === 2) {
      const [rest, aRest] = xf(xs, a.slice(i + 1), bFirst);
      return [rest, aOut.concat(aRest)];
    }
    x = xs[0];
  }
  return [[x], aOut];
}

// mapPos moves a caret position through primitives (an insert at the
// caret puts the caret after it, as the server orders committed text
// first).
function mapPos(p, ps) {
  for (const q of ps) p = q.t === 'i' ? (p >= q.pos ? p + q.n : p) : posPastDel(p, q);
  return p;
}

// diff finds the one edit turning a into b: the common prefix and suffix
// (never splitting a surrogate pair) around a replaced middle. caret,
// the UTF-16 caret in b, bounds the suffix, so that typing "a" into "aa"
// inserts where the caret is.
function diff(a, b, caret) {
  if (a === b) return [];
  const la = a.length;
  const lb = b.length;
  let maxSuffix = Math.min(la, lb);
  if (Number.isInteger(caret) && caret >= 0 && caret <= lb) maxSuffix = Math.min(maxSuffix, lb - caret);
  let s = 0;
  while (s < maxSuffix && a.charCodeAt(la - 1 - s) === b.charCodeAt(lb - 1 - s)) s++;
  if (s > 0 && isLow(a.charCodeAt(la - s))) s--;
  const maxPrefix = Math.min(la, lb) - s;
  let p = 0;
  while (p < maxPrefix && a.charCodeAt(p) === b.charCodeAt(p)) p++;
  if (p > 0 && isHigh(a.charCodeAt(p - 1))) p--;
  const pos = cpLen(a.slice(0, p));
  const removed = a.slice(p, la - s);
  const added = b.slice(p, lb - s);
  const ps = [];
  if (added) ps.push({ t: 'i', pos, n: cpLen(added), text: added });
  if (removed) ps.push({ t: 'd', pos: pos + (added ? ps[0].n : 0), n: cpLen(removed) });
  return ps;
}

// compose appends primitives to a list, merging with its last one when
// the two are one edit (typing on, deleting on, erasing what was just
// typed). The result applies exactly as the list followed by ps.
function compose(list, ps) {
  const out = list.slice();
  for (const n of ps) {
    const l = out[out.length - 1];
    if (l && l.t === 'i' && n.t === 'i' && n.pos >= l.pos && n.pos <= l.pos + l.n) {
      const u = cpToUnit(l.text, n.pos - l.pos);
      out[out.length - 1] = { t: 'i', pos: l.pos, n: l.n + n.n, text: l.text.slice(0, u) + n.text + l.text.slice(u) };
    } else if (l && l.t === 'd' && n.t === 'd' && n.pos === l.pos) {
      out[out.length - 1] = { t: 'd', pos: l.pos, n: l.n + n.n };
    } else if (l && l.t === 'd' && n.t === 'd' && n.pos + n.n === l.pos) {
      out[out.length - 1] = { t: 'd', pos: n.pos, n: l.n + n.n };
    } else if (l && l.t === 'i' && n.t === 'd' && n.pos >= l.pos && n.pos + n.n <= l.pos + l.n) {
      const u = cpToUnit(l.text, n.pos - l.pos);
      const e = cpToUnit(l.text, n.n, u);
      const text = l.text.slice(0, u) + l.text.slice(e);
      if (text) out[out.length - 1] = { t: 'i', pos: l.pos, n: l.n - n.n, text };
      else out.pop();
    } else {
      out.push(n);
    }
  }
  return out;
}


export { cpLen, cpToUnit, unitToCp, toPrims, fromPrims, applyPrims, xf, mapPos, diff, compose };
