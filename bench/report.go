package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// WriteTable prints a human-readable report.
func WriteTable(w io.Writer, r *Result) {
	fmt.Fprintf(w, "\nscenario %s against %s, %d connections", r.Scenario, strings.Join(r.Targets, ","), r.Connections)
	switch {
	case r.Docs == 1:
		fmt.Fprint(w, " on 1 document")
	case r.Docs > 1:
		fmt.Fprintf(w, " on %d documents", r.Docs)
	}
	if r.Rate > 0 {
		fmt.Fprintf(w, ", open loop at %.0f req/s", r.Rate)
	}
	if r.FollowLeader {
		fmt.Fprintf(w, ", following the leader (%d moves)", r.LeaderMoves)
	}
	if r.Idempotency {
		fmt.Fprint(w, ", a fresh Idempotency-Key on every write")
	}
	fmt.Fprintf(w, ", %.1f s measured\n", r.DurationS)
	writeOne(w, "", r)
	if r.Floor != nil {
		writeOne(w, "floor ", r.Floor)
		fmt.Fprintf(w, "  ratio to floor    %.2f\n", r.FloorRatio)
	}
}

func writeOne(w io.Writer, label string, r *Result) {
	fmt.Fprintf(w, "  %srequests  %d (%d errors)\n", label, r.Requests, r.Errors)
	keys := make([]string, 0, len(r.ByStatus))
	for k := range r.ByStatus {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, r.ByStatus[k]))
	}
	fmt.Fprintf(w, "  %sby status %s\n", label, strings.Join(parts, ", "))
	fmt.Fprintf(w, "  %sthroughput %.0f req/s", label, r.ThroughputRPS)
	if r.ItemsPerRequest > 0 {
		fmt.Fprintf(w, " (%.0f items/s)", r.ThroughputRPS*float64(r.ItemsPerRequest))
	}
	fmt.Fprintln(w)
	l := r.LatencyUS
	fmt.Fprintf(w, "  %slatency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", label,
		us(l.P50), us(l.P90), us(l.P99), us(l.P999), us(l.Max))
	if r.FirstRPS > 0 || r.LastRPS > 0 {
		fmt.Fprintf(w, "  %sover time  first tenth %.0f req/s, last tenth %.0f req/s\n", label, r.FirstRPS, r.LastRPS)
	}
	if l := r.WatchLagMS; l != nil {
		fmt.Fprintf(w, "  %swatchers   %d, %.0f changes/s read together; lag p50 %d ms  p90 %d ms  p99 %d ms  max %d ms\n", label,
			r.Watchers, r.WatchEventsRPS, l.P50, l.P90, l.P99, l.Max)
		for _, e := range r.WatchErrors {
			fmt.Fprintf(w, "  %swatch ended early: %s\n", label, e)
		}
	}
	if r.EventsRPS > 0 || r.Resets > 0 {
		fmt.Fprintf(w, "  %sevents     %.0f changes/s received by the clients (%d resets)\n", label, r.EventsRPS, r.Resets)
	}
}

func us(v int64) string {
	d := time.Duration(v) * time.Microsecond
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", v)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(v)/1000)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// ProgressLine renders a one-line progress bar for a terminal.
func ProgressLine(l Live) string {
	if !l.Measuring {
		return fmt.Sprintf("\rwarming up… %5.1fs", -l.Elapsed.Seconds())
	}
	const width = 30
	frac := 0.0
	if l.Total > 0 {
		frac = min(1, l.Elapsed.Seconds()/l.Total.Seconds())
	}
	filled := int(frac * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	return fmt.Sprintf("\r[%s] %5.1fs  %8.0f req/s  errors %d  p99 %s   ", bar, l.Elapsed.Seconds(), l.RPS, l.Errors, us(l.P99.Microseconds()))
}
