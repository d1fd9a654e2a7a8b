package bench

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// Runner runs one scenario. Each connection is a worker goroutine with its
// own HostClient (MaxConns 1), or its own WebSocket in docs-ws, so
// --connections is exactly the number of TCP connections.
type Runner struct {
	cfg   Config
	sc    scenario
	runID string
	// docIDs are the documents docs-ops edits (set up before timing).
	docIDs []string
	ids    []string    // users a read scenario reads
	watch  *watchState // the watch scenario's watchers; nil otherwise
	floor  bool        // the target is a floor server: no setup

	workers   []*worker
	total     atomic.Int64 // measured requests finished
	measured  atomic.Bool
	stop      atomic.Bool
	stoppedAt atomic.Int64   // UnixNano of the halt
	startAt   time.Time      // start of measurement
	due       chan time.Time // open loop: requests as they fall due (pace)
	grpc      grpcTargets    // ratelimit-grpc: the connections its workers share
	// refused is the first answer that said the caller may not (401 or
	// 403, when the scenario wants another status): it ends the run at
	// once, since every later request would be refused as well.
	refused atomic.Pointer[refusal]
}

// refusal is an answer that refused the caller, as the run saw it.
type refusal struct {
	status int
	body   string
}

// RefusedError is Run's error when the node refused the caller: the run
// stopped at the first 401 or 403 rather than measure refusals.
type RefusedError struct {
	Status int
	Body   string // the start of the answer's body
}

func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("the node answered %d to the first requests, so the run stopped: %s", e.Status, e.Body)
	if e.Status == fasthttp.StatusUnauthorized {
		return msg + "; give an access token with --token or TROUPE_TOKEN (an admin's, for scenarios that create users or policies), or bench a node started with --insecure"
	}
	return msg + "; the token's user may not make these requests: give an admin's token with --token or TROUPE_TOKEN"
}

type worker struct {
	id     int
	seq    uint64
	rng    *rand.Rand
	buf    []byte
	client *fasthttp.HostClient
	addr   string
	moves  int // FollowLeader: times the connection moved to a leader
	// Idempotency: keys sent so far and the buffer of the last.
	keys   uint64
	keyBuf []byte

	// docs-ops: the version this worker last had acknowledged, per
	// document it edits, and its next seq.
	docVersion uint64
	docSeq     uint64
	// users-churn: the users this connection holds.
	churn churnState
	// token is the access token of this connection's own user
	// (Config.SignIn); empty: the run's.
	token string
	// docs-ws: the worker's open WebSocket, closed by Run at stop.
	ws atomic.Pointer[websocket.Conn]

	mu       sync.Mutex // guards the fields below; read by the progress reporter
	hist     *hdrhistogram.Histogram
	statuses map[int]int64
	failures map[string]int64 // transport errors by kind
	// timeline counts successes per timelineStep of measured time.
	timeline []int64
	// docs-ws: ops acknowledged, change events received, resets.
	acks, events, resets int64
	// interval is what finished since the last Runner.Interval.
	interval workerInterval
}

// timelineStep is the resolution of the throughput over time (the first
// and last tenth of a run).
const timelineStep = 50 * time.Millisecond

// countOK counts a success that ended at t in the timeline (w.mu held).
func (w *worker) countOK(r *Runner, t time.Time) {
	i := max(0, int(t.Sub(r.startAt)/timelineStep))
	for len(w.timeline) <= i {
		w.timeline = append(w.timeline, 0)
	}
	w.timeline[i]++
	w.interval.ok++
}

// recordLatency records a measured request's latency in the run's and
// the interval's histograms (w.mu held).
func (w *worker) recordLatency(lat time.Duration) {
	us := max(1, lat.Microseconds())
	_ = w.hist.RecordValue(us)
	_ = w.interval.hist.RecordValue(us)
}

// failed counts a measured request that failed, as kind (w.mu held).
func (w *worker) failed(kind string) {
	w.failures[kind]++
	w.interval.failed++
}

