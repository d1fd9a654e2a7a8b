package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/troupe-db/troupe/bench"
)

// Row is one sample of a soak: what each scenario did since the previous
// row and each node's resources at At.
type Row struct {
	At     time.Duration    // since the soak began
	Load   map[string]Point // by scenario
	SSE    SSEPoint
	Nodes  []NodeSample // in the order of the cluster's nodes
	Events []string     // kills and restarts since the previous row
}

// Point is one scenario's interval.
type Point struct {
	OK, Failed int64
	RPS        float64                 // successes per second
	Latency    *hdrhistogram.Histogram // µs
}

// P99 is the interval's p99 latency.
func (p Point) P99() time.Duration {
	if p.Latency == nil || p.Latency.TotalCount() == 0 {
		return 0
	}
	return time.Duration(p.Latency.ValueAtQuantile(99)) * time.Microsecond
}

// SSEPoint is what the SSE subscribers did in an interval.
type SSEPoint struct {
	Joins, Events, Failures int64
	Open                    int64 // streams open at the sample
}

// ReadBack is the final check of every acknowledged write.
type ReadBack struct {
	Users       int      // acknowledged creates read back
	Deleted     int      // of them, deletes acknowledged too (must be gone)
	Unsure      int      // of them, a delete sent and never answered: not judged
	Missing     []string // created, delete not acknowledged, not found
	Resurrected []string // delete acknowledged, still found
	Unreadable  int      // no answer after retries: unknown, counted as a failure
	Docs        int      // documents with acknowledged ops
	Ops         int64    // acknowledged ops
	DocsBad     []string // a document short of its acknowledged ops
	Replicas    string   // "" when every node reported the same state hash
}

// Limits are the pass rules.
type Limits struct {
	P99Ratio   float64       // the last tenth's p99 over the steady reference's, at most
	HeapGrowth float64       // live heap growth after Warm, at most (0.10: 10%)
	Warm       time.Duration // the heap's reference window starts here
	// A node's goroutines and fds after the load must come back to at
	// most baseline + max(Abs, Frac·baseline).
	GoroutineAbs, FDAbs int
	SlackFrac           float64
	// Kills are the times followers are killed (killSchedule), which
	// place the p99's reference window (steadyWindow).
	Kills []time.Duration
}

// steadyWindow is the p99's reference: a window as long as a tenth, in
// steady state as the last tenth is. It starts no sooner than Warm (the
// state the mix keeps has stopped growing, so the collector's work per
// cycle, which grows with it, has too) and ends at the first kill at or
// after Warm plus a tenth, so that it begins as long after a kill's
// recovery as the last tenth does; without such a kill before the last
// tenth, it starts at Warm.
func steadyWindow(d time.Duration, lim Limits) (from, to time.Duration) {
	from, to = lim.Warm, lim.Warm+d/10
	for _, k := range lim.Kills {
		if k >= to && k <= d-d/10 {
			return k - d/10, k
		}
	}
	return from, to
}

// DefaultLimits are the published rules for a run of d. The heap's
// reference starts after 5 minutes (a sixth of the run), but not before
// the state the mix keeps has stopped growing: the idempotency window
// turns over after a retention (two are waited for), and documents keep
// their last changes, a window that fills in historyFill. It starts by
// four tenths before the end at the latest, so that the two windows
// compared do not overlap.
func DefaultLimits(d, retention, historyFill time.Duration) Limits {
	warm := min(max(d/6, 2*retention, historyFill), d-2*(d/10))
	return Limits{P99Ratio: 1.5, HeapGrowth: 0.10, Warm: warm, GoroutineAbs: 10, FDAbs: 5, SlackFrac: 0.10}
}

// Check is one rule's outcome.
type Check struct {
	Name   string
	Pass   bool
	Detail string
}

// firstTenth and lastTenth pick the rows of a run of duration d that
// fall in its first and last tenth (a row covers the interval ending at
// its At), at least one row each.
func firstTenth(rows []Row, d time.Duration) []Row {
	i := 0
	for i < len(rows) && rows[i].At <= d/10 {
		i++
	}
	return rows[:max(i, min(1, len(rows)))]
}

