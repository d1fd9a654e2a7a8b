package actors

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-db/troupe/storage"
)

// Rate-limit buckets are node-local: decisions are hot and ephemeral and
// never go through Raft. Keys are spread over a fixed set of bucket
// actors by hash; each actor alone owns the state of its keys (whatever
// the policy's algorithm: storage decides, the actor keeps the state),
// so the decisions on one key are serialised (exact under any
// concurrency) while different keys are decided in parallel. A message
// carries a batch of decisions, so the cost of a message is shared by
// many. The bucket actors run on the inline dispatcher: the goroutine
// that sends to an idle actor (an HTTP handler, a gRPC call) runs the
// actor's turn itself, the mailbox still admitting one goroutine at a
// time, so a decision costs no goroutine switch and no timer unless the
// actor is busy; a message sent to a busy actor waits in its mailbox for
// the goroutine running it. Nothing a bucket actor does blocks.
//
// An actor per key, as the architecture first drew it, would cost a spawn
// (2–3.5 µs) and ≈680 B per key plus a message per decision; grouping
// keys into actors keeps the per-decision cost near the GCRA arithmetic.
//
// Idle buckets go: a bucket is full once it counts nothing any more (a
// GCRA TAT not ahead of the clock, a window count whose windows have
// passed, a semaphore whose leases have all expired), and forgetting it
// changes no decision, so a sweep drops those. If an actor still holds
// more than its share of the capacity, it drops the buckets closest to
// full first: such a key may then get up to one extra burst (GCRA), one
// extra limit in its current window (windows), or up to limit more
// leases than the limit while the forgotten ones would have been held
// (concurrency) — documented bounds; every key counts once against the
// capacity, and a semaphore holds at most limit leases.

// Check is one decision to make: may key spend cost under policy? For a
// concurrency policy, a check takes a lease of LeaseMs (its id is in the
// decision), or, when Release is not 0, gives the lease of that id back.
type Check struct {
	Policy  *storage.Policy
	Key     string
	Cost    uint32
	LeaseMs int64  // concurrency: how long the lease lasts unless released
	Release uint64 // concurrency: the lease to give back instead of a check
	// Peek answers the key's state without spending (Cost is ignored);
	// Reset forgets the key (its decision's Released says whether it
	// held anything).
	Peek, Reset bool
}

// LimiterConfig configures a Limiter.
type LimiterConfig struct {
	Actors   int           // bucket actors; default defaultBucketActors()
	Capacity int           // buckets held at most, over all actors; default 1M
	Sweep    time.Duration // how often full buckets are dropped; default 1 s
	// Now is the clock: nanoseconds since the Unix epoch, never going
	// back (calendar windows read it as wall time). Default: the wall
	// clock at start plus the monotonic time since, so a step of the
	// host's clock moves no decision.
	Now func() int64
}

// Limiter makes rate-limit decisions through the bucket actors.
type Limiter struct {
	sys     *System
	pids    []*actor.PID
	seed    maphash.Seed
	now     func() int64
	perCap  int
	buckets atomic.Int64

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	// mu guards counters, the directory of each policy's metrics, which
	// the bucket actors fill in as their sweeps meet policies. It is not
	// actor state: a shared directory of metric handles; the buckets and
	// tallies belong to their actors and are never under it.
	mu       sync.Mutex
	counters map[string]*policyCounters
	set      *metrics.Set

	// calls are the reusable parts of multi-checks (ratelimit_all.go).
	calls sync.Pool

	// zones caches time zones by name (*time.Location is immutable and
	// safe to share): loading one reads the zone database.
	zones sync.Map
}

type policyCounters struct {
	allowed, denied, shadowDenied, rolledBack, released, reset *metrics.Counter
}

// ErrLimiterTimeout is returned when the bucket actors did not answer in
// time (the node is shutting down, or overloaded).
var ErrLimiterTimeout = errors.New("rate limiter did not answer in time")