// NewRunner prepares a run; floor says the target is a floor server.
func NewRunner(cfg Config, floor bool) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if floor && !HasFloor(cfg.Scenario) {
		return nil, fmt.Errorf("scenario %s has no floor (the floor server speaks plain HTTP only)", cfg.Scenario)
	}
	var b [4]byte
	_, _ = crand.Read(b[:])
	return &Runner{cfg: cfg, sc: scenarios[cfg.Scenario], runID: hex.EncodeToString(b[:]), floor: floor}, nil
}

func newHist() *hdrhistogram.Histogram {
	// 1 µs to 60 s at 3 significant figures.
	return hdrhistogram.New(1, 60_000_000, 3)
}

func (r *Runner) client(addr string) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                          addr,
		MaxConns:                      1,
		MaxConnWaitTimeout:            r.cfg.Timeout,
		ReadTimeout:                   r.cfg.Timeout,
		WriteTimeout:                  r.cfg.Timeout,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		Dial: func(a string) (net.Conn, error) {
			return fasthttp.DialTimeout(a, r.cfg.Timeout)
		},
	}
}

// Run executes setup, warmup and the measured phase. progress, if not
// nil, is called about four times a second with a live snapshot.
func (r *Runner) Run(ctx context.Context, progress func(Live)) (*Result, error) {
	defer r.grpc.close()
	if r.floor {
		r.ids = []string{"0000000000000000"}
	} else if r.sc.setup != nil {
		if err := r.sc.setup(r); err != nil {
			return nil, err
		}
	}
	var tokens []string
	if r.cfg.SignIn && !r.floor {
		var err error
		if tokens, err = r.signIn(); err != nil {
			return nil, err
		}
	}
	r.workers = make([]*worker, r.cfg.Connections)
	for i := range r.workers {
		addr := r.cfg.Addrs[i%len(r.cfg.Addrs)]
		r.workers[i] = &worker{
			id: i, rng: rand.New(rand.NewPCG(uint64(i), 42)), client: r.client(addr), addr: addr,
			hist: newHist(), statuses: map[int]int64{}, failures: map[string]int64{},
			interval: workerInterval{hist: newHist()},
		}
		if tokens != nil {
			r.workers[i].token = tokens[i]
		}
	}
	begin := time.Now()
	r.startAt = begin.Add(r.cfg.Warmup)
	r.measured.Store(r.cfg.Warmup == 0)
	if r.cfg.Rate > 0 && (r.sc.loop == nil || r.sc.paced) {
		r.due = make(chan time.Time, dueBuffer)
		go r.pace(begin)
	}
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.sc.loop != nil {
				r.sc.loop(r, w)
				return
			}
			r.work(w)
		}()
	}

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-done:
			break loop
		case now := <-tick.C:
			if !r.measured.Load() && !now.Before(r.startAt) {
				r.beginMeasuring()
			}
			if r.cfg.Duration > 0 && r.measured.Load() && now.Sub(r.startAt) >= r.cfg.Duration {
				break loop
			}
			if progress != nil {
				progress(r.live(now))
			}
		}
	}
	r.halt()
	if r.watch != nil {
		defer r.watch.stop()
	}
	for _, w := range r.workers {
		// Ends a WebSocket read that would wait for the timeout.
		if c := w.ws.Load(); c != nil {
			_ = c.Close()
		}
	}
	<-done
	if rf := r.refused.Load(); rf != nil {
		return nil, &RefusedError{Status: rf.status, Body: rf.body}
	}
	// The window from the start of measuring to the halt: what finished
	// in it is what was counted. (Capping it at --duration, as before,
	// divided up to a quarter second more of requests by the duration.)
	elapsed := time.Duration(r.stoppedAt.Load() - r.startAt.UnixNano())
	if !r.measured.Load() {
		return nil, errors.New("the run ended before measuring began (warmup longer than the run?)")
	}
	return r.result(elapsed), nil
}