func lastTenth(rows []Row, d time.Duration) []Row {
	i := len(rows)
	for i > 0 && rows[i-1].At > d-d/10 {
		i--
	}
	return rows[min(i, max(len(rows)-1, 0)):]
}

// window picks the rows with from < At ≤ to.
func window(rows []Row, from, to time.Duration) []Row {
	var out []Row
	for _, r := range rows {
		if r.At > from && r.At <= to {
			out = append(out, r)
		}
	}
	return out
}

// p99Of merges a scenario's latencies over rows.
func p99Of(rows []Row, scenario string) (time.Duration, int64) {
	h := bench.NewLatencyHistogram()
	for _, r := range rows {
		if p, ok := r.Load[scenario]; ok && p.Latency != nil {
			h.Merge(p.Latency)
		}
	}
	if h.TotalCount() == 0 {
		return 0, 0
	}
	return time.Duration(h.ValueAtQuantile(99)) * time.Microsecond, h.TotalCount()
}

// spread is the lowest, median and highest p99 of a scenario's single
// intervals: how much the p99 moves from one interval to the next shows
// how far a ratio between two tenths can be trusted.
func spread(rows []Row, scenario string) (lo, med, hi time.Duration, ok bool) {
	var p99s []time.Duration
	for _, r := range rows {
		if p, found := r.Load[scenario]; found && p.Latency != nil && p.Latency.TotalCount() > 0 {
			p99s = append(p99s, p.P99())
		}
	}
	if len(p99s) == 0 {
		return 0, 0, 0, false
	}
	slices.Sort(p99s)
	return p99s[0], p99s[len(p99s)/2], p99s[len(p99s)-1], true
}

