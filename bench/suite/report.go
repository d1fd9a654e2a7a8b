package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// benchNs finds a Go benchmark's ns/op in go test's output.
func benchNs(out, name string) (float64, bool) { return benchMetric(out, name, "ns/op") }

// benchMetric finds the value a Go benchmark reported in unit (ns/op,
// B/op, or one of its own, such as B/doc) in go test's output.
func benchMetric(out, name, unit string) (float64, bool) {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], name+"-") {
			continue
		}
		for i := 2; i+1 < len(f); i++ {
			if f[i+1] == unit {
				v, err := strconv.ParseFloat(f[i], 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}

// itemName is what a scenario's items are.
func itemName(scenario string) string {
	if strings.HasPrefix(scenario, "ratelimit-") {
		return "decisions"
	}
	return "users"
}

func ms(us int64) string { return fmt.Sprintf("%.2f", float64(us)/1000) }

// pct shows a share of CPU time stolen, or — when unknown.
func pct(share float64) string {
	if share < 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", share*100)
}

// floorP99 describes an open-loop run's floor: its p99 at the same rate.
func floorP99(r *result) string {
	if r.Floor == nil {
		return "—"
	}
	return fmt.Sprintf("p99 %s ms", ms(r.Floor.LatencyUS.P99))
}

func writeReport(path string, runs []*run, opens []*run, keyed *keyedRuns, secure *secureRuns, watch string, fsync time.Duration, mem *memoryResult, docMem *docMemoryResult, goOut, goCmd string) error {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	when := time.Now().UTC().Format("2006-01-02 15:04 UTC")
	chart := chartPath(path)
	if err := writeChart(chart, runs, secure, when); err != nil {
		return err
	}
	w("# troupe benchmarks\n\n")
	w("Written by `make bench` (`go run ./bench/suite`) on %s. Every load figure stands next to its\n", when)
	w("**floor** — the same scenario, client and connections against `troupe bench serve-floor`, a bare\n")
	w("fasthttp server answering a user-sized body at once — measured in the same run, and the ratio.\n")
	w("The load generator shares the machine with the node, as TARGETS.md prescribes. Figures are\n")
	w("noisy on shared machines: compare ratios, not absolute numbers, between runs. The last column is\n")
	w("the share of the machine's CPU time the hypervisor gave to other machines during the row (steal,\n")
	w("from /proc/stat): a row with more than a few percent was measured on a contended machine.\n\n")
	w("Machine: %d cores (`nproc`), %s, %s. Durable writes: fsync of a 4 KiB append here took\n", runtime.NumCPU(), cpuModel(), goVersion())
	w("%.2f ms on average (so one writer at a time could do at most %.0f writes/s).\n\n", float64(fsync.Microseconds())/1000, 1/fsync.Seconds())
	w("Node: `troupe serve --insecure --rate-limit off --max-streams-per-user 100000 --grpc-addr 127.0.0.1:8081` with a fresh data dir, one-node cluster, 64 user shards; the rate-limit and document rows on a second such node, since the users rows leave about a million users on the first.\n\n")
	w("How to run: `make bench` writes this page and its chart (≈ 8 min); `make bench-keyed`, `make bench-users`, `make bench-ratelimit` and `make bench-watch` print one\n")
	w("group of its rows; `make bench-peers` runs etcd 3.6 and ShareDB 7 beside troupe in one run, with the same\n")
	w("connection counts, and writes docs/PEERS.md (`PEERS_DURATION=2s make bench-peers` for a short trial).\n\n")

	w("[![Each load row's throughput over its floor's, with its target](%s)](%s)\n\n", filepath.Base(chart), filepath.Base(chart))
	w("The chart (%s): each load row with a floor as a bar, its throughput / the floor's; the target as a\n", filepath.Base(chart))
	w("black mark (a target in requests/s drawn at target / floor); green reaches it, red falls short.\n\n")
	w("## Load (`troupe bench`)\n\n")
	w("| scenario | req/s | p50 ms | p99 ms | p99.9 ms | floor req/s (open loops: its p99 at the same rate) | ratio | stolen |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range runs {
		fr, ratio := "—", "—"
		if r.res.Floor != nil {
			fr, ratio = fmt.Sprintf("%.0f", r.res.Floor.ThroughputRPS), fmt.Sprintf("%.2f", r.res.FloorRatio)
		}
		extra := ""
		if r.res.Items > 0 {
			extra = fmt.Sprintf(" (%.0f %s/s)", r.res.ThroughputRPS*float64(r.res.Items), itemName(r.res.Scenario))
		}
		w("| %s | %.0f%s | %s | %s | %s | %s | %s | %s |\n", r.label, r.res.ThroughputRPS, extra,
			ms(r.res.LatencyUS.P50), ms(r.res.LatencyUS.P99), ms(r.res.LatencyUS.P999), fr, ratio, pct(r.res.Steal))
	}
	for _, o := range opens {
		w("| %s | %.0f | %s | %s | %s | %s | — | %s |\n", o.label, o.res.ThroughputRPS,
			ms(o.res.LatencyUS.P50), ms(o.res.LatencyUS.P99), ms(o.res.LatencyUS.P999), floorP99(o.res), pct(o.res.Steal))
	}
	w("\n")
	open, tuned := opens[0], opens[1]

	lin, stale := runs[2].res, runs[3].res
	w("Derived, from this run:\n\n")
	w("- linearizable / stale reads at the same load: **%.2f** (target ≥ 0.80)\n", lin.ThroughputRPS/stale.ThroughputRPS)
	w("- users-get / floor: **%.2f** (target ≥ 0.70)\n", lin.FloorRatio)
	w("- durable creates at 64 connections: **%.0f/s** (target ≥ 34,000/s)\n", runs[0].res.ThroughputRPS)
	spread, leader := runs[len(runs)-2].res, runs[len(runs)-1].res
	w("- 3-node cluster creates at 64 connections: **%.0f/s** (target ≥ 17,000/s); with each connection following the leader, as the Go client sends writes: **%.0f/s**\n", spread.ThroughputRPS, leader.ThroughputRPS)
	if fsync > 0 {
		w("- creates at 1 connection / (1 / fsync latency): **%.2f** (target ≥ 0.6)\n", runs[1].res.ThroughputRPS*fsync.Seconds())
	}
	w("- p99 at half the maximum create throughput (open loop): **%s ms** (target ≤ 5 ms); on a node run with %s: **%s ms**.\n",
		ms(open.res.LatencyUS.P99), strings.Join(tunedGC, " "), ms(tuned.res.LatencyUS.P99))
	w("  The floor at the same rates, this machine's own tail: %s and %s\n", floorP99(open.res), floorP99(tuned.res))
	if ns, ok := benchNs(goOut, "BenchmarkActorRoundTrip/serial"); ok {
		w("- actor request/reply round trip (`BenchmarkActorRoundTrip/serial`, below): **%.2f µs** (target ≤ 1 µs, aim ≤ 0.5 µs)\n", ns/1000)
	}
	for _, r := range runs {
		if r.res.Scenario != "docs-ws" {
			continue
		}
		switch r.res.Docs {
		case 1:
			w("- collaborative edits, 64 clients on 1 document (WebSocket): **%.0f ops/s**, p99 **%s ms** (target ≥ 2,000/s, p99 ≤ 30 ms);\n", r.res.ThroughputRPS, ms(r.res.LatencyUS.P99))
		default:
			w("- collaborative edits, 64 clients on %d documents (WebSocket): **%.0f ops/s** (target ≥ 36,000/s);\n", r.res.Docs, r.res.ThroughputRPS)
		}
		w("  %.0f changes/s delivered to the clients; first / last tenth of the run %.0f / %.0f ops/s\n", r.res.EventsRPS, r.res.FirstRPS, r.res.LastRPS)
	}
	w("\n")

	writeKeyed(w, keyed)
	writeSecure(w, secure)

	w("## Change feed (`watch`)\n\n")
	w("64 watchers of `GET /v1/watch?kinds=users` while creating users, next to the same creates without\n")
	w("watchers, alternately on one fresh node (goal: creates ≥ 0.8 × without, every watcher's lag p99 ≤ 50 ms;\n")
	w("lag is when the watcher read a change minus the change's `at`). `make bench-watch` runs three pairs of 10 s.\n\n")
	w("%s\n", watch)

	w("## Memory and restart\n\n")
	w("%d users loaded in batches of 1000 (%.0f users/s): live heap %.0f MB after a forced GC, %.0f B per\n",
		mem.Users, float64(mem.Users)/mem.LoadSeconds, mem.HeapAfter/1e6, mem.perUser())
	w("user, of which %.0f B are the raw id, name and email: **%.0f B per user beyond the raw fields**\n",
		mem.RawPerUser, mem.perUser()-mem.RawPerUser)
	w("(target ≤ 300 B, aim ≤ 150 B). Restart (SIGTERM, start, replay of the log) until `/readyz`:\n")
	w("**%.2f s** (target ≤ 5 s, aim ≤ 2 s). Load command: `%s`.\n\n", mem.RestartReady.Seconds(), mem.Cmd)

	writeDocMemory(w, docMem, goOut)

	w("Commands (the node's address shown as the default):\n\n```sh\n")
	for _, r := range runs {
		w("%s\n", r.cmd)
	}
	for _, o := range opens {
		w("%s\n", o.cmd)
	}
	w("```\n\n")

	w("## Go benchmarks\n\n`%s`\n\n```\n%s\n```\n", goCmd, goOut)
	if notes, err := os.ReadFile("docs/BENCHMARKS-notes.md"); err == nil {
		w("\n%s", notes)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// chartPath is where the chart of the report at path goes: beside it,
// the same name ending in .svg.
func chartPath(path string) string { return strings.TrimSuffix(path, filepath.Ext(path)) + ".svg" }
