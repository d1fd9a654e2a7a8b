package actors

import (
	"time"

	"github.com/troupe-db/troupe/storage"
)

// The state a bucket actor keeps for its keys, per policy and algorithm,
// and how idle keys go. Everything here runs on the bucket actor's own
// goroutine (bucketBox is its state); only Limiter.zone is shared, and
// it holds immutable locations.

// one makes a decision; when u is not nil, it records there how to undo
// it (the key's state before, read by the decision's own lookup).
func (b *bucketBox) one(c *Check, now int64, u *undoRec) storage.Decision {
	p := c.Policy
	pk := b.keysOf(p.Name)
	switch {
	case c.Peek:
		return b.peek(pk, p, c.Key, now)
	case c.Reset:
		d := storage.Decision{Limit: p.Limit, Remaining: p.Limit, Allowed: true, Released: b.reset(pk, c.Key)}
		b.tallyOf(p.Name).reset++
		return d
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
		if u != nil {
			u.tat, u.had = tat, had
		}
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
		if u != nil {
			u.sliding, u.had = st, had
		}
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
		if u != nil {
			u.fixed, u.had = st, had
		}
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
			// taking and giving back leases allocates nothing. A release
			// is not a decision: it counts as released only.
			d := p.ReleaseLease(sem, c.Release, now)
			if d.Released {
				b.tallyOf(p.Name).released++
			}
			return d
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
	t := b.tallyOf(p.Name)
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

// keysOf returns the keys' state of a policy, created on first use.
func (b *bucketBox) keysOf(policy string) *policyKeys {
	if b.last.keys != nil && b.last.name == policy {
		return b.last.keys
	}
	pk := b.byPolicy[policy]
	if pk == nil {
		pk = &policyKeys{}
		b.byPolicy[policy] = pk
	}
	b.last.name, b.last.keys, b.last.tally = policy, pk, nil
	return pk
}

func (b *bucketBox) tallyOf(policy string) *tally {
	if b.last.tally != nil && b.last.name == policy {
		return b.last.tally
	}
	t := b.tally[policy]
	if t == nil {
		t = &tally{}
		b.tally[policy] = t
	}
	if b.last.name == policy {
		b.last.tally = t
	}
	return t
}

// peek answers the state of key without spending: what a check of cost
// 0 would see (never a denial), and for a semaphore its live leases.
func (b *bucketBox) peek(pk *policyKeys, p *storage.Policy, key string, now int64) storage.Decision {
	var d storage.Decision
	switch p.Algorithm {
	case storage.GCRA:
		bk := storage.Bucket{TAT: pk.gcra[key]}
		d = p.Decide(&bk, 0, now)
	case storage.SlidingWindow:
		b.follow(pk, p)
		st := pk.sliding[key]
		d = p.DecideSliding(&st, 0, now)
	case storage.FixedWindow:
		b.follow(pk, p)
		if !pk.win.Contains(now) {
			pk.win = storage.CalendarWindowAt(p.Window, pk.loc, now)
		}
		st := pk.fixed[key]
		d = p.DecideFixed(&st, pk.win, 0, now)
	case storage.Concurrency:
		b.follow(pk, p)
		d = storage.Decision{Limit: p.Limit, Remaining: p.Limit}
		if sem := pk.sems[key]; sem != nil {
			held := sem.Held(now) // drops the expired leases
			d.Remaining = p.Limit - min(held, p.Limit)
			d.Leases = uint32(len(sem.Leases))
			if at := sem.FullAt(); at > now {
				d.ResetNs = at - now
			}
		}
	default:
		d = storage.Decision{Limit: p.Limit}
	}
	d.Allowed, d.Denied, d.RetryAfterNs = true, false, 0
	return d
}

// reset forgets key under the policy of pk, whatever state it holds;
// it reports whether there was any.
func (b *bucketBox) reset(pk *policyKeys, key string) bool {
	had := false
	if _, ok := pk.gcra[key]; ok {
		delete(pk.gcra, key)
		b.removed()
		had = true
	}
	if _, ok := pk.sliding[key]; ok {
		delete(pk.sliding, key)
		b.removed()
		had = true
	}
	if _, ok := pk.fixed[key]; ok {
		delete(pk.fixed, key)
		b.removed()
		had = true
	}
	if sem, ok := pk.sems[key]; ok {
		delete(pk.sems, key)
		b.removed()
		had = had || len(sem.Leases) > 0
	}
	return had
}

// policyKeys holds the state of one policy's keys in one actor: GCRA
// buckets (a TAT, 8 bytes a key besides the map entry and the key),
// fixed window counts (8 bytes), sliding window counts (16 bytes),
// semaphores (a pointer to the leases held, 24 bytes a lease).
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
	b.last.keys, b.last.tally = nil, nil
	now := b.l.now()
	b.dropWhere(now, func(fullAt int64) bool { return fullAt <= now })
	for name, t := range b.tally {
		c := b.l.countersFor(name)
		c.allowed.Add(int(t.allowed))
		c.denied.Add(int(t.denied))
		c.shadowDenied.Add(int(t.shadowDenied))
		c.rolledBack.Add(int(t.rolledBack))
		c.released.Add(int(t.released))
		c.reset.Add(int(t.reset))
		delete(b.tally, name)
	}
}

// shed makes room when the actor holds more than its share: full buckets
// first, then the tenth closest to full.
func (b *bucketBox) shed(now int64) {
	b.last.keys, b.last.tally = nil, nil
	b.dropWhere(now, func(fullAt int64) bool { return fullAt <= now })
	if b.n <= b.l.perCap {
		return
	}
	// The tenth of buckets that are full soonest: find the cut by
	// sampling every bucket once (a histogram over the range is overkill
	// for a path taken once per tenth of the capacity).
	at := make([]int64, 0, b.n)
	b.dropWhere(now, func(fullAt int64) bool {
		at = append(at, fullAt)
		return false
	})
	cut := nthSmallest(at, len(at)/10)
	b.dropWhere(now, func(fullAt int64) bool { return fullAt <= cut })
}

// dropWhere forgets the buckets for which drop, given the instant they
// are full at, says so.
func (b *bucketBox) dropWhere(now int64, drop func(fullAt int64) bool) {
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
			if drop(st.FullAt(now)) {
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
