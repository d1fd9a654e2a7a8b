package client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/troupe-db/troupe/cluster/clustertest"
	"github.com/valyala/fasthttp"
)

// fakeNode is a small fasthttp server on 127.0.0.1 whose answers a test
// scripts. It counts the connections it accepts and records requests.
type fakeNode struct {
	base     string
	addr     string
	accepted atomic.Int64

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	method, path, key, auth, ifMatch, body string
}

// startFake serves h on a new port; h gets the request's number (0, 1, …).
func startFake(t *testing.T, h func(n int, ctx *fasthttp.RequestCtx)) *fakeNode {
	t.Helper()
	return startFakeAt(t, "127.0.0.1:0", h)
}

func startFakeAt(t *testing.T, addr string, h func(n int, ctx *fasthttp.RequestCtx)) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{addr: ln.Addr().String(), base: "http://" + ln.Addr().String()}
	srv := &fasthttp.Server{Logger: quietLogger{}, Handler: func(ctx *fasthttp.RequestCtx) {
		f.mu.Lock()
		n := len(f.seen)
		f.seen = append(f.seen, seenRequest{
			method: string(ctx.Method()), path: string(ctx.RequestURI()),
			key:     string(ctx.Request.Header.Peek("Idempotency-Key")),
			auth:    string(ctx.Request.Header.Peek("Authorization")),
			ifMatch: string(ctx.Request.Header.Peek("If-Match")),
			body:    string(ctx.PostBody()),
		})
		f.mu.Unlock()
		h(n, ctx)
	}}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(countingListener{ln, &f.accepted}) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		// Shutdown stops only a Serve that has begun; closing the listener
		// also ends one that had not yet started when Shutdown ran.
		ln.Close()
		if err := <-done; err != nil {
			t.Log(err)
		}
	})
	return f
}

func (f *fakeNode) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

// quietLogger keeps the fake servers' connection errors, which some
// tests provoke, out of the test output.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func answer(ctx *fasthttp.RequestCtx, status int, body string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(body)
}

const userJSON = `{"id":"u1","name":"Ada","email":"ada@example.com","role":"user","version":1,"created_at":"2025-01-02T03:04:05.678Z","updated_at":"2025-01-02T03:04:05.678Z"}`

// closedAddr is a 127.0.0.1 port that nothing listens on (for a while:
// the kernel hands out ports in sequence, so it is not soon reused).
func closedAddr(t *testing.T) string { return clustertest.FreeAddr(t) }

// sleepRecorder is an injected Sleep: it records each wait and returns
// at once.
type sleepRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) recorded() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// fakeClock is an injected Now that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// dialCounter is an injected Dial that counts attempts per address.
type dialCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *dialCounter) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	d.mu.Lock()
	if d.n == nil {
		d.n = map[string]int{}
	}
	d.n[addr]++
	d.mu.Unlock()
	return net.DialTimeout("tcp", addr, timeout)
}

func (d *dialCounter) count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[addr]
}

