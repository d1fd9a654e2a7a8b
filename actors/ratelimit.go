package actors

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
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
// many.
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
}

// LimiterConfig configures a Limiter.
type LimiterConfig struct {
	Actors   int           // bucket actors; default 16
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

	mu       sync.Mutex // guards counters
	counters map[string]*policyCounters
	set      *metrics.Set

	// zones caches time zones by name (*time.Location is immutable and
	// safe to share): loading one reads the zone database.
	zones sync.Map
}

type policyCounters struct {
	allowed, denied, shadowDenied *metrics.Counter
}

// ErrLimiterTimeout is returned when the bucket actors did not answer in
// time (the node is shutting down, or overloaded).
var ErrLimiterTimeout = errors.New("rate limiter did not answer in time")

// NewLimiter spawns the bucket actors.
func NewLimiter(sys *System, set *metrics.Set, cfg LimiterConfig) *Limiter {
	if cfg.Actors <= 0 {
		cfg.Actors = 16
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
	for i := 0; i < cfg.Actors; i++ {
		box := &bucketBox{l: l, index: i, byPolicy: map[string]*policyKeys{}, tally: map[string]*tally{}, leaseKey: rand.Uint64()}
		l.pids = append(l.pids, sys.spawn(func() actor.Actor { return &bucketActor{box: box} }))
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

// batchWait collects the answers of the actors a batch went to.
type batchWait struct {
	left atomic.Int32
	done chan struct{}
}

func (w *batchWait) partDone() {
	if w.left.Add(-1) == 0 {
		close(w.done)
	}
}

var waitPool = sync.Pool{New: func() any { return &batchWait{} }}

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
	w.done = make(chan struct{})
	if len(checks) == 1 {
		w.left.Store(1)
		l.send(l.actorOf(checks[0].Key), &bucketMsg{checks: checks, out: out, g: w})
	} else {
		parts := make([][]int32, len(l.pids))
		for i := range checks {
			a := l.actorOf(checks[i].Key)
			parts[a] = append(parts[a], int32(i))
		}
		n := int32(0)
		for _, p := range parts {
			if len(p) > 0 {
				n++
			}
		}
		w.left.Store(n)
		for a, p := range parts {
			if len(p) > 0 {
				l.send(a, &bucketMsg{checks: checks, out: out, idx: p, g: w})
			}
		}
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.done:
		waitPool.Put(w)
		return nil
	case <-t.C:
		// Late answers may still come: w is not reused.
		return ErrLimiterTimeout
	}
}

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
}

type tally struct{ allowed, denied, shadowDenied uint64 }

func (a *bucketActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *bucketMsg:
		a.box.l.sys.mailboxDepth.Add(-1)
		a.box.decide(m)
	case sweepMsg:
		a.box.l.sys.mailboxDepth.Add(-1)
		a.box.sweep()
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
			m.out[i] = b.one(&m.checks[i], now)
		}
	} else {
		for _, i := range m.idx {
			m.out[i] = b.one(&m.checks[i], now)
		}
	}
	m.g.partDone()
}

