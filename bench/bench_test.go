package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/internal/nodetest"
)

func startFloor(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFloorServer()
	done := make(chan struct{})
	go func() { _ = f.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = f.Shutdown(); <-done })
	return ln.Addr().String()
}

// mustRun runs cfg to the end (against a floor server if floor).
func mustRun(t *testing.T, cfg Config, floor bool) *Result {
	t.Helper()
	r, err := NewRunner(cfg, floor)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRunAgainstFloor(t *testing.T) {
	addr, rls := startFloor(t), startFloorRLS(t)
	for _, sc := range ScenarioNames() {
		cfg := DefaultConfig()
		cfg.Addrs, cfg.Scenario, cfg.Connections = []string{addr}, sc, 3
		if IsGRPC(sc) {
			cfg.GRPCAddr = rls
		}
		cfg.Duration, cfg.Warmup = 300*time.Millisecond, 50*time.Millisecond
		r, err := NewRunner(cfg, true)
		if !HasFloor(sc) {
			if err == nil {
				t.Fatalf("%s accepted against the floor", sc)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var lives int
		res, err := r.Run(context.Background(), func(Live) { lives++ })
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests == 0 || res.Errors != 0 || res.ThroughputRPS <= 0 || res.LatencyUS.Max == 0 || lives == 0 {
			t.Fatalf("%s: %+v (progress calls %d)", sc, res, lives)
		}
	}
}

func TestRequestLimitAndOpenLoop(t *testing.T) {
	addr := startFloor(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections = []string{addr}, "users-create", 2
	cfg.Duration, cfg.Warmup, cfg.Requests = time.Minute, 0, 500
	res := mustRun(t, cfg, true)
	// Each connection may finish the request it had in flight.
	if res.Requests < 500 || res.Requests > 502 {
		t.Fatalf("requests %d, want 500..502", res.Requests)
	}
	cfg.Requests, cfg.Rate, cfg.Duration = 0, 400, 500*time.Millisecond
	res = mustRun(t, cfg, true)
	// An open loop sends no more than its schedule allows.
	if res.Requests == 0 || res.Requests > 400*3/4+int64(cfg.Connections) {
		t.Fatalf("open loop sent %d requests in %.2fs at 400/s", res.Requests, res.DurationS)
	}
}

func TestParseAddrsAndValidate(t *testing.T) {
	got, err := ParseAddrs("http://127.0.0.1:1, 127.0.0.1:2")
	if err != nil || len(got) != 2 || got[0] != "127.0.0.1:1" || got[1] != "127.0.0.1:2" {
		t.Fatal(got, err)
	}
	for _, bad := range []string{"", "https://127.0.0.1:1", "http://"} {
		if _, err := ParseAddrs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	cfg := DefaultConfig()
	cfg.Scenario = "nope"
	if cfg.Validate() == nil {
		t.Fatal("unknown scenario accepted")
	}
}

// startNode runs a one-node troupe in process and returns its address.
func startNode(t *testing.T) string { return nodetest.Start(t, 4) }

func TestDocsWSAgainstNode(t *testing.T) {
	addr := startNode(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections, cfg.Docs = []string{addr}, "docs-ws", 6, 2
	cfg.Duration, cfg.Warmup, cfg.Requests = 30*time.Second, 0, 300
	res := mustRun(t, cfg, false)
	acks := res.ByStatus["ack"]
	if res.Errors != 0 || acks < 300 || res.Requests != acks || res.ThroughputRPS <= 0 || res.LatencyUS.Max == 0 || res.Docs != 2 {
		t.Fatalf("%+v", res)
	}
	// Three clients on each document: each op reaches all three of them
	// (the ops in flight at the end may not have come back yet).
	events := res.EventsRPS * res.DurationS
	if events < 2*float64(acks) {
		t.Fatalf("%.0f events for %d acks: %+v", events, acks, res)
	}
}

// TestDocsWSHoldsDocLength: with --doc-length the documents are created
// at that length and stay at it or one letter short, however many edits
// they take. One client a document: two clients' concurrent deletes of
// the same letter would transform into one delete and an empty change.
func TestDocsWSHoldsDocLength(t *testing.T) {
	addr := startNode(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections, cfg.Docs, cfg.DocLength = []string{addr}, "docs-ws", 2, 2, 30
	cfg.Duration, cfg.Warmup, cfg.Requests = 30*time.Second, 0, 400
	r, err := NewRunner(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(context.Background(), nil)
	if err != nil || res.Errors != 0 || res.ByStatus["ack"] < 400 {
		t.Fatalf("%v %+v", err, res)
	}
	for _, id := range r.DocIDs() {
		resp, err := http.Get("http://" + addr + "/v1/docs/" + id)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Version uint64 `json:"version"`
			Content string `json:"content"`
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		// Every version one letter more or less, alternately.
		if n := len(d.Content); err != nil || d.Version < 100 || n < 29 || n > 30 || (uint64(n)+d.Version)%2 != 0 {
			t.Fatalf("%s: %v, version %d, %d letters", id, err, d.Version, n)
		}
	}
}

func TestLengthChangeAndEdgeRates(t *testing.T) {
	ops := []wsOp{{Op: "insert", Text: "hé🙂"}, {Op: "delete", Len: 2}, {Op: "replace", Len: 1, Text: "ab"}}
	if n := lengthChange(ops); n != 2 {
		t.Fatalf("lengthChange %d, want 2", n)
	}
	// 20 steps of 50 ms: a tenth is 2 steps; the partial step after the
	// last whole one is left out.
	tl := make([]int64, 21)
	for i := range tl {
		tl[i] = int64(i + 1)
	}
	first, last := edgeRates(tl, 20*timelineStep+timelineStep/2)
	if first != float64(1+2)/0.1 || last != float64(19+20)/0.1 {
		t.Fatalf("edge rates %v %v", first, last)
	}
	if f, l := edgeRates(tl, timelineStep); f != 0 || l != 0 {
		t.Fatalf("a one-step run has edge rates %v %v", f, l)
	}
}

// TestDocsWSClientState feeds a client the messages of the protocol and
// checks the version, length and readiness it keeps.
func TestDocsWSClientState(t *testing.T) {
	r := &Runner{cfg: DefaultConfig()}
	c := &wsClient{r: r, w: &worker{failures: map[string]int64{}}, seq: 1, inflight: true}
	feed := func(m wsMessage) error {
		c.msg = m
		return c.handle()
	}
	ins := func(text string) []wsOp { return []wsOp{{Op: "insert", Text: text}} }
	// The ack overtakes a change committed before this client's: the
	// next op waits until the stream reaches the acked version.
	if feed(wsMessage{Type: "ack", Seq: 1, Version: 2}) != nil || c.inflight || c.awaiting != 2 {
		t.Fatalf("after ack: %+v", c)
	}
	if feed(wsMessage{Type: "change", Version: 1, Ops: ins("ab")}) != nil || c.version != 1 || c.length != 2 {
		t.Fatalf("after change 1: %+v", c)
	}
	if feed(wsMessage{Type: "change", Version: 1, Ops: ins("ab")}) != nil || c.length != 2 {
		t.Fatalf("a replayed change counted twice: %+v", c)
	}
	if feed(wsMessage{Type: "change", Version: 2, Ops: ins("x")}) != nil || c.version != 2 || c.length != 3 {
		t.Fatalf("after change 2: %+v", c)
	}
	if !errors.Is(feed(wsMessage{Type: "change", Version: 4}), errBroken) || c.version != 2 {
		t.Fatalf("a gap was not noticed: %+v", c)
	}
	if !errors.Is(feed(wsMessage{Type: "reset", Doc: &wsDoc{Version: 9, Content: "héllo"}}), errBroken) || c.version != 9 || c.length != 5 {
		t.Fatalf("after reset: %+v", c)
	}
	if !errors.Is(feed(wsMessage{Type: "reset", Deleted: true}), errDocGone) {
		t.Fatal("a deleted document was not noticed")
	}
}

// FuzzDocsWSMessage: whatever a server sends, the docs-ws client decodes
// it or reports it, and its next op is well formed.
func FuzzDocsWSMessage(f *testing.F) {
	for _, seed := range []string{
		`{"type":"change","version":1,"ops":[{"op":"insert","pos":0,"text":"ab"}]}`,
		`{"type":"change","version":1,"ops":[{"op":"delete","pos":0,"len":99}]}`,
		`{"type":"change","version":1,"ops":[{"op":"replace","pos":0,"len":-9223372036854775808,"text":"x"}]}`,
		`{"type":"ack","seq":1,"version":3}`,
		`{"type":"error","seq":1,"error":{"code":"version_too_old","message":"x"}}`,
		`{"type":"reset","doc":{"version":7,"content":"héllo"}}`,
		`{"type":"reset","deleted":true}`,
		`{"type":42}`, `[]`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &Runner{cfg: DefaultConfig()}
		c := &wsClient{r: r, w: &worker{failures: map[string]int64{}, rng: rand.New(rand.NewPCG(1, 2))}, seq: 1, inflight: true, length: 3}
		c.msg = wsMessage{}
		if json.Unmarshal(data, &c.msg) != nil {
			return
		}
		_ = c.handle()
		if c.length < 0 {
			t.Fatalf("length %d", c.length)
		}
		c.nextOp(time.Now())
		var op map[string]any
		if err := json.Unmarshal(c.out, &op); err != nil {
			t.Fatalf("next op %q: %v", c.out, err)
		}
	})
}

// With FollowLeader, each connection moves to the target its answers
// name in X-Troupe-Leader, and never to an address that is not a target.
func TestFollowLeader(t *testing.T) {
	serve := func(leader func() string) (string, *atomic.Int64) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var n atomic.Int64
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			n.Add(1)
			ctx.Response.Header.Set("X-Troupe-Leader", leader())
			ctx.SetStatusCode(fasthttp.StatusCreated)
			ctx.SetBodyString(`{"id":"0000000000000000"}`)
		}}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Shutdown() })
		return ln.Addr().String(), &n
	}
	var leaderAddr string
	follower, atFollower := serve(func() string { return "http://" + leaderAddr })
	leaderAddr, atLeader := serve(func() string { return leaderAddr })
	outsider, atOutsider := serve(func() string { return "" })
	// A third target names an address that is no target: ignored.
	stray, atStray := serve(func() string { return outsider })

	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections = []string{follower, leaderAddr, stray}, "users-create", 6
	cfg.Duration, cfg.Warmup, cfg.Requests, cfg.FollowLeader = time.Minute, 0, 300, true
	res := mustRun(t, cfg, false)
	if res.Errors != 0 || !res.FollowLeader {
		t.Fatalf("%+v", res)
	}
	// The two connections that started at the follower moved after their
	// first answer; those at the stray target stayed.
	if got := atFollower.Load(); got != 2 || res.LeaderMoves != 2 {
		t.Fatalf("the follower answered %d requests, %d moves; want 2 and 2", got, res.LeaderMoves)
	}
	if atOutsider.Load() != 0 || atStray.Load() == 0 || atLeader.Load() < 100 {
		t.Fatalf("leader %d, stray %d, outsider %d", atLeader.Load(), atStray.Load(), atOutsider.Load())
	}

	cfg.Scenario = "users-get"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "follow-leader") {
		t.Fatalf("follow-leader with a read scenario: %v", err)
	}
}

// With Idempotency, every write carries a key no other request had, and
// reads carry none.
func TestIdempotencyKeys(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	keys := map[string]int{}
	var writes, reads, keyedReads int
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		key := string(ctx.Request.Header.Peek("Idempotency-Key"))
		mu.Lock()
		if ctx.IsGet() {
			reads++
			if key != "" {
				keyedReads++
			}
		} else {
			writes++
			keys[key]++
		}
		mu.Unlock()
		if ctx.IsGet() {
			ctx.SetStatusCode(fasthttp.StatusOK)
		} else {
			ctx.SetStatusCode(fasthttp.StatusCreated)
		}
		ctx.SetBodyString(`{"id":"0000000000000000"}`)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections = []string{ln.Addr().String()}, "users-mixed", 4
	cfg.Duration, cfg.Warmup, cfg.Requests, cfg.Idempotency = time.Minute, 0, 2000, true
	// As a floor run: no setup, the server answers every path.
	res := mustRun(t, cfg, true)
	if !res.Idempotency {
		t.Fatalf("%+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if writes == 0 || reads == 0 || keyedReads != 0 {
		t.Fatalf("%d writes, %d reads, %d reads with a key", writes, reads, keyedReads)
	}
	for k, n := range keys {
		if k == "" || n != 1 || len(k) > 255 {
			t.Fatalf("key %q sent %d times", k, n)
		}
	}
	if len(keys) != writes {
		t.Fatalf("%d keys for %d writes", len(keys), writes)
	}

	for _, sc := range []string{"users-get", "ratelimit-check", "docs-ws"} {
		cfg.Scenario = sc
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--idempotency") {
			t.Errorf("--idempotency with %s: %v", sc, err)
		}
	}
}

// Keyed creates against a node: every one is created (a fresh key each,
// so none is answered from another's result).
func TestIdempotencyAgainstNode(t *testing.T) {
	addr := startNode(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections = []string{addr}, "users-create", 4
	cfg.Duration, cfg.Warmup, cfg.Requests, cfg.Idempotency = time.Minute, 0, 400, true
	res := mustRun(t, cfg, false)
	if res.Errors != 0 || res.ByStatus["201"] != res.Requests || res.Requests < 400 {
		t.Fatalf("%+v", res)
	}
}

// A node that refuses the caller (401, 403) ends the run at once with an
// error naming what to give, rather than a run's worth of refusals.
func TestRefusedRunStops(t *testing.T) {
	for _, status := range []int{fasthttp.StatusUnauthorized, fasthttp.StatusForbidden} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var requests atomic.Int64
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			requests.Add(1)
			ctx.SetStatusCode(status)
			ctx.SetBodyString(`{"error":{"code":"unauthorized","message":"sign in"}}`)
		}}
		go func() { _ = srv.Serve(ln) }()
		cfg := DefaultConfig()
		cfg.Addrs, cfg.Scenario, cfg.Connections = []string{ln.Addr().String()}, "users-create", 4
		cfg.Duration, cfg.Warmup = time.Minute, time.Second
		r, err := NewRunner(cfg, true)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res, err := r.Run(context.Background(), nil)
		var refused *RefusedError
		if !errors.As(err, &refused) || refused.Status != status || !strings.Contains(err.Error(), "--token") || res != nil {
			t.Fatalf("%d: %v, %+v", status, err, res)
		}
		// Each connection had at most one request in flight when the
		// first refusal stopped the run (a minute was asked for).
		if n := requests.Load(); n > int64(cfg.Connections)+1 || time.Since(start) > 30*time.Second {
			t.Fatalf("%d: %d requests in %v after a refusal", status, n, time.Since(start))
		}
		_ = srv.Shutdown()
	}
}