func TestWriteRetriedWithSameKey(t *testing.T) {
	f := startFake(t, func(n int, ctx *fasthttp.RequestCtx) {
		if n%2 == 0 {
			ctx.Response.Header.Set("Retry-After", "1")
			answer(ctx, 503, `{"error":{"code":"unavailable","message":"the write may or may not have been applied","details":{"outcome":"unknown"}}}`)
			return
		}
		ctx.Response.Header.Set("X-Troupe-Index", "7")
		ctx.Response.Header.Set("ETag", `"1"`)
		answer(ctx, 201, userJSON)
	})
	sleeps := &sleepRecorder{}
	cfg := testConfig(f.base)
	cfg.Sleep = sleeps.Sleep
	cfg.Token = "secret-token"
	c := newTestClient(t, cfg)
	ctx := testCtx(t)

	u, meta, err := c.CreateUser(ctx, NewUser{Name: "Ada", Email: "ada@example.com"})
	if err != nil || u.ID != "u1" || meta.Attempts != 2 || meta.Index != 7 || meta.Version != 1 || meta.Status != 201 {
		t.Fatalf("create: %+v %+v %v", u, meta, err)
	}
	reqs := f.requests()
	if len(reqs) != 2 || reqs[0].key == "" || reqs[0].key != reqs[1].key || reqs[0].key != meta.IdempotencyKey {
		t.Fatalf("keys: %+v, meta %q", reqs, meta.IdempotencyKey)
	}
	if reqs[0].body != reqs[1].body || reqs[0].auth != "Bearer secret-token" || reqs[0].method != "POST" || reqs[0].path != "/v1/users" {
		t.Fatalf("requests: %+v", reqs)
	}
	// One node: its 503's Retry-After is waited out.
	if w := sleeps.recorded(); len(w) != 1 || w[0] != time.Second {
		t.Fatalf("waits %v", w)
	}

	// The caller's key is used on every attempt, and so is If-Match.
	c.SetToken("")
	if _, _, err := c.PatchUser(ctx, "u1", UserPatch{Role: new(RoleAdmin)}, 3, WithIdempotencyKey("mine")); err != nil {
		t.Fatal(err)
	}
	reqs = f.requests()[2:]
	for _, r := range reqs {
		if r.key != "mine" || r.ifMatch != `"3"` || r.auth != "" || r.body != `{"role":"admin"}` || r.method != "PATCH" {
			t.Fatalf("patch attempts: %+v", reqs)
		}
	}
	if len(reqs) != 2 {
		t.Fatalf("%d patch attempts", len(reqs))
	}
}

func TestOutcomeUnknownAfterLastAttempt(t *testing.T) {
	f := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) {
		answer(ctx, 503, `{"error":{"code":"unavailable","message":"unknown","details":{"outcome":"unknown"}}}`)
	})
	cfg := testConfig(f.base)
	cfg.MaxAttempts = 3
	c := newTestClient(t, cfg)
	meta, err := c.DeleteUser(testCtx(t), "u1")
	if !OutcomeUnknown(err) || !IsUnavailable(err) || meta.Attempts != 3 || meta.Status != 503 || meta.IdempotencyKey == "" {
		t.Fatalf("%v %+v", err, meta)
	}
	for _, r := range f.requests() {
		if r.key != meta.IdempotencyKey {
			t.Fatalf("keys: %+v", f.requests())
		}
	}
	if OutcomeUnknown(&APIError{Status: 503, Code: "unavailable"}) || OutcomeUnknown(errors.New("x")) {
		t.Fatal("OutcomeUnknown without the detail")
	}
}

func TestOnlyTransientFailuresAreRetried(t *testing.T) {
	cases := []struct {
		status   int
		body     string
		attempts int
		code     string
	}{
		{400, `{"error":{"code":"bad_request","message":"email is not valid","details":{"field":"email"}}}`, 1, "bad_request"},
		{401, `{"error":{"code":"unauthenticated","message":"no token"}}`, 1, "unauthenticated"},
		{403, `{"error":{"code":"forbidden","message":"no"}}`, 1, "forbidden"},
		{404, `{"error":{"code":"not_found","message":"no user"}}`, 1, "not_found"},
		{409, `{"error":{"code":"version_too_old","message":"reload"}}`, 1, "version_too_old"},
		{412, `{"error":{"code":"precondition_failed","message":"stale"}}`, 1, "precondition_failed"},
		{413, `{"error":{"code":"payload_too_large","message":"big"}}`, 1, "payload_too_large"},
		{500, `{"error":{"code":"internal","message":"bug"}}`, 1, "internal"},
		{502, `<html><body>Bad Gateway</body></html>`, 1, ""},
		{503, `service unavailable`, 3, "unavailable"},
		{504, `{"error":{"code":"timeout","message":"slow"}}`, 3, "timeout"},
	}
	for _, tc := range cases {
		f := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) { answer(ctx, tc.status, tc.body) })
		cfg := testConfig(f.base)
		cfg.MaxAttempts = 3
		c := newTestClient(t, cfg)
		for _, write := range []bool{false, true} {
			before := len(f.requests())
			var err error
			var meta Meta
			if write {
				_, meta, err = c.CreateUser(testCtx(t), NewUser{Name: "x", Email: "x@example.com"})
			} else {
				_, meta, err = c.GetUser(testCtx(t), "u1", ReadOptions{})
			}
			e := apiErr(t, err)
			if n := len(f.requests()) - before; n != tc.attempts || meta.Attempts != tc.attempts {
				t.Errorf("%d (write %v): %d attempts, want %d", tc.status, write, n, tc.attempts)
			}
			if e.Status != tc.status || e.Code != tc.code || e.Node != f.base || e.Message == "" {
				t.Errorf("%d: %+v", tc.status, e)
			}
		}
		if tc.status == 400 {
			_, _, err := c.GetUser(testCtx(t), "u1", ReadOptions{})
			if apiErr(t, err).Field() != "email" {
				t.Errorf("details: %+v", apiErr(t, err))
			}
		}
		if tc.status == 409 && IsConflict(&APIError{Status: 409, Code: tc.code}) {
			t.Error("version_too_old counted as a conflict")
		}
	}
}

