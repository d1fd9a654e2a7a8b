package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Intervals taken while a run goes and after it add up to its result.
func TestIntervalsAddUpToTheResult(t *testing.T) {
	addr := startFloor(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections = []string{addr}, "users-create", 4
	cfg.Duration, cfg.Warmup, cfg.Requests = time.Minute, 0, 3000
	r, err := NewRunner(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *Result)
	go func() {
		res, err := r.Run(context.Background(), nil)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	merged := NewLatencyHistogram()
	var ok, failed int64
	take := func() {
		iv := r.Interval()
		merged.Merge(iv.Latency)
		ok, failed = ok+iv.OK, failed+iv.Failed
	}
	var res *Result
	for res == nil {
		select {
		case res = <-done:
		case <-time.After(5 * time.Millisecond):
			take()
		}
	}
	take()
	if res == nil || res.Requests == 0 {
		t.Fatalf("result %+v", res)
	}
	if ok+failed != res.Requests || failed != res.Errors || merged.TotalCount() != res.Requests {
		t.Fatalf("intervals: %d ok, %d failed, %d latencies; result: %d requests, %d errors", ok, failed, merged.TotalCount(), res.Requests, res.Errors)
	}
	if iv := r.Interval(); iv.OK != 0 || iv.Latency.TotalCount() != 0 {
		t.Fatalf("a second interval after the end: %+v", iv)
	}
}

// Every user the node acknowledged is reported to OnAck, and is there.
func TestOnAckReportsCreatedUsers(t *testing.T) {
	addr := startNode(t)
	var mu sync.Mutex
	var ids []string
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections = []string{addr}, "users-create", 4
	cfg.Duration, cfg.Warmup, cfg.Requests = time.Minute, 0, 200
	cfg.OnAck = func(a Ack) {
		mu.Lock()
		ids = append(ids, a.User)
		mu.Unlock()
	}
	res := mustRun(t, cfg, false)
	mu.Lock()
	defer mu.Unlock()
	if int64(len(ids)) < res.Requests-res.Errors || res.Requests-res.Errors < 200 {
		t.Fatalf("%d acks for %+v", len(ids), res)
	}
	for _, id := range ids[:20] {
		resp, err := http.Get(fmt.Sprintf("http://%s/v1/users/%s", addr, id))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("acknowledged user %q: %d", id, resp.StatusCode)
		}
	}
}

// docs-ws takes --rate: an open loop sends no more ops than its schedule
// allows, and reports each acknowledged op with its document and version.
func TestDocsWSOpenLoop(t *testing.T) {
	addr := startNode(t)
	var mu sync.Mutex
	top := map[string]uint64{}
	var acks int
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections, cfg.Docs = []string{addr}, "docs-ws", 4, 2
	cfg.Duration, cfg.Warmup, cfg.Rate = time.Second, 0, 200
	cfg.OnAck = func(a Ack) {
		mu.Lock()
		acks++
		top[a.Doc] = max(top[a.Doc], a.Version)
		mu.Unlock()
	}
	res := mustRun(t, cfg, false)
	mu.Lock()
	defer mu.Unlock()
	if res.Errors != 0 || res.ByStatus["ack"] == 0 || int64(acks) < res.ByStatus["ack"] {
		t.Fatalf("%d acks reported for %+v", acks, res)
	}
	// 200/s for about a second (the clients may each finish one op).
	if res.Requests > 200*3/2+int64(cfg.Connections) {
		t.Fatalf("open loop at 200/s sent %d ops in %.2fs", res.Requests, res.DurationS)
	}
	if len(top) != 2 {
		t.Fatalf("acks on %d documents, want 2", len(top))
	}
	var total uint64
	for _, v := range top {
		total += v
	}
	// One insert per version: the versions acknowledged account for every ack.
	if total < uint64(acks) {
		t.Fatalf("top versions %v for %d acks", top, acks)
	}
}

// users-churn keeps its population: once each connection holds its
// share, it deletes its oldest user before creating the next, and every
// acknowledged create and delete is reported and holds on the node.
func TestUsersChurn(t *testing.T) {
	addr := startNode(t)
	var mu sync.Mutex
	created, deleted := map[string]bool{}, map[string]bool{}
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections, cfg.Users = []string{addr}, "users-churn", 2, 10
	cfg.Duration, cfg.Warmup, cfg.Requests, cfg.Idempotency = time.Minute, 0, 100, true
	cfg.OnAck = func(a Ack) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case a.Deleting:
		case a.Deleted:
			deleted[a.User] = true
		default:
			created[a.User] = true
		}
	}
	res := mustRun(t, cfg, false)
	mu.Lock()
	defer mu.Unlock()
	if res.Errors != 0 || len(created) < 50 || len(deleted) < 40 {
		t.Fatalf("%d created, %d deleted: %+v", len(created), len(deleted), res)
	}
	// Each connection ends holding its share of 5, or 4 if its last
	// request was a delete.
	if kept := len(created) - len(deleted); kept < 8 || kept > 10 {
		t.Fatalf("%d users kept, want 8..10", kept)
	}
	for id := range created {
		resp, err := http.Get(fmt.Sprintf("http://%s/v1/users/%s", addr, id))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 404, false: 200}[deleted[id]]; resp.StatusCode != want {
			t.Fatalf("user %s (deleted %v): %d, want %d", id, deleted[id], resp.StatusCode, want)
		}
	}
}
