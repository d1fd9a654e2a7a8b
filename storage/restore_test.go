package storage

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func lcs(a, b []rune) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			if a[i] == b[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(cur[j], prev[j+1])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// TestDiffOps: the ops turn one text into the other, pass ValidateOps,
// and touch no more code points than a shortest edit must (n + m − 2·LCS),
// on random texts of a small alphabet, multi-byte code points included.
func TestDiffOps(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	alphabet := []rune("abé日 ")
	gen := func(n int) string {
		s := make([]rune, n)
		for i := range s {
			s[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(s)
	}
	for range 2000 {
		from, to := gen(r.IntN(40)), gen(r.IntN(40))
		if r.IntN(3) == 0 { // a nearby text: a few edits
			to = from
			for range 1 + r.IntN(3) {
				rs := []rune(to)
				p := r.IntN(len(rs) + 1)
				to = string(rs[:p]) + gen(r.IntN(3)) + string(rs[min(len(rs), p+r.IntN(3)):])
			}
		}
		ops := DiffOps(from, to)
		if from == to {
			if ops != nil {
				t.Fatalf("equal texts: %v", ops)
			}
			continue
		}
		if err := ValidateOps(ops); err != nil {
			t.Fatalf("%q → %q: %v %v", from, to, ops, err)
		}
		got, err := Apply(NewText(from), ops)
		if err != nil || got.String() != to {
			t.Fatalf("%q → %q: ops %v give %q %v", from, to, ops, got.String(), err)
		}
		touched := 0
		for _, op := range ops {
			touched += op.Len + len([]rune(op.Text))
		}
		a, b := []rune(from), []rune(to)
		if want := len(a) + len(b) - 2*lcs(a, b); touched != want {
			t.Fatalf("%q → %q: ops %v touch %d code points, a shortest edit %d", from, to, ops, touched, want)
		}
	}
}

// TestDiffOpsBounded: texts too different for the bounded search get one
// replace of what lies between their common start and end.
func TestDiffOpsBounded(t *testing.T) {
	from := "head " + strings.Repeat("ab", 2000) + " tail"
	to := "head " + strings.Repeat("cd", 2000) + " tail"
	ops := DiffOps(from, to)
	if len(ops) != 1 || ops[0].Kind != OpReplace || ops[0].Pos != 5 || ops[0].Len != 4000 {
		t.Fatalf("ops %v", ops)
	}
	if got, err := Apply(NewText(from), ops); err != nil || got.String() != to {
		t.Fatal("the replace does not give the text")
	}
	if ops := DiffOps("ab", "abc"); len(ops) != 1 || ops[0] != (Op{Kind: OpInsert, Pos: 2, Text: "c"}) {
		t.Fatalf("append: %v", ops)
	}
	if ops := DiffOps("abc", "c"); len(ops) != 1 || ops[0] != (Op{Kind: OpDelete, Pos: 0, Len: 2}) {
		t.Fatalf("cut: %v", ops)
	}
}

func BenchmarkDiffOps1MiB(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	from := []rune(strings.Repeat("lorem ipsum dolor sit amet, ", (1<<20)/28))
	to := append([]rune(nil), from...)
	for range 50 { // 50 scattered edits
		p := r.IntN(len(to) - 10)
		to = append(to[:p], append([]rune("EDIT"), to[p+3:]...)...)
	}
	fs, ts := string(from), string(to)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if ops := DiffOps(fs, ts); len(ops) == 0 {
			b.Fatal("no ops")
		}
	}
}

// FuzzDiffOps: for any two document texts, the ops pass ValidateOps
// (when their text fits) and turn the one into the other.
func FuzzDiffOps(f *testing.F) {
	f.Add("The quick brown fox", "The slow brown fox")
	f.Add("é", "è")
	f.Add("日本語", "日本")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, from, to string) {
		if CheckDocText("a", from) != nil || CheckDocText("b", to) != nil || len(from)+len(to) > 4096 {
			return
		}
		ops := DiffOps(from, to)
		if from == to {
			if ops != nil {
				t.Fatalf("equal texts: %v", ops)
			}
			return
		}
		if err := ValidateOps(ops); err != nil {
			t.Fatalf("%q → %q: %v: %v", from, to, ops, err)
		}
		got, err := Apply(NewText(from), ops)
		if err != nil || got.String() != to {
			t.Fatalf("%q → %q: ops %v give %q %v", from, to, ops, got.String(), err)
		}
	})
}

func TestDiffOpsLargeMiddle(t *testing.T) {
	from := "<" + strings.Repeat("é", maxDiffBytes/2) + ">"
	to := "<" + strings.Repeat("è", maxDiffBytes/2) + ">"
	ops := DiffOps(from, to)
	if len(ops) != 1 || ops[0].Kind != OpReplace || ops[0].Pos != 1 || ops[0].Len != maxDiffBytes/2 {
		t.Fatalf("%d ops, first at %d len %d", len(ops), ops[0].Pos, ops[0].Len)
	}
	if got, err := Apply(NewText(from), ops); err != nil || got.String() != to {
		t.Fatal("the replace does not give the text")
	}
}
