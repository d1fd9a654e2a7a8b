package storage

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func ins(pos int, s string) Op    { return Op{Kind: OpInsert, Pos: pos, Text: s} }
func del(pos, n int) Op           { return Op{Kind: OpDelete, Pos: pos, Len: n} }
func rep(pos, n int, s string) Op { return Op{Kind: OpReplace, Pos: pos, Len: n, Text: s} }
func mustApply(t *testing.T, x Text, ops []Op) Text {
	t.Helper()
	y, err := Apply(x, ops)
	if err != nil {
		t.Fatalf("apply %v to %q: %v", ops, x.String(), err)
	}
	return y
}

// TestTransformRules has a case for each sentence of API.md's transform
// rules, with the exact ops and text expected.
func TestTransformRules(t *testing.T) {
	const base = "0123456789"
	cases := []struct {
		name      string
		committed [][]Op
		ops       []Op
		want      []Op
		text      string
	}{
		// Committed insert of k code points at p.
		{"insert: a later position after p moves right by k", [][]Op{{ins(3, "ab")}}, []Op{ins(5, "X")}, []Op{ins(7, "X")}, "012ab34X56789"},
		{"insert: a position before p stays", [][]Op{{ins(3, "ab")}}, []Op{ins(2, "X")}, []Op{ins(2, "X")}, "01X2ab3456789"},
		{"insert: equal positions, the committed text comes first", [][]Op{{ins(3, "ab")}}, []Op{ins(3, "X")}, []Op{ins(5, "X")}, "012abX3456789"},
		{"insert: a delete strictly containing p is split, the inserted text survives", [][]Op{{ins(3, "ab")}}, []Op{del(1, 4)}, []Op{del(1, 2), del(3, 2)}, "0ab56789"},
		{"insert: a delete starting at p moves right", [][]Op{{ins(3, "ab")}}, []Op{del(3, 2)}, []Op{del(5, 2)}, "012ab56789"},
		{"insert: a delete ending at p stays", [][]Op{{ins(3, "ab")}}, []Op{del(1, 2)}, []Op{del(1, 2)}, "0ab3456789"},
		{"insert: a split replace puts its new text at its start", [][]Op{{ins(3, "ab")}}, []Op{rep(1, 4, "XY")}, []Op{rep(1, 2, "XY"), del(5, 2)}, "0XYab56789"},
		{"insert: a replace starting at p moves right", [][]Op{{ins(3, "ab")}}, []Op{rep(3, 2, "XY")}, []Op{rep(5, 2, "XY")}, "012abXY56789"},
		{"insert: a replace ending at p stays", [][]Op{{ins(3, "ab")}}, []Op{rep(1, 2, "XY")}, []Op{rep(1, 2, "XY")}, "0XYab3456789"},
		// Committed delete of [p, p+k).
		{"delete: a position inside moves to p", [][]Op{{del(3, 4)}}, []Op{ins(5, "X")}, []Op{ins(3, "X")}, "012X789"},
		{"delete: a position at its end moves to p", [][]Op{{del(3, 4)}}, []Op{ins(7, "X")}, []Op{ins(3, "X")}, "012X789"},
		{"delete: a position after it moves left by k", [][]Op{{del(3, 4)}}, []Op{ins(8, "X")}, []Op{ins(4, "X")}, "0127X89"},
		{"delete: a position at p stays", [][]Op{{del(3, 4)}}, []Op{ins(3, "X")}, []Op{ins(3, "X")}, "012X789"},
		{"delete: a delete overlapping its start shrinks", [][]Op{{del(3, 4)}}, []Op{del(1, 4)}, []Op{del(1, 2)}, "0789"},
		{"delete: a delete overlapping its end shrinks", [][]Op{{del(3, 4)}}, []Op{del(5, 4)}, []Op{del(3, 2)}, "0129"},
		{"delete: a delete containing it shrinks", [][]Op{{del(3, 4)}}, []Op{del(2, 6)}, []Op{del(2, 2)}, "0189"},
		{"delete: a delete wholly deleted vanishes", [][]Op{{del(3, 4)}}, []Op{del(4, 2)}, []Op{}, "012789"},
		{"delete: a replace shrinks to the part not deleted", [][]Op{{del(3, 4)}}, []Op{rep(5, 4, "XY")}, []Op{rep(3, 2, "XY")}, "012XY9"},
		{"delete: a replace wholly deleted becomes an insert at p", [][]Op{{del(3, 4)}}, []Op{rep(4, 2, "XY")}, []Op{ins(3, "XY")}, "012XY789"},
		// A committed replace is a delete followed by an insert at the same position.
		{"replace: a position inside moves to p, after the new text", [][]Op{{rep(3, 4, "ab")}}, []Op{ins(5, "X")}, []Op{ins(5, "X")}, "012abX789"},
		{"replace: a position at p goes after the new text", [][]Op{{rep(3, 4, "ab")}}, []Op{ins(3, "X")}, []Op{ins(5, "X")}, "012abX789"},
		{"replace: a delete overlapping it shrinks and leaves the new text", [][]Op{{rep(3, 4, "ab")}}, []Op{del(5, 4)}, []Op{del(5, 2)}, "012ab9"},
		{"replace: a replace wholly inside becomes an insert after the new text", [][]Op{{rep(3, 4, "ab")}}, []Op{rep(4, 2, "XY")}, []Op{ins(5, "XY")}, "012abXY789"},
		// Ties favour the change earlier in the log.
		{"ties: two changes at one position keep log order", [][]Op{{ins(3, "a")}, {ins(3, "b")}}, []Op{ins(3, "X")}, []Op{ins(5, "X")}, "012baX3456789"},
		// Both lists are sequential.
		{"lists: each incoming op is moved by the committed ops as they stand after the previous one",
			[][]Op{{ins(2, "ab")}}, []Op{ins(0, "X"), del(4, 2)}, []Op{ins(0, "X"), del(6, 2)}, "X01ab256789"},
		{"lists: a committed list of several ops", [][]Op{{del(0, 2), ins(3, "ab")}}, []Op{ins(4, "X"), del(8, 1)}, []Op{ins(2, "X"), del(8, 1)}, "23X4ab5689"},
		{"lists: code points, not bytes", [][]Op{{ins(1, "é€𝄞")}}, []Op{ins(2, "ü")}, []Op{ins(5, "ü")}, "0é€𝄞1ü23456789"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := TransformAgainst(c.ops, c.committed)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("transform: got %v, want %v", got, c.want)
			}
			x := NewText(base)
			for _, ch := range c.committed {
				x = mustApply(t, x, ch)
			}
			if s := mustApply(t, x, got).String(); s != c.text {
				t.Fatalf("text: got %q, want %q", s, c.text)
			}
		})
	}
}

