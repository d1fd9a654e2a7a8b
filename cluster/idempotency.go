package cluster

import (
	"sync/atomic"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// idempotencyWindow remembers, for a retention period of command time,
// the result of every command that carried a request id. It is part of the
// replicated state: it changes only in apply, by command time.
//
// Layout: the entries, in apply order (so in time order), are stored by
// value in a singly linked queue of fixed-size blocks, plus the id → entry
// map. add appends at the tail; expire advances the head, and a block the
// head has left is dropped whole. Neither copies nor scans the window: each
// costs O(1) per entry added or expired.
//
// Blocks are append-only: an entry's id, fingerprint and time are written
// once, before the tail moves past it, and never again (expired entries
// are not cleared). So a view (the head position and a count, taken under
// the FSM's applyMu) stays valid while apply goes on appending and
// expiring, and a snapshot materialises the entries from it off the apply
// path. The one later write to an entry is settling (below), ordered by an
// atomic.
//
// Settling: an entry first holds the *actors.Pending its command returned
// (the proposer waits on it). A settle cursor follows the tail and, once
// a result is known, copies it into the entry and drops the Pending (a
// struct and a channel: ~180 bytes a key), two entries per add at most.
//
// Ownership: the FSM goroutine alone calls add, expire, get and view; a
// view may be read from any goroutine; kept may be read from any.
type idempotencyWindow struct {
	byID   map[string]*idemEntry
	head   idemCursor // the oldest entry kept
	tail   idemCursor // where the next entry goes
	settle idemCursor // the oldest entry that may still hold a Pending
	// Sequence numbers (entries ever added before each position).
	headSeq, tailSeq, settleSeq uint64
	// kept mirrors tailSeq-headSeq for the metrics goroutine.
	kept atomic.Int64
}

// idemBlockLen is the number of entries in a block: large enough that the
// per-block cost (and a view's walk over blocks) is negligible, small
// enough that a block pinned by its expired entries is little memory.
const idemBlockLen = 256

type idemBlock struct {
	entries [idemBlockLen]idemEntry
	next    *idemBlock // set once, when the next block is appended
}

type idemEntry struct {
	id          string
	fingerprint uint64
	atMs        int64
	// pending is the command's Pending until settled, then nil; result is
	// valid once pending reads nil (written before it is cleared).
	pending atomic.Pointer[actors.Pending]
	result  storage.Result
}

// idemCursor is a position in the queue. off == idemBlockLen means "after
// this block": the next entry is the first of b.next.
type idemCursor struct {
	b   *idemBlock
	off int
}

// entry returns the entry at c, stepping into the next block first if c is
// at the end of its block. Call it only where an entry exists.
func (c *idemCursor) entry() *idemEntry {
	if c.off == idemBlockLen {
		c.b, c.off = c.b.next, 0
	}
	return &c.b.entries[c.off]
}

func newIdempotencyWindow() *idempotencyWindow {
	return &idempotencyWindow{byID: map[string]*idemEntry{}}
}

// size is the number of entries kept.
func (w *idempotencyWindow) size() int { return int(w.tailSeq - w.headSeq) }

func (w *idempotencyWindow) get(id string) (*idemEntry, bool) {
	e, ok := w.byID[id]
	return e, ok
}

// add records id's result p (settled at once if p is nil: then r is the
// result). The id must not be in the window.
func (w *idempotencyWindow) add(id string, fp uint64, atMs int64, p *actors.Pending, r storage.Result) {
	if w.tail.b == nil || w.tail.off == idemBlockLen {
		nb := new(idemBlock)
		if w.tail.b != nil {
			w.tail.b.next = nb
		} else {
			w.head, w.settle = idemCursor{b: nb}, idemCursor{b: nb}
		}
		w.tail = idemCursor{b: nb}
	}
	e := &w.tail.b.entries[w.tail.off]
	e.id, e.fingerprint, e.atMs = id, fp, atMs
	if p != nil {
		e.pending.Store(p)
	} else {
		e.result = r
	}
	w.tail.off++
	w.tailSeq++
	w.byID[id] = e
	w.kept.Store(int64(w.size()))
	w.settleSome(2)
}

// settleSome settles up to n entries at the settle cursor whose results
// are known, stopping at the first still running (its successors wait: at
// two per add the cursor catches up once results come in).
func (w *idempotencyWindow) settleSome(n int) {
	for ; n > 0 && w.settleSeq < w.tailSeq; n-- {
		e := w.settle.entry()
		if p := e.pending.Load(); p != nil {
			select {
			case <-p.Done():
			default:
				return
			}
			e.result = p.Result()
			e.pending.Store(nil)
		}
		w.settle.off++
		w.settleSeq++
	}
}

// expire forgets entries recorded before cutoffMs: O(1) per entry.
func (w *idempotencyWindow) expire(cutoffMs int64) {
	for w.headSeq < w.tailSeq {
		e := w.head.entry()
		if e.atMs >= cutoffMs {
			break
		}
		delete(w.byID, e.id)
		w.head.off++
		w.headSeq++
	}
	if w.settleSeq < w.headSeq {
		w.settle, w.settleSeq = w.head, w.headSeq
	}
	w.kept.Store(int64(w.size()))
}

// view returns the window as it is now, for a snapshot: O(1), under the
// FSM's applyMu.
func (w *idempotencyWindow) view() idemView {
	return idemView{head: w.head, n: w.size()}
}

// idemView is the window at one applied index: n entries from head. Apply
// only appends after them or moves its own head past them, so it stays
// valid, and readable from any goroutine, as long as it is held.
type idemView struct {
	head idemCursor
	n    int
}

// entries materialises the view for a snapshot, waiting for any result
// not yet known (after a capture's barrier, every one is).
func (v idemView) entries() []storage.IdempotencyEntry {
	if v.n == 0 {
		return nil
	}
	out := make([]storage.IdempotencyEntry, v.n)
	c := v.head
	for i := range out {
		e := c.entry()
		out[i] = storage.IdempotencyEntry{RequestID: e.id, Fingerprint: e.fingerprint, AtMs: e.atMs, Result: e.settled()}
		c.off++
	}
	return out
}

// settled returns the entry's result, waiting for it if still running.
func (e *idemEntry) settled() storage.Result {
	if p := e.pending.Load(); p != nil {
		<-p.Done()
		return p.Result()
	}
	return e.result
}

// answer is what a repeated request gets: the first one's result.
func (e *idemEntry) answer() *actors.Pending {
	if p := e.pending.Load(); p != nil {
		return p
	}
	return actors.Resolved(e.result)
}
