package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/bench"
)

// The report of a short run says it is short, gives the verdict, one
// table row per sample and the command, and writes a chart beside it.
func TestReportWrite(t *testing.T) {
	d := 3 * time.Minute
	o := options{bin: "bin/troupe", duration: d, measure: 15 * time.Second, load: 0.5, retention: time.Minute, subscribers: 16,
		out: filepath.Join(t.TempDir(), "docs", "SOAK.md")}.withDefaults()
	rows := soakRows(d, o.sampleEvery, func(time.Duration) time.Duration { return 3 * time.Millisecond }, func(time.Duration) int64 { return 40 << 20 })
	rows[8].Events = []string{"n2 killed (-9)", "n2 ready again in 2.1s"}
	rows[8].Nodes[1] = NodeSample{}
	ws := bench.DefaultConfig()
	ws.Scenario, ws.Docs = "docs-ws", 64
	scen := []*soakScenario{{Name: "s", Config: ws, Max: 800, Rate: 400}}
	lim := DefaultLimits(d, o.retention, historyFill(scen))
	checks := judge(rows, d, []string{"s"}, []string{"n1", "n2"}, idle, idle, okReadBack, lim)
	kills := []kill{{At: 45 * time.Second, Node: "n2", Ready: 2100 * time.Millisecond}}
	checks = append(checks, killCheck(kills))
	r := report{o: o, scen: scen, rows: rows, checks: checks, kills: kills, rb: okReadBack, base: idle, final: idle,
		nodes: []string{"n1", "n2"}, pass: passed(checks), lim: lim, loadBefore: "1.00 1.00 1.00", loadAfter: "2.00 1.50 1.00"}
	if err := r.write(); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(o.out)
	if err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(filepath.Join(filepath.Dir(o.out), "soak.svg"))
	if err != nil {
		t.Fatal(err)
	}
	parse(t, svg)
	s := string(md)
	for _, want := range []string{
		"**Verdict: PASS**", "**A short run.**", "load average was 1.00 1.00 1.00", "![Throughput, p99 and memory over the soak](soak.svg)",
		"| 0:45 |", "n2 killed (-9); n2 ready again in 2.1s", "| 3:00 |", "| baseline |", "| after |", "down",
		"SOAK=3m make soak", "--kill-every 45s --sample-every 5s", "0:45 n2 (ready again in 2.1s)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// Two tables: one row per sample each.
	if n := strings.Count(s, "\n| 1:00 |"); n != 2 {
		t.Errorf("%d rows for 1:00, want 2", n)
	}
	// The full run is neither short nor given a SOAK= prefix.
	r.o.duration = fullRun
	var b bytes.Buffer
	r.markdown(&b)
	if strings.Contains(b.String(), "A short run") || !strings.Contains(b.String(), "```\nmake soak\n```") {
		t.Errorf("a full run's report:\n%s", b.String())
	}
}
