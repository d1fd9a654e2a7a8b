package storage

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate limits use GCRA (the generic cell rate algorithm, as redis-cell and
// Envoy do): a bucket is one number, its theoretical arrival time (TAT).
// A policy lets Burst requests pass at once, then one every
// Window/Limit; a request of cost c passes if, after adding c emission
// intervals to the TAT, the TAT is no further ahead of now than the burst
// tolerance. A bucket whose TAT is not ahead of now is full: dropping it
// changes no decision, which is what makes eviction of idle buckets exact.
//
// Time is an injected monotonic clock in nanoseconds; nothing here reads
// the wall clock.

// Policy is a named rate limit.
type Policy struct {
	Name     string
	Limit    uint32 // requests per window, sustained
	WindowMs int64
	Burst    uint32 // requests that may pass at once; 0 in a request means Limit
	Shadow   bool   // decide and count, but never deny
}

// Policy limits.
const (
	MaxPolicyName  = 64
	MaxPolicyLimit = 1_000_000_000
	MaxWindowMs    = 24 * 60 * 60 * 1000
	// DefaultPolicy is the per-node policy that guards the API itself.
	DefaultPolicy = "default"
)

// Validate checks a policy (after Burst defaulting) and normalises it.
func (p *Policy) Validate() *Error {
	if p.Name == "" || len(p.Name) > MaxPolicyName {
		return badRequest("name", "policy name must be 1 to %d characters", MaxPolicyName)
	}
	for i := 0; i < len(p.Name); i++ {
		if c := p.Name[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return badRequest("name", "policy name may hold letters, digits, '-', '_' and '.' only")
		}
	}
	if p.Limit < 1 || p.Limit > MaxPolicyLimit {
		return badRequest("limit", "limit must be from 1 to %d", MaxPolicyLimit)
	}
	if p.WindowMs < 1 || p.WindowMs > MaxWindowMs {
		return badRequest("window_ms", "window_ms must be from 1 to %d (24 h)", MaxWindowMs)
	}
	if p.Burst == 0 {
		p.Burst = p.Limit
	}
	if p.Burst > MaxPolicyLimit {
		return badRequest("burst", "burst must be from 1 to %d", MaxPolicyLimit)
	}
	if uint64(p.Limit) > uint64(p.WindowMs)*uint64(time.Millisecond) {
		return badRequest("limit", "limit must be at most one request per nanosecond of window_ms")
	}
	return nil
}

// Interval is the emission interval, Window/Limit, rounded up to a whole
// nanosecond: a policy never lets more than Limit requests through per
// window (at worst a hair fewer, when Window is not a multiple of Limit).
func (p *Policy) Interval() int64 {
	w := p.WindowMs * int64(time.Millisecond)
	l := int64(p.Limit)
	return (w + l - 1) / l
}

// ParseRateLimit reads the --rate-limit form "N/D" (e.g. 100/1s, 6000/1m)
// into a policy named name; "off" gives ok == false.
func ParseRateLimit(name, s string) (p Policy, ok bool, err error) {
	if s == "off" {
		return Policy{}, false, nil
	}
	n, d, found := strings.Cut(s, "/")
	if !found {
		return Policy{}, false, fmt.Errorf("rate limit %q: want N/DURATION (e.g. 100/1s) or off", s)
	}
	limit, perr := strconv.ParseUint(n, 10, 32)
	if perr != nil {
		return Policy{}, false, fmt.Errorf("rate limit %q: %q is not a count", s, n)
	}
	window, derr := time.ParseDuration(d)
	if derr != nil || window < time.Millisecond || window%time.Millisecond != 0 {
		return Policy{}, false, fmt.Errorf("rate limit %q: %q is not a duration of whole milliseconds", s, d)
	}
	p = Policy{Name: name, Limit: uint32(limit), WindowMs: window.Milliseconds()}
	if e := p.Validate(); e != nil {
		return Policy{}, false, fmt.Errorf("rate limit %q: %s", s, e.Message)
	}
	return p, true, nil
}

// Bucket is the state of one key under one policy.
type Bucket struct {
	TAT int64 // nanoseconds on the limiter's clock
}

// Full reports whether the bucket is back to its whole burst at now: it
// may then be forgotten.
func (b *Bucket) Full(now int64) bool { return b.TAT <= now }

// Decision is the answer to one check.
type Decision struct {
	Allowed bool
	// Denied is true when the policy would deny (also for a shadow
	// policy, which allows anyway).
	Denied    bool
	Limit     uint32
	Remaining uint32 // requests that could pass now, after this one
	// ResetNs: until the bucket is full again. RetryAfterNs: until this
	// request would pass (0 when allowed).
	ResetNs, RetryAfterNs int64
}

// Decide spends cost from b at now if the policy allows it. A cost above
// the burst can never pass: it is denied with RetryAfterNs -1.
func (p *Policy) Decide(b *Bucket, cost uint32, now int64) Decision {
	t := p.Interval()
	tolerance := int64(p.Burst) * t
	start := max(b.TAT, now)
	d := Decision{Limit: p.Limit}
	if cost > p.Burst {
		d.Denied, d.RetryAfterNs = true, -1
	} else if next := start + int64(cost)*t; next-now <= tolerance {
		b.TAT = next
		start = next
	} else {
		d.Denied = true
		d.RetryAfterNs = next - now - tolerance
	}
	d.Allowed = !d.Denied || p.Shadow
	d.ResetNs = start - now
	d.Remaining = uint32((tolerance - d.ResetNs) / t)
	return d
}