// halt ends the run, once: the measured window closes now.
func (r *Runner) halt() {
	if r.stop.CompareAndSwap(false, true) {
		r.stoppedAt.Store(time.Now().UnixNano())
	}
}

// counting reports whether a result that comes in now is measured: after
// the warmup and before the halt.
func (r *Runner) counting() bool { return r.measured.Load() && !r.stop.Load() }

// beginMeasuring discards what the warmup recorded.
func (r *Runner) beginMeasuring() {
	for _, w := range r.workers {
		w.mu.Lock()
		w.hist.Reset()
		clear(w.statuses)
		clear(w.failures)
		w.timeline = w.timeline[:0]
		w.acks, w.events, w.resets = 0, 0, 0
		w.interval.reset()
		w.mu.Unlock()
	}
	r.total.Store(0)
	if r.watch != nil {
		r.watch.reset()
	}
	// Workers read startAt only once they see measured set (after it).
	r.startAt = time.Now()
	r.measured.Store(true)
}

// dueBuffer bounds the requests an open loop lets fall due before the
// workers take them (a second's worth at 64k req/s): when the target
// stalls they queue here, stamped with when they were due.
const dueBuffer = 1 << 16

// pace is the open loop's clock: request k falls due at begin +
// k·interval, whether or not earlier ones have answered, and goes to the
// workers stamped with that time, from which its latency counts (so
// coordinated omission cannot hide stalls). One goroutine on a thread of
// its own sleeps precisely between requests (preciseSleep): 64 workers
// each in time.Sleep woke 0.6 ms late at the median and 10 ms at the
// p99 on an idle machine, which every open-loop figure then carried.
func (r *Runner) pace(begin time.Time) {
	runtime.LockOSThread()
	defer close(r.due)
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	for k := int64(0); !r.stop.Load(); k++ {
		at := begin.Add(time.Duration(k) * interval)
		if d := time.Until(at); d > 0 {
			preciseSleep(d)
		}
		r.due <- at
	}
}

// next is when a worker's next request starts, from which its latency
// counts: its due time in an open loop (waiting for it), now in a closed
// one; false when the run stops meanwhile.
func (r *Runner) next() (time.Time, bool) {
	if r.due == nil {
		return time.Now(), true
	}
	at, ok := <-r.due
	return at, ok && !r.stop.Load()
}

func (r *Runner) work(w *worker) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for !r.stop.Load() {
		start, ok := r.next()
		if !ok {
			return
		}
		req.Reset()
		req.Header.SetHost(w.addr)
		r.authorizeWorker(w, req)
		want := r.sc.next(r, w, req)
		if r.cfg.Idempotency && !req.Header.IsGet() {
			r.setIdempotencyKey(w, req)
		}
		err := w.client.Do(req, resp)
		lat := time.Since(start)
		if r.sc.after != nil && err == nil {
			r.sc.after(r, w, resp)
		}
		if r.cfg.OnAck != nil && r.sc.acked != nil && err == nil && resp.StatusCode() == want {
			r.sc.acked(r, resp)
		}
		if r.cfg.FollowLeader && err == nil {
			r.follow(w, resp.Header.Peek("X-Troupe-Leader"))
		}
		if err == nil && resp.StatusCode() != want && (resp.StatusCode() == fasthttp.StatusUnauthorized || resp.StatusCode() == fasthttp.StatusForbidden) {
			body := resp.Body()
			r.refused.CompareAndSwap(nil, &refusal{status: resp.StatusCode(), body: string(body[:min(len(body), 300)])})
			r.halt()
			return
		}
		if !r.counting() {
			continue
		}
		w.mu.Lock()
		w.recordLatency(lat)
		switch {
		case err != nil:
			w.failed(failureKind(err))
		case resp.StatusCode() != want:
			w.statuses[resp.StatusCode()]++
			w.interval.failed++
		default:
			w.statuses[want]++
			w.countOK(r, start.Add(lat))
		}
		w.mu.Unlock()
		n := r.total.Add(1)
		if r.cfg.Requests > 0 && n >= r.cfg.Requests {
			r.halt()
		}
		if err != nil && !r.stop.Load() {
			time.Sleep(10 * time.Millisecond) // do not spin on a dead target
		}
	}
}

