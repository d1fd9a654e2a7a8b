package storage

import (
	"fmt"
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"testing"
)

// The index answers like a map[string]string under any sequence of puts
// and removes, including keys whose first hashes collide (forced here
// with a weak first hash) and ids that are not canonical user ids.
func TestEmailIndexLikeAMap(t *testing.T) {
	seed := maphash.MakeSeed()
	weak := func(key string) (uint64, uint64) { return uint64(len(key) % 3), maphash.String(seed, key) }
	for _, hash := range []func(string) (uint64, uint64){emailHashes, weak} {
		x := newEmailIndex(0)
		x.hash = hash
		want := map[string]string{}
		keys := []string{"a@x.io", "bb@x.io", "ccc@x.io", "dddd@x.io", "e@x.io", "ff@x.io"}
		ids := []string{MakeUserID(1, 0), MakeUserID(2, 7), MakeUserID(1<<40, 4095), "not-an-id", MakeUserID(5, 1) + "x"}
		r := rand.New(rand.NewPCG(7, 8))
		for step := range 2000 {
			key, id := keys[r.IntN(len(keys))], ids[r.IntN(len(ids))]
			switch r.IntN(4) {
			case 0:
				x.remove(key)
				delete(want, key)
			case 1: // as a create does
				sl, taken := x.probe(key)
				if _, w := want[key]; taken != w {
					t.Fatalf("step %d: probe(%q) taken %v, want %v", step, key, taken, w)
				}
				if !taken {
					x.fill(sl, key, id)
					want[key] = id
				}
			default:
				x.put(key, id)
				want[key] = id
			}
			for _, k := range keys {
				got, ok := x.get(k)
				w, wok := want[k]
				if got != w || ok != wok || x.has(k) != wok {
					t.Fatalf("step %d: get(%q) = %q %v, want %q %v", step, k, got, ok, w, wok)
				}
			}
			if x.len() != len(want) {
				t.Fatalf("step %d: %d entries, want %d", step, x.len(), len(want))
			}
		}
	}
}

// Canonical ids of distinct addresses all go to the integer map, which
// holds nothing the collector walks.
func TestEmailIndexHoldsNoStrings(t *testing.T) {
	x := newEmailIndex(1000)
	for i := range 1000 {
		x.put(fmt.Sprintf("user%d@example.com", i), MakeUserID(uint64(i+1), uint16(i%64)))
	}
	if len(x.other) != 0 || len(x.m) != 1000 {
		t.Fatalf("%d entries in the map, %d elsewhere", len(x.m), len(x.other))
	}
}

// equal reports whether x and y hold the same keys and ids.
func (x *emailIndex) equal(y *emailIndex) bool {
	return maps.Equal(x.m, y.m) && maps.Equal(x.other, y.other)
}

func (x *emailIndex) len() int { return len(x.m) + len(x.other) }
