package storage

import (
	"math"
	"math/bits"
	"time"
)

// Window algorithms: the sliding-window counter and calendar-aligned
// fixed windows. Both count requests per window in a few bytes per key;
// neither reads a clock.

// SlidingCount is the state of one key under a sliding_window policy
// (16 bytes): the index of its current window (now / W, W the policy's
// window) and the counts of that window and the one before.
//
// A request of cost c at time now, e nanoseconds into window k, passes
// when
//
//	prev·(W−e)/W + cur + c ≤ limit
//
// (prev, cur: the counts of windows k−1 and k), as Cloudflare's counter
// does: the previous window is assumed to have spread its requests
// evenly, so the sliding window (now−W, now] still holds the part of it
// it overlaps. The comparison is exact (128-bit integers).
//
// The approximation bound: when the previous window's requests came late
// in it, the sliding window holds more than the estimate. For every
// allowed request at time now, the allowed requests in (now−W, now]
// number at most
//
//	limit + ⌊prev·e/W⌋ ≤ 2·limit − 1
//
// and each aligned window [kW, (k+1)W) holds at most limit. Over a long
// run, the rate is at most limit per W. The worst case needs a whole
// limit spent at the very end of one window, then the next window's
// share spent just before its own end.
type SlidingCount struct {
	Window    int64
	Prev, Cur uint32
}

// counts returns the previous and current counts at window k.
func (s *SlidingCount) counts(k int64) (prev, cur uint32) {
	switch k - s.Window {
	case 0:
		return s.Prev, s.Cur
	case 1:
		return s.Cur, 0
	}
	return 0, 0
}

// FullAt is when the key counts nothing any more (it may be forgotten
// from then on without changing any decision).
func (s *SlidingCount) FullAt(windowNs int64) int64 {
	switch {
	case s.Cur > 0:
		return satMul(s.Window+2, windowNs)
	case s.Prev > 0:
		return satMul(s.Window+1, windowNs)
	}
	return math.MinInt64
}

// DecideSliding spends cost from s at now if the sliding_window policy
// allows it. A denial changes nothing; a cost above the limit can never
// pass (RetryAfterNs -1).
func (p *Policy) DecideSliding(s *SlidingCount, cost uint32, now int64) Decision {
	w := p.WindowMs * int64(time.Millisecond)
	k := floorDiv(now, w)
	e := now - k*w
	prev, cur := s.counts(k)
	d := Decision{Limit: p.Limit}
	limit := uint64(p.Limit)
	switch {
	case cost > p.Limit:
		d.Denied, d.RetryAfterNs = true, -1
	case slidingFits(uint64(prev), uint64(w-e), uint64(cur)+uint64(cost), uint64(w), limit):
		cur += cost
		s.Window, s.Prev, s.Cur = k, prev, cur
	default:
		d.Denied = true
		d.RetryAfterNs = slidingWait(uint64(prev), uint64(cur), uint64(cost), uint64(e), uint64(w), limit)
	}
	d.Allowed = !d.Denied || p.Shadow
	// Remaining: ⌊limit − prev·(W−e)/W⌋ − cur.
	hi, lo := bits.Mul64(uint64(prev), uint64(w-e))
	lhi, llo := bits.Mul64(limit, uint64(w))
	if hi < lhi || (hi == lhi && lo <= llo) {
		rlo, b := bits.Sub64(llo, lo, 0)
		rhi, _ := bits.Sub64(lhi, hi, b)
		q, _ := bits.Div64(rhi, rlo, uint64(w)) // < limit+1: fits
		if q > uint64(cur) {
			d.Remaining = uint32(q - uint64(cur))
		}
	}
	switch {
	case cur > 0:
		d.ResetNs = 2*w - e
	case prev > 0:
		d.ResetNs = w - e
	}
	return d
}

// slidingFits reports prev·rest + n·w ≤ limit·w, in 128 bits.
func slidingFits(prev, rest, n, w, limit uint64) bool {
	ah, al := bits.Mul64(prev, rest)
	bh, bl := bits.Mul64(n, w)
	sl, c := bits.Add64(al, bl, 0)
	sh, over := bits.Add64(ah, bh, c)
	if over != 0 {
		return false
	}
	lh, ll := bits.Mul64(limit, w)
	return sh < lh || (sh == lh && sl <= ll)
}

// slidingWait is how long a denied request of cost (≤ limit) waits: the
// previous window's weight shrinks as the current window goes on; if the
// current window alone leaves no room, the wait runs into the next
// window, where the current count becomes the weighted one.
func slidingWait(prev, cur, cost, e, w, limit uint64) int64 {
	if cur+cost <= limit {
		// prev·(W−e') ≤ (limit−cur−cost)·W  ⇔  e' ≥ W − ⌊(limit−cur−cost)·W/prev⌋
		at := w - mulDivSat(limit-cur-cost, w, prev)
		return int64(at - e)
	}
	at := w - mulDivSat(limit-cost, w, cur)
	return int64(w - e + at)
}

// mulDivSat is ⌊a·b/c⌋ (c > 0), saturated at MaxUint64.
func mulDivSat(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, c)
	return q
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func satMul(a, b int64) int64 {
	hi, lo := bits.Mul64(uint64(max(a, 0)), uint64(b))
	if a < 0 {
		return math.MinInt64
	}
	if hi != 0 || lo > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(lo)
}

// WindowCount is the state of one key under a fixed_window policy (8
// bytes, as a GCRA bucket): the count of the window that ends at EndSec.
// Windows partition time and end on whole seconds (zone offsets are
// whole seconds), so the end's second names the window; it is kept
// modulo 2³² (136 years), and a count whose window has ended is zero.
type WindowCount struct {
	EndSec uint32 // the window's end in seconds since the Unix epoch, modulo 2³²
	Count  uint32
}

