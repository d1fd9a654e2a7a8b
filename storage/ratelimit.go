package storage

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	// The time zone database is built in, so every node of one build
	// accepts the same time_zone names whatever its host has installed:
	// a policy put is validated again in apply, which must not depend on
	// the host.
	_ "time/tzdata"
)

// A policy decides with one of four algorithms (ratelimit*.go): GCRA,
// the default and the only one before policies had an algorithm; a
// sliding-window counter; calendar-aligned fixed windows; and a
// semaphore of leases (concurrency). Each is pure code over a small
// state per key, driven by an explicit clock: nothing here reads the
// wall clock.
//
// Rate limits use GCRA (the generic cell rate algorithm, as redis-cell and
// Envoy do): a bucket is one number, its theoretical arrival time (TAT).
// A policy lets Burst requests pass at once, then one every
// Window/Limit; a request of cost c passes if, after adding c emission
// intervals to the TAT, the TAT is no further ahead of now than the burst
// tolerance. A bucket whose TAT is not ahead of now is full: dropping it
// changes no decision, which is what makes eviction of idle buckets exact.
//
// Time is nanoseconds on the limiter's clock. GCRA, sliding windows and
// leases use only differences of it; calendar windows read it as time
// since the Unix epoch.

// Algorithm is how a policy decides. Values are part of the command and
// snapshot formats: never renumber.
type Algorithm uint8

// Algorithms.
const (
	// GCRA: Limit per WindowMs sustained, Burst at once.
	GCRA Algorithm = 0
	// SlidingWindow: a sliding-window counter over WindowMs: the
	// previous window's count weighted by how much of it the sliding
	// window still overlaps, plus the current window's count.
	SlidingWindow Algorithm = 1
	// FixedWindow: Limit per calendar Window in TimeZone.
	FixedWindow Algorithm = 2
	// Concurrency: at most Limit held at once, in leases that are
	// released or expire.
	Concurrency Algorithm = 3

	lastAlgorithm = Concurrency
)

var algorithmNames = [...]string{GCRA: "gcra", SlidingWindow: "sliding_window", FixedWindow: "fixed_window", Concurrency: "concurrency"}

func (a Algorithm) String() string {
	if a <= lastAlgorithm {
		return algorithmNames[a]
	}
	return fmt.Sprintf("algorithm(%d)", uint8(a))
}

// ParseAlgorithm reads an algorithm's name; "" is GCRA.
func ParseAlgorithm(s string) (Algorithm, bool) {
	if s == "" {
		return GCRA, true
	}
	for a, name := range algorithmNames {
		if s == name {
			return Algorithm(a), true
		}
	}
	return 0, false
}

// CalendarUnit is the length of a fixed window, read on the wall clock of
// the policy's time zone. Values are part of the formats: never renumber.
type CalendarUnit uint8

// Calendar units; NoUnit for the algorithms other than FixedWindow.
const (
	NoUnit CalendarUnit = iota
	UnitSecond
	UnitMinute
	UnitHour
	UnitDay
	UnitMonth

	lastUnit = UnitMonth
)

var unitNames = [...]string{NoUnit: "", UnitSecond: "second", UnitMinute: "minute", UnitHour: "hour", UnitDay: "day", UnitMonth: "month"}

func (u CalendarUnit) String() string {
	if u <= lastUnit {
		return unitNames[u]
	}
	return fmt.Sprintf("unit(%d)", uint8(u))
}

// ParseCalendarUnit reads a unit's name ("second" … "month").
func ParseCalendarUnit(s string) (CalendarUnit, bool) {
	for u, name := range unitNames {
		if s == name && u != int(NoUnit) {
			return CalendarUnit(u), true
		}
	}
	return NoUnit, false
}

// Policy is a named rate limit.
type Policy struct {
	Name      string
	Algorithm Algorithm
	Limit     uint32 // requests per window (held at once, for Concurrency)
	WindowMs  int64  // GCRA and SlidingWindow; 0 for the others
	Burst     uint32 // GCRA: requests that may pass at once; 0 in a request means Limit (the only value the other algorithms take)
	Shadow    bool   // decide and count, but never deny
	// FixedWindow only: the calendar unit, and the IANA time zone whose
	// wall clock it is read on ("" is UTC).
	Window   CalendarUnit
	TimeZone string
	// Envoy, when not nil, makes the policy decide the Envoy descriptors
	// it matches (ratelimit_envoy.go). Shared by copies: never changed.
	Envoy *EnvoyRule
}

// Policy limits.
const (
	MaxPolicyName  = 64
	MaxPolicyLimit = 1_000_000_000
	MaxWindowMs    = 24 * 60 * 60 * 1000
	// MaxConcurrencyLimit bounds a concurrency policy's limit: a key
	// holds one lease record (24 bytes) per lease, and a decision on it
	// looks at each.
	MaxConcurrencyLimit = 10_000
	// MaxLeaseMs bounds how long a lease lasts unreleased.
	MaxLeaseMs = 24 * 60 * 60 * 1000
	// MaxTimeZone bounds a time zone's name.
	MaxTimeZone = 64
	// DefaultPolicy is the per-node policy that guards the API itself.
	DefaultPolicy = "default"
)