func TestFailoverAndBreaker(t *testing.T) {
	down := closedAddr(t)
	var failNext atomic.Bool
	healthy := func(_ int, ctx *fasthttp.RequestCtx) {
		if failNext.CompareAndSwap(true, false) {
			answer(ctx, 503, `{"error":{"code":"unavailable","message":"no leader"}}`)
			return
		}
		answer(ctx, 200, `{"status":"ok"}`)
	}
	b := startFake(t, healthy)
	clock := newFakeClock()
	dials := &dialCounter{}
	cfg := testConfig("http://"+down, b.base)
	cfg.BreakerThreshold = 2
	cfg.BreakerCooldown = time.Minute
	cfg.MaxAttempts = 3
	cfg.Now = clock.Now
	cfg.Dial = dials.Dial
	cfg.Sleep = (&sleepRecorder{}).Sleep
	c := newTestClient(t, cfg)
	ctx := testCtx(t)
	health := func(wantAttempts int, wantNode string) {
		t.Helper()
		meta, err := c.Health(ctx)
		if err != nil || meta.Attempts != wantAttempts || meta.Node != wantNode {
			t.Fatalf("health: %+v %v; want %d attempts, answered by %s", meta, err, wantAttempts, wantNode)
		}
	}
	state := func(i int) NodeState { t.Helper(); return c.NodeStates()[i] }

	// The first node refuses; the second answers and becomes preferred.
	health(2, b.base)
	if dials.count(down) != 1 || state(0).Breaker != BreakerClosed || state(0).ConsecutiveFailures != 1 || !state(1).Preferred {
		t.Fatalf("after one failure: %+v", c.NodeStates())
	}
	// Calls now start at the second node; when it fails the rotation
	// reaches the first, whose second failure opens its breaker.
	failNext.Store(true)
	health(3, b.base)
	if dials.count(down) != 2 || state(0).Breaker != BreakerOpen || state(0).LastError == "" ||
		!state(0).CooldownEnds.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("after two failures: %+v", c.NodeStates())
	}
	// Open: skipped, not dialled.
	failNext.Store(true)
	health(2, b.base)
	if dials.count(down) != 2 {
		t.Fatalf("open breaker dialled: %d", dials.count(down))
	}
	// After the cool-down one trial goes; it fails, so the breaker opens
	// for another cool-down.
	clock.Advance(time.Minute)
	failNext.Store(true)
	health(3, b.base)
	if dials.count(down) != 3 || state(0).Breaker != BreakerOpen {
		t.Fatalf("after a failed trial: %+v", c.NodeStates())
	}
	failNext.Store(true)
	health(2, b.base)
	if dials.count(down) != 3 {
		t.Fatalf("reopened breaker dialled: %d", dials.count(down))
	}
	// The node comes back; after the cool-down the trial succeeds and
	// closes the breaker.
	a := startFakeAt(t, down, healthy)
	clock.Advance(time.Minute)
	if st := state(0); st.Breaker != BreakerOpen {
		t.Fatalf("breaker moved without a request: %+v", st)
	}
	failNext.Store(true)
	health(2, a.base)
	if st := state(0); dials.count(down) != 4 || st.Breaker != BreakerClosed || st.ConsecutiveFailures != 0 || !st.Preferred {
		t.Fatalf("after recovery: %+v", c.NodeStates())
	}
	health(1, a.base)
}