func TestApplyValidation(t *testing.T) {
	x := NewText("héllo")
	cases := []struct {
		ops   []Op
		field string
		msg   string
	}{
		{[]Op{ins(6, "x")}, "ops[0]", "ops out of range"},
		{[]Op{del(3, 3)}, "ops[0]", "ops out of range"},
		{[]Op{ins(0, "abc"), del(7, 2)}, "ops[1]", "ops out of range"},
		{[]Op{rep(5, 1, "x")}, "ops[0]", "ops out of range"},
		{[]Op{ins(-1, "x")}, "ops[0].pos", ""},
		{[]Op{del(0, 0)}, "ops[0].len", ""},
		{[]Op{ins(0, "")}, "ops[0].text", ""},
		{[]Op{ins(0, "a\xffb")}, "ops[0].text", ""},
		{[]Op{ins(0, "a\x00b")}, "ops[0].text", ""},
		{[]Op{{Kind: OpDelete, Pos: 0, Len: 1, Text: "x"}}, "ops[0].text", ""},
		{[]Op{{Kind: OpInsert, Pos: 0, Len: 1, Text: "x"}}, "ops[0].len", ""},
		{[]Op{{Kind: 9, Pos: 0}}, "ops[0].op", ""},
		{[]Op{del(0, MaxOpPos+1)}, "ops[0].len", ""},
	}
	for _, c := range cases {
		y, err := Apply(x, c.ops)
		if err == nil || err.Kind != KindBadRequest || err.Field != c.field || (c.msg != "" && err.Message != c.msg) {
			t.Errorf("%v: got %v (field %q)", c.ops, err, fieldOf(err))
		}
		if y.String() != "héllo" {
			t.Errorf("%v: a failed apply changed the text", c.ops)
		}
	}
	y := mustApply(t, x, []Op{rep(1, 1, "e"), ins(5, "!"), del(0, 1), rep(0, 1, "")})
	if y.String() != "llo!" {
		t.Fatalf("got %q", y.String())
	}
}

func fieldOf(err *Error) string {
	if err == nil {
		return ""
	}
	return err.Field
}

func TestValidateOps(t *testing.T) {
	if err := ValidateOps(nil); err == nil {
		t.Fatal("empty list accepted")
	}
	many := make([]Op, MaxOpsPerList+1)
	for i := range many {
		many[i] = ins(0, "a")
	}
	if err := ValidateOps(many); err == nil || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("too many ops: %v", err)
	}
	if err := ValidateOps(many[:MaxOpsPerList]); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("a", MaxOpsText/2+1)
	if err := ValidateOps([]Op{ins(0, big), ins(0, big)}); err == nil {
		t.Fatal("too much text accepted")
	}
}

// opGen makes random op lists whose inserted characters are all distinct
// and distinct from the base text, so tests can tell who wrote what.
type opGen struct {
	r    *rand.Rand
	next rune
}

func (g *opGen) fresh(n int) string {
	var b strings.Builder
	for range n {
		b.WriteRune(g.next)
		g.next++
	}
	return b.String()
}

