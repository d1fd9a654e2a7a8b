package cluster

import (
	"math/rand/v2"
	"testing"
)

// The index against a map, with hashes drawn from a small range so that
// probe runs wrap around, overlap and shift back on removal, and so that
// different hashes share their fragment (told apart through held), across
// growing and shrinking.
func TestIdemIndexModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var x idemIndex
	model := map[uint64]uint64{}  // hash → entry number
	hashOf := map[uint32]uint64{} // entry number → hash, as the window's entries keep it
	holds := func(h uint64) idemHolds {
		return func(seq32 uint32) bool { return hashOf[seq32] == h }
	}
	// Two of the 64 tables; in each, four hashes per fragment, fragments
	// in a range of 64: dense clusters and shared fragments.
	hash := func() uint64 {
		return uint64(rng.IntN(2))<<(64-idemIndexPartLog) | uint64(rng.IntN(4))<<32 | uint64(rng.IntN(64))
	}
	for step := range 200_000 {
		h := hash()
		switch r := rng.IntN(10); {
		case r < 4:
			seq := uint64(step)
			_, had := model[h]
			if x.put(h, seq, holds(h)) == had {
				t.Fatalf("step %d: put(%x) with held=%v", step, h, had)
			}
			if !had {
				model[h] = seq
				hashOf[uint32(seq)] = h
			}
		case r < 8:
			seq, had := model[h]
			if rng.IntN(4) == 0 {
				seq = uint64(step) + 1<<20 // no entry's number: nothing removed
				had = false
			}
			if x.remove(h, seq) != had {
				t.Fatalf("step %d: remove(%x, %d) with held=%v", step, h, seq, had)
			}
			if had {
				delete(model, h)
				delete(hashOf, uint32(seq))
			}
		default:
			want, had := model[h]
			if got, ok := x.get(h, holds(h)); ok != had || uint64(got) != want {
				t.Fatalf("step %d: get(%x) = %d %v, want %d %v", step, h, got, ok, want, had)
			}
		}
		if x.len() != len(model) {
			t.Fatalf("step %d: %d held, model %d", step, x.len(), len(model))
		}
	}
	// Every model entry is reachable at the end, and emptying shrinks.
	for h, seq := range model {
		if got, ok := x.get(h, holds(h)); !ok || uint64(got) != seq {
			t.Fatalf("get(%x) = %d %v, want %d", h, got, ok, seq)
		}
		x.remove(h, seq)
	}
	for i := range x.parts {
		if p := &x.parts[i]; p.n != 0 || len(p.slots) > idemTableMin {
			t.Fatalf("table %d: %d held in %d slots after emptying", i, p.n, len(p.slots))
		}
	}
}
