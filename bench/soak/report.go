package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// report is what SOAK.md and soak.svg are written from.
type report struct {
	o           options
	scen        []*soakScenario
	rows        []Row
	checks      []Check
	kills       []kill
	rb          ReadBack
	base, final []NodeSample
	nodes       []string
	pass        bool
	lim         Limits
	loadBefore  string // /proc/loadavg when the soak began
	loadAfter   string
}

// fullRun is the length of the run the published claim rests on.
const fullRun = 30 * time.Minute

func (r *report) write() error {
	if err := os.MkdirAll(filepath.Dir(r.o.out), 0o755); err != nil {
		return fmt.Errorf("cannot create the report's directory: %w", err)
	}
	svgPath := filepath.Join(filepath.Dir(r.o.out), "soak.svg")
	var svg bytes.Buffer
	if err := r.chart().writeSVG(&svg); err != nil {
		return err
	}
	if err := os.WriteFile(svgPath, svg.Bytes(), 0o644); err != nil {
		return fmt.Errorf("cannot write %s: %w", svgPath, err)
	}
	var b bytes.Buffer
	r.markdown(&b)
	if err := os.WriteFile(r.o.out, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("cannot write %s: %w", r.o.out, err)
	}
	return nil
}

// command is how to repeat the run with make, and the command make runs.
func (r *report) command() (string, string) {
	mk := "SOAK=" + shortDur(r.o.duration)
	if r.o.explicitKill {
		mk += " SOAK_KILL_EVERY=" + shortDur(r.o.killEvery)
	}
	mk += " make soak"
	if r.o.duration == fullRun && !r.o.explicitKill {
		mk = "make soak"
	}
	full := fmt.Sprintf("go run ./bench/soak --troupe %s --duration %s --kill-every %s --sample-every %s --measure %s --load %g --idempotency-retention %s --subscribers %d --out %s",
		r.o.bin, shortDur(r.o.duration), shortDur(r.o.killEvery), shortDur(r.o.sampleEvery), shortDur(r.o.measure), r.o.load, shortDur(r.o.retention), r.o.subscribers, r.o.out)
	return mk, full
}

// shortDur prints 30m rather than 30m0s.
func shortDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// saturated is the share of the measured maximum beyond which the report
// warns that the soak runs near saturation.
const saturated = 0.6

// share is rate over maximum, 0 without a maximum.
func share(rate, maximum float64) float64 {
	if maximum <= 0 {
		return 0
	}
	return rate / maximum
}

// busiest names the scenarios that run above saturated of their maximum,
// "" if none.
func (r *report) busiest() string {
	var names []string
	for _, s := range r.scen {
		if share(s.Rate, s.Max) > saturated {
			names = append(names, fmt.Sprintf("%s at %.0f%%", s.Name, share(s.Rate, s.Max)*100))
		}
	}
	return strings.Join(names, ", ")
}

