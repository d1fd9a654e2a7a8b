package actors

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// TestDecideAllAtomic: concurrent multi-checks over keys spread on
// several actors, under every algorithm with an exact count, never
// spend more than the limit on any key, and a denied multi-check spends
// nothing: at the end each key has spent exactly the costs of the
// multi-checks that were allowed.
func TestDecideAllAtomic(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	l, _ := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 8})
	policies := []*storage.Policy{
		algPolicy(t, storage.Policy{Name: "f", Algorithm: storage.FixedWindow, Limit: 40, Window: storage.UnitDay}),
		algPolicy(t, storage.Policy{Name: "g", Limit: 40, WindowMs: 86_400_000}),
		algPolicy(t, storage.Policy{Name: "c", Algorithm: storage.Concurrency, Limit: 40}),
		algPolicy(t, storage.Policy{Name: "s", Algorithm: storage.SlidingWindow, Limit: 40, WindowMs: 86_400_000}),
	}
	keys := make([]string, 12)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	type spend struct{ p, k int }
	var mu sync.Mutex
	spent := map[spend]uint32{}
	deadline := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 150 {
				n := 1 + rng.IntN(5)
				checks := make([]Check, n)
				picks := make([]spend, n)
				for i := range checks {
					picks[i] = spend{rng.IntN(len(policies)), rng.IntN(len(keys))}
					p := policies[picks[i].p]
					checks[i] = Check{Policy: p, Key: keys[picks[i].k], Cost: uint32(1 + rng.IntN(3))}
					if p.Algorithm == storage.Concurrency {
						checks[i].LeaseMs = 3_600_000
					}
				}
				out := make([]storage.Decision, n)
				ok, err := l.DecideAll(checks, out, deadline)
				if err != nil {
					t.Error(err)
					return
				}
				denied := false
				for i := range out {
					denied = denied || !out[i].Allowed
					if !ok && out[i].LeaseID != 0 {
						t.Errorf("a denied multi-check kept lease %x", out[i].LeaseID)
					}
					if ok && checks[i].LeaseMs > 0 && out[i].LeaseID == 0 {
						t.Errorf("an allowed concurrency check has no lease")
					}
				}
				if ok == denied {
					t.Errorf("allowed %v with a denied check %v", ok, denied)
				}
				if ok {
					mu.Lock()
					for i, c := range checks {
						spent[picks[i]] += c.Cost
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	total := uint32(0)
	for pi, p := range policies {
		for ki, k := range keys {
			d, err := l.Decide(Check{Policy: p, Key: k, Peek: true}, deadline)
			if err != nil {
				t.Fatal(err)
			}
			want := spent[spend{pi, ki}]
			if want > p.Limit {
				t.Errorf("%s/%s: %d spent by allowed multi-checks, limit %d", p.Name, k, want, p.Limit)
			}
			if got := p.Limit - d.Remaining; got != want && p.Algorithm != storage.GCRA {
				t.Errorf("%s/%s: the key spent %d, the allowed multi-checks %d", p.Name, k, got, want)
			}
			if p.Algorithm == storage.GCRA {
				// The clock stands still: the bucket refilled nothing.
				if got := p.Limit - d.Remaining; got != want {
					t.Errorf("gcra %s: spent %d, want %d", k, got, want)
				}
			}
			total += want
		}
	}
	if total == 0 {
		t.Fatal("no multi-check was allowed")
	}
}

// TestDecideAllOneActorAndDenial: a denied multi-check on one actor or
// on several reports each check's own answer and spends nothing.
func TestDecideAllOneActorAndDenial(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	for _, actors := range []int{1, 4} {
		l, _ := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: actors})
		p := algPolicy(t, storage.Policy{Name: "f", Algorithm: storage.FixedWindow, Limit: 5, Window: storage.UnitHour})
		c := algPolicy(t, storage.Policy{Name: "c", Algorithm: storage.Concurrency, Limit: 2})
		deadline := time.Now().Add(5 * time.Second)
		if _, err := l.Decide(Check{Policy: p, Key: "full", Cost: 5}, deadline); err != nil {
			t.Fatal(err)
		}
		checks := []Check{
			{Policy: p, Key: "a", Cost: 2}, {Policy: c, Key: "b", Cost: 1, LeaseMs: 1000},
			{Policy: p, Key: "full", Cost: 1}, {Policy: p, Key: "z", Cost: 3},
		}
		out := make([]storage.Decision, len(checks))
		ok, err := l.DecideAll(checks, out, deadline)
		if err != nil || ok {
			t.Fatalf("%d actors: allowed %v, %v", actors, ok, err)
		}
		if !out[0].Allowed || !out[1].Allowed || out[2].Allowed || !out[3].Allowed || out[1].LeaseID != 0 {
			t.Fatalf("%d actors: %+v", actors, out)
		}
		for _, k := range []Check{{Policy: p, Key: "a"}, {Policy: c, Key: "b"}, {Policy: p, Key: "z"}} {
			k.Peek = true
			d, _ := l.Decide(k, deadline)
			if d.Remaining != k.Policy.Limit || d.Leases != 0 {
				t.Fatalf("%d actors: %s spent by a denied multi-check: %+v", actors, k.Key, d)
			}
		}
		// Without the full key, the same multi-check passes whole.
		checks[2].Key = "free"
		ok, err = l.DecideAll(checks, out, deadline)
		if err != nil || !ok || out[1].LeaseID == 0 {
			t.Fatalf("%d actors: allowed %v, %v, %+v", actors, ok, err, out)
		}
		d, _ := l.Decide(Check{Policy: c, Key: "b", Peek: true}, deadline)
		if d.Leases != 1 || d.Remaining != 1 {
			t.Fatalf("peek of the semaphore: %+v", d)
		}
	}
}

