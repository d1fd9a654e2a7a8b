package cluster

// idemIndex maps a key hash to an entry number for the idempotency window.
// The window deletes its oldest key and inserts a new one on every keyed
// command, millions of times a run; in a Go map that churn fills the
// groups with tombstones, so lookups probe further and further until the
// next rehash (measured: probing was a third of a keyed apply's CPU with a
// million keys kept). This is an open-addressing table with linear
// probing and backward-shift deletion: no tombstones, so a lookup touches
// one or two cache lines however long the node runs. It holds no
// pointers, so the collector never scans it.
//
// It is split into idemIndexParts tables by the hash's top bits, each
// growing (and shrinking) on its own, so that a resize rehashes a
// sixty-fourth of the keys at a time: no long pause in apply.
//
// A hash is in the index at most once (the window keeps keys whose hash
// is taken elsewhere). The FSM goroutine alone uses it.
type idemIndex struct {
	parts [idemIndexParts]idemTable
	n     int
}

const (
	idemIndexParts   = 64
	idemIndexPartLog = 6
	idemTableMin     = 16 // slots in a table at least (a power of two)
)

type idemTable struct {
	slots []idemIndexSlot // a power of two long, or empty
	n     int
}

// idemIndexSlot is a hash and its entry number plus one (0: empty).
type idemIndexSlot struct {
	hash, seq1 uint64
}

func (x *idemIndex) part(h uint64) *idemTable { return &x.parts[h>>(64-idemIndexPartLog)] }

// len is the number of hashes held.
func (x *idemIndex) len() int { return x.n }

// get returns h's entry number.
func (x *idemIndex) get(h uint64) (uint64, bool) {
	t := x.part(h)
	if i, ok := t.find(h); ok {
		return t.slots[i].seq1 - 1, true
	}
	return 0, false
}

// put records h → seq, unless h is held already: then it changes nothing
// and returns false.
func (x *idemIndex) put(h, seq uint64) bool {
	t := x.part(h)
	if _, held := t.find(h); held {
		return false
	}
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(idemTableMin, 2*len(t.slots)))
	}
	t.insert(idemIndexSlot{hash: h, seq1: seq + 1})
	t.n++
	x.n++
	return true
}

// remove forgets h if it maps to seq, and says whether it did.
func (x *idemIndex) remove(h, seq uint64) bool {
	t := x.part(h)
	i, ok := t.find(h)
	if !ok || t.slots[i].seq1 != seq+1 {
		return false
	}
	t.removeAt(i)
	t.n--
	x.n--
	if len(t.slots) > idemTableMin && t.n*8 < len(t.slots) {
		t.resize(len(t.slots) / 2)
	}
	return true
}

// find returns the slot holding h.
func (t *idemTable) find(h uint64) (int, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	mask := len(t.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch s := &t.slots[i]; {
		case s.seq1 == 0:
			return 0, false
		case s.hash == h:
			return i, true
		}
	}
}

// insert puts s into the first free slot from its home.
func (t *idemTable) insert(s idemIndexSlot) {
	mask := len(t.slots) - 1
	i := int(s.hash) & mask
	for t.slots[i].seq1 != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

// removeAt empties slot i and moves back the entries after it that probed
// past it, so that every entry stays reachable from its home without
// passing an empty slot.
func (t *idemTable) removeAt(i int) {
	mask := len(t.slots) - 1
	for j := i; ; {
		t.slots[i] = idemIndexSlot{}
		for {
			j = (j + 1) & mask
			if t.slots[j].seq1 == 0 {
				return
			}
			// The entry at j may stay if its home k lies cyclically in
			// (i, j]: it is then still reached without passing i.
			k := int(t.slots[j].hash) & mask
			if (i <= j && i < k && k <= j) || (i > j && (i < k || k <= j)) {
				continue
			}
			t.slots[i] = t.slots[j]
			i = j
			break
		}
	}
}

func (t *idemTable) resize(n int) {
	old := t.slots
	t.slots = make([]idemIndexSlot, n)
	for _, s := range old {
		if s.seq1 != 0 {
			t.insert(s)
		}
	}
}
