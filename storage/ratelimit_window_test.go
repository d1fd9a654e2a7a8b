package storage

import (
	"math/big"
	"math/rand/v2"
	"testing"
	"time"
)

// slidingModel decides as the sliding-window counter is specified, from
// the whole history of allowed requests (big integers, no state kept).
type slidingModel struct {
	limit, w int64
	at, cost []int64
}

func (m *slidingModel) sumIn(from, to int64) int64 { // allowed in [from, to)
	var n int64
	for i, t := range m.at {
		if t >= from && t < to {
			n += m.cost[i]
		}
	}
	return n
}

func (m *slidingModel) decide(cost, now int64) (ok bool, prev, e int64) {
	k := floorDiv(now, m.w)
	e = now - k*m.w
	prev = m.sumIn((k-1)*m.w, k*m.w)
	cur := m.sumIn(k*m.w, now+1)
	lhs := new(big.Int).Mul(big.NewInt(prev), big.NewInt(m.w-e))
	lhs.Add(lhs, new(big.Int).Mul(big.NewInt(cur+cost), big.NewInt(m.w)))
	rhs := new(big.Int).Mul(big.NewInt(m.limit), big.NewInt(m.w))
	ok = cost <= m.limit && lhs.Cmp(rhs) <= 0
	if ok {
		m.at = append(m.at, now)
		m.cost = append(m.cost, cost)
	}
	return ok, prev, e
}

// TestSlidingAgainstModel: on random arrivals (bunched at window edges
// half the time), the counter decides exactly as the model, its retry
// time is exact, and every sliding window of the policy's length holds
// no more than the documented bound.
func TestSlidingAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 60 {
		p := mustPolicy(t, Policy{Name: "p", Algorithm: SlidingWindow, Limit: 1 + uint32(r.IntN(40)), WindowMs: 1 + r.Int64N(3000)})
		w := p.WindowMs * int64(time.Millisecond)
		m := &slidingModel{limit: int64(p.Limit), w: w}
		var s SlidingCount
		now := r.Int64N(10 * w)
		for range 1500 {
			switch r.IntN(4) {
			case 0: // just before a boundary
				now = max(now, (floorDiv(now, w)+1)*w-1-r.Int64N(max(w/50, 1))) // the clock never goes back
			case 1:
				now += r.Int64N(3 * w / int64(p.Limit))
			default:
				now += r.Int64N(max(w/int64(p.Limit)/4, 1) + 1)
			}
			cost := 1 + uint32(r.IntN(3))
			before := s
			d := p.DecideSliding(&s, cost, now)
			ok, prev, e := m.decide(int64(cost), now)
			if d.Allowed != ok || d.Denied == ok {
				t.Fatalf("round %d %+v at %d cost %d: %+v, model says %v", round, p, now, cost, d, ok)
			}
			if !ok {
				if s != before {
					t.Fatal("a denial changed the state")
				}
				if d.RetryAfterNs > 0 {
					// Exact: one nanosecond earlier it is still denied, at the retry time it passes.
					early, late := before, before
					if p.DecideSliding(&early, cost, now+d.RetryAfterNs-1).Allowed || !p.DecideSliding(&late, cost, now+d.RetryAfterNs).Allowed {
						t.Fatalf("%+v at %d cost %d: retry after %d is not exact", p, now, cost, d.RetryAfterNs)
					}
				} else if cost <= p.Limit {
					t.Fatalf("denied with retry %d", d.RetryAfterNs)
				}
				continue
			}
			// The bound, at every allowed request: limit + ⌊prev·e/W⌋ ≤ 2·limit − 1.
			held := m.sumIn(now-w+1, now+1)
			bound := int64(p.Limit) + prev*e/w
			if held > bound || held > 2*int64(p.Limit)-1 {
				t.Fatalf("%+v: %d allowed in the window ending at %d, bound %d", p, held, now, bound)
			}
			if aligned := m.sumIn(floorDiv(now, w)*w, now+1); aligned > int64(p.Limit) {
				t.Fatalf("%+v: %d in one aligned window", p, aligned)
			}
			if want := floorDiv(int64(p.Limit)*w-prev*(w-e), w) - m.sumIn(floorDiv(now, w)*w, now+1); int64(d.Remaining) != max(want, 0) {
				t.Fatalf("%+v: remaining %d, want %d (now %d prev %d e %d state %+v before %+v)", p, d.Remaining, want, now, prev, e, s, before)
			}
		}
	}
}