func (r *report) markdown(b *bytes.Buffer) {
	verdict := "PASS"
	if !r.pass {
		verdict = "FAIL"
	}
	mk, full := r.command()
	fmt.Fprintf(b, "# Soak\n\n")
	fmt.Fprintf(b, "`make soak` (written by `bench/soak`): a three-node troupe on 127.0.0.1 with `--idempotency-retention %s` under a steady mix of keyed user writes, user reads, WebSocket edits on 64 documents of %d letters with SSE subscribers joining and leaving, and rate-limit checks, all at once, as an open loop at %s, while a follower is killed (-9) and restarted every %s. It passes when no acknowledged write is lost, the p99 of the last tenth is at most %.1f× that of a steady window as long (see the rules), the live heap grows at most %.0f%% after the first %s (see the rules), and goroutines and fds come back to their baseline.\n\n",
		shortDur(r.o.retention), docLength, r.o.rates(), shortDur(r.o.killEvery), r.lim.P99Ratio, r.lim.HeapGrowth*100, fmtDur(r.lim.Warm))
	fmt.Fprintf(b, "**Verdict: %s** — a run of %s, %s, troupe %s, %d CPUs (%s), %s.\n\n", verdict, shortDur(r.o.duration),
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), troupeVersion(r.o.bin), runtime.NumCPU(), cpuModel(), runtime.Version())
	if r.o.duration < fullRun {
		fmt.Fprintf(b, "> **A short run.** This report is of a %s run (a follower killed every %s, a sample every %s): it shows the harness working end to end, not that troupe holds for long. Its tenths, whose p99s the latency rule compares, are %s each, short enough for a moment of other work on the machine to decide the ratio. The published claim rests on the full %s run (`make soak`).\n\n",
			shortDur(r.o.duration), shortDur(r.o.killEvery), shortDur(r.o.sampleEvery), fmtDur(r.o.duration/10), shortDur(fullRun))
	}
	fmt.Fprintf(b, "> **The machine.** The nodes, the load and the sampler share this machine's %d CPUs; its load average was %s when the soak began and %s when it ended. Other work on the machine shows up as noise in every figure below, in the p99s first.\n\n",
		runtime.NumCPU(), r.loadBefore, r.loadAfter)

	fmt.Fprintf(b, "## Checks\n\n| check | | detail |\n|---|---|---|\n")
	for _, c := range r.checks {
		mark := "pass"
		if !c.Pass {
			mark = "**FAIL**"
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", c.Name, mark, c.Detail)
	}

	fmt.Fprintf(b, "\n## The load\n\nThe maximum is each scenario's throughput with all four running at once, closed loop, for %s. ", shortDur(r.o.measure))
	if r.o.load > 0 {
		fmt.Fprintf(b, "The soak runs each at %.0f%% of it (`--load`), open loop (latency counts from when a request fell due).\n\n", r.o.load*100)
	} else {
		fmt.Fprintf(b, "The soak runs each at a fixed rate, the same in every run, open loop (latency counts from when a request fell due); the maximum is measured to show how much of it that is on this machine.\n\n")
	}
	if busy := r.busiest(); busy != "" {
		fmt.Fprintf(b, "> **Near saturation.** %s: at over %.0f%% of the maximum, queueing decides the p99s, and the p99 rule judges the machine's headroom more than troupe.\n\n", busy, saturated*100)
	}
	fmt.Fprintf(b, "| scenario | `troupe bench` | connections | maximum | soak rate | share | answered | failed | p99 over the run |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.scen {
		extra := ""
		if s.Config.Idempotency {
			extra = " `--idempotency`"
		}
		if s.Config.Scenario == "users-churn" {
			extra += fmt.Sprintf(" `--users %d`", s.Config.Users)
		}
		if s.Config.Scenario == "docs-ws" {
			extra += fmt.Sprintf(" `--docs %d` `--doc-length %d`", s.Config.Docs, s.Config.DocLength)
		}
		var answered, failed int64
		var p99 time.Duration
		if s.result != nil {
			answered, failed = s.result.Requests-s.result.Errors, s.result.Errors
			p99 = time.Duration(s.result.LatencyUS.P99) * time.Microsecond
			if s.Config.Scenario == "docs-ws" {
				answered = s.result.ByStatus["ack"]
			}
		}
		fmt.Fprintf(b, "| %s | `%s`%s | %d | %.0f/s | %.0f/s | %.0f%% | %d | %d | %s |\n", s.Name, s.Config.Scenario, extra, s.Config.Connections, s.Max, s.Rate, share(s.Rate, s.Max)*100, answered, failed, fmtDur(p99))
	}
	var joins, events, sseFail int64
	for _, row := range r.rows {
		joins, events, sseFail = joins+row.SSE.Joins, events+row.SSE.Events, sseFail+row.SSE.Failures
	}
	fmt.Fprintf(b, "\nSSE: %d subscribers, each on a random document and node for 2–20 s at a time: %d joins, %d change events received, %d streams refused or cut (a killed node's).\n\n", r.o.subscribers, joins, events, sseFail)
	fmt.Fprintf(b, "`users-churn` keeps %d users: each connection creates users and, once it holds its share, deletes its oldest before creating the next, so that the state stops growing and the memory rule judges troupe, not the data. Failed requests are mostly those sent to the killed follower while it was down.\n\n", population)
	if len(r.kills) > 0 {
		fmt.Fprintf(b, "Kills: ")
		for i, k := range r.kills {
			if i > 0 {
				fmt.Fprintf(b, "; ")
			}
			if k.Err != nil {
				fmt.Fprintf(b, "%s %s: %v", fmtMin(k.At), k.Node, k.Err)
			} else {
				fmt.Fprintf(b, "%s %s (ready again in %s)", fmtMin(k.At), k.Node, fmtDur(k.Ready))
			}
		}
		fmt.Fprintf(b, ".\n\n")
	}

	fmt.Fprintf(b, "## Over time\n\n![Throughput, p99 and memory over the soak](soak.svg)\n\n")
	fmt.Fprintf(b, "Each row covers the %s before its time. p99 is of that interval.\n\n", shortDur(r.o.sampleEvery))
	fmt.Fprintf(b, "| t |")
	for _, s := range r.scen {
		fmt.Fprintf(b, " %s /s | p99 |", s.Name)
	}
	fmt.Fprintf(b, " failed | SSE joins / events | events |\n|---|")
	for range r.scen {
		fmt.Fprintf(b, "---|---|")
	}
	fmt.Fprintf(b, "---|---|---|\n")
	for _, row := range r.rows {
		fmt.Fprintf(b, "| %s |", fmtMin(row.At))
		var failed int64
		for _, s := range r.scen {
			p := row.Load[s.Name]
			failed += p.Failed
			fmt.Fprintf(b, " %.0f | %s |", p.RPS, fmtDur(p.P99()))
		}
		fmt.Fprintf(b, " %d | %d / %d | %s |\n", failed, row.SSE.Joins, row.SSE.Events, strings.Join(row.Events, "; "))
	}
	fmt.Fprintf(b, "\nEach node: live heap (after a forced collection) / RSS, goroutines, open fds, apply lag (entries).\n\n| t |")
	for _, id := range r.nodes {
		fmt.Fprintf(b, " %s |", id)
	}
	fmt.Fprintf(b, "\n|---|")
	for range r.nodes {
		fmt.Fprintf(b, "---|")
	}
	fmt.Fprintln(b)
	cell := func(n NodeSample) string {
		if !n.Up {
			return "down"
		}
		lead := ""
		if n.Leader {
			lead = " (leader)"
		}
		return fmt.Sprintf("%.1f / %.0f MiB · %d g · %d fd · lag %d%s", float64(n.Heap)/(1<<20), float64(n.RSS)/(1<<20), n.Goroutines, n.FDs, n.ApplyLag, lead)
	}
	nodeRow := func(label string, ns []NodeSample) {
		fmt.Fprintf(b, "| %s |", label)
		for i := range r.nodes {
			if i < len(ns) {
				fmt.Fprintf(b, " %s |", cell(ns[i]))
			} else {
				fmt.Fprintf(b, " |")
			}
		}
		fmt.Fprintln(b)
	}
	nodeRow("baseline", r.base)
	for _, row := range r.rows {
		nodeRow(fmtMin(row.At), row.Nodes)
	}
	nodeRow("after", r.final)

	fmt.Fprintf(b, "\n## The rules\n\n")
	fmt.Fprintf(b, "- **No acknowledged write lost.** Every user whose create was acknowledged (201) is read back (linearizable `GET`): it must be there unless its delete was acknowledged (204), and then it must be gone. A document must be at least at the highest version acknowledged on it; every WebSocket op inserts or deletes one letter (a delete where the client's document has %d letters or more, an insert otherwise), so at version v it must hold %d ± v letters, an even number of steps from v. A user that cannot be read back counts as lost. After the read-back every node must report the same `GET /v1/cluster/hash` at the same index.\n", docLength, docLength)
	from, to := steadyWindow(r.o.duration, r.lim)
	fmt.Fprintf(b, "- **p99 holds.** Per scenario, the p99 of all requests in the last tenth of the run against their p99 from %s to %s: a window as long, after the state the mix keeps has stopped growing (as for memory, below: while the idempotency window and the documents' kept changes fill, the live heap and with it the collector's work grow, so the first tenth is not yet the node the rest of the run has), and ending at a kill, so that both windows begin as long after a kill's recovery. So the rule compares steady state with steady state, and a degradation over time shows. The first tenth's p99 is given beside it.\n", fmtMin(from), fmtMin(to))
	fmt.Fprintf(b, "- **Memory holds.** Per node, the mean live heap (sampled right after a forced collection, so the collector's cycle does not show as growth) over the last tenth against the mean over a tenth-long window starting at %s: after the first sixth of the run (5 minutes of 30), and no sooner than the state the mix keeps stops growing (two idempotency retentions; the documents' last %d changes each, %s at this edit rate), nor later than four tenths before the end.\n",
		fmtDur(r.lim.Warm), keptChanges, fmtDur(historyFill(r.scen)))
	fmt.Fprintf(b, "  The documents' text does not grow (%d documents of about %d letters each, %s in all): the edits delete as much as they insert once a document has its length, as `users-churn` deletes as many users as it creates.\n",
		r.rb.Docs, docLength, mib(float64(r.rb.Docs*docLength)))
	fmt.Fprintf(b, "- **Nothing leaks.** Before the load, once the nodes are idle and steady, each node's goroutines and open fds are its baseline; after the load and the read-back they must come back to at most baseline + max(%d, %.0f%%) goroutines and baseline + max(%d, %.0f%%) fds within 90 s.\n",
		r.lim.GoroutineAbs, r.lim.SlackFrac*100, r.lim.FDAbs, r.lim.SlackFrac*100)
	fmt.Fprintf(b, "- **Kills.** At least one follower is killed with SIGKILL during the run, and every one killed is ready again (`/readyz`) within 2 minutes.\n")

	fmt.Fprintf(b, "\n## Command\n\n```\n%s\n```\n\nwhich runs\n\n```\n%s\n```\n", mk, full)
	fmt.Fprintf(b, "\nThe nodes run `troupe serve --insecure --rate-limit off --idempotency-retention %s --access-token-ttl 24h` (n1 `--bootstrap`, n2 and n3 `--join` n1; `--max-streams-per-user 100000` where the binary has that limit, since one user holds every stream of the mix), a restarted node with the same command.\n", shortDur(r.o.retention))
}