// follow moves w's connection to the node leader names (an
// X-Troupe-Leader value), if that is another of the targets; any other
// address is ignored, so a run never reaches beyond --addr.
func (r *Runner) follow(w *worker, leader []byte) {
	if len(leader) == 0 || string(leader) == w.addr {
		return
	}
	addrs, err := ParseAddrs(string(leader))
	if err != nil || len(addrs) != 1 || addrs[0] == w.addr {
		return
	}
	for _, a := range r.cfg.Addrs {
		if a == addrs[0] {
			w.client.CloseIdleConnections()
			w.addr, w.client = a, r.client(a)
			w.moves++
			return
		}
	}
}

func failureKind(err error) string {
	switch {
	case errors.Is(err, fasthttp.ErrTimeout):
		return "timeout"
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		return "connection_closed"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no_free_conns"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "connection_error"
}

// Live is a progress snapshot.
type Live struct {
	Elapsed   time.Duration // since measurement began (negative in warmup)
	Total     time.Duration
	Requests  int64
	RPS       float64
	Errors    int64
	P99       time.Duration
	Measuring bool
}

func (r *Runner) live(now time.Time) Live {
	l := Live{Elapsed: now.Sub(r.startAt), Total: r.cfg.Duration, Measuring: r.measured.Load()}
	if !l.Measuring {
		return l
	}
	h := newHist()
	for _, w := range r.workers {
		w.mu.Lock()
		h.Merge(w.hist)
		for code, n := range w.statuses {
			if code >= 300 || code < 200 {
				l.Errors += n
			}
		}
		for _, n := range w.failures {
			l.Errors += n
		}
		w.mu.Unlock()
	}
	l.Requests = h.TotalCount()
	if s := l.Elapsed.Seconds(); s > 0 {
		l.RPS = float64(l.Requests) / s
	}
	l.P99 = time.Duration(h.ValueAtQuantile(99)) * time.Microsecond
	return l
}

func (r *Runner) result(elapsed time.Duration) *Result {
	h := newHist()
	res := &Result{
		Scenario: r.cfg.Scenario, Connections: r.cfg.Connections, Targets: r.cfg.Addrs,
		DurationS: elapsed.Seconds(), Rate: r.cfg.Rate, ByStatus: map[string]int64{},
		FollowLeader: r.cfg.FollowLeader, Idempotency: r.cfg.Idempotency,
	}
	var timeline []int64
	var acks, events int64
	for _, w := range r.workers {
		w.mu.Lock()
		h.Merge(w.hist)
		for len(timeline) < len(w.timeline) {
			timeline = append(timeline, 0)
		}
		for i, n := range w.timeline {
			timeline[i] += n
		}
		acks += w.acks
		events += w.events
		res.Resets += w.resets
		res.LeaderMoves += w.moves
		for code, n := range w.statuses {
			res.ByStatus[strconv.Itoa(code)] += n
			if code < 200 || code >= 300 {
				res.Errors += n
			}
		}
		for kind, n := range w.failures {
			res.ByStatus[kind] += n
			res.Errors += n
		}
		w.mu.Unlock()
	}
	res.Requests = h.TotalCount()
	if res.DurationS > 0 {
		res.ThroughputRPS = float64(res.Requests-res.Errors) / res.DurationS
	}
	if r.sc.loop != nil {
		// WebSocket failures need not answer an op: count the acks
		// (gRPC: the calls answered OK).
		label := "ack"
		if r.sc.grpc {
			label = "ok"
		}
		if acks > 0 {
			res.ByStatus[label] = acks
		}
		if res.DurationS > 0 {
			res.ThroughputRPS = float64(acks) / res.DurationS
			res.EventsRPS = float64(events) / res.DurationS
		}
	}
	if strings.HasPrefix(r.cfg.Scenario, "docs-") {
		res.Docs = r.cfg.Docs
		res.FirstRPS, res.LastRPS = edgeRates(timeline, elapsed)
	}
	res.LatencyUS = Latency{
		P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9), Max: h.Max(),
	}
	switch r.cfg.Scenario {
	case "users-batch":
		res.ItemsPerRequest = r.cfg.BatchSize
	case "ratelimit-batch":
		res.ItemsPerRequest = r.cfg.Checks
	}
	if r.watch != nil {
		r.watch.result(res, r.cfg.Watchers)
	}
	return res
}

