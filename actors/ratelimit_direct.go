package actors

import (
	"runtime"

	"github.com/troupe-db/troupe/storage"
)

// Turns taken directly. A caller that finds a bucket actor idle — its
// turn free, no multi-check holding it, nothing stashed behind such a
// hold — runs the actor's turn in its own goroutine without a message:
// it takes the turn (bucketBox.turn, which the actor's Receive holds for
// each message), decides, and gives the turn back. This is what the
// inline dispatcher already did for an idle actor, without protoactor's
// envelope, queue and scheduling, which cost more than the decisions
// (docs/DESIGN.md, Rate limits: bucket actors). The actor invariant is
// the same: one goroutine at a time touches a box. An actor that is busy
// or held gets a message, as before, and its mailbox orders it.
//
// A direct decision may overtake messages still queued for the actor:
// those are concurrent with it (their senders are waiting for their
// answers), so either order is one they could have seen. A caller's own
// messages are never overtaken: every call waits for its answers, and
// the verdicts a multi-check sends after it returns go to actors it
// holds, which take no direct turn until they have heard them.
//
// A multi-check takes the turns of all its actors, in ascending order,
// only by trying (TryLock): when one is not free it gives back those it
// took and goes the message way (ratelimit_all.go). Holding all of them,
// it decides every part, and undoes them all if any check was denied:
// the whole multi-check takes effect at one instant, as the message way
// guarantees.

// tryTurn takes the actor's turn if the actor is idle; the caller gives
// it back with turn.Unlock.
func (b *bucketBox) tryTurn() bool {
	if !b.turn.TryLock() {
		return false
	}
	if b.held != nil || len(b.stash) > 0 {
		b.turn.Unlock()
		return false
	}
	return true
}

// directTries is how many times a multi-check tries to take its turns
// before it sends messages instead. A turn is held for a few decisions at
// a time, and the way of messages holds actors across round trips (so
// that, once taken, it makes the next multi-checks find actors held and
// take it too): trying again after a yield is much the cheaper.
const directTries = 4

// tryTurns takes the turns of the actors of parts, in ascending order,
// all or none, trying directTries times when there are several (one
// part sent as a message holds nothing: it is sent at once).
func (l *Limiter) tryTurns(parts []part) bool {
	tries := directTries
	if len(parts) == 1 {
		tries = 1
	}
	for try := 0; try < tries; try++ {
		n := 0
		for n < len(parts) && l.boxes[parts[n].actor].tryTurn() {
			n++
		}
		if n == len(parts) {
			return true
		}
		for _, q := range parts[:n] {
			l.boxes[q.actor].turn.Unlock()
		}
		if try+1 < tries {
			runtime.Gosched()
		}
	}
	return false
}

// runDirect decides checks at idx into out in the caller's goroutine,
// its turn taken; a panic is recovered as in the actor (the decisions
// not made are left zero: not allowed).
func (b *bucketBox) runDirect(checks []Check, out []storage.Decision, idx []int32) {
	defer func() {
		if r := recover(); r != nil {
			b.recovered(r)
		}
	}()
	b.run(checks, out, idx)
}

// decideAllDirect decides checks all or nothing with the turns of every
// actor of parts taken directly. ok is false, with nothing decided, when
// one of them was not idle. A panic undoes what was decided and reports
// ErrLimiterTimeout, as the message way does.
func (l *Limiter) decideAllDirect(checks []Check, out []storage.Decision, idx []int32, parts []part) (allowed, ok bool, err error) {
	if !l.tryTurns(parts) {
		return false, false, nil
	}
	var undoBuf [16]undoRec
	undo := undoBuf[:0]
	if len(checks) > len(undoBuf) {
		undo = make([]undoRec, 0, len(checks))
	}
	// ends[j] is the end in undo of part j's records.
	var endBuf [16]int
	ends := endBuf[:0]
	if len(parts) > len(endBuf) {
		ends = make([]int, 0, len(parts))
	}
	undoing := false
	rollback := func() {
		undoing = true
		start := 0
		for j, end := range ends {
			l.boxes[parts[j].actor].rollback(undo[start:end])
			start = end
		}
	}
	defer func() {
		if r := recover(); r != nil {
			l.boxes[parts[min(len(ends), len(parts)-1)].actor].recovered(r)
			if !undoing {
				if len(ends) < len(parts) {
					// The part under way: its records are the tail.
					ends = append(ends, len(undo))
				}
				rollback()
			}
			allowed, ok, err = false, true, ErrLimiterTimeout
		}
		for _, p := range parts {
			l.boxes[p.actor].turn.Unlock()
		}
	}()
	now := l.now()
	allowed = true
	for _, p := range parts {
		b := l.boxes[p.actor]
		for _, i := range idx[p.lo:p.hi] {
			c := &checks[i]
			u := undoRec{p: c.Policy, key: c.Key}
			d := b.decideOne(c, now, &u)
			out[i] = d
			if !d.Allowed {
				allowed = false
				continue
			}
			u.lease, u.shadow = d.LeaseID, d.Denied
			undo = append(undo, u)
		}
		ends = append(ends, len(undo))
	}
	if !allowed {
		rollback()
		for i := range checks {
			out[i].LeaseID = 0
		}
	}
	return allowed, true, nil
}
