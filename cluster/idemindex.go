package cluster

// idemIndex maps a key hash to an entry number for the idempotency window.
// The window deletes its oldest key and inserts a new one on every keyed
// command, millions of times a run; in a Go map that churn fills the
// groups with tombstones, so lookups probe further and further until the
// next rehash (measured: probing was a third of a keyed apply's CPU with a
// million keys kept). This is an open-addressing table with linear
// probing and backward-shift deletion: no tombstones, however long the
// node runs. It holds no pointers, so the collector never scans it.
//
// A slot is 8 bytes: the hash's low 32 bits (its fragment, with the top
// bit set so that a used slot is never 0) and the entry number's low 32
// bits. The window rebuilds the full entry number from its oldest kept
// one (it keeps fewer than 2^32 entries), and tells a fragment shared by
// two keys apart by the full hash it keeps in the entry. At most half
// the slots are used, so a look-up usually reads one cache line.
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
	slots []uint64 // a power of two long, or empty; 0 is a free slot
	n     int
}

// idemFrag is the part of h a slot keeps, and where its probe starts.
func idemFrag(h uint64) uint32 { return uint32(h) | 1<<31 }

func idemSlotOf(h, seq uint64) uint64 { return uint64(idemFrag(h))<<32 | uint64(uint32(seq)) }

// idemHolds tells whether entry number seq (rebuilt by the caller) holds
// hash h.
type idemHolds func(seq32 uint32) bool

func (x *idemIndex) part(h uint64) *idemTable { return &x.parts[h>>(64-idemIndexPartLog)] }

// len is the number of hashes held.
func (x *idemIndex) len() int { return x.n }

// get returns the low 32 bits of h's entry number; held confirms a
// candidate whose fragment matches.
func (x *idemIndex) get(h uint64, held idemHolds) (uint32, bool) {
	t := x.part(h)
	if i, ok := t.find(h, held); ok {
		return uint32(t.slots[i]), true
	}
	return 0, false
}

// put records h → seq unless h is held already (then it changes nothing
// and returns false).
func (x *idemIndex) put(h, seq uint64, held idemHolds) bool {
	t := x.part(h)
	if (t.n+1)*2 > len(t.slots) {
		t.resize(max(idemTableMin, 2*len(t.slots)))
	}
	i, found := t.find(h, held)
	if found {
		return false
	}
	t.slots[i] = idemSlotOf(h, seq)
	t.n++
	x.n++
	return true
}

// remove forgets h if it maps to seq, and says whether it did. seq must
// be h's entry or no kept entry's (the window passes an entry's own).
func (x *idemIndex) remove(h, seq uint64) bool {
	t := x.part(h)
	i, ok := t.find(h, func(seq32 uint32) bool { return seq32 == uint32(seq) })
	if !ok {
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

// peek reads the slot where a probe for h starts, and returns it: a
// prefetch (its value means nothing to the caller).
func (x *idemIndex) peek(h uint64) uint64 {
	t := x.part(h)
	if len(t.slots) == 0 {
		return 0
	}
	return t.slots[int(idemFrag(h))&(len(t.slots)-1)]
}

// find returns the slot holding h (a matching fragment that held
// confirms), or else the free slot that ends its probe.
func (t *idemTable) find(h uint64, held idemHolds) (int, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	frag := idemFrag(h)
	mask := len(t.slots) - 1
	for i := int(frag) & mask; ; i = (i + 1) & mask {
		switch s := t.slots[i]; {
		case s == 0:
			return i, false
		case uint32(s>>32) == frag && held(uint32(s)):
			return i, true
		}
	}
}

// removeAt empties slot i and moves back the entries after it that probed
// past it, so that every entry stays reachable from its home without
// passing a free slot.
func (t *idemTable) removeAt(i int) {
	mask := len(t.slots) - 1
	for j := i; ; {
		t.slots[i] = 0
		for {
			j = (j + 1) & mask
			s := t.slots[j]
			if s == 0 {
				return
			}
			// The entry at j may stay if its home k lies cyclically in
			// (i, j]: it is then still reached without passing i.
			k := int(uint32(s>>32)) & mask
			if (i <= j && i < k && k <= j) || (i > j && (i < k || k <= j)) {
				continue
			}
			t.slots[i] = s
			i = j
			break
		}
	}
}

func (t *idemTable) resize(n int) {
	old := t.slots
	t.slots = make([]uint64, n)
	mask := n - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := int(uint32(s>>32)) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}
