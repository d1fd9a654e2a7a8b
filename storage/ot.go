package storage

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Operational transformation of document edits (API.md, "Documents").
//
// An op list applies in order, each op to the text the previous one left.
// A client's list is written against its base version; the document actor
// transforms it against every change committed after that base, in log
// order (TransformAgainst), then applies it (Apply). Ties always favour
// the change earlier in the log: the committed one.
//
// How it works. Every op is first broken into primitives: an insert of a
// string at a position, or a delete of a range. A replace(p, n, s) becomes
// insert(p, s) followed by delete(p+|s|, n), the new text first, so that
// the API's rules for a replace fall out of the primitive ones: against a
// committed insert at q it shifts right when q ≤ p (a tie: the committed
// text first), stays when q ≥ p+n, and when p < q < p+n its delete is split
// around the committed text while its new text stays at its start; against
// a committed delete its insert moves as a position does and its delete
// shrinks, so a replace whose range was wholly deleted becomes an insert
// at the committed delete's position. A committed replace behaves as its
// delete and its insert at the same position.
//
// Two primitives x and y written against the same text are transformed as
// a pair (xfPair), giving x' (x rewritten to apply after y) and y' (y
// rewritten to apply after x), with
//
//	apply(apply(T, y), x') = apply(apply(T, x), y')      (TP1)
//
// for the four cases: insert/insert (the one with priority keeps its
// position, the other moves right past its text), insert/delete (the
// position maps through the delete: inside it moves to its start; the
// delete shifts right past an insert at or before its start and is split
// in two around an insert strictly inside it, so inserted text always
// survives), delete/delete (each shrinks to what the other did not
// delete, possibly to nothing). Each result is zero, one or two
// primitives.
//
// Lists. Both lists are sequential: the incoming B = b1..bn (b2 is written
// against T·b1) and the committed A = a1..am (a2 against T·a1). xf(B, A)
// returns B' (B after A) and A' (A after B) by the usual grid (as ShareDB's
// transformX): b1 is transformed against a1, a2, … in turn, and each ai
// against b1 on the way, so that A, rewritten to apply after b1, is what
// b2 is transformed against next. Every step pairs two primitives written
// against the same text, and TP1 of each pair closes one square of the
// grid; by induction over the squares, apply(apply(T, A), B') =
// apply(apply(T, B), A'), and B' never refers to a position that is not
// there (it is B's effect expressed on A's result). Pieces of a split
// primitive are again a list, handled by the same recursion: only a
// delete splits, and only around an insert, so the pieces of one
// primitive are all deletes or a single insert and the recursion bottoms
// out within a few levels. Against several committed changes the result
// of one transform is transformed against the next, which is the same as
// transforming against their concatenation. The cost is O(|A|·|B|) pair
// steps; Doc.Submit bounds it (MaxTransformWork).
//
// The result is turned back into API ops: the insert and first delete of
// one replace that are still adjacent become a replace again; other
// pieces are inserts and deletes. These are "the ops as applied".

// OpKind says what an Op does. Values are part of the command and snapshot
// formats: never renumber.
type OpKind uint8

// Op kinds.
const (
	OpInsert  OpKind = 1
	OpDelete  OpKind = 2
	OpReplace OpKind = 3
)

func (k OpKind) String() string {
	switch k {
	case OpInsert:
		return "insert"
	case OpDelete:
		return "delete"
	case OpReplace:
		return "replace"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// Op is one edit of a document's text. Positions and lengths count code
// points.
type Op struct {
	Kind OpKind
	Pos  int
	Len  int    // delete and replace: code points removed (≥ 1); insert: 0
	Text string // insert (non-empty) and replace (may be empty); delete: ""
}

// Limits of an op list in one submit (the transport's 1 MiB body limit
// bounds JSON the same way). Ops as applied may be more than
// MaxOpsPerList: a transformed delete can split in two.
const (
	MaxOpsPerList = 1000
	MaxOpsText    = 1 << 20 // bytes of text over all ops of a list
	// MaxOpPos bounds positions and lengths, so that transform arithmetic
	// can never overflow.
	MaxOpPos = math.MaxInt32
)

// CheckDocText checks text that goes into a document: valid UTF-8 and no
// NUL character (U+0000), which many consumers of text treat as its end.
func CheckDocText(field, s string) *Error {
	if p := docTextProblem(s); p != "" {
		return badRequest(field, "%s %s", field, p)
	}
	return nil
}

// docTextProblem says what keeps s out of a document ("" when nothing
// does), so that a caller names the field only for a refusal.
func docTextProblem(s string) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "must not contain NUL characters"
	}
	return ""
}

