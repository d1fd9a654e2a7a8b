package bench

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/envoy"
)

// startFloorRLS runs the floor's gRPC rate-limit service on 127.0.0.1.
func startFloorRLS(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFloorRateLimitService()
	done := make(chan struct{})
	go func() { _ = f.Serve(ln); close(done) }()
	t.Cleanup(func() { f.Stop(); <-done })
	return ln.Addr().String()
}

func TestRateLimitScenariosValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Scenario = "ratelimit-grpc"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--grpc-addr") {
		t.Fatalf("ratelimit-grpc without an address: %v", err)
	}
	for _, bad := range []string{"127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x"} {
		cfg.GRPCAddr = bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--grpc-addr") {
			t.Fatalf("--grpc-addr %q: %v", bad, err)
		}
	}
	cfg.GRPCAddr = "127.0.0.1:1"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 101} {
		cfg.Checks = n
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "1..100") {
			t.Fatalf("checks %d: %v", n, err)
		}
	}
	if !HasFloor("ratelimit-grpc") || !IsGRPC("ratelimit-grpc") || IsGRPC("ratelimit-batch") || HasFloor("docs-ws") {
		t.Fatal("floors and gRPC scenarios misnamed")
	}
}

// A multi-check body holds --checks checks of distinct keys of the
// bench policy, and the answers count as that many decisions.
func TestMultiCheckBody(t *testing.T) {
	addr := startFloor(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections, cfg.Checks = []string{addr}, "ratelimit-batch", 1, 7
	r, err := NewRunner(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{rng: rand.New(rand.NewPCG(1, 2))}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	for range 50 {
		if want := nextMultiCheck(r, w, req); want != fasthttp.StatusOK {
			t.Fatal(want)
		}
		var body struct {
			Checks []struct{ Policy, Key string }
		}
		if err := json.Unmarshal(req.Body(), &body); err != nil {
			t.Fatalf("%s: %v", req.Body(), err)
		}
		seen := map[string]bool{}
		for _, c := range body.Checks {
			if c.Policy != benchPolicy || !strings.HasPrefix(c.Key, "k") || seen[c.Key] {
				t.Fatalf("%s", req.Body())
			}
			seen[c.Key] = true
		}
		if len(seen) != 7 {
			t.Fatalf("%d checks: %s", len(seen), req.Body())
		}
	}
	res := mustRun(t, Config{Addrs: []string{addr}, Scenario: "ratelimit-batch", Connections: 2, Duration: time.Minute, Requests: 100, Users: 1, BatchSize: 1, Docs: 1, Checks: 7, Timeout: 5 * time.Second}, true)
	if res.ItemsPerRequest != 7 || res.Errors != 0 || res.Requests < 100 {
		t.Fatalf("%+v", res)
	}
}

// ratelimit-batch against a node: every multi-check is answered and
// allowed.
func TestMultiCheckAgainstNode(t *testing.T) {
	addr := startNode(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections = []string{addr}, "ratelimit-batch", 4
	cfg.Duration, cfg.Warmup, cfg.Requests = time.Minute, 0, 200
	res := mustRun(t, cfg, false)
	if res.Errors != 0 || res.ByStatus["200"] != res.Requests || res.Requests < 200 || res.ItemsPerRequest != 10 {
		t.Fatalf("%+v", res)
	}
}

// policyHTTP answers the bench's policy PUT as a node does (200), and
// records the bodies it was sent.
func policyHTTP(t *testing.T) (string, func() []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var puts []string
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Method()) != "PUT" || string(ctx.Path()) != "/v1/ratelimit/policies/"+benchEnvoyPolicy {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			return
		}
		mu.Lock()
		puts = append(puts, string(ctx.PostBody()))
		mu.Unlock()
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), puts...)
	}
}

// onePolicy is the replicated policies as the service sees them.
type onePolicy map[string]storage.Policy

func (p onePolicy) Policies() map[string]storage.Policy { return p }

type admitAll struct{}

func (admitAll) AuthorizeRateLimitService(string) (bool, error) { return false, nil }

// countingLimiter counts the checks the service asked for.
type countingLimiter struct {
	*actors.Limiter
	mu     sync.Mutex
	checks map[string]int
}

func (c *countingLimiter) DecideAll(checks []actors.Check, out []storage.Decision, deadline time.Time) (bool, error) {
	c.mu.Lock()
	for _, ch := range checks {
		c.checks[ch.Policy.Name]++
	}
	c.mu.Unlock()
	return c.Limiter.DecideAll(checks, out, deadline)
}

// ratelimit-grpc against the real service (transport/envoy) with real
// bucket actors: the policy is put over HTTP, and every call is decided
// under it.
func TestRateLimitGRPCAgainstService(t *testing.T) {
	httpAddr, puts := policyHTTP(t)
	set := metrics.NewSet()
	sys := actors.NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	lim := &countingLimiter{Limiter: actors.NewLimiter(sys, set, actors.LimiterConfig{Actors: 4}), checks: map[string]int{}}
	t.Cleanup(func() { lim.Close(); sys.Shutdown() })
	p := storage.Policy{Name: benchEnvoyPolicy, Limit: 1_000_000, WindowMs: 1000, Envoy: &storage.EnvoyRule{Domain: benchDomain, Descriptors: []storage.EnvoyEntry{{Key: "client"}}}}
	if e := p.Validate(); e != nil {
		t.Fatal(e)
	}
	srv := envoy.New(envoy.Config{}, onePolicy{p.Name: p}, lim, admitAll{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})

	// Both clients, the lean one (the default) first: the policy is put
	// once per run, every measured call decided.
	var before int
	for i, client := range []string{GRPCClientH2, GRPCClientGo} {
		cfg := DefaultConfig()
		cfg.Addrs, cfg.GRPCAddr, cfg.Scenario, cfg.Connections = []string{httpAddr}, ln.Addr().String(), "ratelimit-grpc", 40
		cfg.Duration, cfg.Warmup, cfg.Requests, cfg.GRPCClient = time.Minute, 0, 300, client
		res := mustRun(t, cfg, false)
		if res.Errors != 0 || res.ByStatus["ok"] != res.Requests || res.Requests < 300 || res.ThroughputRPS <= 0 {
			t.Fatalf("%s: %+v", client, res)
		}
		if got := puts(); len(got) != i+1 || !strings.Contains(got[i], `"domain":"bench"`) {
			t.Fatalf("%s: policy puts: %q", client, got)
		}
		lim.mu.Lock()
		decided := lim.checks[benchEnvoyPolicy] - before
		before = lim.checks[benchEnvoyPolicy]
		lim.mu.Unlock()
		// Every measured call, the setup's and the calls in flight at the end.
		if decided < int(res.Requests) {
			t.Fatalf("%s: %d checks decided for %d calls", client, decided, res.Requests)
		}
	}
}
