package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBenchNs(t *testing.T) {
	out := "pkg: x\nBenchmarkActorRoundTrip/serial-2         \t 1896124\t       630.8 ns/op\t      15 B/op\t       0 allocs/op\n" +
		"BenchmarkActorRoundTrip/parallel-2 \t 1295881\t 804.4 ns/op\n"
	if v, ok := benchNs(out, "BenchmarkActorRoundTrip/serial"); !ok || v != 630.8 {
		t.Fatalf("got %v %v", v, ok)
	}
	if _, ok := benchNs(out, "BenchmarkActorRoundTrip/none"); ok {
		t.Fatal("found a benchmark that is not there")
	}
}

func TestBenchMetric(t *testing.T) {
	out := "pkg: github.com/troupe-db/troupe/actors\n" +
		"BenchmarkIdleDocMemory-2   \t       1\t1114155357 ns/op\t       797.4 B/doc\n" +
		"BenchmarkIdleDocMemoryX-2  \t       1\t 5 ns/op\t 1.5 B/doc\n"
	if v, ok := benchMetric(out, "BenchmarkIdleDocMemory", "B/doc"); !ok || v != 797.4 {
		t.Fatalf("got %v %v", v, ok)
	}
	if v, ok := benchMetric(out, "BenchmarkIdleDocMemory", "ns/op"); !ok || v != 1114155357 {
		t.Fatalf("got %v %v", v, ok)
	}
	if _, ok := benchMetric(out, "BenchmarkIdleDocMemory", "allocs/op"); ok {
		t.Fatal("found a unit the benchmark did not report")
	}
}

func TestFindMetric(t *testing.T) {
	text := "# HELP x\ngo_memstats_heap_alloc_bytes_total 1\ngo_memstats_heap_alloc_bytes 2.5e+08\n" +
		`troupe_watch_history_bytes{node="a"} 7` + "\ntroupe_watch_history_bytes 22013745\n"
	if v, err := findMetric(strings.NewReader(text), "go_memstats_heap_alloc_bytes"); err != nil || v != 2.5e8 {
		t.Fatalf("%v %v", v, err)
	}
	if v, err := findMetric(strings.NewReader(text), "troupe_watch_history_bytes"); err != nil || v != 22013745 {
		t.Fatalf("%v %v", v, err)
	}
	if _, err := findMetric(strings.NewReader(text), "troupe_missing"); err == nil {
		t.Fatal("found a metric that is not there")
	}
}

// fakeRun is a row with figures and, if floor > 0, a floor.
func fakeRun(label, scenario string, rps, floor float64) *run {
	r := &run{label: label, res: &result{Scenario: scenario, ThroughputRPS: rps, Requests: int64(rps * 5), ByStatus: map[string]int64{}}, cmd: "troupe bench …"}
	r.res.LatencyUS.P50, r.res.LatencyUS.P99 = 1000, 5000
	if floor > 0 {
		r.res.Floor = &result{ThroughputRPS: floor}
		r.res.FloorRatio = rps / floor
	}
	return r
}

// The report, written from figures: its secure and document-memory
// sections, and the chart beside it, linked from it.
func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	runs := []*run{
		fakeRun("users-create, 64 connections", "users-create", 20000, 50000),
		fakeRun("users-create, 1 connection", "users-create", 2500, 20000),
		fakeRun("users-get (linearizable), 64 connections", "users-get", 40000, 50000),
		fakeRun("users-get-stale, 64 connections", "users-get-stale", 45000, 50000),
		fakeRun("docs-ws, 64 clients on 64 documents (WebSocket)", "docs-ws", 16000, 0),
		fakeRun("users-create, 3-node cluster", "users-create", 7000, 50000),
		fakeRun("users-create, 3-node cluster, following the leader", "users-create", 9000, 50000),
	}
	runs[0].targetRPS, runs[2].targetRatio = 34000, 0.7
	opens := []*run{fakeRun("open", "users-create", 10000, 0), fakeRun("open, tuned", "users-create", 10000, 0)}
	keyed := &keyedRuns{keyless: runs[0], keyed: runs[0], first: runs[0], drive: runs[0], after: runs[0], windowKeys: -1}
	secure := &secureRuns{policy: `"default";q=1000000;w=1`, insecure: fakeRun("insecure creates", "users-create", 20000, 50000),
		creates: fakeRun("users-create, 64 connections, secure default", "users-create", 18500, 50000),
		gets:    fakeRun("users-get (linearizable), 64 connections, secure default", "users-get", 36000, 48000)}
	secure.gets.targetRatio, secure.creates.targetRPS = 0.75, 0.9*20000
	more := func(insecure, secure float64) [2]*result {
		return [2]*result{fakeRun("", "users-create", insecure, 0).res, fakeRun("", "users-create", secure, 0).res}
	}
	secure.pairs = [][2]*result{{secure.insecure.res, secure.creates.res}, more(20000, 22000), more(20000, 16000)}
	mem := &memoryResult{Users: 1000, HeapAfter: 2e6, HeapBefore: 1e6, RawPerUser: 60, LoadSeconds: 1, RestartReady: time.Second}
	docMem := &docMemoryResult{Docs: 100_000, HeapBefore: 1e6, HeapAfter: 1e6 + 100_000*(1024+600), LoadSeconds: 2, FeedBytes: 20e6,
		Ready: 2 * time.Second, ReadBack: 2100 * time.Millisecond, Cmd: "troupe bench --scenario docs-create …"}
	goOut := "BenchmarkIdleDocMemory-2 \t 1\t 5 ns/op\t 686.0 B/doc\n"
	path := filepath.Join(dir, "BENCHMARKS.md")
	if err := writeReport(path, runs, opens, keyed, secure, "| watch table |", 200*time.Microsecond, mem, docMem, goOut, "go test …"); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"(BENCHMARKS.svg)",
		"secure users-get / floor: **0.75** (target ≥ 0.75)",
		"secure creates / insecure creates, each pair on fresh nodes one after the other: **0.93**, the median of 0.93 (18500 / 20000), 1.10 (22000 / 20000), 0.80 (16000 / 20000) (target ≥ 0.9)",
		"refused by the rate limit: 0 of",
		"**600 B per document beyond its text**",
		"the change feed's history, 200 B a document here",
		"Without the log cache: **432 B per document**",
		"costs of its own: **232 B per document**",
		"**686 B per document beyond its text**",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	svg, err := os.ReadFile(filepath.Join(dir, "BENCHMARKS.svg"))
	if err != nil {
		t.Fatal(err)
	}
	// Every row with a floor is a bar (not the WebSocket row), the
	// secure ones too; the four with targets have marks.
	if n := svgCount(t, svg); n["rect.bar"] != 8 || n["line.target"] != 4 {
		t.Fatalf("%v", n)
	}
}
