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

// A clone holds what its source held when cloned, whatever either does
// next; both go on answering like maps. Clones of clones too.
func TestEmailIndexClone(t *testing.T) {
	type copyOf struct {
		x *emailIndex
		m map[string]string
	}
	r := rand.New(rand.NewPCG(9, 10))
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprintf("user%d@example.com", i)
	}
	idx := []copyOf{{newEmailIndex(0), map[string]string{}}}
	for step := range 5000 {
		c := &idx[r.IntN(len(idx))]
		key := keys[r.IntN(len(keys))]
		switch op := r.IntN(10); {
		case op == 0 && len(idx) < 6:
			idx = append(idx, copyOf{c.x.clone(), maps.Clone(c.m)})
		case op < 3:
			c.x.remove(key)
			delete(c.m, key)
		case op == 3: // an id that goes to the ordinary map
			c.x.put(key, "odd-"+key)
			c.m[key] = "odd-" + key
		default:
			id := MakeUserID(uint64(step+1), uint16(step%64))
			c.x.put(key, id)
			c.m[key] = id
		}
		if step%250 == 0 || step > 4990 {
			for n, c := range idx {
				if c.x.len() != len(c.m) {
					t.Fatalf("step %d: index %d holds %d, want %d", step, n, c.x.len(), len(c.m))
				}
				for _, k := range keys {
					got, ok := c.x.get(k)
					if w, wok := c.m[k]; got != w || ok != wok {
						t.Fatalf("step %d: index %d: get(%q) = %q %v, want %q %v", step, n, k, got, ok, w, wok)
					}
				}
			}
		}
	}
}

// Canonical ids of distinct addresses all go to the integer maps, which
// holds nothing the collector walks.
func TestEmailIndexHoldsNoStrings(t *testing.T) {
	x := newEmailIndex(0)
	for i := range 1000 {
		x.put(fmt.Sprintf("user%d@example.com", i), MakeUserID(uint64(i+1), uint16(i%64)))
	}
	if len(x.other) != 0 || x.len() != 1000 {
		t.Fatalf("%d entries in the segments, %d elsewhere", x.len()-len(x.other), len(x.other))
	}
}

// equal reports whether x and y hold the same keys and ids.
func (x *emailIndex) equal(y *emailIndex) bool {
	for i := range x.segs {
		if !maps.Equal(x.segs[i], y.segs[i]) {
			return false
		}
	}
	return maps.Equal(x.other, y.other)
}