// ValidateOps checks an incoming op list without the text: at least one
// and at most MaxOpsPerList ops, at most MaxOpsText bytes of text, and
// each op well formed (checkOp). Ranges are checked by Apply.
func ValidateOps(ops []Op) *Error {
	if len(ops) == 0 {
		return badRequest("ops", "ops must not be empty")
	}
	if len(ops) > MaxOpsPerList {
		return badRequest("ops", "at most %d ops per submit", MaxOpsPerList)
	}
	size := 0
	for i := range ops {
		if err := checkOp(i, &ops[i]); err != nil {
			return err
		}
		size += len(ops[i].Text)
		if size > MaxOpsText {
			return badRequest("ops", "at most %d bytes of text per submit", MaxOpsText)
		}
	}
	return nil
}

// checkOp checks one op on its own: a known kind, 0 ≤ pos ≤ MaxOpPos,
// 1 ≤ len ≤ MaxOpPos for a delete or a replace and 0 for an insert,
// non-empty text for an insert and none for a delete, text valid per
// CheckDocText.
func checkOp(i int, op *Op) *Error {
	field := func(name string) string { return fmt.Sprintf("ops[%d].%s", i, name) }
	if op.Kind < OpInsert || op.Kind > OpReplace {
		return badRequest(field("op"), "op must be insert, delete or replace")
	}
	if op.Pos < 0 || op.Pos > MaxOpPos {
		return badRequest(field("pos"), "pos must be between 0 and %d", MaxOpPos)
	}
	switch op.Kind {
	case OpInsert:
		if op.Len != 0 {
			return badRequest(field("len"), "an insert takes no len")
		}
		if op.Text == "" {
			return badRequest(field("text"), "an insert needs text")
		}
	case OpDelete, OpReplace:
		if op.Len < 1 || op.Len > MaxOpPos {
			return badRequest(field("len"), "len must be between 1 and %d", MaxOpPos)
		}
		if op.Kind == OpDelete && op.Text != "" {
			return badRequest(field("text"), "a delete takes no text")
		}
	}
	if p := docTextProblem(op.Text); p != "" {
		f := field("text")
		return badRequest(f, "%s %s", f, p)
	}
	return nil
}

// Apply applies ops in order to t, all or nothing: on any error it
// returns t unchanged with a bad_request Error ("ops out of range" when
// an op reaches beyond the text it applies to). It does not enforce the
// list limits of ValidateOps, which apply to incoming lists only.
func Apply(t Text, ops []Op) (Text, *Error) {
	cur := t
	for i := range ops {
		op := &ops[i]
		if err := checkOp(i, op); err != nil {
			return t, err
		}
		size := cur.Len()
		if op.Pos > size || (op.Kind != OpInsert && op.Len > size-op.Pos) {
			return t, &Error{Kind: KindBadRequest, Field: fmt.Sprintf("ops[%d]", i), Message: "ops out of range"}
		}
		switch op.Kind {
		case OpInsert:
			cur = cur.Insert(op.Pos, op.Text)
		case OpDelete:
			cur = cur.Delete(op.Pos, op.Len)
		case OpReplace:
			cur = cur.Delete(op.Pos, op.Len).Insert(op.Pos, op.Text)
		}
	}
	return cur, nil
}

// Transform rewrites ops, written against the text that committed was
// applied to, so that they apply after committed, per the rules of
// API.md; ties favour committed.
func Transform(ops, committed []Op) []Op {
	return TransformAgainst(ops, [][]Op{committed})
}

// TransformAgainst transforms ops against each change in turn (changes in
// log order, the first written against the same text as ops, each next
// one against the text the previous one left).
func TransformAgainst(ops []Op, changes [][]Op) []Op {
	ps := toPrims(ops, true)
	for _, c := range changes {
		ps, _ = xf(ps, toPrims(c, false), false)
	}
	return fromPrims(ps)
}

// transformWork is the number of primitive pairs (an upper estimate) that
// transforming ops against changes takes.
func transformWork(ops []Op, changes [][]Op) int {
	n := 0
	for _, c := range changes {
		n += primCount(c)
	}
	return n * primCount(ops)
}

func primCount(ops []Op) int {
	n := 0
	for i := range ops {
		n++
		if ops[i].Kind == OpReplace && ops[i].Text != "" {
			n++
		}
	}
	return n
}

// prim is a primitive edit: an insert of text (n code points) at pos, or a
// delete of n code points from pos. src and repl remember where an
// incoming primitive came from, to rebuild replaces.
type prim struct {
	pos  int
	n    int
	text string
	src  int32 // index of the op in the incoming list
	del  bool
	repl bool // part of a replace
}

func toPrims(ops []Op, tag bool) []prim {
	ps := make([]prim, 0, len(ops))
	for i := range ops {
		op := &ops[i]
		src := int32(-1)
		if tag {
			src = int32(i)
		}
		switch op.Kind {
		case OpInsert:
			ps = append(ps, prim{pos: op.Pos, n: utf8.RuneCountInString(op.Text), text: op.Text, src: src})
		case OpDelete:
			ps = append(ps, prim{del: true, pos: op.Pos, n: op.Len, src: src})
		case OpReplace:
			if op.Text == "" {
				ps = append(ps, prim{del: true, pos: op.Pos, n: op.Len, src: src})
				break
			}
			k := utf8.RuneCountInString(op.Text)
			ps = append(ps,
				prim{pos: op.Pos, n: k, text: op.Text, src: src, repl: true},
				prim{del: true, pos: op.Pos + k, n: op.Len, src: src, repl: true})
		}
	}
	return ps
}

