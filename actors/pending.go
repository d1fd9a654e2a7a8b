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
	done chan struct{}
	res  storage.Result
}

// NewPending returns an unresolved Pending.
func NewPending() *Pending { return &Pending{done: make(chan struct{})} }

// Resolved returns a Pending that already holds r.
func Resolved(r storage.Result) *Pending {
	p := NewPending()
	p.resolve(r)
	return p
}

// resolve records r. It is called exactly once, by the goroutine that
// finished the command; the close publishes r to waiters.
func (p *Pending) resolve(r storage.Result) {
	p.res = r
	close(p.done)
}

// Done is closed once the result is known.
func (p *Pending) Done() <-chan struct{} { return p.done }

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