// ops returns 1..maxOps random ops valid on a text of size code points,
// applied in order.
func (g *opGen) ops(size, maxOps int) []Op {
	n := 1 + g.r.IntN(maxOps)
	ops := make([]Op, 0, n)
	for range n {
		k := g.r.IntN(3)
		if size == 0 {
			k = 0
		}
		pos := g.r.IntN(size + 1)
		switch k {
		case 0:
			s := g.fresh(1 + g.r.IntN(3))
			ops = append(ops, ins(pos, s))
			size += utf8.RuneCountInString(s)
		case 1, 2:
			if pos == size {
				pos--
			}
			l := 1 + g.r.IntN(min(size-pos, 5))
			if k == 1 {
				ops = append(ops, del(pos, l))
				size -= l
				break
			}
			s := g.fresh(g.r.IntN(3))
			ops = append(ops, rep(pos, l, s))
			size += utf8.RuneCountInString(s) - l
		}
	}
	return ops
}

// restrict keeps the code points of s that are in keep, in order.
func restrict(s string, keep map[rune]bool) string {
	var b strings.Builder
	for _, c := range s {
		if keep[c] {
			b.WriteRune(c)
		}
	}
	return b.String()
}

func runeSet(s string) map[rune]bool {
	m := map[rune]bool{}
	for _, c := range s {
		m[c] = true
	}
	return m
}

// TestTransformProperties checks on random texts and concurrent lists A
// (committed) and B (incoming), both valid on T:
//   - B' = Transform(B, A) applies to T·A, never out of range, and every
//     op of it is well formed; the transform is deterministic;
//   - convergence (TP1): T·A·B' equals T·B·A' with A' = A after B;
//   - effects: a character is in the result iff it is in T·A and in T·B
//     (whoever inserted or deleted it), and the result keeps the order of
//     both T·A and T·B.
func TestTransformProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	g := &opGen{r: r, next: 0x4E00}
	for iter := range 20000 {
		g.next = 0x4E00
		T := NewText(g.fresh(r.IntN(12)))
		A := g.ops(T.Len(), 4)
		B := g.ops(T.Len(), 4)
		TA, TB := mustApply(t, T, A), mustApply(t, T, B)
		B2 := Transform(B, A)
		if again := Transform(B, A); !reflect.DeepEqual(B2, again) {
			t.Fatal("transform is not deterministic")
		}
		for i := range B2 {
			if err := checkOp(i, &B2[i]); err != nil {
				t.Fatalf("iter %d: ill-formed op %v: %v", iter, B2[i], err)
			}
		}
		F, err := Apply(TA, B2)
		if err != nil {
			t.Fatalf("iter %d: T=%q A=%v B=%v: B'=%v: %v", iter, T.String(), A, B, B2, err)
		}
		aPrime, _ := xf(toPrims(A, false), toPrims(B, true), true)
		F2 := mustApply(t, TB, fromPrims(aPrime))
		if F.String() != F2.String() {
			t.Fatalf("iter %d: diverged: T=%q A=%v B=%v: %q vs %q", iter, T.String(), A, B, F.String(), F2.String())
		}
		f, ta, tb := runeSet(F.String()), runeSet(TA.String()), runeSet(TB.String())
		all := runeSet(T.String() + opsText(A) + opsText(B))
		orig := runeSet(T.String())
		for c := range all {
			var want bool
			switch {
			case orig[c]:
				want = ta[c] && tb[c]
			case strings.ContainsRune(opsText(A), c):
				want = ta[c]
			default:
				want = tb[c]
			}
			if f[c] != want {
				t.Fatalf("iter %d: %q present %v, want %v (T=%q A=%v B=%v result %q)", iter, c, f[c], want, T.String(), A, B, F.String())
			}
		}
		if restrict(F.String(), ta) != restrict(TA.String(), f) || restrict(F.String(), tb) != restrict(TB.String(), f) {
			t.Fatalf("iter %d: order not kept: T=%q A=%v B=%v result %q", iter, T.String(), A, B, F.String())
		}
	}
}

func opsText(ops []Op) string {
	var b strings.Builder
	for _, op := range ops {
		b.WriteString(op.Text)
	}
	return b.String()
}

// TestTransformAgainstChanges checks that transforming against several
// changes in turn is transforming against their concatenation, and that
// the result applies to the text they left.
func TestTransformAgainstChanges(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	g := &opGen{r: r}
	for range 5000 {
		g.next = 0x4E00
		T := NewText(g.fresh(r.IntN(12)))
		var changes [][]Op
		var all []Op
		cur := T
		for range 1 + r.IntN(4) {
			c := g.ops(cur.Len(), 3)
			cur = mustApply(t, cur, c)
			changes = append(changes, c)
			all = append(all, c...)
		}
		B := g.ops(T.Len(), 4)
		B1 := TransformAgainst(B, changes)
		B2 := Transform(B, all)
		if !reflect.DeepEqual(B1, B2) {
			t.Fatalf("per change %v, concatenated %v", B1, B2)
		}
		mustApply(t, cur, B1)
	}
}

func BenchmarkTransform(b *testing.B) {
	r := rand.New(rand.NewPCG(11, 12))
	g := &opGen{r: r, next: 0x4E00}
	size := 10000
	A := g.ops(size, 100)
	B := g.ops(size, 100)
	b.ReportAllocs()
	for b.Loop() {
		Transform(B, A)
	}
}
