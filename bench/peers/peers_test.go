package main

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// The samples in testdata are etcd v3.6.8's tools/benchmark output as
// captured: a put with --precise, a serializable range without.
func TestParseEtcdSummaryPut(t *testing.T) {
	b, err := os.ReadFile("testdata/etcd-put-precise.txt")
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseEtcdSummary(string(b))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]float64{
		"total":   {s.TotalS, 0.840061256},
		"slowest": {s.SlowestS, 0.037798019},
		"fastest": {s.FastestS, 0.000535659},
		"average": {s.AverageS, 0.0033505944699999987},
		"stddev":  {s.StddevS, 0.004122735196229113},
		"rps":     {s.RPS, 2380.7787654951676},
		"p50":     {s.pct(50), 0.002196968},
		"p99":     {s.pct(99), 0.025548541},
		"p99.9":   {s.pct(99.9), 0.037439005},
		"p10":     {s.pct(10), 0.001328126},
	}
	for name, v := range want {
		if !near(v[0], v[1]) {
			t.Errorf("%s = %v, want %v", name, v[0], v[1])
		}
	}
	if len(s.Percentiles) != 8 || s.Errors != 0 {
		t.Errorf("percentiles %v, errors %d", s.Percentiles, s.Errors)
	}
	// The histogram's bucket bounds are not percentiles.
	if _, ok := s.Percentiles[0.000535659]; ok {
		t.Error("a histogram line was read as a percentile")
	}
}

