package cluster

import (
	"math/rand/v2"
	"testing"
)

// The index against a map, with hashes drawn from a small range so that
// probe runs wrap around, overlap and shift back on removal, across
// growing and shrinking.
func TestIdemIndexModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var x idemIndex
	model := map[uint64]uint64{}
	// Hashes in two of the 64 tables, each low part in a range of 64:
	// dense clusters.
	hash := func() uint64 { return uint64(rng.IntN(2))<<(64-idemIndexPartLog) | uint64(rng.IntN(64)) }
	for step := range 200_000 {
		h := hash()
		switch r := rng.IntN(10); {
		case r < 4:
			seq := uint64(step)
			_, had := model[h]
			if x.put(h, seq) == had {
				t.Fatalf("step %d: put(%x) with held=%v", step, h, had)
			}
			if !had {
				model[h] = seq
			}
		case r < 8:
			seq, had := model[h]
			if rng.IntN(4) == 0 {
				seq++ // a stale entry number: nothing removed
				had = false
			}
			if x.remove(h, seq) != had {
				t.Fatalf("step %d: remove(%x, %d) with held=%v", step, h, seq, had)
			}
			if had {
				delete(model, h)
			}
		default:
			want, had := model[h]
			if got, ok := x.get(h); ok != had || got != want {
				t.Fatalf("step %d: get(%x) = %d %v, want %d %v", step, h, got, ok, want, had)
			}
		}
		if x.len() != len(model) {
			t.Fatalf("step %d: %d held, model %d", step, x.len(), len(model))
		}
	}
	// Every model entry is reachable at the end, and emptying shrinks.
	for h, seq := range model {
		if got, ok := x.get(h); !ok || got != seq {
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
