package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/actors"
	openapi "github.com/troupe-db/troupe/api"
	"github.com/troupe-db/troupe/cluster"
	"github.com/troupe-db/troupe/cluster/clustertest"
	"github.com/troupe-db/troupe/storage"
)

// testServer is a real one-node troupe (raft in a temp dir, actors,
// fasthttp on 127.0.0.1) whose every response is checked against
// api/openapi.yaml.
type testServer struct {
	t         testing.TB
	base      string
	node      *cluster.Node
	validator *openapi.Validator
	srv       *Server
	clock     *limiterClock // the rate limiter's clock
}

// limiterClock is the rate limiter's clock in tests: it moves only when
// the test says so.
type limiterClock struct{ ns atomic.Int64 }

func (c *limiterClock) now() int64              { return c.ns.Load() }
func (c *limiterClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

var cheapArgon = storage.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, KeyLen: 32, SaltLen: 16}

// testAdminPassword is the password of the first admin of test servers.
const testAdminPassword = "admin-password"

func startServer(t testing.TB, opts ...func(*Config)) *testServer {
	t.Helper()
	return startServerWith(t, nil, opts...)
}

// startServerWith also lets the test change the node's configuration.
func startServerWith(t testing.TB, nodeOpt func(*cluster.Config), opts ...func(*Config)) *testServer {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testLogOutput(), nil))
	set := metrics.NewSet()
	sys := actors.NewSystem(logger, set)
	ncfg := cluster.DefaultConfig()
	ncfg.DataDir = t.TempDir()
	ncfg.RaftAddr = clustertest.FreeAddr(t)
	ncfg.UserShards = 8
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ncfg.AdvertiseHTTP = ln.Addr().String()
	if nodeOpt != nil {
		nodeOpt(&ncfg)
	}
	adminHash := storage.HashPassword(testAdminPassword, []byte("0123456789abcdef"), cheapArgon)
	node, err := cluster.Open(ncfg, logger, set, sys, func() (storage.NewUser, error) {
		return storage.NewUser{Name: "Admin", Email: "admin@troupe.local", Role: storage.RoleAdmin, PasswordHash: adminHash}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	hcfg := DefaultConfig()
	hcfg.Insecure = true
	hcfg.Argon2 = cheapArgon
	clock := &limiterClock{}
	limiter := actors.NewLimiter(sys, set, actors.LimiterConfig{Now: clock.now, Actors: 4, Sweep: 50 * time.Millisecond})
	hcfg.Limiter = limiter
	for _, o := range opts {
		o(&hcfg)
	}
	srv := serveForTest(t, ln, hcfg, logger, set, node, node, func() {
		if err := node.Shutdown(); err != nil {
			t.Error(err)
		}
		limiter.Close()
		sys.Shutdown()
	})
	v, err := openapi.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, base: "http://" + ln.Addr().String(), node: node, validator: v, srv: srv, clock: clock}
	deadline := time.Now().Add(10 * time.Second)
	for node.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", node.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ts
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// detailsLimit is an error answer's details.limit.
func (r *response) detailsLimit(t testing.TB) int {
	t.Helper()
	var e struct {
		Error struct {
			Details struct {
				Limit int `json:"limit"`
			} `json:"details"`
		} `json:"error"`
	}
	r.json(t, &e)
	return e.Error.Details.Limit
}

func (r *response) errorCode(t testing.TB) string {
	t.Helper()
	var e struct {
		Error struct {
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	r.json(t, &e)
	if e.Error.Message == "" {
		t.Fatalf("error without message: %s", r.body)
	}
	return e.Error.Code
}

// do sends a request and validates the exchange against the OpenAPI
// description. strict=false skips validating the request itself (for
// deliberately bad requests).
func (ts *testServer) do(method, path string, body string, header map[string]string, strict bool) *response {
	ts.t.Helper()
	req, err := http.NewRequest(method, ts.base+path, strings.NewReader(body))
	if err != nil {
		ts.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := &response{status: resp.StatusCode, header: resp.Header, body: b}
	p, q, _ := strings.Cut(path, "?")
	validate := ts.validator.ValidateResponse
	if !strict {
		validate = ts.validator.ValidateResponseOnly
	}
	unknownRoute := resp.StatusCode == 404 && strings.Contains(string(b), "no such route")
	internal := strings.HasPrefix(path, "/internal/") // node to node: not the public contract
	if resp.StatusCode != http.StatusMethodNotAllowed && !unknownRoute && !internal {
		if err := validate(method, p, q, req.Header, []byte(body), r.status, r.header, r.body); err != nil {
			ts.t.Errorf("%s %s → %d %s: does not match openapi.yaml: %v", method, path, r.status, b, err)
		}
	}
	return r
}

func (ts *testServer) create(name, email string) map[string]any {
	ts.t.Helper()
	r := ts.do("POST", "/v1/users", fmt.Sprintf(`{"name":%q,"email":%q}`, name, email), nil, true)
	if r.status != 201 {
		ts.t.Fatalf("create %s: %d %s", email, r.status, r.body)
	}
	var u map[string]any
	r.json(ts.t, &u)
	return u
}

func TestBadRequests(t *testing.T) {
	ts := startServer(t)
	id := ts.create("Known", "known@example.com")["id"].(string)
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/v1/users", `{"name":"x","email":"x@example.com","nickname":"y"}`, 400, "bad_request"},
		{"POST", "/v1/users", `{"name":"x","email":"x@example.com"} trailing`, 400, "bad_request"},
		{"POST", "/v1/users", `{"name":5,"email":"x@example.com"}`, 400, "bad_request"},
		{"POST", "/v1/users", `[1,2]`, 400, "bad_request"},
		{"POST", "/v1/users", ``, 400, "bad_request"},
		{"POST", "/v1/users", `{"email":"x@example.com"}`, 400, "bad_request"},
		{"POST", "/v1/users", `{"name":"   ","email":"x@example.com"}`, 400, "bad_request"},
		{"POST", "/v1/users", `{"name":"` + strings.Repeat("é", 201) + `","email":"x@example.com"}`, 400, "bad_request"},
		{"POST", "/v1/users", `{"name":"x","email":"x@@example.com"}`, 400, "bad_request"},
		{"POST", "/v1/users", `{"name":"x","email":"x@example.com","role":"root"}`, 400, "bad_request"},
		{"POST", "/v1/users", `{"name":"x","email":"x@example.com","password":"short"}`, 400, "bad_request"},
		{"POST", "/v1/users", `{"name":"x","email":"x@example.com","password_hash":"$argon2id$"}`, 400, "bad_request"},
		{"GET", "/v1/users/" + id + "?consistency=strong", ``, 400, "bad_request"},
		{"GET", "/v1/users/" + id + "?min_index=-1", ``, 400, "bad_request"},
		{"GET", "/v1/users?limit=0", ``, 400, "bad_request"},
		{"GET", "/v1/users?limit=1001", ``, 400, "bad_request"},
		{"GET", "/v1/users?after=!!", ``, 400, "bad_request"},
		{"GET", "/v1/users/nope", ``, 404, "not_found"},
		{"GET", "/v1/users/0000000000000000", ``, 404, "not_found"},
		{"PATCH", "/v1/users/" + id, `{"email":"bad"}`, 400, "bad_request"},
		{"PATCH", "/v1/users/" + id, `{"name":"x"}{}`, 400, "bad_request"},
		{"PATCH", "/v1/users/0000000000000000", `{"name":"x"}`, 404, "not_found"},
		{"DELETE", "/v1/users/zzz", ``, 404, "not_found"},
	}
	for _, c := range cases {
		r := ts.do(c.method, c.path, c.body, nil, false)
		if r.status != c.status || r.errorCode(t) != c.code {
			t.Errorf("%s %s %s → %d %s, want %d %s", c.method, c.path, c.body, r.status, r.body, c.status, c.code)
		}
	}
	// Body limit: 413 in the documented shape.
	big := `{"name":"x","email":"x@example.com","password":"` + strings.Repeat("a", 1<<20) + `"}`
	if r := ts.rawPost(t, "/v1/users", []byte(big)); r.status != 413 || r.errorCode(t) != "payload_too_large" {
		t.Fatalf("big body: %d %s", r.status, r.body)
	}
	if r := ts.do("GET", "/v1/nothing", "", nil, false); r.status != 404 || r.errorCode(t) != "not_found" {
		t.Fatalf("unknown route: %d", r.status)
	}
	if r := ts.do("PUT", "/v1/users", "", nil, false); r.status != 405 || r.errorCode(t) != "method_not_allowed" {
		t.Fatalf("wrong method: %d %s", r.status, r.body)
	}
}

func TestFormatTime(t *testing.T) {
	for _, ms := range []int64{0, 1, 999, 1_700_000_000_123, 1_795_474_432_497, -1, -1001, 253402300799999} {
		want := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
		if got := formatTime(ms); got != want {
			t.Errorf("formatTime(%d) = %s, want %s", ms, got, want)
		}
	}
}

func testLogOutput() io.Writer {
	if os.Getenv("TROUPE_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// serveForTest serves the API of node on ln until the test ends, then
// shuts the server down and runs after (nil: nothing). Users come from
// state's shards.
func serveForTest(t testing.TB, ln net.Listener, hcfg Config, logger *slog.Logger, set *metrics.Set, node Node, state *cluster.Node, after func()) *Server {
	t.Helper()
	hcfg.HTTPAddr = ln.Addr().String()
	srv, err := New(hcfg, logger, set, node, state.Docs(), func() Users {
		if u := state.Users(); u != nil {
			return u
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Log(err)
		}
		if after != nil {
			after()
		}
	})
	return srv
}