// defaultBucketActors is as many bucket actors as Go processors, from 4
// to 16. A multi-check of k keys takes a part to each actor its keys
// hash to and holds all of them until it commits, so fewer actors mean
// fewer parts (10 keys: ≈ 3.8 over 4 actors, ≈ 7.6 over 16) and fewer
// held; more actors let more callers decide at once, which no more
// than the processors can. Measured on 2 cores (GOMAXPROCS 4, as serve
// runs it): ratelimit-batch 4 actors 38–42 µs of node CPU a
// multi-check against 42–46 with 16, single checks level
// (docs/DESIGN.md, Rate limits).
func defaultBucketActors() int { return min(max(runtime.GOMAXPROCS(0), 4), 16) }

// NewLimiter spawns the bucket actors.
func NewLimiter(sys *System, set *metrics.Set, cfg LimiterConfig) *Limiter {
	if cfg.Actors <= 0 {
		cfg.Actors = defaultBucketActors()
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1 << 20
	}
	if cfg.Sweep <= 0 {
		cfg.Sweep = time.Second
	}
	if cfg.Now == nil {
		start := time.Now()
		base := start.UnixNano()
		cfg.Now = func() int64 { return base + int64(time.Since(start)) }
	}
	l := &Limiter{
		sys: sys, seed: maphash.MakeSeed(), now: cfg.Now,
		perCap: max(cfg.Capacity/cfg.Actors, 1),
		stop:   make(chan struct{}), counters: map[string]*policyCounters{}, set: set,
	}
	l.calls.New = func() any { return &allCall{ready: make(chan bool, cfg.Actors)} }
	for i := 0; i < cfg.Actors; i++ {
		box := &bucketBox{l: l, index: i, byPolicy: map[string]*policyKeys{}, tally: map[string]*tally{}, leaseKey: rand.Uint64()}
		// On the inline dispatcher: a sender that finds the actor idle
		// runs its turn itself, so a decision costs no goroutine switch
		// (DESIGN.md, Rate limits: bucket actors).
		l.pids = append(l.pids, sys.spawnInline(func() actor.Actor { return &bucketActor{box: box} }))
	}
	sys.actorCount.Add(int64(cfg.Actors))
	set.NewGauge(`troupe_ratelimit_buckets`, func() float64 { return float64(l.buckets.Load()) })
	l.wg.Add(1)
	go l.sweeper(cfg.Sweep)
	return l
}

// Close stops the sweeper and the bucket actors.
func (l *Limiter) Close() {
	l.stopOnce.Do(func() {
		close(l.stop)
		l.wg.Wait()
		l.sys.stop(l.pids)
		l.sys.actorCount.Add(-int64(len(l.pids)))
	})
}

func (l *Limiter) sweeper(every time.Duration) {
	defer l.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			for _, pid := range l.pids {
				l.sys.mailboxDepth.Add(1)
				l.sys.root.Send(pid, sweepMsg{})
			}
		}
	}
}

func (l *Limiter) actorOf(key string) int {
	return int(maphash.String(l.seed, key) % uint64(len(l.pids)))
}

// bucketMsg asks an actor for the decisions at idx of a batch.
type bucketMsg struct {
	checks []Check
	out    []storage.Decision
	idx    []int32 // nil: all of checks
	g      *batchWait
}

type sweepMsg struct{}

// batchWait collects the answers of the actors a batch went to: the
// last part to finish puts a token in done (cap 1), so that a batchWait
// whose token was taken can serve another batch.
type batchWait struct {
	left atomic.Int32
	done chan struct{}
}

func (w *batchWait) partDone() {
	if w.left.Add(-1) == 0 {
		w.done <- struct{}{}
	}
}

var waitPool = sync.Pool{New: func() any { return &batchWait{done: make(chan struct{}, 1)} }}

// Decide makes one decision.
func (l *Limiter) Decide(c Check, deadline time.Time) (storage.Decision, error) {
	var out [1]storage.Decision
	checks := [1]Check{c}
	err := l.DecideBatch(checks[:], out[:], deadline)
	return out[0], err
}

