package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// memoryResult is the cost of holding users in memory and of restarting
// with them.
type memoryResult struct {
	Users        int
	HeapBefore   float64 // live heap bytes before loading, after a GC
	HeapAfter    float64
	RawPerUser   float64 // id + name + email bytes, averaged over a sample
	LoadSeconds  float64
	RestartReady time.Duration
	Cmd          string
}

func (m *memoryResult) perUser() float64 { return (m.HeapAfter - m.HeapBefore) / float64(m.Users) }

// measureMemory loads users into a fresh node in batches of 1000, reads
// the live heap after a forced GC, then restarts the node and times it
// until /readyz.
func measureMemory(bin string, users int) (*memoryResult, error) {
	n, err := newNode(bin)
	if err != nil {
		return nil, err
	}
	defer n.remove()
	if _, err := n.start(); err != nil {
		return nil, err
	}
	m := &memoryResult{Users: users}
	if m.HeapBefore, err = liveHeap(n); err != nil {
		return nil, err
	}
	batches := (users + 999) / 1000
	m.Users = batches * 1000
	args := []string{"bench", "--addr", "http://" + n.addr, "--scenario", "users-batch", "--batch-size", "1000",
		"--connections", "4", "--requests", strconv.Itoa(batches), "--duration", "10m", "--warmup", "0s", "--json"}
	res, cmd, err := runBench(bin, args)
	if err != nil {
		return nil, err
	}
	if res.Errors > 0 {
		return nil, fmt.Errorf("loading users: %d errors", res.Errors)
	}
	// Runners may finish a request or two past the limit.
	m.Users = int(res.Requests) * 1000
	m.LoadSeconds, m.Cmd = res.DurationS, cmd
	if m.HeapAfter, err = liveHeap(n); err != nil {
		return nil, err
	}
	if m.RawPerUser, err = rawBytesPerUser(n); err != nil {
		return nil, err
	}
	n.stop()
	if m.RestartReady, err = n.start(); err != nil {
		return nil, err
	}
	return m, nil
}

// liveHeap forces a GC (through the heap profile endpoint) and reads
// go_memstats_heap_alloc_bytes.
func liveHeap(n *node) (float64, error) {
	resp, err := http.Get("http://" + n.pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return nodeMetric(n, "go_memstats_heap_alloc_bytes")
}

// nodeMetric reads one unlabelled metric of the node's /metrics.
func nodeMetric(n *node, name string) (float64, error) {
	resp, err := http.Get("http://" + n.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return findMetric(resp.Body, name)
}

// findMetric finds an unlabelled metric's value in a Prometheus text
// exposition.
func findMetric(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

func rawBytesPerUser(n *node) (float64, error) {
	resp, err := http.Get("http://" + n.addr + "/v1/users?limit=1000&consistency=stale")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var page struct {
		Items []struct{ ID, Name, Email string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return 0, err
	}
	if len(page.Items) == 0 {
		return 0, fmt.Errorf("no users listed")
	}
	total := 0
	for _, u := range page.Items {
		total += len(u.ID) + len(u.Name) + len(u.Email)
	}
	return float64(total) / float64(len(page.Items)), nil
}
