package actors

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// All-or-nothing multi-checks (DecideAll): when any check of a group
// says no, none of them spends anything, and the group takes effect at
// one instant, exactly, under any concurrency.
//
// The checks go to the bucket actors of their keys in ascending order of
// actor, one part per actor, one actor at a time. Each actor decides its
// part for real, remembering how to undo it. A part that is not wholly
// allowed is undone at once and the group is denied. A wholly allowed
// part, unless it is the last, holds its actor: the actor answers, then
// keeps every later message for after the verdict (a held actor blocks
// no goroutine: the dispatcher's workers are shared by every actor), and
// undoes its part if the group was denied. The last part decides the
// group: when it is allowed too, the group commits. So while the group
// is decided every actor it touches is held, no other decision on its
// keys runs in between, and an undo restores exactly the state before
// the part (ids of leases are never reused, so an undone lease is simply
// given back). Actors are always taken in the same order, so two groups
// never wait on each other in a cycle. A group on one actor (the common
// case of a few keys, or one key under several policies) holds nothing:
// one message decides it.
//
// The price: a group on k actors holds the first k−1 for up to k−1
// message round trips. The verdict (the group's state: committed, or
// aborted — also when the caller's deadline passes before the last part
// committed) is read by a held actor when its next message comes: a
// held actor that gets a message while the group is still pending keeps
// it for later and marks the group as waited for; the caller, once the
// group is decided, sends a verdict message to its held actors only
// when one did. The common case, no other message for a held actor
// before the verdict, costs no verdict message at all. The two sides
// meet like this: the actor marks the group waited for and then reads
// its state again; the caller sets the state and then reads the mark
// (sequentially consistent atomics): at least one of them sees the
// other, so no kept message waits for a verdict that never comes. Until
// its next message a held actor of an aborted group still holds the
// group's spending; nothing can read it meanwhile (every read of a
// bucket is a message to its actor, which settles the group first).

const (
	groupPending int32 = iota
	groupCommitted
	groupAborted
)

// groupState is the verdict of one multi-check, shared by its parts,
// and whether a held actor keeps messages until it hears it.
type groupState struct {
	state   atomic.Int32
	waiting atomic.Bool
}

// allMsg asks an actor for its part of a group.
type allMsg struct {
	checks []Check
	out    []storage.Decision
	idx    []int32
	g      *groupState
	last   bool      // this part decides the group
	ready  chan bool // room for every part's answer: whether it was allowed (and, last, committed)
}

// verdictMsg tells an actor that the group is decided (g.state).
type verdictMsg struct{ g *groupState }

// heldPart is the part an actor holds, with how to undo it.
type heldPart struct {
	g    *groupState
	undo []undoRec
}

// DecideAll makes the decisions of checks into out, all or nothing: it
// reports whether every check was allowed; if not, nothing was spent,
// out holds each check's own decision (a check allowed on its own is
// marked Allowed; no lease was kept, so LeaseID is 0). Checks must be
// plain checks (no Release, Peek or Reset). After an error nothing may
// be read from out.
func (l *Limiter) DecideAll(checks []Check, out []storage.Decision, deadline time.Time) (bool, error) {
	if len(out) < len(checks) {
		return false, fmt.Errorf("DecideAll: %d checks, room for %d decisions", len(checks), len(out))
	}
	if len(checks) == 0 {
		return true, nil
	}
	// The group's state is new (held actors may read it long after);
	// the rest is reused once every part has answered.
	call := l.calls.Get().(*allCall)
	idx, parts := l.partitionInto(checks, call.idx[:0], call.parts[:0])
	call.idx, call.parts = idx, parts
	if cap(call.msgs) < len(parts) {
		call.msgs = make([]allMsg, len(parts))
	}
	g := &groupState{}
	// One answer per part (room for one per actor), so that no part
	// ever waits to answer, also after the caller gave up.
	ready := call.ready
	msgs := call.msgs[:len(parts)]
	sent := 0
	answered := false // every part has answered: nothing refers to call any more
	defer func() {
		// Decided: a held actor reads the verdict when its next message
		// comes. One that keeps messages waiting for it is sent the
		// verdict (every actor a part went to, but for the group's last
		// part, which never holds; one that does not hold ignores it).
		g.state.CompareAndSwap(groupPending, groupAborted)
		if held := min(sent, len(parts)-1); held > 0 && g.waiting.Load() {
			v := &verdictMsg{g: g}
			for _, p := range parts[:held] {
				l.send(p.actor, v)
			}
		}
		if answered {
			clear(msgs)
			l.calls.Put(call)
		}
	}()
	t := lazyTimer{deadline: deadline}
	defer t.stop()
	allowed, late := true, 0
	for j, p := range parts {
		m := &msgs[j]
		*m = allMsg{checks: checks, out: out, idx: idx[p.lo:p.hi], g: g, last: j == len(parts)-1, ready: ready}
		sent++
		l.send(p.actor, m)
		if !allowed {
			// Denied already: the other parts only say what they
			// would have answered, undoing at once; none holds.
			late++
			continue
		}
		ok, err := waitReady(ready, &t)
		if err != nil {
			return false, err
		}
		allowed = ok
	}
	for range late {
		if _, err := waitReady(ready, &t); err != nil {
			return false, err
		}
	}
	answered = true
	if allowed {
		return true, nil
	}
	denied := false
	for i := range checks {
		out[i].LeaseID = 0
		denied = denied || !out[i].Allowed
	}
	if !denied {
		return false, ErrLimiterTimeout // not reached: a part says no only for a denial
	}
	return false, nil
}

