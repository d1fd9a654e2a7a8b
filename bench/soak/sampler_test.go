package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const metricsFixture = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 131
go_memstats_heap_alloc_bytes 2.4739960e+07
go_memstats_heap_alloc_bytes_total 99
troupe_raft_state{node="n1"} 1
troupe_raft_state 2
troupe_raft_apply_lag 7 1796588090000
troupe_http_requests_total{route="/v1/users",status="200"} 12

`

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(metricsFixture), metricHeap, metricGoroutines, metricApplyLag, metricRaftState, "absent_metric")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{metricHeap: 24739960, metricGoroutines: 131, metricApplyLag: 7, metricRaftState: 2}
	if len(m) != len(want) {
		t.Fatalf("got %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if _, err := parseMetrics(strings.NewReader("go_goroutines many\n"), metricGoroutines); err == nil || !strings.Contains(err.Error(), "go_goroutines") {
		t.Fatalf("a bad value: %v", err)
	}
	// A line longer than the scanner takes is an error, not a panic.
	if _, err := parseMetrics(strings.NewReader(strings.Repeat("x", 2<<20)), metricGoroutines); err == nil {
		t.Fatal("an over-long line accepted")
	}
}

func TestParseRSS(t *testing.T) {
	status := "Name:\ttroupe\nVmPeak:\t 1374429 kB\nVmRSS:\t   41852 kB\nThreads:\t9\n"
	rss, err := parseRSS(status)
	if err != nil || rss != 41852*1024 {
		t.Fatalf("rss %d, %v", rss, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\t-3 kB\n", "VmRSS:\n"} {
		if _, err := parseRSS(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// readProc reads a process's RSS and counts its descriptors.
func TestReadProc(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "4242")
	if err := os.MkdirAll(filepath.Join(p, "fd"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, fd := range []string{"0", "1", "2", "7"} {
		if err := os.WriteFile(filepath.Join(p, "fd", fd), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(p, "status"), []byte("VmRSS:\t 100 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := procDir
	procDir = dir
	t.Cleanup(func() { procDir = old })
	rss, fds, err := readProc(4242)
	if err != nil || rss != 100*1024 || fds != 4 {
		t.Fatalf("rss %d, fds %d, %v", rss, fds, err)
	}
	if _, _, err := readProc(4243); err == nil {
		t.Fatal("a missing process read")
	}
}

// On this machine, the test process itself.
func TestReadProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	rss, fds, err := readProc(os.Getpid())
	if err != nil || rss <= 0 || fds < 3 {
		t.Fatalf("rss %d, fds %d, %v", rss, fds, err)
	}
}

// hasFlag reads a binary's serve flags from its usage.
func TestHasFlag(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fake-troupe")
	script := "#!/bin/sh\necho 'Usage of serve:' >&2\necho '  -access-token-ttl duration' >&2\necho '  -max-streams-per-user int' >&2\nexit 0\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if !hasFlag(bin, "max-streams-per-user") || !hasFlag(bin, "access-token-ttl") {
		t.Fatal("a listed flag not found")
	}
	if hasFlag(bin, "max-streams") || hasFlag(bin, "nope") || hasFlag(filepath.Join(t.TempDir(), "absent"), "access-token-ttl") {
		t.Fatal("an unlisted flag found")
	}
}