// TestWatchAgainstNode: the watch scenario's watchers read every change
// the run made (the measured ones at least) and report their lag.
func TestWatchAgainstNode(t *testing.T) {
	addr := startNode(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections, cfg.Watchers = []string{addr}, "watch", 4, 8
	cfg.Duration, cfg.Warmup, cfg.Requests, cfg.Rate = 30*time.Second, 0, 200, 400
	res := mustRun(t, cfg, false)
	if res.Errors != 0 || res.Requests < 200 || res.Watchers != 8 || res.WatchLagMS == nil || len(res.WatchErrors) != 0 {
		t.Fatalf("%+v", res)
	}
	// Each watcher reads each create (those at the very end may not
	// have reached them all yet).
	if read := res.WatchEventsRPS * res.DurationS; read < 0.9*8*float64(res.Requests) {
		t.Fatalf("%.0f changes read for %d creates and 8 watchers", read, res.Requests)
	}
	var out strings.Builder
	WriteTable(&out, res)
	if !strings.Contains(out.String(), "watchers   8,") {
		t.Fatalf("report:\n%s", out.String())
	}
	cfg.Watchers = -1
	if cfg.Validate() == nil {
		t.Fatal("negative watchers accepted")
	}
}

// TestChangeAt finds a change's time, not a user's name that looks like
// one, and refuses a change without one.
func TestChangeAt(t *testing.T) {
	obj := []byte(`{"index":7,"n":0,"kind":"user","op":"created","id":"u1","version":1,"at":"2026-12-07T03:04:05.678Z","data":{"name":"x\",\"at\":\"1999-01-01T00:00:00Z","created_at":"2026-12-07T03:04:05.678Z"}}`)
	at, ok := changeAt(obj)
	if !ok || at.UnixMilli() != time.Date(2026, 12, 7, 3, 4, 5, 678e6, time.UTC).UnixMilli() {
		t.Fatalf("changeAt: %v %v", at, ok)
	}
	for _, bad := range []string{`{"index":7}`, `{"at":"yesterday"}`, `{"at":"2026-12-07T03:04:05Z`} {
		if _, ok := changeAt([]byte(bad)); ok {
			t.Fatalf("changeAt(%s) found a time", bad)
		}
	}
}

// TestParseMillisUTC: the node's time form reads as time.Parse reads it;
// anything else is left to time.Parse.
func TestParseMillisUTC(t *testing.T) {
	for _, s := range []string{"2026-12-07T03:04:05.678Z", "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z", "2024-02-29T12:00:00.001Z"} {
		want, err := time.Parse(time.RFC3339Nano, s)
		got, ok := parseMillisUTC([]byte(s))
		if err != nil || !ok || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v %v", s, got, ok, want, err)
		}
	}
	for _, s := range []string{"", "2026-12-07T03:04:05Z", "2026-12-07T03:04:05.678+01:00", "2026-13-07T03:04:05.678Z",
		"2026-12-07T24:04:05.678Z", "2026-12-07T03:04:05.6a8Z", "2026-12-07 03:04:05.678Z", "+026-12-07T03:04:05.678Z"} {
		if got, ok := parseMillisUTC([]byte(s)); ok {
			t.Errorf("%q read as %v", s, got)
		}
	}
	// Another form still reads, by time.Parse.
	if at, ok := changeAt([]byte(`{"at":"2026-12-07T03:04:05.6789+01:00"}`)); !ok || at.UnixMilli() != time.Date(2026, 12, 7, 2, 4, 5, 678_900_000, time.UTC).UnixMilli() {
		t.Fatalf("changeAt with an offset: %v %v", at, ok)
	}
}