func TestParseEtcdSummaryRange(t *testing.T) {
	b, err := os.ReadFile("testdata/etcd-range.txt")
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseEtcdSummary(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if !near(s.RPS, 5314.9818) || !near(s.TotalS, 0.1881) || !near(s.pct(50), 0.0005) || !near(s.pct(99.9), 0.0438) {
		t.Errorf("got %+v", s)
	}
}

func TestParseEtcdSummaryErrors(t *testing.T) {
	b, err := os.ReadFile("testdata/etcd-range.txt")
	if err != nil {
		t.Fatal(err)
	}
	// pkg/report writes "  [%d]\t%s\n" per error after the summary; a
	// percentile whose latency rounds to 0 it leaves out.
	out := strings.Replace(string(b), "  10% in 0.0003 secs.\n", "", 1) +
		"\nError distribution:\n  [12]\tetcdserver: too many requests\n  [3]\tcontext deadline exceeded\n"
	s, err := parseEtcdSummary(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Errors != 15 {
		t.Errorf("errors %d, want 15", s.Errors)
	}
	if s.pct(10) != -1 {
		t.Errorf("p10 %v, want -1 (left out)", s.pct(10))
	}
	// Every request failed: no summary, only errors.
	_, err = parseEtcdSummary("\nError distribution:\n  [100]\tconnection refused\n")
	if !errors.Is(err, errNoSummary) || !strings.Contains(err.Error(), "100 requests failed") {
		t.Errorf("all failed: %v", err)
	}
	for _, bad := range []string{"", "bench with linearizable range\n", "Summary:\n  Total:\tabc secs.\n"} {
		if _, err := parseEtcdSummary(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestParseShareDBResult(t *testing.T) {
	out := "some warning\n" + `{"system":"sharedb","clients":64,"docs":1,"duration_s":2.25,"ops":36,"ops_per_s":16.0,"events_per_s":905.5,"errors":0,"latency_us":{"p50":3043849,"p90":3251968,"p99":3268957,"p999":3268957,"max":3268957},"first_rps":10,"last_rps":55}` + "\n"
	r, err := parseShareDBResult([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	f := fromShareDB(r, "node load.js")
	if f.rps != 16 || f.p50 != 3043.849 || f.p99 != 3268.957 || f.events != 905.5 || f.first != 10 || f.last != 55 {
		t.Errorf("got %+v", f)
	}
	for _, bad := range []string{"", "{}", `{"system":"other","clients":1,"duration_s":1}`, "not json"} {
		if _, err := parseShareDBResult([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestParseTroupeResult(t *testing.T) {
	out := `{"scenario":"users-create","targets":["127.0.0.1:1"],"connections":64,"duration_s":2,"requests":100,"errors":0,"throughput_rps":50,"latency_us":{"p50":1500,"p90":2000,"p99":3000,"p999":4000,"max":5000}}`
	r, err := parseTroupeResult([]byte("progress\n" + out + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := fromTroupe(r, "troupe bench")
	if f.rps != 50 || f.p50 != 1.5 || f.p99 != 3 {
		t.Errorf("got %+v", f)
	}
	if _, err := parseTroupeResult([]byte(`{"requests":1}`)); err == nil {
		t.Error("parsed a result without a scenario")
	}
}

func TestRatioAndShownCommands(t *testing.T) {
	r := &row{troupe: &figure{rps: 300}, peer: &figure{rps: 100}}
	if got := r.ratio(); got != "3.00" {
		t.Errorf("ratio %s", got)
	}
	r.peer = nil
	if got := r.ratio(); got != "—" {
		t.Errorf("ratio without a peer %s", got)
	}
	got := strings.Join(shownEndpoints([]string{"--endpoints", "127.0.0.1:40001,127.0.0.1:40002,127.0.0.1:40003", "put"}), " ")
	if got != "--endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 put" {
		t.Errorf("etcd command %q", got)
	}
	got = strings.Join(shownAddrs([]string{"bench", "--addr", "http://127.0.0.1:40001,http://127.0.0.1:40002,http://127.0.0.1:40003"}), " ")
	if got != "bench --addr http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083" {
		t.Errorf("troupe command %q", got)
	}
}

// A peer whose toolchain is not on PATH is skipped with a message that
// names what is missing (the caller reports it and goes on).
func TestMissingToolchainSkips(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	scratch := t.TempDir()
	if _, err := buildEtcd(scratch, "v3.6.8"); err == nil || !strings.Contains(err.Error(), "no go command on PATH") {
		t.Errorf("etcd without go: %v", err)
	}
	if _, err := installShareDB(scratch, "7"); err == nil || !strings.Contains(err.Error(), "no node on PATH") {
		t.Errorf("ShareDB without node: %v", err)
	}
}

func TestSkippedPeersInReport(t *testing.T) {
	out := t.TempDir() + "/PEERS.md"
	rep := &report{duration: 2e9, troupeVersion: "v0", loadAvg: "0.1 0.2 0.3",
		etcdSkipped: "no go command on PATH", sharedbSkipped: "no node on PATH (Node 18+ and npm are needed)"}
	if err := rep.write(out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**etcd skipped**: no go command on PATH", "**ShareDB skipped**: no node on PATH", "A short trial"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// The parser reads another program's output: whatever it is given, it
// returns a summary or an error, never panics, and a summary it returns
// has a rate and a total time.
func FuzzParseEtcdSummary(f *testing.F) {
	for _, name := range []string{"testdata/etcd-put-precise.txt", "testdata/etcd-range.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("Summary:\n  Requests/sec:\t1\n  Total:\t1 secs.\nError distribution:\n  [x]\tbad\n")
	f.Fuzz(func(t *testing.T, out string) {
		s, err := parseEtcdSummary(out)
		if err == nil && (s == nil || s.Percentiles == nil) {
			t.Fatalf("no error and no summary for %q", out)
		}
	})
}

func TestFailedPeerRowInReport(t *testing.T) {
	out := t.TempDir() + "/PEERS.md"
	rep := &report{duration: 10e9, troupeVersion: "v0", loadAvg: "0.1 0.2 0.3", etcd: &etcdTools{version: "v3.6.8"},
		kv: []*row{{label: "durable writes, 1 connection, 1 node", peerName: "etcd", steal: 0.01,
			troupe: &figure{rps: 2000, p50: 0.4, p99: 1, cmd: "troupe bench …"}, peerErr: "etcd did not start: port in use"}}}
	if err := rep.write(out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| durable writes, 1 connection, 1 node | 2000 | 0.40 | 1.00 | failed: see below | — | — | — | 1% |",
		"- durable writes, 1 connection, 1 node, etcd: etcd did not start: port in use",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "A short trial") {
		t.Error("a 10 s run called a short trial")
	}
}