// meanHeap is node i's mean live heap over the rows it was up in.
func meanHeap(rows []Row, i int) (float64, int) {
	var sum float64
	n := 0
	for _, r := range rows {
		if i < len(r.Nodes) && r.Nodes[i].Up {
			sum += float64(r.Nodes[i].Heap)
			n++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}

// judge applies the rules to a soak of duration d.
func judge(rows []Row, d time.Duration, scenarios, nodeIDs []string, base, final []NodeSample, rb ReadBack, lim Limits) []Check {
	var checks []Check

	// No acknowledged write lost.
	lost := Check{Name: "no acknowledged write lost"}
	var problems []string
	if rb.Users == 0 {
		problems = append(problems, "no acknowledged user write to read back")
	}
	if len(rb.Missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d acknowledged users missing (e.g. %s)", len(rb.Missing), rb.Missing[0]))
	}
	if len(rb.Resurrected) > 0 {
		problems = append(problems, fmt.Sprintf("%d users whose delete was acknowledged are back (e.g. %s)", len(rb.Resurrected), rb.Resurrected[0]))
	}
	if rb.Unreadable > 0 {
		problems = append(problems, fmt.Sprintf("%d acknowledged users could not be read back", rb.Unreadable))
	}
	if len(rb.DocsBad) > 0 {
		problems = append(problems, fmt.Sprintf("%d documents short of their acknowledged ops (e.g. %s)", len(rb.DocsBad), rb.DocsBad[0]))
	}
	lost.Pass = len(problems) == 0
	if lost.Pass {
		lost.Detail = fmt.Sprintf("%d acknowledged creates read back (%d of them deleted, and gone; %d with a delete never answered, not judged), %d acknowledged ops on %d documents all present",
			rb.Users-rb.Unsure, rb.Deleted, rb.Unsure, rb.Ops, rb.Docs)
	} else {
		lost.Detail = strings.Join(problems, "; ")
	}
	checks = append(checks, lost)

	rep := Check{Name: "replicas agree", Pass: rb.Replicas == "", Detail: "every node reports the same state hash at the same index"}
	if !rep.Pass {
		rep.Detail = rb.Replicas
	}
	checks = append(checks, rep)

	// Latency holds: the last tenth's p99 against the steady
	// reference's; the first tenth's, while the state filled, is shown.
	first, last := firstTenth(rows, d), lastTenth(rows, d)
	from, to := steadyWindow(d, lim)
	ref := window(rows, from, to)
	for _, sc := range scenarios {
		c := Check{Name: fmt.Sprintf("%s p99 holds (last tenth ≤ %.1f× %s–%s)", sc, lim.P99Ratio, fmtMin(from), fmtMin(to))}
		a, na := p99Of(ref, sc)
		b, nb := p99Of(last, sc)
		switch {
		case na == 0 || nb == 0:
			c.Detail = fmt.Sprintf("no requests answered in the reference (%d) or the last tenth (%d)", na, nb)
		default:
			ratio := float64(b) / float64(a)
			c.Pass = ratio <= lim.P99Ratio
			c.Detail = fmt.Sprintf("%s–%s %s, last tenth %s: %.2f×", fmtMin(from), fmtMin(to), fmtDur(a), fmtDur(b), ratio)
			if f, nf := p99Of(first, sc); nf > 0 {
				c.Detail += fmt.Sprintf("; first tenth, the state still filling, %s", fmtDur(f))
			}
			if lo, med, hi, ok := spread(rows, sc); ok {
				c.Detail += fmt.Sprintf(" (the p99 of single intervals ranged %s–%s, median %s)", fmtDur(lo), fmtDur(hi), fmtDur(med))
			}
		}
		checks = append(checks, c)
	}

	// Live heap after the warm-up: the window as long as a tenth that
	// starts at Warm against the last tenth.
	ref = window(rows, lim.Warm, lim.Warm+max(d/10, time.Nanosecond))
	for i, id := range nodeIDs {
		c := Check{Name: fmt.Sprintf("%s heap grows ≤ %.0f%% after %s", id, lim.HeapGrowth*100, fmtDur(lim.Warm))}
		a, na := meanHeap(ref, i)
		b, nb := meanHeap(last, i)
		if na == 0 || nb == 0 {
			c.Detail = fmt.Sprintf("no sample of the node in the reference (%d) or last (%d) window", na, nb)
		} else {
			growth := b/a - 1
			c.Pass = b <= a*(1+lim.HeapGrowth)*(1+1e-12) // 10% is within 10%
			c.Detail = fmt.Sprintf("%s → %s (%+.1f%%)", mib(a), mib(b), growth*100)
		}
		checks = append(checks, c)
	}

	// Goroutines and fds back to their baseline once the load is gone.
	for i, id := range nodeIDs {
		c := Check{Name: id + " goroutines and fds back to baseline"}
		if i >= len(base) || i >= len(final) || !base[i].Up || !final[i].Up {
			c.Detail = "no baseline or final sample of the node"
			checks = append(checks, c)
			continue
		}
		gAllowed := allowed(base[i].Goroutines, lim.GoroutineAbs, lim.SlackFrac)
		fAllowed := allowed(base[i].FDs, lim.FDAbs, lim.SlackFrac)
		c.Pass = final[i].Goroutines <= gAllowed && final[i].FDs <= fAllowed
		c.Detail = fmt.Sprintf("goroutines %d → %d (at most %d), fds %d → %d (at most %d)",
			base[i].Goroutines, final[i].Goroutines, gAllowed, base[i].FDs, final[i].FDs, fAllowed)
		checks = append(checks, c)
	}
	return checks
}

// allowed is base + max(abs, frac·base).
func allowed(base, abs int, frac float64) int {
	return base + max(abs, int(frac*float64(base)+0.5))
}

// passed says whether every check passed.
func passed(checks []Check) bool {
	for _, c := range checks {
		if !c.Pass {
			return false
		}
	}
	return len(checks) > 0
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return shortDur(d.Round(time.Second))
}

// killCheck passes when at least one follower was killed and every one
// killed came back.
func killCheck(kills []kill) Check {
	c := Check{Name: "every killed follower came back"}
	if len(kills) == 0 {
		c.Detail = "no follower was killed (the run is too short for its --kill-every)"
		return c
	}
	var slowest time.Duration
	for _, k := range kills {
		if k.Err != nil {
			c.Detail = fmt.Sprintf("at %s, %s: %v", fmtDur(k.At), k.Node, k.Err)
			return c
		}
		slowest = max(slowest, k.Ready)
	}
	c.Pass = true
	c.Detail = fmt.Sprintf("%d kills (-9), each node ready again within %s", len(kills), fmtDur(slowest))
	return c
}