func (b *bucketBox) one(c *Check, now int64) storage.Decision {
	p := c.Policy
	pk := b.byPolicy[p.Name]
	if pk == nil {
		pk = &policyKeys{}
		b.byPolicy[p.Name] = pk
	}
	if c.Release != 0 && p.Algorithm != storage.Concurrency {
		// Only leases can be given back; nothing is spent.
		return storage.Decision{Limit: p.Limit, Allowed: true}
	}
	var d storage.Decision
	switch p.Algorithm {
	case storage.GCRA:
		if pk.gcra == nil {
			pk.gcra = map[string]int64{}
		}
		tat, had := pk.gcra[c.Key]
		bk := storage.Bucket{TAT: tat}
		d = p.Decide(&bk, c.Cost, now)
		if bk.TAT != tat {
			pk.gcra[c.Key] = bk.TAT
			if !had {
				b.added(now)
			}
		}
	case storage.SlidingWindow:
		b.follow(pk, p)
		st, had := pk.sliding[c.Key]
		before := st
		d = p.DecideSliding(&st, c.Cost, now)
		if st != before {
			pk.sliding[c.Key] = st
			if !had {
				b.added(now)
			}
		}
	case storage.FixedWindow:
		b.follow(pk, p)
		if !pk.win.Contains(now) {
			pk.win = storage.CalendarWindowAt(p.Window, pk.loc, now)
		}
		st, had := pk.fixed[c.Key]
		before := st
		d = p.DecideFixed(&st, pk.win, c.Cost, now)
		if st != before {
			pk.fixed[c.Key] = st
			if !had {
				b.added(now)
			}
		}
	case storage.Concurrency:
		b.follow(pk, p)
		sem := pk.sems[c.Key]
		if c.Release != 0 {
			if sem == nil {
				return p.ReleaseLease(&storage.Semaphore{}, c.Release, now)
			}
			// A semaphore left empty stays until the sweep, so a key
			// taking and giving back leases allocates nothing.
			return p.ReleaseLease(sem, c.Release, now) // a release is not a decision: no tally
		}
		had := sem != nil
		if !had {
			sem = &storage.Semaphore{}
		}
		leaseNs := min(c.LeaseMs, storage.MaxLeaseMs) * int64(time.Millisecond)
		d = p.Acquire(sem, c.Cost, leaseNs, b.nextLeaseID(), now)
		if len(sem.Leases) > 0 && !had {
			pk.sems[c.Key] = sem
			b.added(now)
		}
	default:
		// Policies are validated before they get here; an unknown
		// algorithm can never pass.
		d = storage.Decision{Limit: p.Limit, Denied: true, RetryAfterNs: -1}
	}
	t := b.tally[p.Name]
	if t == nil {
		t = &tally{}
		b.tally[p.Name] = t
	}
	switch {
	case !d.Denied:
		t.allowed++
	case d.Allowed:
		t.shadowDenied++
	default:
		t.denied++
	}
	return d
}

// policyKeys holds the state of one policy's keys in one actor: GCRA
// buckets (a TAT, 8 bytes a key besides the map entry and the key),
// sliding and fixed window counts (16 bytes), semaphores (a pointer to
// the leases held, 24 bytes a lease).
type policyKeys struct {
	gcra    map[string]int64
	sliding map[string]storage.SlidingCount
	fixed   map[string]storage.WindowCount
	sems    map[string]*storage.Semaphore

	// The parameters the window and lease state was kept under: a policy
	// replaced with another algorithm, window or time zone starts those
	// keys afresh (a GCRA policy keeps its TATs, as it always has).
	alg      storage.Algorithm
	windowMs int64
	unit     storage.CalendarUnit
	tz       string
	loc      *time.Location         // fixed windows: the policy's zone
	win      storage.CalendarWindow // fixed windows: the current one, shared by every key
}

// follow makes pk's window and lease state the state of policy p.
func (b *bucketBox) follow(pk *policyKeys, p *storage.Policy) {
	if pk.loc != nil || pk.sliding != nil || pk.sems != nil {
		if pk.alg == p.Algorithm && pk.windowMs == p.WindowMs && pk.unit == p.Window && pk.tz == p.TimeZone {
			return
		}
	}
	for range len(pk.sliding) + len(pk.fixed) + len(pk.sems) {
		b.removed()
	}
	pk.sliding, pk.fixed, pk.sems, pk.loc, pk.win = nil, nil, nil, nil, storage.CalendarWindow{}
	pk.alg, pk.windowMs, pk.unit, pk.tz = p.Algorithm, p.WindowMs, p.Window, p.TimeZone
	switch p.Algorithm {
	case storage.SlidingWindow:
		pk.sliding = map[string]storage.SlidingCount{}
	case storage.FixedWindow:
		pk.fixed = map[string]storage.WindowCount{}
		pk.loc = b.l.zone(p)
	case storage.Concurrency:
		pk.sems = map[string]*storage.Semaphore{}
	}
}

