package feed

import (
	"sort"
	"strconv"
)

// ring keeps the newest changes, in log order, within a count and a byte
// bound: the oldest go first (the newest is always kept). floor says
// what is kept: every change after it. Not safe for concurrent use (the
// Feed's mutex guards it).
//
// The changes are kept encoded (codec.go) in segments: a pointer-free
// byte arena of up to segBytes and the offsets of up to segChanges
// changes in it. A hundred thousand kept changes are then a hundred
// arenas the collector does not scan, instead of a hundred thousand
// records it marks at every cycle. A segment is freed once every change
// in it is dropped. Readers get Changes, decoded when first read and
// kept in the segment (dec) for the next readers — so 64 watchers of
// the newest changes decode and render each once — in the decodedSegs
// segments read last; the decoded changes of the segment read least
// recently are let go (a reader holding them keeps them) when another
// is decoded, and decoded again if it is read again.
type ring struct {
	segs       []*segment // oldest first; segs[0].start is the oldest kept change
	n          int        // changes kept
	bytes      int        // their cost against maxBytes (changeCost)
	maxChanges int
	maxBytes   int64
	floor      Position
	decoded    []*segment // the segments holding decoded changes
	reads      uint64     // counts the reads of segments (segment.readAt)
	slabs      slabs      // where decoded changes are taken from
	// spare is the last segment dropped whose bytes nobody can hold (it
	// was never decoded): the next segment reuses it, so a history
	// nobody reads turns over in place instead of allocating (and
	// zeroing) a new arena every 64 KiB.
	spare *segment
}

const (
	segChanges  = 1024
	segBytes    = 64 << 10
	decodedSegs = 8
	// changeOverhead is what a change counts against the byte bound
	// beyond its encoding: its offset and its decoded slot. A policy or
	// member, kept as a record beside the arena, counts sideOverhead
	// more.
	changeOverhead = 16
	sideOverhead   = 256
)

type segment struct {
	data  []byte   // encoded changes back to back; never grows past its capacity, so its bytes never move
	offs  []uint32 // where each change starts in data
	start int      // the first change still kept
	side  []sideRec
	dec   []*Change // decoded changes by number (nil: not decoded); nil when the segment holds none
	// readAt is when the segment was last read (ring.reads): the
	// decoded segment read least recently lets its changes go first.
	readAt uint64
	// shared: some change of it was decoded, so strings may alias its
	// bytes; it is never reused.
	shared bool
}

// sideRec is the policy or member of change i of a segment.
type sideRec struct {
	i   int
	rec any
}

// GoneError says that changes after a position are no longer kept:
// Oldest is the oldest index a watcher may start after (its from).
type GoneError struct{ Oldest uint64 }

func (e *GoneError) Error() string {
	return "the changes asked for are no longer kept on this node; the oldest index to watch from is " +
		strconv.FormatUint(e.Oldest, 10) + ": list again and watch from the index the listing gives"
}

func (r *ring) len() int { return r.n }

// enc is change i of s, encoded.
func (s *segment) enc(i int) []byte {
	end := len(s.data)
	if i+1 < len(s.offs) {
		end = int(s.offs[i+1])
	}
	return s.data[s.offs[i]:end:end]
}

func (s *segment) pos(i int) Position { return positionOf(s.data[s.offs[i]:]) }

// sideOf is change i's policy or member (nil if none).
func (s *segment) sideOf(i int) any {
	k := sort.Search(len(s.side), func(k int) bool { return s.side[k].i >= i })
	if k < len(s.side) && s.side[k].i == i {
		return s.side[k].rec
	}
	return nil
}

// cost is what change i counts against the byte bound.
func (s *segment) cost(i int) int {
	n := len(s.enc(i)) + changeOverhead
	if len(s.side) > 0 && s.sideOf(i) != nil {
		n += sideOverhead
	}
	return n
}

