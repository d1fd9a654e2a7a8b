package cluster

import (
	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// idempotencyWindow remembers, for a retention period of command time,
// the result of every command that carried a request id. It is part of the
// replicated state: it changes only in apply, by command time.
type idempotencyWindow struct {
	byID  map[string]*idemEntry
	queue []*idemEntry // in apply order, so in time order
}

type idemEntry struct {
	id          string
	fingerprint uint64
	atMs        int64
	pending     *actors.Pending
}

func newIdempotencyWindow() idempotencyWindow {
	return idempotencyWindow{byID: map[string]*idemEntry{}}
}

func (w *idempotencyWindow) get(id string) (*idemEntry, bool) {
	e, ok := w.byID[id]
	return e, ok
}

func (w *idempotencyWindow) add(id string, fp uint64, atMs int64, p *actors.Pending) {
	e := &idemEntry{id: id, fingerprint: fp, atMs: atMs, pending: p}
	w.byID[id] = e
	w.queue = append(w.queue, e)
}

// expire forgets entries recorded before cutoffMs.
func (w *idempotencyWindow) expire(cutoffMs int64) {
	n := 0
	for n < len(w.queue) && w.queue[n].atMs < cutoffMs {
		delete(w.byID, w.queue[n].id)
		n++
	}
	if n > 0 {
		w.queue = append(w.queue[:0:0], w.queue[n:]...)
	}
}

// entries returns the window for a snapshot; every result must be known.
func (w *idempotencyWindow) entries() []storage.IdempotencyEntry {
	out := make([]storage.IdempotencyEntry, 0, len(w.queue))
	for _, e := range w.queue {
		<-e.pending.Done()
		out = append(out, storage.IdempotencyEntry{RequestID: e.id, Fingerprint: e.fingerprint, AtMs: e.atMs, Result: e.pending.Result()})
	}
	return out
}