func (b *bucketBox) added(now int64) {
	b.n++
	b.l.buckets.Add(1)
	if b.n > b.l.perCap {
		b.shed(now)
	}
}

func (b *bucketBox) removed() {
	b.n--
	b.l.buckets.Add(-1)
}

// zone returns the time zone of a fixed_window policy.
func (l *Limiter) zone(p *storage.Policy) *time.Location {
	if loc, ok := l.zones.Load(p.TimeZone); ok {
		return loc.(*time.Location)
	}
	loc, err := p.Location()
	if err != nil {
		return time.UTC // not reached: the policy was validated
	}
	l.zones.Store(p.TimeZone, loc)
	return loc
}

// nextLeaseID returns a lease id never returned by this actor before
// (and never 0).
func (b *bucketBox) nextLeaseID() uint64 {
	for {
		b.leaseSeq++
		// The finaliser of splitmix64 is a bijection of 64-bit words.
		z := b.leaseSeq + b.leaseKey
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		if z ^= z >> 31; z != 0 {
			return z
		}
	}
}

// sweep drops full buckets and publishes the tallies.
func (b *bucketBox) sweep() {
	now := b.l.now()
	b.dropWhere(func(fullAt int64) bool { return fullAt <= now })
	for name, t := range b.tally {
		c := b.l.countersFor(name)
		c.allowed.Add(int(t.allowed))
		c.denied.Add(int(t.denied))
		c.shadowDenied.Add(int(t.shadowDenied))
		delete(b.tally, name)
	}
}

// shed makes room when the actor holds more than its share: full buckets
// first, then the tenth closest to full.
func (b *bucketBox) shed(now int64) {
	b.dropWhere(func(fullAt int64) bool { return fullAt <= now })
	if b.n <= b.l.perCap {
		return
	}
	// The tenth of buckets that are full soonest: find the cut by
	// sampling every bucket once (a histogram over the range is overkill
	// for a path taken once per tenth of the capacity).
	at := make([]int64, 0, b.n)
	b.dropWhere(func(fullAt int64) bool {
		at = append(at, fullAt)
		return false
	})
	cut := nthSmallest(at, len(at)/10)
	b.dropWhere(func(fullAt int64) bool { return fullAt <= cut })
}

// dropWhere forgets the buckets for which drop, given the instant they
// are full at, says so.
func (b *bucketBox) dropWhere(drop func(fullAt int64) bool) {
	for name, pk := range b.byPolicy {
		for k, tat := range pk.gcra {
			if drop(tat) {
				delete(pk.gcra, k)
				b.removed()
			}
		}
		w := pk.windowMs * int64(time.Millisecond)
		for k, st := range pk.sliding {
			if drop(st.FullAt(w)) {
				delete(pk.sliding, k)
				b.removed()
			}
		}
		for k, st := range pk.fixed {
			if drop(st.FullAt()) {
				delete(pk.fixed, k)
				b.removed()
			}
		}
		for k, sem := range pk.sems {
			if drop(sem.FullAt()) {
				delete(pk.sems, k)
				b.removed()
			}
		}
		if len(pk.gcra)+len(pk.sliding)+len(pk.fixed)+len(pk.sems) == 0 {
			delete(b.byPolicy, name)
		}
	}
}

// nthSmallest returns the n-th smallest value (0-based) of v, reordering
// v (quickselect).
func nthSmallest(v []int64, n int) int64 {
	lo, hi := 0, len(v)-1
	for lo < hi {
		pivot := v[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] < pivot {
				i++
			}
			for v[j] > pivot {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case n <= j:
			hi = j
		case n >= i:
			lo = i
		default:
			return v[n]
		}
	}
	return v[n]
}