// allCall is what a multi-check needs besides its group's state, reused
// from one to the next (Limiter.calls).
type allCall struct {
	ready chan bool // room for one answer per bucket actor
	msgs  []allMsg
	idx   []int32
	parts []part
}

// waitReady takes the next part's answer, starting the deadline timer
// only if it is not there yet (an idle actor has answered by the time
// the send returns).
func waitReady(ready chan bool, t *lazyTimer) (bool, error) {
	select {
	case ok := <-ready:
		return ok, nil
	default:
	}
	select {
	case ok := <-ready:
		return ok, nil
	case <-t.C():
		return false, ErrLimiterTimeout
	}
}

// undoRec is how to undo one allowed check of a part.
type undoRec struct {
	p       *storage.Policy
	key     string
	had     bool
	tat     int64
	sliding storage.SlidingCount
	fixed   storage.WindowCount
	lease   uint64
	shadow  bool // allowed by a shadow policy that would have denied
}

// rollback undoes the allowed checks of a part, last first.
func (b *bucketBox) rollback(undo []undoRec) {
	now := b.l.now()
	for i := len(undo) - 1; i >= 0; i-- {
		u := &undo[i]
		pk := b.byPolicy[u.p.Name]
		if pk == nil {
			// Shed while the part was decided: start it afresh.
			pk = &policyKeys{}
			b.byPolicy[u.p.Name] = pk
		}
		if u.p.Algorithm != storage.GCRA {
			b.follow(pk, u.p)
		}
		switch u.p.Algorithm {
		case storage.GCRA:
			if pk.gcra == nil {
				pk.gcra = map[string]int64{}
			}
			restore(b, pk.gcra, u.key, u.tat, u.had)
		case storage.SlidingWindow:
			restore(b, pk.sliding, u.key, u.sliding, u.had)
		case storage.FixedWindow:
			restore(b, pk.fixed, u.key, u.fixed, u.had)
		case storage.Concurrency:
			if sem := pk.sems[u.key]; sem != nil && u.lease != 0 {
				u.p.ReleaseLease(sem, u.lease, now)
			}
		}
		t := b.tallyOf(u.p.Name)
		if u.shadow {
			t.shadowDenied--
		} else {
			t.allowed--
		}
		t.rolledBack++
	}
}

// restore puts a key's state back as it was (absent when it had none),
// keeping the actor's count of keys.
func restore[V any](b *bucketBox, m map[string]V, key string, v V, had bool) {
	_, has := m[key]
	switch {
	case had:
		m[key] = v
		if !has {
			b.n++
			b.l.buckets.Add(1)
		}
	case has:
		delete(m, key)
		b.removed()
	}
}

// decideAll decides an actor's part of a group (see DecideAll).
func (b *bucketBox) decideAll(m *allMsg) {
	// The actor's spare undo records, if it has them (actor state: one
	// part at a time uses them, then gives them back).
	undo := b.spare[:0]
	b.spare = nil
	answered := false
	defer func() {
		if r := recover(); r != nil {
			b.l.sys.panics.Inc()
			b.l.sys.log.Error("bucket actor recovered from a panic", slog.Int("actor", b.index), slog.String("panic", fmt.Sprint(r)))
			m.g.state.CompareAndSwap(groupPending, groupAborted)
			if !answered {
				m.ready <- false
			}
		}
	}()
	now := b.l.now()
	ok := true
	if cap(undo) < len(m.idx) {
		undo = make([]undoRec, 0, max(len(m.idx), 16))
	}
	for _, i := range m.idx {
		c := &m.checks[i]
		u := undoRec{p: c.Policy, key: c.Key}
		d := b.one(c, now, &u)
		m.out[i] = d
		if !d.Allowed {
			ok = false
			continue
		}
		u.lease, u.shadow = d.LeaseID, d.Denied
		undo = append(undo, u)
	}
	switch {
	case !ok || m.g.state.Load() == groupAborted:
		b.rollback(undo)
		b.giveBack(undo)
		m.g.state.CompareAndSwap(groupPending, groupAborted)
		answered = true
		m.ready <- false
	case m.last:
		committed := m.g.state.CompareAndSwap(groupPending, groupCommitted)
		if !committed {
			b.rollback(undo)
		}
		b.giveBack(undo)
		answered = true
		m.ready <- committed
	default:
		// Held: later messages wait for the verdict.
		b.holding = heldPart{g: m.g, undo: undo}
		b.held = &b.holding
		answered = true
		m.ready <- true
	}
}

// settle ends the hold of a decided group (undoing its part unless it
// committed), then handles the kept messages in order until a group
// holds the actor again; while one does and messages wait, it marks the
// group as waited for (its verdict message then comes) and looks at its
// state once more (see DecideAll).
func (b *bucketBox) settle() {
	for {
		if !b.endHold() {
			if len(b.stash) == 0 {
				return
			}
			b.held.g.waiting.Store(true)
			if !b.endHold() {
				return
			}
		}
		if len(b.stash) == 0 {
			b.stash = nil
			return
		}
		m := b.stash[0]
		b.stash[0] = nil
		b.stash = b.stash[1:]
		b.handle(m)
	}
}

// endHold ends the hold of a decided group and reports whether the actor
// is free (false: its group is still pending).
func (b *bucketBox) endHold() bool {
	h := b.held
	if h == nil {
		return true
	}
	switch h.g.state.Load() {
	case groupPending:
		return false
	case groupCommitted:
	default:
		b.rollback(h.undo)
	}
	b.giveBack(h.undo)
	b.holding = heldPart{}
	b.held = nil
	return true
}

// giveBack keeps undo records for the actor's next part, cleared (they
// point at policies and keys).
func (b *bucketBox) giveBack(undo []undoRec) {
	clear(undo)
	b.spare = undo[:0]
}
