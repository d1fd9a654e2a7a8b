package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/bench"
)

// latencies is a histogram of n requests that all took d.
func latencies(n int, d time.Duration) Point {
	h := bench.NewLatencyHistogram()
	for range n {
		_ = h.RecordValue(d.Microseconds())
	}
	return Point{OK: int64(n), RPS: float64(n), Latency: h}
}

// soakRows is a run of d sampled every step: scenario "s" answers in
// p99(at) and each of two nodes holds heap(at) bytes.
func soakRows(d, step time.Duration, p99 func(time.Duration) time.Duration, heap func(time.Duration) int64) []Row {
	var rows []Row
	for at := step; at <= d; at += step {
		n := NodeSample{Up: true, Heap: heap(at), Goroutines: 100, FDs: 50}
		rows = append(rows, Row{At: at, Load: map[string]Point{"s": latencies(100, p99(at))}, Nodes: []NodeSample{n, n}})
	}
	return rows
}

var (
	okReadBack = ReadBack{Users: 10, Deleted: 4, Docs: 2, Ops: 30}
	idle       = []NodeSample{{Up: true, Goroutines: 100, FDs: 50}, {Up: true, Goroutines: 100, FDs: 50}}
)

func check(t *testing.T, checks []Check, prefix string) Check {
	t.Helper()
	for _, c := range checks {
		if strings.HasPrefix(c.Name, prefix) {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", prefix, checks)
	return Check{}
}

func TestJudgeSteadyRunPasses(t *testing.T) {
	d := 30 * time.Minute
	rows := soakRows(d, 30*time.Second,
		func(time.Duration) time.Duration { return 20 * time.Millisecond },
		func(time.Duration) int64 { return 100 << 20 })
	checks := judge(rows, d, []string{"s"}, []string{"n1", "n2"}, idle, idle, okReadBack, DefaultLimits(d, time.Minute, time.Minute))
	if !passed(checks) {
		t.Fatalf("a steady run failed: %+v", checks)
	}
	if len(checks) != 2+1+2+2 {
		t.Fatalf("%d checks: %+v", len(checks), checks)
	}
}

func TestJudgeP99(t *testing.T) {
	d := 30 * time.Minute
	for _, c := range []struct {
		last time.Duration
		pass bool
	}{{30 * time.Millisecond, true}, {31 * time.Millisecond, false}} {
		// 10 ms while the state fills (the first tenth, shown, not
		// judged), 20 ms in steady state, then c.last in the last
		// tenth; a spike in the middle (a kill) counts in neither
		// window.
		rows := soakRows(d, 30*time.Second, func(at time.Duration) time.Duration {
			switch {
			case at <= 3*time.Minute:
				return 10 * time.Millisecond
			case at > 27*time.Minute:
				return c.last
			case at == 15*time.Minute:
				return 5 * time.Second
			}
			return 20 * time.Millisecond
		}, func(time.Duration) int64 { return 100 << 20 })
		lim := DefaultLimits(d, time.Minute, time.Minute)
		lim.Kills = killSchedule(d, 5*time.Minute)
		got := check(t, judge(rows, d, []string{"s"}, []string{"n1", "n2"}, idle, idle, okReadBack, lim), "s p99")
		if got.Pass != c.pass || !strings.Contains(got.Name, "7:00–10:00") {
			t.Errorf("last tenth at %v: %+v", c.last, got)
		}
		if !strings.Contains(got.Detail, "first tenth, the state still filling, 10.01ms") || !strings.Contains(got.Detail, "ranged 10.01ms–5.0s, median 20.02ms") {
			t.Errorf("no first tenth or spread in %q", got.Detail)
		}
	}
	// A scenario that answered nothing in the reference fails.
	rows := soakRows(d, 30*time.Second, func(time.Duration) time.Duration { return time.Millisecond }, func(time.Duration) int64 { return 1 })
	for i := 10; i < 16; i++ {
		rows[i].Load = map[string]Point{}
	}
	if got := check(t, judge(rows, d, []string{"s"}, []string{"n1", "n2"}, idle, idle, okReadBack, DefaultLimits(d, time.Minute, time.Minute)), "s p99"); got.Pass {
		t.Errorf("no requests in the reference passed: %+v", got)
	}
}

// The p99's reference starts after the warm-up and ends at a kill, so
// that it follows a kill's recovery by as long as the last tenth does.
func TestSteadyWindow(t *testing.T) {
	for _, c := range []struct {
		d, every time.Duration
		from, to time.Duration
	}{
		{30 * time.Minute, 5 * time.Minute, 7 * time.Minute, 10 * time.Minute},
		{30 * time.Minute, 0, 5 * time.Minute, 8 * time.Minute}, // no kills
		{30 * time.Minute, 20 * time.Minute, 17 * time.Minute, 20 * time.Minute},
		{60 * time.Minute, 5 * time.Minute, 14 * time.Minute, 20 * time.Minute}, // a tenth is 6 minutes
	} {
		lim := DefaultLimits(c.d, time.Minute, time.Minute)
		if c.every > 0 {
			lim.Kills = killSchedule(c.d, c.every)
		}
		if from, to := steadyWindow(c.d, lim); from != c.from || to != c.to {
			t.Errorf("%v, a kill every %v: %v–%v, want %v–%v", c.d, c.every, from, to, c.from, c.to)
		}
	}
}

func TestJudgeHeap(t *testing.T) {
	d := 30 * time.Minute
	// Growth during the first five minutes does not count; after it,
	// 10% does not fail and 11% does.
	for _, c := range []struct {
		end  int64
		pass bool
	}{{110, true}, {111, false}} {
		rows := soakRows(d, 30*time.Second, func(time.Duration) time.Duration { return time.Millisecond }, func(at time.Duration) int64 {
			switch {
			case at <= 5*time.Minute:
				return int64(at / time.Second) // growing from nothing
			case at > 27*time.Minute:
				return c.end << 20
			}
			return 100 << 20
		})
		// A node down in a sample (killed) is left out of the mean.
		rows[len(rows)-2].Nodes[1] = NodeSample{}
		checks := judge(rows, d, []string{"s"}, []string{"n1", "n2"}, idle, idle, okReadBack, DefaultLimits(d, time.Minute, time.Minute))
		for _, id := range []string{"n1", "n2"} {
			if got := check(t, checks, id+" heap"); got.Pass != c.pass {
				t.Errorf("end heap %d MiB: %+v", c.end, got)
			}
		}
	}
}

func TestJudgeBaseline(t *testing.T) {
	d := 3 * time.Minute
	rows := soakRows(d, 5*time.Second, func(time.Duration) time.Duration { return time.Millisecond }, func(time.Duration) int64 { return 1 << 20 })
	final := []NodeSample{
		{Up: true, Goroutines: 110, FDs: 55}, // + max(10, 10%) and + max(5, 10%): the limit
		{Up: true, Goroutines: 111, FDs: 50}, // one goroutine over
	}
	checks := judge(rows, d, []string{"s"}, []string{"n1", "n2"}, idle, final, okReadBack, DefaultLimits(d, time.Minute, time.Minute))
	if got := check(t, checks, "n1 goroutines"); !got.Pass {
		t.Errorf("n1 at the limit: %+v", got)
	}
	if got := check(t, checks, "n2 goroutines"); got.Pass {
		t.Errorf("n2 over the limit: %+v", got)
	}
	down := []NodeSample{{Up: true, Goroutines: 1, FDs: 1}, {}}
	if got := check(t, judge(rows, d, []string{"s"}, []string{"n1", "n2"}, idle, down, okReadBack, DefaultLimits(d, time.Minute, time.Minute)), "n2 goroutines"); got.Pass {
		t.Errorf("a node down at the end passed: %+v", got)
	}
	if a := allowed(1000, 10, 0.1); a != 1100 {
		t.Errorf("allowed(1000) = %d", a)
	}
}

func TestJudgeLostWrites(t *testing.T) {
	d := 30 * time.Minute
	rows := soakRows(d, 30*time.Second, func(time.Duration) time.Duration { return time.Millisecond }, func(time.Duration) int64 { return 1 })
	for _, c := range []struct {
		rb   ReadBack
		want string
	}{
		{ReadBack{Users: 5, Missing: []string{"u1"}}, "missing"},
		{ReadBack{Users: 5, Resurrected: []string{"u2"}}, "are back"},
		{ReadBack{Users: 5, Unreadable: 1}, "could not be read"},
		{ReadBack{Users: 5, DocsBad: []string{"d1: version 3"}}, "documents short"},
		{ReadBack{}, "no acknowledged user write"},
	} {
		got := check(t, judge(rows, d, []string{"s"}, []string{"n1", "n2"}, idle, idle, c.rb, DefaultLimits(d, time.Minute, time.Minute)), "no acknowledged write lost")
		if got.Pass || !strings.Contains(got.Detail, c.want) {
			t.Errorf("%+v: %+v", c.rb, got)
		}
	}
	rb := okReadBack
	rb.Replicas = "at index 9, the hashes differ"
	if got := check(t, judge(rows, d, []string{"s"}, []string{"n1", "n2"}, idle, idle, rb, DefaultLimits(d, time.Minute, time.Minute)), "replicas agree"); got.Pass {
		t.Errorf("replicas that differ passed: %+v", got)
	}
}

func TestTenthsAndWindows(t *testing.T) {
	d := 3 * time.Minute
	rows := soakRows(d, 5*time.Second, func(time.Duration) time.Duration { return 0 }, func(time.Duration) int64 { return 0 })
	first, last := firstTenth(rows, d), lastTenth(rows, d)
	// A tenth is 18 s: rows at 5, 10, 15 and at 165..180.
	if len(first) != 3 || first[2].At != 15*time.Second || len(last) != 4 || last[0].At != 165*time.Second {
		t.Fatalf("first %d rows, last %d rows", len(first), len(last))
	}
	// Rows coarser than a tenth: one row each.
	coarse := soakRows(d, time.Minute, func(time.Duration) time.Duration { return 0 }, func(time.Duration) int64 { return 0 })
	if f, l := firstTenth(coarse, d), lastTenth(coarse, d); len(f) != 1 || len(l) != 1 || l[0].At != d {
		t.Fatalf("coarse: %d and %d rows", len(f), len(l))
	}
	if f, l := firstTenth(nil, d), lastTenth(nil, d); len(f) != 0 || len(l) != 0 {
		t.Fatal("rows out of nothing")
	}
	if w := window(rows, 10*time.Second, 20*time.Second); len(w) != 2 {
		t.Fatalf("window: %d rows", len(w))
	}
	// The heap's reference: a sixth into the run (5 minutes of 30), but
	// not before two retentions or the documents' history is full, nor
	// after the last four tenths begin.
	for _, c := range []struct{ d, ret, fill, want time.Duration }{
		{30 * time.Minute, time.Minute, 2 * time.Minute, 5 * time.Minute},
		{30 * time.Minute, time.Minute, 8 * time.Minute, 8 * time.Minute},
		{3 * time.Minute, time.Minute, time.Minute, 2 * time.Minute},
		{3 * time.Minute, time.Minute, 134 * time.Second, 134 * time.Second},
		{3 * time.Minute, time.Minute, time.Hour, 144 * time.Second},
		{12 * time.Minute, 10 * time.Second, 0, 2 * time.Minute},
	} {
		if got := DefaultLimits(c.d, c.ret, c.fill).Warm; got != c.want {
			t.Errorf("warm for %v with retention %v and history filled in %v: %v, want %v", c.d, c.ret, c.fill, got, c.want)
		}
	}
}

func TestKillScheduleAndCheck(t *testing.T) {
	if got := killSchedule(30*time.Minute, 5*time.Minute); len(got) != 5 || got[4] != 25*time.Minute {
		t.Fatalf("30m every 5m: %v", got)
	}
	// 3 minutes every 45 s: the last kill ends 20 s before the last tenth (2:42).
	if got := killSchedule(3*time.Minute, 45*time.Second); len(got) != 3 || got[2] != 135*time.Second {
		t.Fatalf("3m every 45s: %v", got)
	}
	// Kills never fall in the first tenth.
	if got := killSchedule(10*time.Minute, 30*time.Second); got[0] != 90*time.Second {
		t.Fatalf("10m every 30s starts at %v", got[0])
	}
	if c := killCheck(nil); c.Pass {
		t.Fatal("no kill passed")
	}
	if c := killCheck([]kill{{Node: "n2", Ready: time.Second}, {Node: "n3", Err: errors.New("not ready")}}); c.Pass || !strings.Contains(c.Detail, "not ready") {
		t.Fatalf("a failed restart: %+v", c)
	}
	if c := killCheck([]kill{{Node: "n2", Ready: 2 * time.Second}, {Node: "n3", Ready: 3 * time.Second}}); !c.Pass || !strings.Contains(c.Detail, "3.0s") {
		t.Fatalf("%+v", c)
	}
}

func TestOptions(t *testing.T) {
	o := options{duration: 3 * time.Minute, measure: 15 * time.Second, load: 0.5, retention: time.Minute, subscribers: 16}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	o = o.withDefaults()
	if o.killEvery != 45*time.Second || o.sampleEvery != 5*time.Second {
		t.Fatalf("3m: kill every %v, sample every %v", o.killEvery, o.sampleEvery)
	}
	long := options{duration: 30 * time.Minute}.withDefaults()
	if long.killEvery != 5*time.Minute || long.sampleEvery != 30*time.Second {
		t.Fatalf("30m: kill every %v, sample every %v", long.killEvery, long.sampleEvery)
	}
	bad := options{duration: 30 * time.Second, killEvery: time.Second, sampleEvery: time.Hour, measure: time.Second, load: 2, retention: time.Second, subscribers: -1}
	err := bad.validate()
	for _, want := range []string{"--duration", "--kill-every", "--sample-every", "--measure", "--load", "--idempotency-retention", "--subscribers"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s not refused: %v", want, err)
		}
	}
}

func TestShortDur(t *testing.T) {
	for d, want := range map[time.Duration]string{30 * time.Minute: "30m", 3 * time.Minute: "3m", 45 * time.Second: "45s", 30 * time.Second: "30s", 90 * time.Second: "1m30s", time.Hour: "1h", 90 * time.Minute: "1h30m", 0: "0s"} {
		if got := shortDur(d); got != want {
			t.Errorf("shortDur(%v) = %q, want %q", d, got, want)
		}
	}
}