// TestPeekAndReset: a peek spends nothing under any algorithm; a reset
// forgets the key.
func TestPeekAndReset(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	l, _ := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 2})
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range []*storage.Policy{
		algPolicy(t, storage.Policy{Name: "g", Limit: 4, WindowMs: 1000}),
		algPolicy(t, storage.Policy{Name: "s", Algorithm: storage.SlidingWindow, Limit: 4, WindowMs: 1000}),
		algPolicy(t, storage.Policy{Name: "f", Algorithm: storage.FixedWindow, Limit: 4, Window: storage.UnitMinute}),
		algPolicy(t, storage.Policy{Name: "c", Algorithm: storage.Concurrency, Limit: 4}),
	} {
		lease := int64(0)
		if p.Algorithm == storage.Concurrency {
			lease = 60_000
		}
		for range 3 {
			if d, err := l.Decide(Check{Policy: p, Key: "k", Cost: 1, LeaseMs: lease}, deadline); err != nil || !d.Allowed {
				t.Fatalf("%s: %+v %v", p.Name, d, err)
			}
		}
		for range 5 {
			d, err := l.Decide(Check{Policy: p, Key: "k", Peek: true}, deadline)
			if err != nil || d.Remaining != 1 || d.ResetNs <= 0 {
				t.Fatalf("%s: peek %+v %v", p.Name, d, err)
			}
			if p.Algorithm == storage.Concurrency && d.Leases != 3 {
				t.Fatalf("peek leases: %+v", d)
			}
		}
		if d, _ := l.Decide(Check{Policy: p, Key: "k", Reset: true}, deadline); !d.Released {
			t.Fatalf("%s: reset found nothing", p.Name)
		}
		if d, _ := l.Decide(Check{Policy: p, Key: "k", Reset: true}, deadline); d.Released {
			t.Fatalf("%s: second reset found something", p.Name)
		}
		if d, _ := l.Decide(Check{Policy: p, Key: "k", Peek: true}, deadline); d.Remaining != 4 || d.Leases != 0 {
			t.Fatalf("%s: after the reset %+v", p.Name, d)
		}
	}
}

