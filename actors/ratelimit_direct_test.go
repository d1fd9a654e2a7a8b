package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// keyOf returns a key whose bucket actor is actor.
func keyOf(l *Limiter, actor int, prefix string) string {
	for i := 0; ; i++ {
		if k := fmt.Sprint(prefix, i); l.actorOf(k) == actor {
			return k
		}
	}
}

// stashed is how many messages wait behind the multi-check that holds
// actor a (read in the actor's turn).
func stashed(l *Limiter, a int) int {
	b := l.boxes[a]
	b.turn.Lock()
	defer b.turn.Unlock()
	return len(b.stash)
}

// A held actor takes no direct turn: decisions on its keys, single ones
// and multi-checks, wait behind the multi-check that holds it, in their
// order, and see its verdict (here: undone) before they decide.
func TestDirectTurnWaitsForHold(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	l, _ := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 4})
	p := algPolicy(t, storage.Policy{Name: "f", Algorithm: storage.FixedWindow, Limit: 5, Window: storage.UnitHour})
	k0, k1 := keyOf(l, 0, "k"), keyOf(l, 1, "k")
	stuck := &groupState{}
	ready := make(chan bool, 1)
	l.send(1, &allMsg{checks: []Check{{Policy: p, Key: k1, Cost: 4}}, out: make([]storage.Decision, 1), idx: []int32{0}, g: stuck, ready: ready})
	if !<-ready {
		t.Fatal("the stuck group's part was denied")
	}
	deadline := time.Now().Add(10 * time.Second)
	single := make(chan storage.Decision, 1)
	go func() {
		d, err := l.Decide(Check{Policy: p, Key: k1, Cost: 2}, deadline)
		if err != nil {
			t.Error(err)
		}
		single <- d
	}()
	for stashed(l, 1) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the single decision was not stashed behind the hold")
		}
		time.Sleep(time.Millisecond)
	}
	type groupResult struct {
		ok  bool
		err error
	}
	group := make(chan groupResult, 1)
	go func() {
		ok, err := l.DecideAll([]Check{{Policy: p, Key: k0, Cost: 1}, {Policy: p, Key: k1, Cost: 3}}, make([]storage.Decision, 2), deadline)
		group <- groupResult{ok, err}
	}()
	for stashed(l, 1) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the multi-check was not stashed behind the hold")
		}
		time.Sleep(time.Millisecond)
	}
	// The multi-check holds actor 0 meanwhile (its first part): a
	// direct turn there is refused too.
	if l.boxes[0].tryTurn() {
		l.boxes[0].turn.Unlock()
		t.Fatal("a direct turn on an actor a waiting multi-check holds")
	}
	stuck.state.Store(groupAborted)
	l.send(1, &verdictMsg{g: stuck})
	// Undone: 5 left; the single decision takes 2, then the multi-check
	// 3 of k1 (and 1 of k0).
	if d := <-single; !d.Allowed || d.Remaining != 3 {
		t.Fatalf("single decision after the verdict: %+v", d)
	}
	if r := <-group; !r.ok || r.err != nil {
		t.Fatalf("multi-check after the verdict: %+v", r)
	}
	for k, want := range map[string]uint32{k0: 4, k1: 0} {
		if d, err := l.Decide(Check{Policy: p, Key: k, Peek: true}, deadline); err != nil || d.Remaining != want {
			t.Fatalf("%s: %+v %v, want %d remaining", k, d, err, want)
		}
	}
}

// A multi-check decided directly over several actors is all or
// nothing: a denial in its last actor undoes the parts of the others.
func TestDirectMultiCheckUndoes(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	l, set := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 4})
	algs := []storage.Policy{
		{Name: "g", Limit: 5, WindowMs: 60_000},
		{Name: "s", Algorithm: storage.SlidingWindow, Limit: 5, WindowMs: 60_000},
		{Name: "f", Algorithm: storage.FixedWindow, Limit: 5, Window: storage.UnitHour},
		{Name: "c", Algorithm: storage.Concurrency, Limit: 5},
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range algs {
		p := algPolicy(t, a)
		keys := []string{keyOf(l, 0, a.Name), keyOf(l, 1, a.Name), keyOf(l, 2, a.Name), keyOf(l, 3, a.Name)}
		checks := make([]Check, len(keys))
		for i, k := range keys {
			checks[i] = Check{Policy: p, Key: k, Cost: 2, LeaseMs: 60_000}
		}
		// The last actor's key has 4 spent already: 2 more are denied.
		if d, err := l.Decide(Check{Policy: p, Key: keys[3], Cost: 4, LeaseMs: 60_000}, deadline); err != nil || !d.Allowed {
			t.Fatalf("%s: %+v %v", a.Name, d, err)
		}
		out := make([]storage.Decision, len(checks))
		ok, err := l.DecideAll(checks, out, deadline)
		if ok || err != nil || out[3].Allowed || !out[0].Allowed || out[0].LeaseID != 0 {
			t.Fatalf("%s: %v %v %+v", a.Name, ok, err, out)
		}
		for i, k := range keys {
			want := uint32(5)
			if i == 3 {
				want = 1
			}
			if d, err := l.Decide(Check{Policy: p, Key: k, Peek: true}, deadline); err != nil || d.Remaining != want {
				t.Fatalf("%s, key %d: %+v %v, want %d remaining", a.Name, i, d, err, want)
			}
		}
		// Whole: allowed, each key spent once.
		checks = checks[:3]
		if ok, err := l.DecideAll(checks, out, deadline); !ok || err != nil {
			t.Fatalf("%s: %v %v", a.Name, ok, err)
		}
		for _, k := range keys[:3] {
			if d, _ := l.Decide(Check{Policy: p, Key: k, Peek: true}, deadline); d.Remaining != 3 {
				t.Fatalf("%s: %s has %d remaining, want 3", a.Name, k, d.Remaining)
			}
		}
	}
	// The undone checks count as rolled back once the sweep has tallied
	// them.
	for _, b := range l.boxes {
		b.turn.Lock()
		b.sweep()
		b.turn.Unlock()
	}
	for _, a := range algs {
		name := `troupe_ratelimit_decisions_total{policy="` + a.Name + `",decision="rolled_back"}`
		if got := set.GetOrCreateCounter(name).Get(); got != 3 {
			t.Fatalf("%s: %d", name, got)
		}
	}
}