func TestAllBreakersOpenStillTries(t *testing.T) {
	a, b := closedAddr(t), closedAddr(t)
	dials := &dialCounter{}
	cfg := testConfig("http://"+a, "http://"+b)
	cfg.BreakerThreshold = 1
	cfg.BreakerCooldown = time.Hour
	cfg.MaxAttempts = 2
	cfg.Dial = dials.Dial // a real clock: "least recently" needs time to pass
	c := newTestClient(t, cfg)
	_, err := c.Health(testCtx(t))
	if !errors.Is(err, syscall.ECONNREFUSED) || dials.count(a) != 1 || dials.count(b) != 1 {
		t.Fatalf("%v; dials %d %d", err, dials.count(a), dials.count(b))
	}
	for _, st := range c.NodeStates() {
		if st.Breaker != BreakerOpen {
			t.Fatalf("%+v", c.NodeStates())
		}
	}
	// Every breaker open: the node that failed least recently is tried
	// anyway, then the other.
	_, err = c.Health(testCtx(t))
	if !errors.Is(err, syscall.ECONNREFUSED) || dials.count(a) != 2 || dials.count(b) != 2 {
		t.Fatalf("%v; dials %d %d", err, dials.count(a), dials.count(b))
	}
}

func TestCancelStopsRetrying(t *testing.T) {
	f := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) {
		answer(ctx, 503, `{"error":{"code":"unavailable","message":"no leader"}}`)
	})
	cfg := testConfig(f.base)
	cfg.MaxAttempts = 100
	cfg.BackoffBase = time.Hour // the retry waits in a real timer
	cfg.BackoffMax = time.Hour
	c := newTestClient(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Once the first 503 is recorded the call waits for an hour.
		deadline := time.Now().Add(10 * time.Second)
		for c.NodeStates()[0].ConsecutiveFailures == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, meta, err := c.GetUser(ctx, "u1", ReadOptions{})
	if !errors.Is(err, context.Canceled) || !IsUnavailable(err) || meta.Attempts != 1 || len(f.requests()) != 1 {
		t.Fatalf("%v %+v, %d requests", err, meta, len(f.requests()))
	}
	// A cancelled ctx sends nothing.
	if _, err := c.Health(ctx); !errors.Is(err, context.Canceled) || len(f.requests()) != 1 {
		t.Fatalf("%v", err)
	}
}