// BenchmarkDecideAll: multi-checks of 10 checks (one decision per b.N
// step), from many goroutines: spread over the 16 actors (each holds the
// actors of its keys in turn), and on one actor (the keys of one client
// under ten policies, hashed alike: no hold). DecideBatch, which is not
// all or nothing, is the comparison.
func BenchmarkDecideAll(b *testing.B) {
	const keys = 10_000
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprint("client-", i)
	}
	p := algPolicy(b, storage.Policy{Name: "g", Limit: 1_000_000_000, WindowMs: 1000})
	policies := make([]*storage.Policy, 10)
	for i := range policies {
		policies[i] = algPolicy(b, storage.Policy{Name: fmt.Sprint("g", i), Limit: 1_000_000_000, WindowMs: 1000})
	}
	for _, mode := range []string{"spread", "one-actor", "batch-spread"} {
		b.Run(mode, func(b *testing.B) {
			l, _ := newTestLimiter(b, LimiterConfig{})
			b.ReportAllocs()
			b.SetParallelism(8) // callers waiting on their answers, as HTTP handlers do
			cpu := startCPU()
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				const n = 10
				checks := make([]Check, n)
				out := make([]storage.Decision, n)
				base := int(next.Add(7919))
				deadline := time.Now().Add(time.Hour)
				for i := 0; pb.Next(); {
					if mode == "one-actor" {
						checks[i] = Check{Policy: policies[i], Key: names[base%keys], Cost: 1}
					} else {
						checks[i] = Check{Policy: p, Key: names[(base+i*31)%keys], Cost: 1}
					}
					if i++; i == n {
						var err error
						if mode == "batch-spread" {
							err = l.DecideBatch(checks, out, deadline)
						} else {
							_, err = l.DecideAll(checks, out, deadline)
						}
						if err != nil {
							b.Error(err)
							return
						}
						base += n
						i = 0
					}
				}
			})
			cpu.report(b, b.N)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// TestDecideAllDeadline: a multi-check whose part waits past its
// deadline (behind another multi-check that holds an actor) answers
// ErrLimiterTimeout, leaves no actor held, and spends nothing.
func TestDecideAllDeadline(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	l, _ := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 4})
	p := algPolicy(t, storage.Policy{Name: "f", Algorithm: storage.FixedWindow, Limit: 5, Window: storage.UnitHour})
	keyOf := func(actor int) string {
		for i := 0; ; i++ {
			if k := fmt.Sprint("k", i); l.actorOf(k) == actor {
				return k
			}
		}
	}
	k0, k1, k2 := keyOf(0), keyOf(1), keyOf(2)
	// A group that never hears its verdict (yet) holds actor 1.
	stuck := &groupState{}
	ready := make(chan bool, 1)
	l.send(1, &allMsg{checks: []Check{{Policy: p, Key: k1, Cost: 1}}, out: make([]storage.Decision, 1), idx: []int32{0}, g: stuck, ready: ready})
	if !<-ready {
		t.Fatal("the stuck group's part was denied")
	}
	checks := []Check{{Policy: p, Key: k0, Cost: 2}, {Policy: p, Key: k1, Cost: 2}, {Policy: p, Key: k2, Cost: 2}}
	if _, err := l.DecideAll(checks, make([]storage.Decision, 3), time.Now().Add(100*time.Millisecond)); err != ErrLimiterTimeout {
		t.Fatalf("got %v, want a timeout", err)
	}
	// Actor 0 was held by the group that timed out: it answers again.
	deadline := time.Now().Add(5 * time.Second)
	if d, err := l.Decide(Check{Policy: p, Key: k0, Peek: true}, deadline); err != nil || d.Remaining != 5 {
		t.Fatalf("actor 0 after the timeout: %+v %v", d, err)
	}
	// The stuck group is aborted: actor 1 undoes its part, then the
	// waiting part of the timed-out group, and spends nothing.
	stuck.state.Store(groupAborted)
	l.send(1, &verdictMsg{g: stuck})
	if d, err := l.Decide(Check{Policy: p, Key: k1, Peek: true}, deadline); err != nil || d.Remaining != 5 {
		t.Fatalf("actor 1 after both groups: %+v %v", d, err)
	}
	if d, err := l.Decide(Check{Policy: p, Key: k2, Peek: true}, deadline); err != nil || d.Remaining != 5 {
		t.Fatalf("actor 2: %+v %v", d, err)
	}
	// And the same multi-check now passes whole.
	if ok, err := l.DecideAll(checks, make([]storage.Decision, 3), deadline); !ok || err != nil {
		t.Fatalf("afterwards: %v %v", ok, err)
	}
}

