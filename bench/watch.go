package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// The watch scenario: user creates (as users-create) while --watchers
// streams of the change feed (GET /v1/watch?kinds=users, spread over the
// targets) read every change; a change's lag is when a watcher read it
// minus its time (`at`, the leader's clock when it proposed: the same
// machine's clock here, to the millisecond). Run it open loop at half
// the create rate users-create reaches, and once with --watchers 0 at
// the same rate to compare.
//
// Goroutines: one per watcher, started by setupWatchers before the
// workers and ended by Run (watchStop) after the halt; each records into
// the runner's watch histogram under watchMu.

// watchState is the watchers of a run.
type watchState struct {
	mu      sync.Mutex
	lag     *hdrhistogram.Histogram // ms, measured changes only
	changes int64
	errs    []string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// setupWatchers opens the watchers and waits until each is streaming.
func setupWatchers(r *Runner) error {
	if r.cfg.Watchers == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watchState{lag: hdrhistogram.New(1, 600_000, 3), cancel: cancel}
	r.watch = ws
	ready := make(chan error, r.cfg.Watchers)
	for i := range r.cfg.Watchers {
		addr := r.cfg.Addrs[i%len(r.cfg.Addrs)]
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			ws.run(ctx, r, addr, ready)
		}()
	}
	for range r.cfg.Watchers {
		if err := <-ready; err != nil {
			cancel()
			ws.wg.Wait()
			return err
		}
	}
	return nil
}

// stop ends the watchers.
func (ws *watchState) stop() {
	ws.cancel()
	ws.wg.Wait()
}

// run is one watcher: it reports on ready once its stream is open.
func (ws *watchState) run(ctx context.Context, r *Runner, addr string, ready chan<- error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/watch?kinds=users", nil)
	if err != nil {
		ready <- err
		return
	}
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ready <- fmt.Errorf("cannot watch on %s: %w", addr, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ready <- fmt.Errorf("cannot watch on %s: status %d (a node with --max-streams-per-user below --watchers refuses the rest)", addr, resp.StatusCode)
		return
	}
	ready <- nil
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var ch struct {
		At string `json:"at"`
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) < 6 || string(line[:6]) != "data: " {
			continue
		}
		now := time.Now()
		if json.Unmarshal(line[6:], &ch) != nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ch.At)
		if err != nil || !r.counting() {
			continue
		}
		ws.mu.Lock()
		_ = ws.lag.RecordValue(max(1, now.Sub(at).Milliseconds()))
		ws.changes++
		ws.mu.Unlock()
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		ws.mu.Lock()
		if len(ws.errs) < 5 {
			ws.errs = append(ws.errs, strings.TrimSpace(err.Error()))
		}
		ws.mu.Unlock()
	}
}

// reset drops what the warmup recorded.
func (ws *watchState) reset() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.lag.Reset()
	ws.changes = 0
}

// result adds the watchers' figures to res.
func (ws *watchState) result(res *Result, watchers int) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	res.Watchers = watchers
	if res.DurationS > 0 {
		res.WatchEventsRPS = float64(ws.changes) / res.DurationS
	}
	res.WatchLagMS = &Latency{P50: ws.lag.ValueAtQuantile(50), P90: ws.lag.ValueAtQuantile(90), P99: ws.lag.ValueAtQuantile(99),
		P999: ws.lag.ValueAtQuantile(99.9), Max: ws.lag.Max()}
	res.WatchErrors = append([]string(nil), ws.errs...)
}
