package storage

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkRope verifies a rope's invariants: cached counts, AVL balance, leaf
// sizes (at most maxLeaf; at least minLeaf except the first and the last
// leaf) and chunks cut at code points.
func checkRope(t *testing.T, x Text) {
	t.Helper()
	var leaves []*rnode
	var walk func(n *rnode) (bytes, runes, height int)
	walk = func(n *rnode) (int, int, int) {
		if n.height == 0 {
			if n.left != nil || n.right != nil || n.chunk == "" {
				t.Fatal("malformed leaf")
			}
			if n.bytes != len(n.chunk) || n.runes != utf8.RuneCountInString(n.chunk) {
				t.Fatalf("leaf counts %d/%d for %q", n.bytes, n.runes, n.chunk)
			}
			if n.bytes > maxLeaf || !utf8.ValidString(n.chunk) {
				t.Fatalf("leaf of %d bytes, valid %v", n.bytes, utf8.ValidString(n.chunk))
			}
			leaves = append(leaves, n)
			return n.bytes, n.runes, 0
		}
		if n.left == nil || n.right == nil || n.chunk != "" {
			t.Fatal("malformed inner node")
		}
		lb, lr, lh := walk(n.left)
		rb, rr, rh := walk(n.right)
		if lh-rh > 1 || rh-lh > 1 {
			t.Fatalf("unbalanced: heights %d and %d", lh, rh)
		}
		if n.bytes != lb+rb || n.runes != lr+rr || n.height != 1+max(lh, rh) {
			t.Fatal("inner counts wrong")
		}
		return n.bytes, n.runes, n.height
	}
	if x.root == nil {
		return
	}
	walk(x.root)
	for i := 1; i+1 < len(leaves); i++ {
		if leaves[i].bytes < minLeaf {
			t.Fatalf("inner leaf %d of %d has %d bytes", i, len(leaves), leaves[i].bytes)
		}
	}
}

func TestTextBasics(t *testing.T) {
	var x Text
	if x.Len() != 0 || x.String() != "" || x.Slice(0, 5) != "" {
		t.Fatal("zero Text is not empty")
	}
	x = x.Insert(0, "héllo")
	x = x.Insert(5, " wörld")
	x = x.Insert(0, "¡")
	if got := x.String(); got != "¡héllo wörld" {
		t.Fatalf("got %q", got)
	}
	if x.Len() != 12 || x.Size() != len("¡héllo wörld") {
		t.Fatalf("len %d size %d", x.Len(), x.Size())
	}
	if got := x.Slice(1, 5); got != "héllo" {
		t.Fatalf("slice %q", got)
	}
	y := x.Delete(6, 6)
	if y.String() != "¡héllo" || x.String() != "¡héllo wörld" {
		t.Fatalf("delete: %q, old %q", y.String(), x.String())
	}
	// Out-of-range arguments clamp.
	if x.Slice(-3, 100) != x.String() || x.Delete(10, 100).String() != "¡héllo wör" || x.Insert(99, "!").String() != "¡héllo wörld!" {
		t.Fatal("clamping")
	}
	if x.Delete(0, x.Len()).Len() != 0 {
		t.Fatal("delete all")
	}
	var buf bytes.Buffer
	if n, err := x.WriteTo(&buf); err != nil || n != int64(x.Size()) || buf.String() != x.String() {
		t.Fatalf("WriteTo: %d %v %q", n, err, buf.String())
	}
	if string(x.AppendTo([]byte(">"))) != ">"+x.String() {
		t.Fatal("AppendTo")
	}
}

