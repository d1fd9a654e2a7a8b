package actors

import (
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/time/rate"

	"github.com/troupe-db/troupe/storage"
)

// fakeClock is a settable monotonic clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestLimiter(t testing.TB, cfg LimiterConfig) (*Limiter, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	l := NewLimiter(sys, set, cfg)
	t.Cleanup(func() {
		l.Close()
		sys.Shutdown()
	})
	return l, set
}

func policy(t testing.TB, limit, burst uint32, window time.Duration) *storage.Policy {
	t.Helper()
	p := &storage.Policy{Name: "p", Limit: limit, Burst: burst, WindowMs: window.Milliseconds()}
	if e := p.Validate(); e != nil {
		t.Fatal(e)
	}
	return p
}

// TestLimiterExactUnderConcurrency: many goroutines on one key never get
// more than the policy allows, with the clock frozen and then moved.
func TestLimiterExactUnderConcurrency(t *testing.T) {
	clock := &fakeClock{}
	l, _ := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 4})
	p := policy(t, 100, 20, time.Second)
	deadline := time.Now().Add(10 * time.Second)
	run := func() int64 {
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				checks := make([]Check, 8)
				out := make([]storage.Decision, 8)
				for i := range checks {
					checks[i] = Check{Policy: p, Key: "hot", Cost: 1}
				}
				for range 20 {
					var err error
					if g%2 == 0 {
						err = l.DecideBatch(checks, out, deadline)
					} else {
						out[0], err = l.Decide(checks[0], deadline)
						out = out[:1]
					}
					if err != nil {
						t.Error(err)
						return
					}
					for _, d := range out {
						if d.Allowed {
							allowed.Add(1)
						}
					}
					out = out[:cap(out)]
				}
			}()
		}
		wg.Wait()
		return allowed.Load()
	}
	if n := run(); n != 20 {
		t.Fatalf("%d allowed at one instant, burst is 20", n)
	}
	clock.advance(100 * time.Millisecond) // 10 emissions (one per 10 ms)
	if n := run(); n != 10 {
		t.Fatalf("%d allowed after 100 ms, want 10", n)
	}
	clock.advance(time.Hour) // full again: the burst, no more
	if n := run(); n != 20 {
		t.Fatalf("%d allowed after an hour, want the burst of 20", n)
	}
	// Other keys are untouched by the hot one.
	d, err := l.Decide(Check{Policy: p, Key: "cold", Cost: 1}, deadline)
	if err != nil || !d.Allowed || d.Remaining != 19 {
		t.Fatalf("another key: %+v %v", d, err)
	}
}

