package feed

import (
	"sort"
	"strconv"
)

// ring keeps the newest changes, in log order, within a count and a byte
// bound: the oldest go first (the newest is always kept). floor says
// what is kept: every change after it. Not safe for concurrent use (the
// Feed's mutex guards it).
type ring struct {
	buf        []*Change // buf[start:] are the kept changes, oldest first
	start      int
	bytes      int
	maxChanges int
	maxBytes   int64
	floor      Position
}

// GoneError says that changes after a position are no longer kept:
// Oldest is the oldest index a watcher may start after (its from).
type GoneError struct{ Oldest uint64 }

func (e *GoneError) Error() string {
	return "the changes asked for are no longer kept on this node; the oldest index to watch from is " +
		strconv.FormatUint(e.Oldest, 10) + ": list again and watch from the index the listing gives"
}

func (r *ring) len() int { return len(r.buf) - r.start }

// push appends c (after every change kept) and drops the oldest beyond
// the bounds.
func (r *ring) push(c *Change) {
	c.bytes = c.size()
	r.buf = append(r.buf, c)
	r.bytes += c.bytes
	for r.len() > 1 && (r.len() > r.maxChanges || int64(r.bytes) > r.maxBytes) {
		old := r.buf[r.start]
		r.buf[r.start] = nil
		r.start++
		r.bytes -= old.bytes
		r.floor = old.Position
	}
	// Compact once the dropped part outgrows the kept one: O(1) amortised.
	if r.start > 64 && r.start > r.len() {
		n := copy(r.buf, r.buf[r.start:])
		clear(r.buf[n:])
		r.buf = r.buf[:n]
		r.start = 0
	}
}

// reset forgets every change: what follows comes after floor.
func (r *ring) reset(floor Position) {
	clear(r.buf)
	r.buf, r.start, r.bytes, r.floor = r.buf[:0], 0, 0, floor
}

// after appends to dst the kept changes after p, at most max of them, or
// answers *GoneError when some of them are no longer kept.
func (r *ring) after(p Position, dst []*Change, max int) ([]*Change, error) {
	if p.Less(r.floor) {
		return dst, &GoneError{Oldest: r.floor.Index}
	}
	kept := r.buf[r.start:]
	i := sort.Search(len(kept), func(i int) bool { return p.Less(kept[i].Position) })
	end := min(len(kept), i+max)
	return append(dst, kept[i:end]...), nil
}

// last is the position of the newest change kept (the floor if none).
func (r *ring) last() Position {
	if r.len() == 0 {
		return r.floor
	}
	return r.buf[len(r.buf)-1].Position
}