// randText is n code points of a mix of one- to four-byte characters.
func randText(r *rand.Rand, n int) string {
	alphabet := []rune("abcdefghij é€𝄞ü\n")
	var b strings.Builder
	for range n {
		b.WriteRune(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// TestTextRandomEdits compares the rope with a plain []rune model over
// long random edit sequences of small and large edits, checking every
// invariant and that old versions are unchanged.
func TestTextRandomEdits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, start := range []int{0, 100, 5000, 40000} {
		model := []rune(randText(r, start))
		x := NewText(string(model))
		checkRope(t, x)
		type version struct {
			x Text
			s string
		}
		var kept []version
		for i := range 3000 {
			if i%300 == 0 {
				kept = append(kept, version{x, string(model)})
			}
			pos := r.IntN(len(model) + 1)
			switch k := r.IntN(10); {
			case k < 5 || len(model) == 0:
				n := 1 + r.IntN(8)
				if r.IntN(20) == 0 {
					n = r.IntN(3000)
				}
				s := randText(r, n)
				x = x.Insert(pos, s)
				model = append(model[:pos], append([]rune(s), model[pos:]...)...)
			default:
				n := 1 + r.IntN(8)
				if r.IntN(20) == 0 {
					n = r.IntN(3000)
				}
				n = min(n, len(model)-pos)
				x = x.Delete(pos, n)
				model = append(model[:pos], model[pos+n:]...)
			}
			if i%97 == 0 {
				checkRope(t, x)
				if x.String() != string(model) {
					t.Fatalf("start %d step %d: text differs", start, i)
				}
				p := r.IntN(len(model) + 1)
				n := r.IntN(len(model) - p + 1)
				if x.Slice(p, n) != string(model[p:p+n]) {
					t.Fatalf("slice(%d,%d) differs", p, n)
				}
			}
			if x.Len() != len(model) {
				t.Fatalf("len %d, want %d", x.Len(), len(model))
			}
		}
		checkRope(t, x)
		for _, v := range kept {
			if v.x.String() != v.s {
				t.Fatal("an old version changed")
			}
		}
	}
}

// TestTextStaysBalanced types a 1 MB text character by character at
// random places and deletes as much: the height stays logarithmic.
func TestTextStaysBalanced(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := NewText(strings.Repeat("x", 1<<20))
	for range 20000 {
		if r.IntN(2) == 0 {
			x = x.Insert(r.IntN(x.Len()+1), "y")
		} else {
			x = x.Delete(r.IntN(x.Len()), 1+r.IntN(3))
		}
	}
	checkRope(t, x)
	leaves := (x.Size() + minLeaf - 1) / minLeaf
	// An AVL tree of n leaves is at most 1.44 log2(n+2) high.
	limit := 2
	for n := leaves + 2; n > 1; n >>= 1 {
		limit++
	}
	if h := x.root.height; float64(h) > 1.45*float64(limit) {
		t.Fatalf("height %d for %d bytes", h, x.Size())
	}
}

// benchEdits runs random one-character inserts and deletes (alternating,
// so the size stays put) on a text of size bytes.
func benchEdits(b *testing.B, size int) {
	r := rand.New(rand.NewPCG(5, 6))
	x := NewText(randASCII(r, size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			x = x.Insert(r.IntN(x.Len()+1), "z")
		} else {
			x = x.Delete(r.IntN(x.Len()), 1)
		}
	}
}

// benchStringEdits is the floor to compare with: the same edits on a
// plain string, each copying the whole text.
func benchStringEdits(b *testing.B, size int) {
	r := rand.New(rand.NewPCG(5, 6))
	s := randASCII(r, size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			p := r.IntN(len(s) + 1)
			s = s[:p] + "z" + s[p:]
		} else {
			p := r.IntN(len(s))
			s = s[:p] + s[p+1:]
		}
	}
}

func randASCII(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

func BenchmarkTextEdit100KB(b *testing.B)   { benchEdits(b, 100<<10) }
func BenchmarkTextEdit1MB(b *testing.B)     { benchEdits(b, 1<<20) }
func BenchmarkStringEdit100KB(b *testing.B) { benchStringEdits(b, 100<<10) }
func BenchmarkStringEdit1MB(b *testing.B)   { benchStringEdits(b, 1<<20) }

// BenchmarkTextLargeEdit inserts and deletes 4 KB pieces, which take the
// split-and-join path rather than a leaf rewrite.
func BenchmarkTextLargeEdit1MB(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	x := NewText(randASCII(r, 1<<20))
	piece := randASCII(r, 4<<10)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			x = x.Insert(r.IntN(x.Len()+1), piece)
		} else {
			x = x.Delete(r.IntN(x.Len()-len(piece)), len(piece))
		}
	}
}