// The worst case the bound describes is reached: a whole limit at the end
// of one window, then the most the next window allows just before its
// end, all within one window's length.
func TestSlidingWorstCase(t *testing.T) {
	p := mustPolicy(t, Policy{Name: "p", Algorithm: SlidingWindow, Limit: 100, WindowMs: 1000})
	w := int64(time.Second)
	var s SlidingCount
	n := 0
	for p.DecideSliding(&s, 1, w-1).Allowed {
		n++
	}
	at := 2*w - 2 // e = W−2: prev weighs 2/W
	for p.DecideSliding(&s, 1, at).Allowed {
		n++
	}
	if n != 199 { // 100 + ⌊100·(W−2)/W⌋
		t.Fatalf("%d allowed within %v, the bound is 199", n, time.Duration(at-(w-1)))
	}
	d := p.DecideSliding(&s, 1, at)
	if d.Allowed || d.Remaining != 0 || d.ResetNs != 2*w-(w-2) {
		t.Fatalf("after the worst case: %+v", d)
	}
	if !p.DecideSliding(&s, 1, 2*w).Allowed {
		t.Fatal("nothing passes in the next window")
	}
	// Costs above the limit never pass; shadow policies allow and say so.
	if d := p.DecideSliding(&SlidingCount{}, 101, 0); d.Allowed || d.RetryAfterNs != -1 {
		t.Fatalf("cost above the limit: %+v", d)
	}
	shadow := p
	shadow.Shadow = true
	if d := shadow.DecideSliding(&s, 100, 2*w); !d.Allowed || !d.Denied {
		t.Fatalf("shadow: %+v", d)
	}
	if full := s.FullAt(w); full != 4*w {
		t.Fatalf("full at %d, want %d", full, 4*w)
	}
}

// wallKey is the naive reading of the model: the wall clock of loc at now,
// truncated to unit.
func wallKey(unit CalendarUnit, loc *time.Location, now int64) [5]int {
	t := time.Unix(0, now).In(loc)
	k := [5]int{t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute() * 60}
	switch unit {
	case UnitSecond:
		k[4] += t.Second()
	case UnitMinute:
	case UnitHour:
		k[4] = 0
	case UnitDay:
		k[3], k[4] = 0, 0
	case UnitMonth:
		k[2], k[3], k[4] = 0, 0, 0
	}
	return k
}

var testZones = []string{"UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kolkata", "America/Sao_Paulo", "Pacific/Chatham"}

// TestCalendarWindowProperties: at random instants (many near DST
// changes), the window holds now, reads the same truncated wall clock
// from its first to its last nanosecond and not just outside it, and is
// the same window wherever in it one asks.
func TestCalendarWindowProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, zone := range testZones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		// Instants around this zone's offset changes of 2020-2030, and at random.
		var probes []int64
		for at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC); at.Year() < 2030; {
			_, end := at.In(loc).ZoneBounds()
			if end.IsZero() {
				break
			}
			for range 6 {
				probes = append(probes, end.UnixNano()+r.Int64N(int64(4*time.Hour))-int64(2*time.Hour))
			}
			probes = append(probes, end.UnixNano(), end.UnixNano()-1)
			at = end
		}
		for range 300 {
			probes = append(probes, time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()+r.Int64N(int64(80*365*24*time.Hour)))
		}
		for unit := UnitSecond; unit <= UnitMonth; unit++ {
			for _, now := range probes {
				win := CalendarWindowAt(unit, loc, now)
				key := wallKey(unit, loc, now)
				if !win.Contains(now) {
					t.Fatalf("%s %v at %v: window %v..%v", zone, unit, time.Unix(0, now).In(loc), time.Unix(0, win.Start).In(loc), time.Unix(0, win.End).In(loc))
				}
				if wallKey(unit, loc, win.Start) != key || wallKey(unit, loc, win.End-1) != key ||
					wallKey(unit, loc, win.Start-1) == key || wallKey(unit, loc, win.End) == key {
					t.Fatalf("%s %v at %v: window %v..%v is not where the clock reads %v", zone, unit, time.Unix(0, now).In(loc), time.Unix(0, win.Start).In(loc), time.Unix(0, win.End).In(loc), key)
				}
				for _, at := range []int64{win.Start, win.End - 1, win.Start + (win.End-win.Start)/2} {
					if CalendarWindowAt(unit, loc, at) != win {
						t.Fatalf("%s %v: the window differs within itself", zone, unit)
					}
				}
			}
		}
	}
}

