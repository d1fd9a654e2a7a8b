package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// NodeSample is one node's resources at one instant. Heap is the live
// heap: go_memstats_heap_alloc_bytes read right after a collection the
// sampler forces through /debug/pprof/heap?gc=1, so that where a sample
// falls in the collector's cycle does not show up as growth.
type NodeSample struct {
	Up         bool
	RSS        int64 // bytes, VmRSS of /proc/<pid>/status
	FDs        int   // entries of /proc/<pid>/fd
	Heap       int64 // bytes
	Goroutines int
	ApplyLag   int64 // troupe_raft_apply_lag: entries committed, not applied
	Leader     bool  // troupe_raft_state 2
}

// The /metrics samples the sampler reads (unlabelled gauges).
const (
	metricHeap       = "go_memstats_heap_alloc_bytes"
	metricGoroutines = "go_goroutines"
	metricApplyLag   = "troupe_raft_apply_lag"
	metricRaftState  = "troupe_raft_state"
)

// parseMetrics reads the unlabelled samples named in want from a
// Prometheus text exposition; labelled series, comments and other names
// are skipped. A name that is missing is absent from the result.
func parseMetrics(r io.Reader, want ...string) (map[string]float64, error) {
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok || !wanted[name] {
			continue // a labelled series has '{' in its first field
		}
		// The value, then an optional timestamp.
		val, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s: bad value %q", name, val)
		}
		out[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the metrics: %w", err)
	}
	return out, nil
}

// parseRSS reads VmRSS (in kB) from the text of /proc/<pid>/status and
// returns it in bytes.
func parseRSS(status string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS in the process status (a zombie, or not Linux)")
}

// procDir is where the sampler reads processes (a test points it at a
// fixture).
var procDir = "/proc"

// readProc returns the RSS and the number of open descriptors of pid.
func readProc(pid int) (rss int64, fds int, err error) {
	dir := fmt.Sprintf("%s/%d", procDir, pid)
	b, err := os.ReadFile(dir + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("cannot read the status of process %d: %w", pid, err)
	}
	if rss, err = parseRSS(string(b)); err != nil {
		return 0, 0, err
	}
	ents, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return 0, 0, fmt.Errorf("cannot list the descriptors of process %d: %w", pid, err)
	}
	return rss, len(ents), nil
}

// sampleNode probes one running node: a forced collection, /metrics,
// then /proc. A node that does not answer is reported down.
func sampleNode(ctx context.Context, client *http.Client, n *node) NodeSample {
	pid := n.pid()
	if pid == 0 {
		return NodeSample{}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	get := func(url string) (io.ReadCloser, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("%s: %s", url, resp.Status)
		}
		return resp.Body, nil
	}
	body, err := get("http://" + n.pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return NodeSample{}
	}
	_, _ = io.Copy(io.Discard, body)
	body.Close()
	body, err = get("http://" + n.httpAddr + "/metrics")
	if err != nil {
		return NodeSample{}
	}
	m, err := parseMetrics(body, metricHeap, metricGoroutines, metricApplyLag, metricRaftState)
	body.Close()
	if err != nil {
		return NodeSample{}
	}
	s := NodeSample{
		Up: true, Heap: int64(m[metricHeap]), Goroutines: int(m[metricGoroutines]),
		ApplyLag: int64(m[metricApplyLag]), Leader: m[metricRaftState] == 2,
	}
	if s.RSS, s.FDs, err = readProc(pid); err != nil {
		return NodeSample{}
	}
	return s
}