// push appends an encoded change (after every change kept) with its
// policy or member, if any, and drops the oldest beyond the bounds.
func (r *ring) push(enc []byte, side any) {
	var s *segment
	if len(r.segs) > 0 {
		s = r.segs[len(r.segs)-1]
	}
	if s == nil || len(s.offs) == cap(s.offs) || len(enc) > cap(s.data)-len(s.data) {
		if s = r.spare; s != nil && len(enc) <= cap(s.data) {
			r.spare = nil
		} else {
			s = &segment{data: make([]byte, 0, max(segBytes, len(enc))), offs: make([]uint32, 0, segChanges)}
		}
		r.segs = append(r.segs, s)
	}
	i := len(s.offs)
	s.offs = append(s.offs, uint32(len(s.data)))
	s.data = append(s.data, enc...)
	if side != nil {
		s.side = append(s.side, sideRec{i: i, rec: side})
	}
	r.n++
	r.bytes += s.cost(i)
	for r.n > 1 && (r.n > r.maxChanges || int64(r.bytes) > r.maxBytes) {
		r.dropOldest()
	}
}

func (r *ring) dropOldest() {
	s := r.segs[0]
	r.floor = s.pos(s.start)
	r.bytes -= s.cost(s.start)
	if s.dec != nil {
		s.dec[s.start] = nil
	}
	s.start++
	r.n--
	if s.start == len(s.offs) && len(r.segs) > 1 {
		r.segs[0] = nil
		r.segs = r.segs[1:]
		r.undecode(s)
		if !s.shared && len(s.side) == 0 {
			s.data, s.offs, s.start, s.readAt = s.data[:0], s.offs[:0], 0, 0
			r.spare = s
		}
	}
}

// undecode lets go of s's decoded changes.
func (r *ring) undecode(s *segment) {
	if s.dec == nil {
		return
	}
	s.dec = nil
	for i, d := range r.decoded {
		if d == s {
			copy(r.decoded[i:], r.decoded[i+1:])
			r.decoded[len(r.decoded)-1] = nil
			r.decoded = r.decoded[:len(r.decoded)-1]
			return
		}
	}
}

// reset forgets every change: what follows comes after floor.
func (r *ring) reset(floor Position) {
	for _, s := range r.decoded {
		s.dec = nil
	}
	clear(r.segs)
	clear(r.decoded)
	r.segs, r.decoded, r.n, r.bytes, r.floor, r.spare = r.segs[:0], r.decoded[:0], 0, 0, floor, nil
}

// change is change i of s, decoded once and shared.
func (r *ring) change(s *segment, i int) *Change {
	if s.dec == nil {
		if len(r.decoded) == decodedSegs {
			lru := r.decoded[0]
			for _, d := range r.decoded[1:] {
				if d.readAt < lru.readAt {
					lru = d
				}
			}
			r.undecode(lru)
		}
		s.dec = make([]*Change, cap(s.offs))
		r.decoded = append(r.decoded, s)
	}
	c := s.dec[i]
	if c == nil {
		s.shared = true
		var side any
		if len(s.side) > 0 {
			side = s.sideOf(i)
		}
		c = decodeChange(s.enc(i), side, &r.slabs)
		s.dec[i] = c
	}
	return c
}

// after appends to dst the kept changes after p, at most max of them, or
// answers *GoneError when some of them are no longer kept.
func (r *ring) after(p Position, dst []*Change, max int) ([]*Change, error) {
	if p.Less(r.floor) {
		return dst, &GoneError{Oldest: r.floor.Index}
	}
	// The first segment whose newest change comes after p.
	k := sort.Search(len(r.segs), func(k int) bool {
		s := r.segs[k]
		return p.Less(s.pos(len(s.offs) - 1))
	})
	for n := 0; k < len(r.segs) && n < max; k++ {
		s := r.segs[k]
		r.reads++
		s.readAt = r.reads
		i := s.start
		if n == 0 {
			i += sort.Search(len(s.offs)-s.start, func(j int) bool { return p.Less(s.pos(s.start + j)) })
		}
		for ; i < len(s.offs) && n < max; i++ {
			dst = append(dst, r.change(s, i))
			n++
		}
	}
	return dst, nil
}

// last is the position of the newest change kept (the floor if none).
func (r *ring) last() Position {
	if r.n == 0 {
		return r.floor
	}
	s := r.segs[len(r.segs)-1]
	return s.pos(len(s.offs) - 1)
}