// edgeRates is the throughput in the first and last tenth of the measured
// time (whole timeline steps, at least one), from successes counted per
// step; zero for runs shorter than two steps.
func edgeRates(timeline []int64, elapsed time.Duration) (first, last float64) {
	n := int(elapsed / timelineStep)
	if n < 2 {
		return 0, 0
	}
	k := max(1, n/10)
	var a, b int64
	for i := range k {
		if i < len(timeline) {
			a += timeline[i]
		}
		if j := n - k + i; j < len(timeline) {
			b += timeline[j]
		}
	}
	window := (time.Duration(k) * timelineStep).Seconds()
	return float64(a) / window, float64(b) / window
}

// Result is the outcome of one run.
type Result struct {
	Scenario        string           `json:"scenario"`
	Targets         []string         `json:"targets"`
	Connections     int              `json:"connections"`
	Rate            float64          `json:"rate_rps,omitempty"`
	DurationS       float64          `json:"duration_s"`
	Requests        int64            `json:"requests"`
	Errors          int64            `json:"errors"`
	ByStatus        map[string]int64 `json:"by_status"`
	ThroughputRPS   float64          `json:"throughput_rps"`
	ItemsPerRequest int              `json:"items_per_request,omitempty"`
	// FollowLeader: the run followed X-Troupe-Leader (--follow-leader);
	// LeaderMoves: how many times a connection moved to the leader.
	FollowLeader bool `json:"follow_leader,omitempty"`
	LeaderMoves  int  `json:"leader_moves,omitempty"`
	// Idempotency: every write carried a fresh Idempotency-Key.
	Idempotency bool `json:"idempotency,omitempty"`
	// Docs is the number of documents of a docs-* scenario.
	Docs int `json:"docs,omitempty"`
	// EventsRPS (docs-ws): change events received per second by all
	// clients together; each op reaches every client of its document.
	EventsRPS float64 `json:"events_rps,omitempty"`
	// Resets (docs-ws): resets received (a client fell behind its
	// stream or was too far behind to replay; it reloads from the reset).
	Resets int64 `json:"resets,omitempty"`
	// FirstRPS and LastRPS (docs-*): the throughput in the first and last
	// tenth of the measured time, to see whether it holds over a run.
	// Watchers, WatchEventsRPS, WatchLagMS (watch): the change-feed
	// streams open, the changes they read per second together, and how
	// long after its time a watcher read a change (ms); WatchErrors: the
	// first streams that ended early.
	Watchers       int      `json:"watchers,omitempty"`
	WatchEventsRPS float64  `json:"watch_events_rps,omitempty"`
	WatchLagMS     *Latency `json:"watch_lag_ms,omitempty"`
	WatchErrors    []string `json:"watch_errors,omitempty"`
	FirstRPS       float64  `json:"first_rps,omitempty"`
	LastRPS        float64  `json:"last_rps,omitempty"`
	LatencyUS      Latency  `json:"latency_us"`
	Floor          *Result  `json:"floor,omitempty"`
	FloorRatio     float64  `json:"floor_ratio,omitempty"`
}

// Latency percentiles in microseconds.
type Latency struct {
	P50  int64 `json:"p50"`
	P90  int64 `json:"p90"`
	P99  int64 `json:"p99"`
	P999 int64 `json:"p999"`
	Max  int64 `json:"max"`
}