// TestDecideAllVerdictRead: a held actor learns its group's verdict from
// the group's state when its next message comes — kept (committed) or
// undone (aborted) with no verdict message — and a message that came
// while the group was pending is answered once the group is decided,
// the caller then sending the verdict because the actor waits for it.
func TestDecideAllVerdictRead(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	l, _ := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 2})
	p := algPolicy(t, storage.Policy{Name: "f", Algorithm: storage.FixedWindow, Limit: 5, Window: storage.UnitHour})
	var key string
	for i := 0; ; i++ {
		if key = fmt.Sprint("k", i); l.actorOf(key) == 0 {
			break
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	hold := func(cost uint32) *groupState {
		g := &groupState{}
		ready := make(chan bool, 1)
		l.send(0, &allMsg{checks: []Check{{Policy: p, Key: key, Cost: cost}}, out: make([]storage.Decision, 1), idx: []int32{0}, g: g, ready: ready})
		if !<-ready {
			t.Fatal("the held part was denied")
		}
		return g
	}
	remaining := func() uint32 {
		t.Helper()
		d, err := l.Decide(Check{Policy: p, Key: key, Peek: true}, deadline)
		if err != nil {
			t.Fatal(err)
		}
		return d.Remaining
	}
	// Committed, no verdict message: the next message keeps the spending.
	g := hold(2)
	g.state.Store(groupCommitted)
	if r := remaining(); r != 3 || g.waiting.Load() {
		t.Fatalf("after a commit: remaining %d, waited for %v", r, g.waiting.Load())
	}
	// Aborted, no verdict message: the next message finds it undone.
	g = hold(1)
	g.state.Store(groupAborted)
	if r := remaining(); r != 3 || g.waiting.Load() {
		t.Fatalf("after an abort: remaining %d, waited for %v", r, g.waiting.Load())
	}
	// Pending: a check waits, marks the group, and is answered after the
	// verdict message, seeing the group's spending.
	g = hold(1)
	answered := make(chan storage.Decision, 1)
	go func() {
		d, err := l.Decide(Check{Policy: p, Key: key, Cost: 1}, deadline)
		if err != nil {
			t.Error(err)
		}
		answered <- d
	}()
	for !g.waiting.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the held actor never marked its group as waited for")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case d := <-answered:
		t.Fatalf("answered while held: %+v", d)
	default:
	}
	g.state.Store(groupCommitted)
	l.send(0, &verdictMsg{g: g})
	select {
	case d := <-answered:
		if !d.Allowed || d.Remaining != 1 {
			t.Fatalf("after the verdict: %+v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the kept check was never answered")
	}
}

// TestDecideAllContended: many multi-checks at once over few actors, so
// that held actors get messages meanwhile and are sent their verdicts;
// every one is answered and allowed (the policy is generous), and under
// -race no multi-check's reused state is touched by two at once.
func TestDecideAllContended(t *testing.T) {
	l, _ := newTestLimiter(t, LimiterConfig{Actors: 4})
	p := algPolicy(t, storage.Policy{Name: "g", Limit: 1_000_000_000, WindowMs: 1000})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checks := make([]Check, 6)
			out := make([]storage.Decision, len(checks))
			for n := range 400 {
				for i := range checks {
					checks[i] = Check{Policy: p, Key: fmt.Sprint("k", (w*7+n+i*13)%24), Cost: 1}
				}
				ok, err := l.DecideAll(checks, out, time.Now().Add(10*time.Second))
				if err != nil || !ok {
					t.Errorf("multi-check %d of caller %d: %v %v", n, w, ok, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