// Days across DST changes and months across leap years are as long as
// the calendar says.
func TestCalendarWindowLengths(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	paris, _ := time.LoadLocation("Europe/Paris")
	lordHowe, _ := time.LoadLocation("Australia/Lord_Howe")
	at := func(loc *time.Location, y int, m time.Month, d, h, mi int) int64 {
		return time.Date(y, m, d, h, mi, 0, 0, loc).UnixNano()
	}
	for _, tc := range []struct {
		name string
		unit CalendarUnit
		loc  *time.Location
		now  int64
		want time.Duration
	}{
		{"spring-forward day", UnitDay, ny, at(ny, 2026, 3, 8, 12, 0), 23 * time.Hour},
		{"fall-back day", UnitDay, ny, at(ny, 2026, 11, 1, 12, 0), 25 * time.Hour},
		{"plain day", UnitDay, ny, at(ny, 2026, 11, 2, 12, 0), 24 * time.Hour},
		{"repeated hour", UnitHour, ny, time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC).UnixNano(), 2 * time.Hour}, // 01:30 EDT
		{"repeated hour, second time", UnitHour, ny, time.Date(2026, 11, 1, 6, 30, 0, 0, time.UTC).UnixNano(), 2 * time.Hour},
		{"hour before the skip", UnitHour, ny, at(ny, 2026, 3, 8, 1, 30), time.Hour},
		{"hour after the skip", UnitHour, ny, at(ny, 2026, 3, 8, 3, 30), time.Hour},
		{"half-hour DST, forward", UnitHour, lordHowe, time.Date(2026, 10, 3, 15, 45, 0, 0, time.UTC).UnixNano(), 30 * time.Minute},
		{"Paris spring month", UnitMonth, paris, at(paris, 2026, 3, 15, 0, 0), 31*24*time.Hour - time.Hour},
		{"Feb 2024 (leap)", UnitMonth, time.UTC, at(time.UTC, 2024, 2, 10, 0, 0), 29 * 24 * time.Hour},
		{"Feb 2026", UnitMonth, time.UTC, at(time.UTC, 2026, 2, 10, 0, 0), 28 * 24 * time.Hour},
		{"Feb 2000 (leap)", UnitMonth, time.UTC, at(time.UTC, 2000, 2, 29, 23, 59), 29 * 24 * time.Hour},
		{"Feb 2100 (not leap)", UnitMonth, time.UTC, at(time.UTC, 2100, 2, 1, 0, 0), 28 * 24 * time.Hour},
		{"minute", UnitMinute, paris, at(paris, 2026, 3, 29, 1, 59) + int64(30*time.Second), time.Minute},
		{"second", UnitSecond, time.UTC, 1_700_000_000_500_000_000, time.Second},
	} {
		win := CalendarWindowAt(tc.unit, tc.loc, tc.now)
		if got := time.Duration(win.End - win.Start); got != tc.want || !win.Contains(tc.now) {
			t.Errorf("%s: %v..%v is %v, want %v", tc.name, time.Unix(0, win.Start).In(tc.loc), time.Unix(0, win.End).In(tc.loc), got, tc.want)
		}
	}
	// Midnight to midnight, and the reset is the time to the boundary.
	p := mustPolicy(t, Policy{Name: "p", Algorithm: FixedWindow, Limit: 2, Window: UnitDay, TimeZone: "America/New_York"})
	now := at(ny, 2026, 3, 8, 22, 0)
	win := CalendarWindowAt(UnitDay, ny, now)
	if win.Start != at(ny, 2026, 3, 8, 0, 0) || win.End != at(ny, 2026, 3, 9, 0, 0) {
		t.Fatalf("day window %v..%v", time.Unix(0, win.Start).In(ny), time.Unix(0, win.End).In(ny))
	}
	var c WindowCount
	if d := p.DecideFixed(&c, win, 1, now); !d.Allowed || d.Remaining != 1 || d.ResetNs != int64(2*time.Hour) {
		t.Fatalf("first: %+v", d)
	}
	p.DecideFixed(&c, win, 1, now)
	if d := p.DecideFixed(&c, win, 1, now); d.Allowed || d.RetryAfterNs != int64(2*time.Hour) {
		t.Fatalf("third: %+v", d)
	}
	next := CalendarWindowAt(UnitDay, ny, win.End)
	if d := p.DecideFixed(&c, next, 2, win.End); !d.Allowed || d.Remaining != 0 || d.ResetNs != int64(24*time.Hour) {
		t.Fatalf("next day: %+v", d)
	}
	if d := p.DecideFixed(&c, next, 3, win.End); d.Allowed || d.RetryAfterNs != -1 {
		t.Fatalf("cost above the limit: %+v", d)
	}
}

