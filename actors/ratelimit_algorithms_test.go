package actors

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

func algPolicy(t testing.TB, p storage.Policy) *storage.Policy {
	t.Helper()
	if e := p.Validate(); e != nil {
		t.Fatal(e)
	}
	return &p
}

// hammer makes n checks on one key from many goroutines, in batches and
// alone, and returns the decisions.
func hammer(t *testing.T, l *Limiter, c Check, n int) []storage.Decision {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	out := make([]storage.Decision, n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(4)) - 4
				if i >= n {
					return
				}
				j := min(i+4, n)
				var err error
				if g%2 == 0 {
					checks := make([]Check, j-i)
					for k := range checks {
						checks[k] = c
					}
					err = l.DecideBatch(checks, out[i:j], deadline)
				} else {
					for k := i; k < j && err == nil; k++ {
						out[k], err = l.Decide(c, deadline)
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return out
}

func allowedOf(ds []storage.Decision) (n int) {
	for _, d := range ds {
		if d.Allowed {
			n++
		}
	}
	return n
}

// TestLimiterAlgorithmsExact: under concurrency, each algorithm lets
// through exactly what it allows, through the actors.
func TestLimiterAlgorithmsExact(t *testing.T) {
	clock := &fakeClock{}
	start := time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC)
	clock.ns.Store(start.UnixNano())
	l, _ := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 4})

	sliding := algPolicy(t, storage.Policy{Name: "s", Algorithm: storage.SlidingWindow, Limit: 50, WindowMs: 1000})
	if n := allowedOf(hammer(t, l, Check{Policy: sliding, Key: "hot", Cost: 1}, 200)); n != 50 {
		t.Fatalf("sliding: %d allowed at one instant, limit 50", n)
	}
	// Half-way through the next window, the previous one weighs half.
	clock.ns.Store(start.Add(1500 * time.Millisecond).UnixNano())
	if n := allowedOf(hammer(t, l, Check{Policy: sliding, Key: "hot", Cost: 1}, 200)); n != 25 {
		t.Fatalf("sliding: %d allowed half-way through the next window, want 25", n)
	}

	fixed := algPolicy(t, storage.Policy{Name: "f", Algorithm: storage.FixedWindow, Limit: 30, Window: storage.UnitDay, TimeZone: "America/New_York"})
	ds := hammer(t, l, Check{Policy: fixed, Key: "hot", Cost: 1}, 100)
	if n := allowedOf(ds); n != 30 {
		t.Fatalf("fixed: %d allowed in a day, limit 30", n)
	}
	// The reset is the time to New York's next midnight (the day of 8
	// March 2026 is 23 hours long there).
	ny, _ := time.LoadLocation("America/New_York")
	midnight := time.Date(2026, 3, 9, 0, 0, 0, 0, ny)
	for _, d := range ds {
		if d.ResetNs != int64(midnight.Sub(start.Add(1500*time.Millisecond))) {
			t.Fatalf("fixed: reset %v, want %v", time.Duration(d.ResetNs), midnight.Sub(start))
		}
	}
	clock.ns.Store(midnight.UnixNano() - 1)
	if d, _ := l.Decide(Check{Policy: fixed, Key: "hot", Cost: 1}, time.Now().Add(time.Second)); d.Allowed {
		t.Fatal("fixed: allowed before midnight")
	}
	clock.ns.Store(midnight.UnixNano())
	if n := allowedOf(hammer(t, l, Check{Policy: fixed, Key: "hot", Cost: 1}, 100)); n != 30 {
		t.Fatalf("fixed: %d allowed the next day, limit 30", n)
	}

	sem := algPolicy(t, storage.Policy{Name: "c", Algorithm: storage.Concurrency, Limit: 20})
	ds = hammer(t, l, Check{Policy: sem, Key: "hot", Cost: 1, LeaseMs: 1000}, 100)
	ids := map[uint64]bool{}
	for _, d := range ds {
		if d.Allowed {
			if d.LeaseID == 0 || ids[d.LeaseID] {
				t.Fatalf("lease id %d given twice or zero", d.LeaseID)
			}
			ids[d.LeaseID] = true
		}
	}
	if len(ids) != 20 {
		t.Fatalf("concurrency: %d leases, limit 20", len(ids))
	}
	// Releasing five gives room for exactly five more.
	deadline := time.Now().Add(time.Second)
	released := 0
	for id := range ids {
		if released == 5 {
			break
		}
		d, err := l.Decide(Check{Policy: sem, Key: "hot", Release: id}, deadline)
		if err != nil || !d.Released {
			t.Fatalf("release: %+v %v", d, err)
		}
		if d, _ = l.Decide(Check{Policy: sem, Key: "hot", Release: id}, deadline); d.Released {
			t.Fatal("a lease released twice")
		}
		released++
	}
	if n := allowedOf(hammer(t, l, Check{Policy: sem, Key: "hot", Cost: 1, LeaseMs: 1000}, 50)); n != 5 {
		t.Fatalf("concurrency: %d allowed after 5 releases", n)
	}
}

