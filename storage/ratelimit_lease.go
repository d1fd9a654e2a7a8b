package storage

import (
	"math"
	"slices"
)

// Concurrency policies: a semaphore of leases. A check of cost c takes a
// lease of c units when the leases held leave room under the limit; a
// release gives it back; a lease nobody releases expires on its own, so
// a holder that crashed leaks nothing for longer than its lease. A key
// holds its live leases only: at most limit of them (each of cost ≥ 1),
// 24 bytes each, and a decision looks at each (MaxConcurrencyLimit bounds
// the limit).

// Lease is one grant of a concurrency policy.
type Lease struct {
	ID      uint64 // never 0
	Expires int64  // the lease is gone at this instant
	Cost    uint32
}

// Semaphore is the state of one key under a concurrency policy.
type Semaphore struct {
	Leases []Lease
	// next is the earliest expiry among Leases (MaxInt64 when none), so
	// a decision scans for expired leases only when one has expired.
	next int64
}

// expire drops the leases that have expired at now.
func (s *Semaphore) expire(now int64) {
	if len(s.Leases) == 0 || now < s.next {
		return
	}
	next := int64(math.MaxInt64)
	s.Leases = slices.DeleteFunc(s.Leases, func(l Lease) bool {
		if l.Expires <= now {
			return true
		}
		next = min(next, l.Expires)
		return false
	})
	s.next = next
	s.shrink()
}

// shrink gives back the memory of a key that held many leases once; a
// small array is kept for the next ones.
func (s *Semaphore) shrink() {
	if len(s.Leases) == 0 && cap(s.Leases) > 8 {
		s.Leases = nil
	}
}

// Held is the cost of the leases live at now.
func (s *Semaphore) Held(now int64) uint32 {
	s.expire(now)
	var n uint32
	for i := range s.Leases {
		n += s.Leases[i].Cost
	}
	return n
}

// FullAt is when every lease held has expired (MinInt64 when none is):
// the key may be forgotten from then on.
func (s *Semaphore) FullAt() int64 {
	at := int64(math.MinInt64)
	for i := range s.Leases {
		at = max(at, s.Leases[i].Expires)
	}
	return at
}

// Acquire takes a lease of cost units for leaseNs (> 0) with the given id
// (non-zero, unique among s's live leases: the caller's to choose) if
// the concurrency policy leaves room at now. A denial changes nothing; a
// cost above the limit can never pass (RetryAfterNs -1). ResetNs is the
// time until every lease held has expired; RetryAfterNs, for a denial,
// until enough of them have expired for this one to pass (sooner if
// holders release).
func (p *Policy) Acquire(s *Semaphore, cost uint32, leaseNs int64, id uint64, now int64) Decision {
	held := s.Held(now)
	d := Decision{Limit: p.Limit}
	switch {
	case cost > p.Limit || leaseNs <= 0 || id == 0:
		d.Denied, d.RetryAfterNs = true, -1
	case uint64(held)+uint64(cost) <= uint64(p.Limit):
		exp := math.MaxInt64 - max(now, 0) // saturated
		if leaseNs < exp {
			exp = now + leaseNs
		}
		s.Leases = append(s.Leases, Lease{ID: id, Expires: exp, Cost: cost})
		if len(s.Leases) == 1 || exp < s.next {
			s.next = exp
		}
		held += cost
		d.LeaseID = id
	default:
		d.Denied = true
		d.RetryAfterNs = s.waitFor(held+cost-p.Limit) - now
	}
	d.Allowed = !d.Denied || p.Shadow
	if held < p.Limit {
		d.Remaining = p.Limit - held
	}
	if at := s.FullAt(); at > now {
		d.ResetNs = at - now
	}
	return d
}

// waitFor is when leases of at least need units will have expired.
func (s *Semaphore) waitFor(need uint32) int64 {
	var buf [32]Lease
	ls := append(buf[:0], s.Leases...)
	slices.SortFunc(ls, func(a, b Lease) int {
		switch {
		case a.Expires < b.Expires:
			return -1
		case a.Expires > b.Expires:
			return 1
		}
		return 0
	})
	var freed uint32
	for _, l := range ls {
		if freed += l.Cost; freed >= need {
			return l.Expires
		}
	}
	return s.FullAt() // not reached while need ≤ held
}

// ReleaseLease gives back the lease id at now. Released is true only when
// the lease was live: a release after expiry, a second release and a
// release of an unknown id change nothing. The decision also says what
// the key holds after it.
func (p *Policy) ReleaseLease(s *Semaphore, id uint64, now int64) Decision {
	s.expire(now)
	d := Decision{Limit: p.Limit, Allowed: true}
	if i := slices.IndexFunc(s.Leases, func(l Lease) bool { return l.ID == id }); i >= 0 && id != 0 {
		s.Leases = slices.Delete(s.Leases, i, i+1)
		d.Released = true
		s.shrink()
	}
	held := s.Held(now)
	if held < p.Limit {
		d.Remaining = p.Limit - held
	}
	if at := s.FullAt(); at > now {
		d.ResetNs = at - now
	}
	return d
}