// Validate checks a policy (after Burst defaulting) and normalises it.
// Its errors name the field and what it accepts.
func (p *Policy) Validate() *Error {
	if p.Name == "" || len(p.Name) > MaxPolicyName {
		return badRequest("name", "policy name must be 1 to %d characters", MaxPolicyName)
	}
	for i := 0; i < len(p.Name); i++ {
		if c := p.Name[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return badRequest("name", "policy name may hold letters, digits, '-', '_' and '.' only")
		}
	}
	if p.Algorithm > lastAlgorithm {
		return badRequest("algorithm", "algorithm must be one of gcra, sliding_window, fixed_window, concurrency")
	}
	maxLimit := uint32(MaxPolicyLimit)
	if p.Algorithm == Concurrency {
		maxLimit = MaxConcurrencyLimit
	}
	if p.Limit < 1 || p.Limit > maxLimit {
		if p.Algorithm == Concurrency {
			return badRequest("limit", "limit must be from 1 to %d for a concurrency policy", maxLimit)
		}
		return badRequest("limit", "limit must be from 1 to %d", maxLimit)
	}
	switch p.Algorithm {
	case GCRA, SlidingWindow:
		if p.WindowMs < 1 || p.WindowMs > MaxWindowMs {
			return badRequest("window_ms", "window_ms must be from 1 to %d (24 h)", MaxWindowMs)
		}
	default:
		if p.WindowMs != 0 {
			if p.Algorithm == FixedWindow {
				return badRequest("window_ms", "window_ms does not apply to fixed_window policies: give window (second, minute, hour, day or month)")
			}
			return badRequest("window_ms", "window_ms does not apply to concurrency policies: a check gives lease_ms")
		}
	}
	if p.Algorithm == FixedWindow {
		if p.Window < UnitSecond || p.Window > lastUnit {
			return badRequest("window", "window must be one of second, minute, hour, day, month")
		}
		if _, e := p.location(); e != nil {
			return e
		}
	} else {
		if p.Window != NoUnit {
			return badRequest("window", "window applies to fixed_window policies only")
		}
		if p.TimeZone != "" {
			return badRequest("time_zone", "time_zone applies to fixed_window policies only")
		}
	}
	if p.Burst == 0 {
		p.Burst = p.Limit
	}
	if p.Algorithm != GCRA && p.Burst != p.Limit {
		return badRequest("burst", "burst applies to gcra policies only (omit it)")
	}
	if p.Burst > MaxPolicyLimit {
		return badRequest("burst", "burst must be from 1 to %d", MaxPolicyLimit)
	}
	if p.Algorithm == GCRA && uint64(p.Limit) > uint64(p.WindowMs)*uint64(time.Millisecond) {
		return badRequest("limit", "limit must be at most one request per nanosecond of window_ms")
	}
	if p.Envoy != nil {
		return p.Envoy.validate(p.Algorithm)
	}
	return nil
}

// Location returns the time zone of a fixed_window policy (UTC when it
// names none).
func (p *Policy) Location() (*time.Location, error) {
	loc, e := p.location()
	if e != nil {
		return nil, e
	}
	return loc, nil
}

func (p *Policy) location() (*time.Location, *Error) {
	tz := p.TimeZone
	if tz == "" || tz == "UTC" {
		return time.UTC, nil
	}
	// "Local" is the host's zone: it would differ between nodes.
	if len(tz) > MaxTimeZone || tz == "Local" {
		return nil, badRequest("time_zone", "time_zone must be an IANA time zone name such as Europe/Paris, at most %d characters (default UTC)", MaxTimeZone)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, badRequest("time_zone", "time_zone %q is not an IANA time zone name such as Europe/Paris (default UTC)", tz)
	}
	return loc, nil
}

// ValidateCheck checks the arguments of one check against the policy: a
// concurrency policy needs a lease length, the others take none.
func (p *Policy) ValidateCheck(cost uint32, leaseMs int64) *Error {
	if cost < 1 {
		return badRequest("cost", "cost must be at least 1")
	}
	if p.Algorithm == Concurrency {
		if leaseMs < 1 || leaseMs > MaxLeaseMs {
			return badRequest("lease_ms", "lease_ms is required for a concurrency policy, from 1 to %d (24 h)", MaxLeaseMs)
		}
	} else if leaseMs != 0 {
		return badRequest("lease_ms", "lease_ms applies to concurrency policies only")
	}
	return nil
}

// Share returns 1/n of the policy (limit, and burst for GCRA; at least 1
// each): what one of n nodes may allow alone when the owner of a key
// cannot be reached in global mode. Up to n shares may be spent on top
// of what the owner allows, so a key gets at most one extra limit (one
// extra burst for GCRA) per window while its owner is unreachable.
func (p Policy) Share(n int) Policy {
	n = max(n, 1)
	p.Limit = max(1, p.Limit/uint32(min(n, MaxPolicyLimit)))
	if p.Algorithm == GCRA {
		p.Burst = max(1, p.Burst/uint32(min(n, MaxPolicyLimit)))
	} else {
		p.Burst = p.Limit
	}
	return p
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
	// Leases is the number of live leases of a concurrency key (set by
	// a peek, which looks without spending).
	Leases uint32
	// ResetNs: until the bucket is full again (for a fixed window: until
	// the next boundary). RetryAfterNs: until this request would pass (0
	// when allowed; -1 when it never can).
	ResetNs, RetryAfterNs int64
	// LeaseID is the lease an allowed concurrency check took (never 0).
	LeaseID uint64
	// Released: a release found the lease live and gave it back.
	Released bool
}

// Decide spends cost from b at now if the GCRA policy allows it. A cost above
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
