package actors

import (
	"sync/atomic"

	"github.com/troupe-db/troupe/storage"
)

// Pending is the future result of a command: the FSM returns it as the
// apply response, the owning actor resolves it, and the HTTP handler on
// the leader waits for it. A duplicate request (same idempotency key)
// gets the same Pending.
type Pending struct {
	res storage.Result
	// done is made by the first Done before the result is known, and is
	// closedDone once it is: a command resolved before anyone waits (the
	// FSM running an idle shard's turn itself) makes no channel.
	done atomic.Pointer[chan struct{}]
	// after is the document after a submit, set before the resolve (so
	// visible to whoever saw Done): for the change feed, which announces
	// a submit with the document's listing. Not part of the result: the
	// idempotency window does not record it.
	after *storage.Doc
}

// closedDone is every resolved Pending's channel that nobody waited on.
var closedDone = func() *chan struct{} {
	c := make(chan struct{})
	close(c)
	return &c
}()

// NewPending returns an unresolved Pending.
func NewPending() *Pending { return &Pending{} }

// Resolved returns a Pending that already holds r.
func Resolved(r storage.Result) *Pending {
	p := NewPending()
	p.resolve(r)
	return p
}

// resolve records r. It is called exactly once, by the goroutine that
// finished the command; the swap (and the close, if someone waits)
// publishes r to waiters.
func (p *Pending) resolve(r storage.Result) {
	p.res = r
	if c := p.done.Swap(closedDone); c != nil {
		close(*c)
	}
}

// Done is closed once the result is known.
func (p *Pending) Done() <-chan struct{} {
	if c := p.done.Load(); c != nil {
		return *c
	}
	c := make(chan struct{})
	if p.done.CompareAndSwap(nil, &c) {
		return c
	}
	return *p.done.Load() // resolved meanwhile: closedDone
}

// After is the document a submit left (nil for other commands, or a
// submit that failed); call it only after Done is closed.
func (p *Pending) After() *storage.Doc { return p.after }

// Result returns the result; call it only after Done is closed.
func (p *Pending) Result() storage.Result { return p.res }

// gather collects per-item results of a command split across shards and
// resolves its Pending when the last part is done. Parts write disjoint
// items; the atomic countdown orders their writes before the resolve.
type gather struct {
	p       *Pending
	items   []storage.Result
	pending atomic.Int32
}

func (g *gather) partDone() {
	if g.pending.Add(-1) == 0 {
		g.p.resolve(storage.Result{Items: g.items})
	}
}
