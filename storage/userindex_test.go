package storage

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// indexModel is what a userIndex should hold: id (stamp) → x.
type indexModel map[uint64]uint64

func (m indexModel) sorted() []userRef {
	out := make([]userRef, 0, len(m))
	for stamp, x := range m {
		out = append(out, userRef{stamp: stamp, x: x})
	}
	slices.SortFunc(out, func(a, b userRef) int {
		if lessRef(a, b) {
			return -1
		}
		return 1
	})
	return out
}

func checkIndex(t *testing.T, step int, x *userIndex, m indexModel) {
	t.Helper()
	want := m.sorted()
	var got []userRef
	x.ascend(func(r userRef) bool { got = append(got, r); return true })
	if !slices.Equal(got, want) || x.len() != len(want) {
		t.Fatalf("step %d: ascend %v (len %d), want %v", step, got, x.len(), want)
	}
	for i := 1; i < len(x.recent); i++ {
		if !lessRef(x.recent[i-1], x.recent[i]) {
			t.Fatalf("step %d: run out of order: %v", step, x.recent)
		}
	}
	if last, ok := x.tree.Max(); ok && len(x.recent) > 0 && !lessRef(last, x.recent[0]) {
		t.Fatalf("step %d: tree's last %v not below the run's first %v", step, last, x.recent[0])
	}
	if len(want) == 0 {
		return
	}
	// A page from a random pivot, stopped early.
	from := want[rand.IntN(len(want))]
	limit := 1 + rand.IntN(10)
	var page []userRef
	x.ascendFrom(makeRef(from.stamp, 0, 0), func(r userRef) bool {
		page = append(page, r)
		return len(page) < limit
	})
	i, _ := slices.BinarySearchFunc(want, from, func(a, b userRef) int {
		if lessRef(a, b) {
			return -1
		} else if lessRef(b, a) {
			return 1
		}
		return 0
	})
	if exp := want[i:min(i+limit, len(want))]; !slices.Equal(page, exp) {
		t.Fatalf("step %d: page from %d: %v, want %v", step, from.stamp, page, exp)
	}
}

// TestUserIndexModel runs random creates (mostly of growing ids), changes,
// deletes and clones against a map, and checks that every clone keeps the
// ids it was taken with whatever the owner does after.
func TestUserIndexModel(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		x := newUserIndex()
		m := indexModel{}
		type frozen struct {
			x userIndex
			m indexModel
		}
		var clones []frozen
		next := uint64(1000)
		for step := range 3000 {
			switch op := rng.IntN(100); {
			case op < 55: // a create: a new, greater id
				next += 1 + uint64(rng.IntN(3))
				r := userRef{stamp: next, x: uint64(step)}
				if _, existed := x.replaceOrInsert(r); existed {
					t.Fatalf("step %d: new id %d existed", step, next)
				}
				m[next] = r.x
			case op < 62: // an id below the newest (a clock step back)
				stamp := uint64(rng.IntN(int(next)))
				_, existed := x.replaceOrInsert(userRef{stamp: stamp, x: uint64(step)})
				if _, had := m[stamp]; had != existed {
					t.Fatalf("step %d: insert %d existed %v, model %v", step, stamp, existed, had)
				}
				m[stamp] = uint64(step)
			case op < 80 && len(m) > 0: // a change to an existing id
				stamp := pick(rng, m)
				old, existed := x.replaceOrInsert(userRef{stamp: stamp, x: uint64(step)})
				if !existed || old.x != m[stamp] {
					t.Fatalf("step %d: change %d: old %v %v, model %d", step, stamp, old, existed, m[stamp])
				}
				m[stamp] = uint64(step)
			case op < 92 && len(m) > 0:
				stamp := pick(rng, m)
				if rng.IntN(4) == 0 {
					stamp = next + 1 // absent
				}
				old, existed := x.delete(userRef{stamp: stamp})
				want, had := m[stamp]
				if existed != had || existed && old.x != want {
					t.Fatalf("step %d: delete %d: %v %v, model %d %v", step, stamp, old, existed, want, had)
				}
				delete(m, stamp)
			case op < 97:
				clones = append(clones, frozen{x.clone(), copyModel(m)})
			default:
				if len(clones) > 0 {
					c := clones[rng.IntN(len(clones))]
					checkIndex(t, step, &c.x, c.m)
				}
			}
			for _, stamp := range []uint64{uint64(rng.IntN(int(next + 2)))} {
				r, ok := x.get(userRef{stamp: stamp})
				want, had := m[stamp]
				if ok != had || ok && r.x != want || x.has(userRef{stamp: stamp}) != had {
					t.Fatalf("step %d: get %d: %v %v, model %d %v", step, stamp, r, ok, want, had)
				}
			}
			if step%50 == 0 {
				checkIndex(t, step, &x, m)
			}
		}
		checkIndex(t, -1, &x, m)
		for _, c := range clones {
			checkIndex(t, -2, &c.x, c.m)
		}
	}
}

func pick(rng *rand.Rand, m indexModel) uint64 {
	k := rng.IntN(len(m))
	for stamp := range m {
		if k == 0 {
			return stamp
		}
		k--
	}
	panic("unreachable")
}

func copyModel(m indexModel) indexModel {
	c := make(indexModel, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