// FullAt is when the key counts nothing any more: its window's end, read
// as the instant within 68 years of now that it names.
func (c *WindowCount) FullAt(now int64) int64 {
	sec := floorDiv(now, int64(time.Second))
	return (sec + int64(int32(c.EndSec-uint32(sec)))) * int64(time.Second)
}

// CalendarWindow is one fixed window, [Start, End) in nanoseconds since
// the Unix epoch.
type CalendarWindow struct{ Start, End int64 }

// Contains reports whether now falls in the window.
func (w CalendarWindow) Contains(now int64) bool { return w.Start <= now && now < w.End }

// DecideFixed spends cost from c at now, which falls in win (the
// policy's calendar window at now, from CalendarWindowAt), if the
// fixed_window policy allows it: exactly limit per window. A denial
// changes nothing; a cost above the limit can never pass.
func (p *Policy) DecideFixed(c *WindowCount, win CalendarWindow, cost uint32, now int64) Decision {
	endSec := uint32(floorDiv(win.End, int64(time.Second)))
	count := uint32(0)
	if c.EndSec == endSec {
		count = c.Count
	}
	d := Decision{Limit: p.Limit, ResetNs: win.End - now}
	switch {
	case cost > p.Limit:
		d.Denied, d.RetryAfterNs = true, -1
	case uint64(count)+uint64(cost) <= uint64(p.Limit):
		count += cost
		c.EndSec, c.Count = endSec, count
	default:
		d.Denied, d.RetryAfterNs = true, win.End-now
	}
	d.Allowed = !d.Denied || p.Shadow
	if count < p.Limit {
		d.Remaining = p.Limit - count
	}
	return d
}

// maxZoneHops bounds the offset changes one window may span (a month
// holds at most two in any real zone).
const maxZoneHops = 16

// CalendarWindowAt returns the window of unit that holds now on the wall
// clock of loc: the longest span around now during which the clock,
// truncated to the unit, reads the same. So a day is 23 or 25 hours
// across a DST change, a month is 28 to 31 days, and when the clock goes
// back the repeated hour belongs to the hour window it repeats (which
// then lasts two hours); when it goes forward past a boundary, the
// skipped window does not exist. The time package supplies the offsets
// and the calendar.
func CalendarWindowAt(unit CalendarUnit, loc *time.Location, now int64) CalendarWindow {
	off, zs, ze := zoneAt(loc, now)
	lo, hi := wallTrunc(unit, now+off)
	start, end := lo-off, hi-off
	// Backwards across offset changes while the clock read the same.
	for hops, bound := 0, zs; start <= bound && bound != math.MinInt64; hops++ {
		if hops == maxZoneHops {
			start = bound
			break
		}
		poff, pzs, _ := zoneAt(loc, bound-1)
		if plo, _ := wallTrunc(unit, bound-1+poff); plo != lo {
			start = bound
			break
		}
		start, bound = lo-poff, pzs
	}
	// Forwards likewise.
	for hops, bound := 0, ze; end >= bound && bound != math.MaxInt64; hops++ {
		if hops == maxZoneHops {
			end = bound
			break
		}
		noff, _, nze := zoneAt(loc, bound)
		if nlo, _ := wallTrunc(unit, bound+noff); nlo != lo {
			end = bound
			break
		}
		end, bound = hi-noff, nze
	}
	return CalendarWindow{Start: start, End: end}
}

// zoneAt returns loc's offset at now (in nanoseconds) and the span
// [zs, ze) over which it holds (MinInt64/MaxInt64 when unbounded).
func zoneAt(loc *time.Location, now int64) (off, zs, ze int64) {
	t := time.Unix(0, now).In(loc)
	_, o := t.Zone()
	s, e := t.ZoneBounds()
	off, zs, ze = int64(o)*int64(time.Second), unixNanoOr(s, math.MinInt64), unixNanoOr(e, math.MaxInt64)
	// Beyond a zone's last listed change, the time package computes the
	// bounds from its rule, exactly near a change but otherwise only
	// roughly (the end of a leap year falls a day early, and an instant
	// in that day gets a span that ended before it). Such a bound is a
	// hint with the same offset on both sides, which the callers cross;
	// it must only hold now.
	const day = 24 * int64(time.Hour)
	if ze <= now {
		ze = now - now%int64(time.Second) + day
	}
	if zs > now {
		zs = now - now%int64(time.Second) - day
	}
	return off, zs, ze
}

// unixNanoOr is t in nanoseconds since the epoch; or for the zero time,
// and saturated outside int64's range of nanoseconds (1678 to 2262).
func unixNanoOr(t time.Time, or int64) int64 {
	switch sec := t.Unix(); {
	case t.IsZero():
		return or
	case sec < math.MinInt64/int64(time.Second)+1:
		return math.MinInt64
	case sec > math.MaxInt64/int64(time.Second)-1:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// wallTrunc truncates a wall-clock reading (nanoseconds, read as UTC) to
// its unit, and gives the start of the next one.
func wallTrunc(unit CalendarUnit, wall int64) (lo, hi int64) {
	var u int64
	switch unit {
	case UnitSecond:
		u = int64(time.Second)
	case UnitMinute:
		u = int64(time.Minute)
	case UnitHour:
		u = int64(time.Hour)
	case UnitDay:
		u = 24 * int64(time.Hour)
	default: // UnitMonth
		y, m, _ := time.Unix(0, wall).UTC().Date()
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC).UnixNano(), time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	}
	lo = floorDiv(wall, u) * u
	return lo, lo + u
}