// chart is throughput, p99 and memory over time, the kills marked.
func (r *report) chart() chart {
	minutes := func(d time.Duration) float64 { return d.Minutes() }
	c := chart{
		Title:  fmt.Sprintf("troupe soak, %s: %s", shortDur(r.o.duration), map[bool]string{true: "PASS", false: "FAIL"}[r.pass]),
		XMax:   minutes(r.o.duration),
		XLabel: "minutes since the load began",
	}
	for _, k := range r.kills {
		c.Markers = append(c.Markers, marker{X: minutes(k.At), Label: "kill " + k.Node})
	}
	// Throughput as a share of each scenario's rate: the scenarios run
	// at rates an order of magnitude apart, and what a reader looks for
	// is whether each keeps up with its own.
	var tput, lat panel
	tput.Title, tput.Format = "throughput, % of each scenario's open-loop rate", func(v float64) string { return fmt.Sprintf("%g%%", v) }
	lat.Title, lat.Format = "p99 latency per interval (ms)", func(v float64) string { return fmt.Sprintf("%g", v) }
	for i, s := range r.scen {
		col := palette[i%len(palette)]
		ts := series{Name: fmt.Sprintf("%s (%.0f/s)", s.Name, s.Rate), Color: col}
		ls := series{Name: s.Name, Color: col}
		for _, row := range r.rows {
			p := row.Load[s.Name]
			share := math.NaN()
			if s.Rate > 0 {
				share = p.RPS / s.Rate * 100
			}
			ts.Points = append(ts.Points, point{minutes(row.At), share})
			y := math.NaN()
			if p.Latency != nil && p.Latency.TotalCount() > 0 {
				y = float64(p.P99().Microseconds()) / 1000
			}
			ls.Points = append(ls.Points, point{minutes(row.At), y})
		}
		tput.Series, lat.Series = append(tput.Series, ts), append(lat.Series, ls)
	}
	mem := panel{Title: "memory per node (MiB): live heap solid, RSS dashed", Format: func(v float64) string { return fmt.Sprintf("%g", v) }}
	for i, id := range r.nodes {
		col := palette[(len(r.scen)+i)%len(palette)]
		heap, rss := series{Name: id + " heap", Color: col}, series{Name: id + " RSS", Color: col, Dashed: true}
		for _, row := range r.rows {
			h, m := math.NaN(), math.NaN()
			if i < len(row.Nodes) && row.Nodes[i].Up {
				h, m = float64(row.Nodes[i].Heap)/(1<<20), float64(row.Nodes[i].RSS)/(1<<20)
			}
			heap.Points = append(heap.Points, point{minutes(row.At), h})
			rss.Points = append(rss.Points, point{minutes(row.At), m})
		}
		mem.Series = append(mem.Series, heap, rss)
	}
	c.Panels = []panel{tput, lat, mem}
	return c
}

func troupeVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "(unknown version)"
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "troupe "))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