// TestLimiterLeasesExpire: a holder that never releases leaks nothing
// past its lease, and the sweep forgets a key whose leases expired.
func TestLimiterLeasesExpire(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	l, _ := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 2, Sweep: 5 * time.Millisecond})
	sem := algPolicy(t, storage.Policy{Name: "c", Algorithm: storage.Concurrency, Limit: 2})
	deadline := time.Now().Add(5 * time.Second)
	check := Check{Policy: sem, Key: "k", Cost: 1, LeaseMs: 100}
	first, _ := l.Decide(check, deadline)
	second, _ := l.Decide(check, deadline)
	if d, _ := l.Decide(check, deadline); !first.Allowed || !second.Allowed || d.Allowed || d.RetryAfterNs != int64(100*time.Millisecond) {
		t.Fatalf("%+v %+v %+v", first, second, d)
	}
	clock.advance(100 * time.Millisecond)
	if d, _ := l.Decide(Check{Policy: sem, Key: "k", Release: first.LeaseID}, deadline); d.Released || d.Remaining != 2 {
		t.Fatalf("release after expiry: %+v", d)
	}
	if d, _ := l.Decide(Check{Policy: sem, Key: "k", Release: 12345}, deadline); d.Released {
		t.Fatalf("release of an unknown lease: %+v", d)
	}
	if d, _ := l.Decide(check, deadline); !d.Allowed {
		t.Fatalf("after expiry: %+v", d)
	}
	clock.advance(time.Second)
	for l.buckets.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d buckets left after every lease expired", l.buckets.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLimiterPolicyReplaced: a policy given another algorithm or window
// starts its keys afresh, and the buckets are counted right.
func TestLimiterPolicyReplaced(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	l, _ := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 1})
	deadline := time.Now().Add(5 * time.Second)
	a := algPolicy(t, storage.Policy{Name: "p", Algorithm: storage.SlidingWindow, Limit: 2, WindowMs: 60_000})
	b := algPolicy(t, storage.Policy{Name: "p", Algorithm: storage.FixedWindow, Limit: 2, Window: storage.UnitHour})
	for i := range 10 {
		if _, err := l.Decide(Check{Policy: a, Key: fmt.Sprint(i), Cost: 2}, deadline); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.buckets.Load(); n != 10 {
		t.Fatalf("%d buckets, want 10", n)
	}
	if d, _ := l.Decide(Check{Policy: b, Key: "0", Cost: 2}, deadline); !d.Allowed {
		t.Fatalf("the replaced policy kept the old state: %+v", d)
	}
	if n := l.buckets.Load(); n != 1 {
		t.Fatalf("%d buckets after the policy changed, want 1", n)
	}
}

// benchAlgorithms are the policies of the per-algorithm benchmarks: high
// limits, so every decision does the work of an allowed one.
func benchAlgorithms(b *testing.B) map[string]*storage.Policy {
	return map[string]*storage.Policy{
		"gcra":           policy(b, 1_000_000, 0, time.Second),
		"sliding_window": algPolicy(b, storage.Policy{Name: "s", Algorithm: storage.SlidingWindow, Limit: 1_000_000, WindowMs: 1000}),
		"fixed_window":   algPolicy(b, storage.Policy{Name: "f", Algorithm: storage.FixedWindow, Limit: 1_000_000_000, Window: storage.UnitMinute, TimeZone: "Europe/Paris"}),
		"concurrency":    algPolicy(b, storage.Policy{Name: "c", Algorithm: storage.Concurrency, Limit: 1000}),
	}
}

// BenchmarkRateLimitMemory reports the heap each key costs in the bucket
// actors, per algorithm (keys "client-N", 10 to 13 bytes; a concurrency
// key holding one lease).
func BenchmarkRateLimitMemory(b *testing.B) {
	const n = 200_000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprint("client-", i)
	}
	algs := benchAlgorithms(b)
	for _, alg := range []string{"gcra", "sliding_window", "fixed_window", "concurrency"} {
		b.Run(alg, func(b *testing.B) {
			for b.Loop() {
				clock := &fakeClock{}
				clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
				l, _ := newTestLimiter(b, LimiterConfig{Now: clock.now, Actors: 16, Sweep: time.Hour})
				checks := make([]Check, 1000)
				out := make([]storage.Decision, len(checks))
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i := 0; i < n; i += len(checks) {
					for j := range checks {
						checks[j] = Check{Policy: algs[alg], Key: names[i+j], Cost: 1, LeaseMs: 60_000}
					}
					if err := l.DecideBatch(checks, out, time.Now().Add(time.Minute)); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				if got := l.buckets.Load(); got != n {
					b.Fatalf("%d buckets", got)
				}
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/key")
				l.Close()
			}
		})
	}
}

// A release names a lease: on another algorithm it spends nothing.
func TestLimiterReleaseOnlyLeases(t *testing.T) {
	l, _ := newTestLimiter(t, LimiterConfig{Actors: 1})
	p := policy(t, 1, 0, time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for range 3 {
		if d, err := l.Decide(Check{Policy: p, Key: "k", Cost: 1, Release: 99}, deadline); err != nil || !d.Allowed || d.Released {
			t.Fatalf("%+v %v", d, err)
		}
	}
	if d, _ := l.Decide(Check{Policy: p, Key: "k", Cost: 1}, deadline); !d.Allowed {
		t.Fatal("a release spent the bucket")
	}
}