// DecideBatch makes len(checks) decisions into out: one message per
// bucket actor involved, all answered before it returns.
func (l *Limiter) DecideBatch(checks []Check, out []storage.Decision, deadline time.Time) error {
	if len(out) < len(checks) {
		return fmt.Errorf("DecideBatch: %d checks, room for %d decisions", len(checks), len(out))
	}
	if len(checks) == 0 {
		return nil
	}
	w := waitPool.Get().(*batchWait)
	if len(checks) == 1 {
		w.left.Store(1)
		l.send(l.actorOf(checks[0].Key), &bucketMsg{checks: checks, out: out, g: w})
	} else {
		idx, parts := l.partition(checks)
		w.left.Store(int32(len(parts)))
		for _, p := range parts {
			l.send(p.actor, &bucketMsg{checks: checks, out: out, idx: idx[p.lo:p.hi], g: w})
		}
	}
	t := lazyTimer{deadline: deadline}
	defer t.stop()
	select {
	case <-w.done:
	default:
		select {
		case <-w.done:
		case <-t.C():
			// Late answers may still come: w is not reused.
			return ErrLimiterTimeout
		}
	}
	waitPool.Put(w)
	return nil
}

// lazyTimer is a deadline timer started only when a wait must block:
// bucket actors run on the goroutine that sends to them while they are
// idle (see NewLimiter), so most answers are there when the sends
// return, and a timer per decision would cost more than the decision.
type lazyTimer struct {
	deadline time.Time
	t        *time.Timer
}

// C is the timer's channel, the timer started on the first call.
func (lt *lazyTimer) C() <-chan time.Time {
	if lt.t == nil {
		lt.t = time.NewTimer(time.Until(lt.deadline))
	}
	return lt.t.C
}

func (lt *lazyTimer) stop() {
	if lt.t != nil {
		lt.t.Stop()
	}
}

// part is the checks of one bucket actor: idx[lo:hi] of a partition.
type part struct{ actor, lo, hi int }

// partition groups the indexes of checks by the actor of their keys, the
// actors in ascending order (the order DecideAll takes them in), each
// group's checks in their order in checks.
func (l *Limiter) partition(checks []Check) ([]int32, []part) {
	return l.partitionInto(checks, nil, nil)
}

// partitionInto is partition, appending to idx and parts (empty slices
// whose arrays it may reuse).
func (l *Limiter) partitionInto(checks []Check, idx []int32, parts []part) ([]int32, []part) {
	var actBuf [maxInline]int32
	act := actBuf[:0]
	if len(checks) > maxInline {
		act = make([]int32, 0, len(checks))
	}
	var countBuf [maxInline + 1]int32
	var count []int32
	if len(l.pids) > maxInline {
		count = make([]int32, len(l.pids)+1)
	} else {
		count = countBuf[:len(l.pids)+1]
	}
	for i := range checks {
		a := int32(l.actorOf(checks[i].Key))
		act = append(act, a)
		count[a+1]++
	}
	n := 0
	for a := range l.pids {
		if count[a+1] > 0 {
			n++
		}
		count[a+1] += count[a]
	}
	if cap(parts) < n {
		parts = make([]part, 0, n)
	}
	for a := range l.pids {
		if lo, hi := int(count[a]), int(count[a+1]); hi > lo {
			parts = append(parts, part{actor: a, lo: lo, hi: hi})
		}
	}
	if cap(idx) < len(checks) {
		idx = make([]int32, len(checks))
	}
	idx = idx[:len(checks)]
	for i, a := range act {
		idx[count[a]] = int32(i)
		count[a]++
	}
	return idx, parts
}

// maxInline bounds the checks and actors partition counts on its stack.
const maxInline = 128

func (l *Limiter) send(a int, m any) {
	l.sys.mailboxDepth.Add(1)
	l.sys.root.Send(l.pids[a], m)
}

