package bench

import (
	"bufio"
	"bytes"
	"context"
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

// watchState is the watchers of a run. Each watcher records into its
// own histogram (64 watchers reading ~200 000 changes a second together
// would queue on one lock); reset and result visit them all.
type watchState struct {
	mu     sync.Mutex
	errs   []string
	recs   []*watchRec
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// watchRec is one watcher's figures.
type watchRec struct {
	mu      sync.Mutex
	lag     *hdrhistogram.Histogram // ms, measured changes only
	changes int64
}

// setupWatchers opens the watchers and waits until each is streaming.
func setupWatchers(r *Runner) error {
	if r.cfg.Watchers == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watchState{cancel: cancel}
	r.watch = ws
	ready := make(chan error, r.cfg.Watchers)
	for i := range r.cfg.Watchers {
		addr := r.cfg.Addrs[i%len(r.cfg.Addrs)]
		rec := &watchRec{lag: hdrhistogram.New(1, 600_000, 3)}
		ws.recs = append(ws.recs, rec)
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			ws.run(ctx, r, addr, rec, ready)
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

// watchClient reads the watch streams with a large read buffer: a
// stream's changes come in writes of tens of kilobytes (every 10 ms),
// which the default 4 KiB buffer read in as many system calls.
var watchClient = &http.Client{Transport: &http.Transport{ReadBufferSize: 64 << 10, DisableCompression: true,
	MaxIdleConnsPerHost: 16}}

// stop ends the watchers.
func (ws *watchState) stop() {
	ws.cancel()
	ws.wg.Wait()
}

// run is one watcher: it reports on ready once its stream is open.
func (ws *watchState) run(ctx context.Context, r *Runner, addr string, rec *watchRec, ready chan<- error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/watch?kinds=users", nil)
	if err != nil {
		ready <- err
		return
	}
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	resp, err := watchClient.Do(req)
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
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) < 6 || string(line[:6]) != "data: " {
			continue
		}
		now := time.Now()
		at, ok := changeAt(line[6:])
		if !ok || !r.counting() {
			continue
		}
		rec.mu.Lock()
		_ = rec.lag.RecordValue(max(1, now.Sub(at).Milliseconds()))
		rec.changes++
		rec.mu.Unlock()
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		ws.mu.Lock()
		if len(ws.errs) < 5 {
			ws.errs = append(ws.errs, strings.TrimSpace(err.Error()))
		}
		ws.mu.Unlock()
	}
}

// changeAt finds a change's time in its JSON without decoding the rest:
// the load generator reads every change of every watcher, and decoding
// each whole record cost it more CPU than the node spent sending them.
// The record's own strings cannot hold the key: a quote in them is
// escaped, and "at" is the change's only key of that name (the record
// is under "data", its times are created_at and updated_at).
func changeAt(obj []byte) (time.Time, bool) {
	const key = `"at":"`
	i := bytes.Index(obj, []byte(key))
	if i < 0 {
		return time.Time{}, false
	}
	rest := obj[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	if at, ok := parseMillisUTC(rest[:j]); ok {
		return at, true
	}
	at, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return at, err == nil
}

// parseMillisUTC reads the form the node writes times in,
// "2006-01-02T15:04:05.000Z", without time.Parse's generality (it was a
// fifth of the load generator's CPU in the watch scenario); false for
// any other form.
func parseMillisUTC(b []byte) (time.Time, bool) {
	if len(b) != 24 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[19] != '.' || b[23] != 'Z' {
		return time.Time{}, false
	}
	var v [7]int
	for k, f := range [7][2]int{{0, 4}, {5, 7}, {8, 10}, {11, 13}, {14, 16}, {17, 19}, {20, 23}} {
		for _, c := range b[f[0]:f[1]] {
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			v[k] = v[k]*10 + int(c-'0')
		}
	}
	if v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 59 {
		return time.Time{}, false
	}
	return time.Date(v[0], time.Month(v[1]), v[2], v[3], v[4], v[5], v[6]*int(time.Millisecond), time.UTC), true
}

// reset drops what the warmup recorded.
func (ws *watchState) reset() {
	for _, rec := range ws.recs {
		rec.mu.Lock()
		rec.lag.Reset()
		rec.changes = 0
		rec.mu.Unlock()
	}
}

// result adds the watchers' figures to res.
func (ws *watchState) result(res *Result, watchers int) {
	lag := hdrhistogram.New(1, 600_000, 3)
	var changes int64
	for _, rec := range ws.recs {
		rec.mu.Lock()
		lag.Merge(rec.lag)
		changes += rec.changes
		rec.mu.Unlock()
	}
	res.Watchers = watchers
	if res.DurationS > 0 {
		res.WatchEventsRPS = float64(changes) / res.DurationS
	}
	res.WatchLagMS = &Latency{P50: lag.ValueAtQuantile(50), P90: lag.ValueAtQuantile(90), P99: lag.ValueAtQuantile(99),
		P999: lag.ValueAtQuantile(99.9), Max: lag.Max()}
	ws.mu.Lock()
	res.WatchErrors = append([]string(nil), ws.errs...)
	ws.mu.Unlock()
}