func fromPrims(ps []prim) []Op {
	ops := make([]Op, 0, len(ps))
	for i := 0; i < len(ps); i++ {
		p := ps[i]
		if !p.del {
			if p.repl && i+1 < len(ps) {
				q := ps[i+1]
				if q.del && q.repl && q.src == p.src && q.pos == p.pos+p.n {
					ops = append(ops, Op{Kind: OpReplace, Pos: p.pos, Len: q.n, Text: p.text})
					i++
					continue
				}
			}
			ops = append(ops, Op{Kind: OpInsert, Pos: p.pos, Text: p.text})
			continue
		}
		ops = append(ops, Op{Kind: OpDelete, Pos: p.pos, Len: p.n})
	}
	return ops
}

// xf transforms the sequential lists b and a, written against the same
// text, against each other: b' applies after a, a' after b. bFirst gives
// b's inserts priority over a's at the same position. b1 is transformed
// against all of a, then b2 against a as it stands after b1, and so on;
// a's successive versions alternate between two buffers.
func xf(b, a []prim, bFirst bool) (bOut, aOut []prim) {
	var bufs [2][]prim
	for i := range b {
		bOut, a = xfOne(bOut, b[i], a, bufs[i%2][:0], bFirst)
		bufs[i%2] = a
	}
	return bOut, a
}

// xfOne transforms the primitive x against a1, a2, …, rewriting each ai
// past x as it stands then; it appends what x becomes to bOut and a's new
// version to dst. If x splits, what is left of a, which is shorter, is
// transformed against the pieces by xf: the recursion ends.
func xfOne(bOut []prim, x prim, a, dst []prim, bFirst bool) ([]prim, []prim) {
	aOut := dst
	for i, y := range a {
		xs, nx, ys, ny := xfPair(x, y, bFirst)
		aOut = append(aOut, ys[:ny]...)
		switch nx {
		case 0:
			// x is gone: the rest of a is unaffected.
			return bOut, append(aOut, a[i+1:]...)
		case 2:
			rest, aRest := xf(xs[:], a[i+1:], bFirst)
			return append(bOut, rest...), append(aOut, aRest...)
		}
		x = xs[0]
	}
	return append(bOut, x), aOut
}

// xfPair transforms two primitives written against the same text: x
// becomes xs[:nx], to apply after y; y becomes ys[:ny], to apply after x.
func xfPair(x, y prim, xFirst bool) (xs [2]prim, nx int, ys [2]prim, ny int) {
	switch {
	case !x.del && !y.del:
		if x.pos < y.pos || (x.pos == y.pos && xFirst) {
			y.pos += x.n
		} else {
			x.pos += y.n
		}
		return [2]prim{x}, 1, [2]prim{y}, 1
	case !x.del:
		ys, ny = delPastIns(y, x)
		x.pos = posPastDel(x.pos, y)
		return [2]prim{x}, 1, ys, ny
	case !y.del:
		xs, nx = delPastIns(x, y)
		y.pos = posPastDel(y.pos, x)
		return xs, nx, [2]prim{y}, 1
	}
	xs, nx = delPastDel(x, y)
	ys, ny = delPastDel(y, x)
	return xs, nx, ys, ny
}

// posPastDel maps a position through the delete d: positions inside the
// deleted range move to its start, positions after it move left.
func posPastDel(p int, d prim) int {
	switch {
	case p <= d.pos:
		return p
	case p >= d.pos+d.n:
		return p - d.n
	}
	return d.pos
}

// delPastIns rewrites the delete d to apply after the insert i: it moves
// right when i is at or before its start, and is split around the
// inserted text when i is strictly inside it (the second piece applies
// after the first).
func delPastIns(d, i prim) ([2]prim, int) {
	switch {
	case i.pos <= d.pos:
		d.pos += i.n
		return [2]prim{d}, 1
	case i.pos >= d.pos+d.n:
		return [2]prim{d}, 1
	}
	first, second := d, d
	first.n = i.pos - d.pos
	second.pos = d.pos + i.n
	second.n = d.n - first.n
	return [2]prim{first, second}, 2
}

// delPastDel rewrites the delete d to apply after the delete e: what is
// left of it once e's range is gone, or nothing.
func delPastDel(d, e prim) ([2]prim, int) {
	start, end := posPastDel(d.pos, e), posPastDel(d.pos+d.n, e)
	if end == start {
		return [2]prim{}, 0
	}
	d.pos, d.n = start, end-start
	return [2]prim{d}, 1
}