func TestCancelDuringAttempt(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	f := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) {
		entered <- struct{}{}
		<-release
		answer(ctx, 200, userJSON)
	})
	cfg := testConfig(f.base)
	cfg.Timeout = time.Minute
	c := newTestClient(t, cfg)
	t.Cleanup(func() { close(release) }) // runs first: the abandoned attempts finish, then Close returns

	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-entered; cancel() }()
	if _, _, err := c.CreateUser(ctx, NewUser{Name: "x", Email: "x@example.com"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
	// A caller's deadline that cuts an attempt short is not the node's
	// failure: its breaker is untouched.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := c.GetUser(ctx, "u1", ReadOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	<-entered
	if st := c.NodeStates()[0]; st.ConsecutiveFailures != 0 || st.Breaker != BreakerClosed {
		t.Fatalf("%+v", st)
	}
}

func TestRetryAfterOn429(t *testing.T) {
	var retryAfter atomic.Value
	retryAfter.Store("1")
	var limited atomic.Int64 // how many of the next requests get 429
	limited.Store(1)
	f := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) {
		if limited.Add(-1) >= 0 {
			ctx.Response.Header.Set("Retry-After", retryAfter.Load().(string))
			answer(ctx, 429, `{"error":{"code":"rate_limited","message":"slow down"}}`)
			return
		}
		answer(ctx, 200, `{"count":3}`)
	})
	other := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) { answer(ctx, 200, `{"count":3}`) })
	sleeps := &sleepRecorder{}
	cfg := testConfig(f.base, other.base)
	cfg.Sleep = sleeps.Sleep
	cfg.MaxRetryAfter = 30 * time.Second
	c := newTestClient(t, cfg)
	n, meta, err := c.CountUsers(testCtx(t), CountOptions{})
	if err != nil || n != 3 || meta.Attempts != 2 {
		t.Fatalf("%d %+v %v", n, meta, err)
	}
	// Retry-After of a 429 is waited out whichever node comes next.
	if w := sleeps.recorded(); len(w) != 1 || w[0] != time.Second {
		t.Fatalf("waits %v", w)
	}
	if got := len(f.requests()) + len(other.requests()); got != 2 {
		t.Fatalf("%d requests", got)
	}

	// A wait longer than MaxRetryAfter goes back to the caller.
	retryAfter.Store("120")
	limited.Store(1)
	c2 := newTestClient(t, func() Config { cfg := testConfig(f.base); cfg.Sleep = sleeps.Sleep; return cfg }())
	_, meta, err = c2.CountUsers(testCtx(t), CountOptions{})
	if e := apiErr(t, err); e.Status != 429 || e.Code != "rate_limited" || e.RetryAfter != 2*time.Minute || meta.Attempts != 1 {
		t.Fatalf("%v %+v", err, meta)
	}
	// So does one the caller's deadline would not leave time for.
	retryAfter.Store("5")
	limited.Store(1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, meta, err = c2.CountUsers(ctx, CountOptions{})
	if e := apiErr(t, err); e.Status != 429 || meta.Attempts != 1 || len(sleeps.recorded()) != 1 {
		t.Fatalf("%v %+v %v", err, meta, sleeps.recorded())
	}
}

func TestLeaderHintSteersWrites(t *testing.T) {
	var leaderAddr atomic.Value
	a := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("X-Troupe-Leader", leaderAddr.Load().(string))
		answer(ctx, 200, userJSON)
	})
	b := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) { answer(ctx, 201, userJSON) })
	leaderAddr.Store("node-2") // an id names no node of ours
	c := newTestClient(t, testConfig(a.base, b.base))
	ctx := testCtx(t)
	if _, _, err := c.GetUser(ctx, "u1", ReadOptions{}); err != nil || c.NodeStates()[1].Leader {
		t.Fatalf("%v %+v", err, c.NodeStates())
	}
	leaderAddr.Store(b.addr)
	if _, _, err := c.GetUser(ctx, "u1", ReadOptions{}); err != nil || !c.NodeStates()[1].Leader {
		t.Fatalf("%v %+v", err, c.NodeStates())
	}
	if _, meta, err := c.CreateUser(ctx, NewUser{Name: "x", Email: "x@example.com"}); err != nil || meta.Node != b.base || meta.Attempts != 1 {
		t.Fatalf("write went to %+v %v", meta, err)
	}
	if len(b.requests()) != 1 || b.requests()[0].method != "POST" {
		t.Fatalf("leader saw %+v", b.requests())
	}
}