// TestLimiterEvictsIdleBuckets: full buckets are dropped by the sweep,
// and the number held never goes far beyond the capacity.
func TestLimiterEvictsIdleBuckets(t *testing.T) {
	clock := &fakeClock{}
	l, set := newTestLimiter(t, LimiterConfig{Now: clock.now, Actors: 4, Capacity: 1000, Sweep: 5 * time.Millisecond})
	p := policy(t, 10, 0, time.Second)
	deadline := time.Now().Add(10 * time.Second)
	checks := make([]Check, 500)
	out := make([]storage.Decision, len(checks))
	for round := range 40 {
		for i := range checks {
			checks[i] = Check{Policy: p, Key: fmt.Sprint("k", round, "-", i), Cost: 1}
		}
		if err := l.DecideBatch(checks, out, deadline); err != nil {
			t.Fatal(err)
		}
		for i, d := range out {
			if !d.Allowed {
				t.Fatalf("a new key was denied: %d %+v", i, d)
			}
		}
		if n := l.buckets.Load(); n > 1000+4 {
			t.Fatalf("round %d: %d buckets held, capacity 1000", round, n)
		}
	}
	// Once every bucket is full again, the sweep drops them all.
	clock.advance(time.Second)
	deadlineWait := time.Now().Add(5 * time.Second)
	for l.buckets.Load() != 0 {
		if time.Now().After(deadlineWait) {
			t.Fatalf("%d buckets left after they all refilled", l.buckets.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The sweeps published the decisions.
	var sb bytesWriter
	set.WritePrometheus(&sb)
	if want := `troupe_ratelimit_decisions_total{policy="p",decision="allowed"} 20000`; !contains(sb.String(), want) {
		t.Fatalf("metrics lack %q:\n%s", want, sb.String())
	}
}

type bytesWriter struct{ b []byte }

func (w *bytesWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *bytesWriter) String() string              { return string(w.b) }

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestNthSmallest(t *testing.T) {
	for n := range 50 {
		v := make([]int64, 50)
		for i := range v {
			v[i] = int64((i * 37) % 50)
		}
		if got := nthSmallest(v, n); got != int64(n) {
			t.Fatalf("nth %d: %d", n, got)
		}
	}
	if got := nthSmallest([]int64{5, 5, 5, 1}, 2); got != 5 {
		t.Fatal(got)
	}
}

// BenchmarkRateLimitDecisions compares decisions through the bucket
// actors (batches of 256 per call, as a busy front end or a batched
// check API would send them), for each algorithm, with
// golang.org/x/time/rate limiters in a sharded map on the same 10k keys:
// the floor of an in-process limiter.
func BenchmarkRateLimitDecisions(b *testing.B) {
	const keys = 10_000
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprint("client-", i)
	}
	algs := benchAlgorithms(b)
	for _, alg := range []string{"gcra", "sliding_window", "fixed_window", "concurrency"} {
		name := "actors" // GCRA's row keeps its name
		if alg != "gcra" {
			name += "-" + alg
		}
		b.Run(name, func(b *testing.B) {
			l, _ := newTestLimiter(b, LimiterConfig{})
			p := algs[alg]
			b.ReportAllocs()
			cpu := startCPU()
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				const batch = 256
				checks := make([]Check, batch)
				out := make([]storage.Decision, batch)
				base := int(next.Add(7919))
				deadline := time.Now().Add(time.Hour)
				// Concurrency: half the checks of a batch take leases,
				// the other half give back those of the batch before.
				var held []Check
				for i := 0; pb.Next(); {
					// One b.N step is one decision: fill a batch, then send it.
					if p.Algorithm == storage.Concurrency && i < len(held) {
						checks[i] = held[i]
					} else {
						checks[i] = Check{Policy: p, Key: names[(base+i*31)%keys], Cost: 1, LeaseMs: 60_000}
					}
					if i++; i == batch {
						if err := l.DecideBatch(checks, out, deadline); err != nil {
							b.Error(err)
							return
						}
						if p.Algorithm == storage.Concurrency {
							held = held[:0]
							for j := range checks {
								if out[j].LeaseID != 0 && len(held) < batch/2 {
									held = append(held, Check{Policy: p, Key: checks[j].Key, Release: out[j].LeaseID})
								}
							}
						}
						base += batch
						i = 0
					}
				}
			})
			cpu.report(b, b.N)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
	b.Run("x-time-rate", func(b *testing.B) {
		const shards = 64
		type shard struct {
			mu sync.Mutex
			m  map[string]*rate.Limiter
		}
		var m [shards]shard
		for i := range m {
			m[i].m = map[string]*rate.Limiter{}
		}
		seed := maphash.MakeSeed()
		b.ReportAllocs()
		cpu := startCPU()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			base := int(next.Add(7919))
			for i := 0; pb.Next(); i++ {
				k := names[(base+i*31)%keys]
				s := &m[maphash.String(seed, k)%shards]
				s.mu.Lock()
				lim := s.m[k]
				if lim == nil {
					lim = rate.NewLimiter(rate.Limit(1_000_000), 1_000_000)
					s.m[k] = lim
				}
				s.mu.Unlock()
				lim.Allow()
			}
		})
		cpu.report(b, b.N)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
}

// TestDefaultBucketActors: as many bucket actors as Go processors, from 4
// to 16.
func TestDefaultBucketActors(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for procs, want := range map[int]int{1: 4, 4: 4, 6: 6, 16: 16, 64: 16} {
		runtime.GOMAXPROCS(procs)
		sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
		l := NewLimiter(sys, metrics.NewSet(), LimiterConfig{})
		if len(l.pids) != want {
			t.Errorf("GOMAXPROCS %d: %d bucket actors, want %d", procs, len(l.pids), want)
		}
		l.Close()
		sys.Shutdown()
	}
}