// countersFor returns the metrics of a policy, created on first use.
func (l *Limiter) countersFor(policy string) *policyCounters {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counters[policy]
	if c == nil {
		c = &policyCounters{
			allowed:      l.set.GetOrCreateCounter(`troupe_ratelimit_decisions_total{policy="` + policy + `",decision="allowed"}`),
			denied:       l.set.GetOrCreateCounter(`troupe_ratelimit_decisions_total{policy="` + policy + `",decision="denied"}`),
			shadowDenied: l.set.GetOrCreateCounter(`troupe_ratelimit_decisions_total{policy="` + policy + `",decision="shadow_denied"}`),
			rolledBack:   l.set.GetOrCreateCounter(`troupe_ratelimit_decisions_total{policy="` + policy + `",decision="rolled_back"}`),
			released:     l.set.GetOrCreateCounter(`troupe_ratelimit_decisions_total{policy="` + policy + `",decision="released"}`),
			reset:        l.set.GetOrCreateCounter(`troupe_ratelimit_decisions_total{policy="` + policy + `",decision="reset"}`),
		}
		l.counters[policy] = c
	}
	return c
}

// bucketActor owns the buckets of its keys (in box, which survives a
// restart after a panic).
type bucketActor struct{ box *bucketBox }

type bucketBox struct {
	l     *Limiter
	index int
	// byPolicy maps policy name → its keys' state.
	byPolicy map[string]*policyKeys
	n        int
	// Lease ids are a bijection of a counter, keyed at random per actor:
	// never the same twice in one actor (which owns every lease of its
	// keys), and not guessable from another.
	leaseSeq, leaseKey uint64
	// tally counts decisions per policy between two sweeps, which add
	// them to the metrics (a counter update per decision would cost more
	// than the decision).
	tally map[string]*tally
	// held is the multi-check whose verdict the actor waits for, and
	// stash the messages that came meanwhile (ratelimit_all.go).
	held  *heldPart
	stash []any
	// holding is what held points at; spare the undo records a part
	// gave back, for the next one (ratelimit_all.go).
	holding heldPart
	spare   []undoRec
	// last is the policy the last decision was under: a batch's checks
	// mostly share theirs, and two map lookups by name per check were
	// a large part of a decision. Cleared when a sweep may drop entries.
	last struct {
		name  string
		keys  *policyKeys
		tally *tally
	}
}

// rolledBack counts the allowed checks of multi-checks that were denied
// as a whole (their spending undone); released the leases given back;
// reset the keys reset.
type tally struct{ allowed, denied, shadowDenied, rolledBack, released, reset uint64 }

func (a *bucketActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *bucketMsg, *allMsg, sweepMsg:
		a.box.l.sys.mailboxDepth.Add(-1)
		if a.box.held != nil || len(a.box.stash) > 0 {
			// Held by a multi-check (ratelimit_all.go): after its
			// verdict, and after what came before.
			a.box.stash = append(a.box.stash, m)
			a.box.settle()
			return
		}
		a.box.handle(m)
	case *verdictMsg:
		a.box.l.sys.mailboxDepth.Add(-1)
		a.box.settle()
	}
}

func (b *bucketBox) handle(m any) {
	switch m := m.(type) {
	case *bucketMsg:
		b.decide(m)
	case *allMsg:
		b.decideAll(m)
	case sweepMsg:
		b.sweep()
	}
}

func (b *bucketBox) decide(m *bucketMsg) {
	defer func() {
		if r := recover(); r != nil {
			b.l.sys.panics.Inc()
			b.l.sys.log.Error("bucket actor recovered from a panic", slog.Int("actor", b.index), slog.String("panic", fmt.Sprint(r)))
			m.g.partDone()
		}
	}()
	now := b.l.now()
	if m.idx == nil {
		for i := range m.checks {
			m.out[i] = b.one(&m.checks[i], now, nil)
		}
	} else {
		for _, i := range m.idx {
			m.out[i] = b.one(&m.checks[i], now, nil)
		}
	}
	m.g.partDone()
}