func TestConnectionsAreReused(t *testing.T) {
	f := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) { answer(ctx, 200, `{"count":1}`) })
	c := newTestClient(t, testConfig(f.base))
	ctx := testCtx(t)
	for range 20 {
		if _, _, err := c.CountUsers(ctx, CountOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.accepted.Load(); n != 1 {
		t.Fatalf("%d connections for 20 sequential calls", n)
	}
	// Concurrent calls share the client safely (run with -race).
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 10 {
				if _, _, err := c.CountUsers(ctx, CountOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := f.accepted.Load(); n > 17 {
		t.Fatalf("%d connections for 16 concurrent callers", n)
	}
}

func TestClosedClient(t *testing.T) {
	f := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) { answer(ctx, 200, `{"status":"ok"}`) })
	c := newTestClient(t, testConfig(f.base))
	if _, err := c.Health(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Health(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRequestBodyLimit(t *testing.T) {
	f := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) { answer(ctx, 201, userJSON) })
	cfg := testConfig(f.base)
	cfg.MaxRequestBodySize = 100
	c := newTestClient(t, cfg)
	_, _, err := c.CreateUser(testCtx(t), NewUser{Name: string(make([]byte, 200)), Email: "x@example.com"})
	if !errors.Is(err, ErrBodyTooLarge) || len(f.requests()) != 0 {
		t.Fatalf("%v", err)
	}
}

func TestOnNodePinsTheCall(t *testing.T) {
	a := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) {
		answer(ctx, 503, `{"error":{"code":"unavailable","message":"catching up"}}`)
	})
	b := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) { answer(ctx, 200, `{"status":"ready"}`) })
	c := newTestClient(t, testConfig(a.base, b.base))
	ctx := testCtx(t)
	_, err := c.Ready(ctx, OnNode(a.base), WithMaxAttempts(1))
	if e := apiErr(t, err); e.Status != 503 || e.Message != "catching up" || len(a.requests()) != 1 || len(b.requests()) != 0 {
		t.Fatalf("%v", err)
	}
	if meta, err := c.Ready(ctx); err != nil || meta.Node != b.base {
		t.Fatalf("failover: %+v %v", meta, err)
	}
	if _, err := c.Ready(ctx, OnNode("http://127.0.0.1:1")); err == nil {
		t.Fatal("a node not in the list was accepted")
	}
}

// A node that closes each connection after answering, without saying so,
// leaves a dead connection in the pool. Reusing it fails before any
// answer; the client repeats the request on a new connection at once,
// and neither counts that as an attempt nor blames the node.
func TestStaleKeepAliveConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				req.Body.Close()
				_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}")
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	c := newTestClient(t, testConfig("http://"+ln.Addr().String()))
	for i := range 10 {
		meta, err := c.Health(testCtx(t))
		if err != nil || meta.Attempts != 1 {
			t.Fatalf("call %d: %+v %v", i, meta, err)
		}
		if st := c.NodeStates()[0]; st.ConsecutiveFailures != 0 {
			t.Fatalf("call %d: %+v", i, st)
		}
	}
	if accepted.Load() < 10 {
		t.Fatalf("%d connections", accepted.Load())
	}
}

// A follower's 503 that names the leader sends the write's retry there,
// not merely to the next node of the list.
func TestRetryGoesToNamedLeader(t *testing.T) {
	var leaderAddr atomic.Value
	follower := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("X-Troupe-Leader", leaderAddr.Load().(string))
		ctx.Response.Header.Set("Retry-After", "1")
		answer(ctx, 503, `{"error":{"code":"unavailable","message":"not the leader"}}`)
	})
	other := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) {
		answer(ctx, 503, `{"error":{"code":"unavailable","message":"no"}}`)
	})
	leader := startFake(t, func(_ int, ctx *fasthttp.RequestCtx) { answer(ctx, 201, userJSON) })
	leaderAddr.Store(leader.addr)
	sleeps := &sleepRecorder{}
	cfg := testConfig(follower.base, other.base, leader.base)
	cfg.Sleep = sleeps.Sleep
	c := newTestClient(t, cfg)
	_, meta, err := c.CreateUser(testCtx(t), NewUser{Name: "x", Email: "x@example.com"})
	if err != nil || meta.Node != leader.base || meta.Attempts != 2 || len(other.requests()) != 0 {
		t.Fatalf("%+v %v; the other node saw %d", meta, err, len(other.requests()))
	}
	if r := leader.requests(); r[0].key != follower.requests()[0].key {
		t.Fatalf("keys differ: %+v / %+v", follower.requests(), r)
	}
	// Another node is next: the follower's Retry-After is not waited out.
	if w := sleeps.recorded(); len(w) != 1 || w[0] >= time.Second {
		t.Fatalf("waits %v", w)
	}
}