// TestFixedAgainstModel: exactly limit per window of the wall clock,
// counted by the model per truncated reading.
func TestFixedAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, zone := range testZones {
		loc, _ := time.LoadLocation(zone)
		for unit := UnitSecond; unit <= UnitMonth; unit++ {
			p := mustPolicy(t, Policy{Name: "p", Algorithm: FixedWindow, Limit: 1 + uint32(r.IntN(20)), Window: unit, TimeZone: zone})
			step := map[CalendarUnit]int64{UnitSecond: int64(time.Second), UnitMinute: int64(time.Minute), UnitHour: int64(time.Hour), UnitDay: int64(24 * time.Hour), UnitMonth: int64(30 * 24 * time.Hour)}[unit]
			counts := map[[5]int]int64{}
			var c WindowCount
			var win CalendarWindow
			now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
			for range 3000 {
				now += r.Int64N(step/int64(p.Limit)) + 1
				if !win.Contains(now) {
					win = CalendarWindowAt(unit, loc, now)
				}
				cost := 1 + uint32(r.IntN(2))
				d := p.DecideFixed(&c, win, cost, now)
				key := wallKey(unit, loc, now)
				ok := counts[key]+int64(cost) <= int64(p.Limit)
				if ok {
					counts[key] += int64(cost)
				}
				if d.Allowed != ok || int64(d.Remaining) != int64(p.Limit)-counts[key] || d.ResetNs != win.End-now {
					t.Fatalf("%s %v at %v cost %d: %+v, model %v with %d counted", zone, unit, time.Unix(0, now).In(loc), cost, d, ok, counts[key])
				}
			}
		}
	}
}

func BenchmarkSlidingDecide(b *testing.B) {
	p := Policy{Name: "p", Algorithm: SlidingWindow, Limit: 1000, WindowMs: 1000}
	if e := p.Validate(); e != nil {
		b.Fatal(e)
	}
	states := make([]SlidingCount, 1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.DecideSliding(&states[i&1023], 1, int64(i)*1000)
	}
}

func BenchmarkFixedDecide(b *testing.B) {
	p := Policy{Name: "p", Algorithm: FixedWindow, Limit: 1000, Window: UnitMinute, TimeZone: "Europe/Paris"}
	if e := p.Validate(); e != nil {
		b.Fatal(e)
	}
	loc, _ := p.Location()
	states := make([]WindowCount, 1024)
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var win CalendarWindow
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now := start + int64(i)*1000
		if !win.Contains(now) { // as the bucket actors do: once per window and policy
			win = CalendarWindowAt(p.Window, loc, now)
		}
		p.DecideFixed(&states[i&1023], win, 1, now)
	}
}

func BenchmarkCalendarWindowAt(b *testing.B) {
	loc, _ := time.LoadLocation("Europe/Paris")
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		CalendarWindowAt(UnitDay, loc, start+int64(i)*int64(time.Minute))
	}
}
