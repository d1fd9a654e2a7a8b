package api

import (
	"bufio"
	"bytes"
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
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// testServer is a real one-node troupe (raft in a temp dir, actors,
// fasthttp on 127.0.0.1) whose every response is checked against
// api/openapi.yaml.
type testServer struct {
	t         *testing.T
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

func startServer(t *testing.T, opts ...func(*Config)) *testServer {
	t.Helper()
	return startServerWith(t, nil, opts...)
}

// startServerWith also lets the test change the node's configuration.
func startServerWith(t *testing.T, nodeOpt func(*cluster.Config), opts ...func(*Config)) *testServer {
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

func (r *response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r *response) errorCode(t *testing.T) string {
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

func TestUsersCRUD(t *testing.T) {
	ts := startServer(t)
	r := ts.do("POST", "/v1/users", `{"name":"  Ada Lovelace ","email":"Ada@Example.com","password":"correct horse","role":"admin"}`, nil, true)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var u map[string]any
	r.json(t, &u)
	id := u["id"].(string)
	if u["name"] != "Ada Lovelace" || u["email"] != "Ada@Example.com" || u["role"] != "admin" || u["version"] != 1.0 {
		t.Fatalf("created user: %v", u)
	}
	if _, leaked := u["password"]; leaked || bytes.Contains(r.body, []byte("argon2")) {
		t.Fatalf("password leaked: %s", r.body)
	}
	if r.header.Get("Location") != "/v1/users/"+id || r.header.Get("X-Troupe-Index") == "" {
		t.Fatalf("headers: %v", r.header)
	}

	r = ts.do("GET", "/v1/users/"+id, "", nil, true)
	if r.status != 200 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("get: %d %v %s", r.status, r.header, r.body)
	}
	r = ts.do("GET", "/v1/users/"+id+"?consistency=stale", "", nil, true)
	if r.status != 200 {
		t.Fatalf("stale get: %d", r.status)
	}

	// Case-insensitive uniqueness.
	r = ts.do("POST", "/v1/users", `{"name":"Other","email":"ada@EXAMPLE.com"}`, nil, true)
	if r.status != 409 || r.errorCode(t) != "conflict" {
		t.Fatalf("duplicate: %d %s", r.status, r.body)
	}

	r = ts.do("PATCH", "/v1/users/"+id, `{"name":"Ada King"}`, map[string]string{"If-Match": `"1"`}, true)
	if r.status != 200 || r.header.Get("ETag") != `"2"` {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	r = ts.do("PATCH", "/v1/users/"+id, `{"name":"Stale"}`, map[string]string{"If-Match": `"1"`}, true)
	if r.status != 412 || r.errorCode(t) != "precondition_failed" {
		t.Fatalf("stale If-Match: %d %s", r.status, r.body)
	}
	// An email change moves the index entry between shards; the old
	// address becomes free and the new one taken.
	r = ts.do("PATCH", "/v1/users/"+id, `{"email":"countess@example.org"}`, nil, true)
	if r.status != 200 {
		t.Fatalf("email change: %d %s", r.status, r.body)
	}
	ts.create("New Ada", "ada@example.com")
	r = ts.do("POST", "/v1/users", `{"name":"X","email":"COUNTESS@example.org"}`, nil, true)
	if r.status != 409 {
		t.Fatalf("new email not indexed: %d %s", r.status, r.body)
	}

	r = ts.do("DELETE", "/v1/users/"+id, "", nil, true)
	if r.status != 204 || r.header.Get("X-Troupe-Index") == "" {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	r = ts.do("GET", "/v1/users/"+id, "", nil, true)
	if r.status != 404 || r.errorCode(t) != "not_found" {
		t.Fatalf("deleted get: %d %s", r.status, r.body)
	}
	r = ts.do("DELETE", "/v1/users/"+id, "", nil, true)
	if r.status != 404 {
		t.Fatalf("second delete: %d", r.status)
	}
	ts.create("Reuse", "countess@example.org") // the deleted user's email is free again
}

func TestLastAdminIsProtected(t *testing.T) {
	ts := startServer(t)
	var list struct {
		Items []map[string]any `json:"items"`
	}
	ts.do("GET", "/v1/users?q=admin@troupe", "", nil, true).json(t, &list)
	if len(list.Items) != 1 {
		t.Fatalf("admin not found: %v", list)
	}
	admin := list.Items[0]["id"].(string)
	r := ts.do("DELETE", "/v1/users/"+admin, "", nil, true)
	if r.status != 409 || r.errorCode(t) != "conflict" {
		t.Fatalf("delete last admin: %d %s", r.status, r.body)
	}
	r = ts.do("PATCH", "/v1/users/"+admin, `{"role":"user"}`, nil, true)
	if r.status != 409 {
		t.Fatalf("demote last admin: %d %s", r.status, r.body)
	}
	second := ts.create("Second", "second@example.com")["id"].(string)
	if r := ts.do("PATCH", "/v1/users/"+second, `{"role":"admin"}`, nil, true); r.status != 200 {
		t.Fatalf("promote: %d %s", r.status, r.body)
	}
	if r := ts.do("PATCH", "/v1/users/"+admin, `{"role":"user"}`, nil, true); r.status != 200 {
		t.Fatalf("demote with another admin: %d %s", r.status, r.body)
	}
	if r := ts.do("DELETE", "/v1/users/"+second, "", nil, true); r.status != 409 {
		t.Fatalf("delete the new last admin: %d %s", r.status, r.body)
	}
}

func TestListSearchCount(t *testing.T) {
	ts := startServer(t)
	ids := map[string]bool{}
	for i := range 57 {
		name := fmt.Sprintf("User %02d", i)
		if i%10 == 0 {
			name = fmt.Sprintf("Grace %02d", i)
		}
		ids[ts.create(name, fmt.Sprintf("u%02d@example.com", i))["id"].(string)] = true
	}
	var seen []string
	next := ""
	for pages := 0; ; pages++ {
		path := "/v1/users?limit=10"
		if next != "" {
			path += "&after=" + next
		}
		var page struct {
			Items []map[string]any `json:"items"`
			Next  *string          `json:"next"`
		}
		r := ts.do("GET", path, "", nil, true)
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		r.json(t, &page)
		for _, it := range page.Items {
			seen = append(seen, it["id"].(string))
		}
		if page.Next == nil {
			break
		}
		next = *page.Next
		if pages == 1 {
			// A write between pages does not disturb the cursor.
			ts.create("Late", "late@example.com")
		}
	}
	for i := 1; i < len(seen); i++ {
		if seen[i-1] >= seen[i] {
			t.Fatalf("not in id order at %d", i)
		}
	}
	for id := range ids {
		if !contains(seen, id) {
			t.Fatalf("user %s missing from the list", id)
		}
	}
	if len(seen) != 59 { // 57 + admin + late
		t.Fatalf("listed %d users", len(seen))
	}
	var found struct {
		Items []map[string]any `json:"items"`
	}
	ts.do("GET", "/v1/users?q=GRACE", "", nil, true).json(t, &found)
	if len(found.Items) != 6 {
		t.Fatalf("search found %d", len(found.Items))
	}
	ts.do("GET", "/v1/users?q=u05@EXAMPLE", "", nil, true).json(t, &found)
	if len(found.Items) != 1 {
		t.Fatalf("email search found %d", len(found.Items))
	}
	var c struct{ Count int }
	ts.do("GET", "/v1/users/count", "", nil, true).json(t, &c)
	if c.Count != 59 {
		t.Fatalf("count %d", c.Count)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestBatch(t *testing.T) {
	ts := startServer(t)
	body := `{"users":[
		{"name":"A","email":"a@example.com"},
		{"name":"B","email":"not an email"},
		{"name":"C","email":"c@example.com","password":"long enough"},
		{"name":"D","email":"A@example.com"},
		{"name":"E","email":"e@example.com","password_hash":"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"},
		{"name":"F","email":"f@example.com","password":"short"}
	]}`
	r := ts.do("POST", "/v1/users/batch", body, nil, true)
	if r.status != 200 || r.header.Get("X-Troupe-Index") == "" {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	var out struct {
		Results []struct {
			Status int
			User   map[string]any
			Error  struct{ Code string }
		}
	}
	r.json(t, &out)
	want := []int{201, 400, 201, 409, 201, 400}
	for i, w := range want {
		if out.Results[i].Status != w {
			t.Fatalf("item %d: %d, want %d (%s)", i, out.Results[i].Status, w, r.body)
		}
	}
	var c struct{ Count int }
	ts.do("GET", "/v1/users/count", "", nil, true).json(t, &c)
	if c.Count != 4 {
		t.Fatalf("count %d", c.Count)
	}
	for _, bad := range []string{`{"users":[]}`, `{}`, `{"users":[{"name":"x","email":"x@example.com","extra":1}]}`} {
		if r := ts.do("POST", "/v1/users/batch", bad, nil, false); r.status != 400 {
			t.Fatalf("%s: %d", bad, r.status)
		}
	}
	many := make([]string, 1001)
	for i := range many {
		many[i] = `{"name":"n","email":"n@example.com"}`
	}
	if r := ts.do("POST", "/v1/users/batch", `{"users":[`+strings.Join(many, ",")+`]}`, nil, false); r.status != 400 {
		t.Fatalf("1001 items: %d", r.status)
	}
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

func TestIdempotencyKey(t *testing.T) {
	ts := startServer(t)
	h := map[string]string{"Idempotency-Key": "create-grace-1"}
	body := `{"name":"Grace","email":"grace@example.com"}`
	first := ts.do("POST", "/v1/users", body, h, true)
	again := ts.do("POST", "/v1/users", body, h, true)
	if first.status != 201 || again.status != 201 || !bytes.Equal(first.body, again.body) {
		t.Fatalf("repeat: %d %s / %d %s", first.status, first.body, again.status, again.body)
	}
	other := ts.do("POST", "/v1/users", `{"name":"Other","email":"other@example.com"}`, h, true)
	if other.status != 409 || other.errorCode(t) != "conflict" {
		t.Fatalf("key reuse with another body: %d %s", other.status, other.body)
	}
	var c struct{ Count int }
	ts.do("GET", "/v1/users/count", "", nil, true).json(t, &c)
	if c.Count != 2 {
		t.Fatalf("count %d, want admin + Grace", c.Count)
	}
	if r := ts.do("POST", "/v1/users", body, map[string]string{"Idempotency-Key": "has space"}, false); r.status != 400 {
		t.Fatalf("bad key: %d", r.status)
	}
}

func TestOperations(t *testing.T) {
	ts := startServer(t)
	for _, p := range []string{"/healthz", "/readyz", "/v1/cluster"} {
		if r := ts.do("GET", p, "", nil, true); r.status != 200 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	var st replica.Status
	ts.do("GET", "/v1/cluster", "", nil, true).json(t, &st)
	if st.Leader == nil || st.Leader.ID != st.NodeID || len(st.Members) != 1 || st.AppliedIndex == 0 {
		t.Fatalf("status: %+v", st)
	}
	ts.create("Metric", "metric@example.com")
	r := ts.do("GET", "/metrics", "", nil, true)
	for _, want := range []string{
		`troupe_http_requests_total{route="POST /v1/users",status="201"} 1`,
		`troupe_http_request_duration_seconds_bucket{route="POST /v1/users"`,
		`troupe_raft_applied_index`, `troupe_raft_term`, `troupe_fsm_apply_batch_size`,
		`troupe_actors `, `troupe_actor_mailbox_depth`, `troupe_actor_panics_total`, `process_resident_memory_bytes`,
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestStateHashAndSnapshot(t *testing.T) {
	ts := startServer(t)
	ts.create("A", "a@example.com")
	var h1, h2 struct {
		Index uint64
		Hash  string
	}
	ts.do("GET", "/v1/cluster/hash", "", nil, true).json(t, &h1)
	ts.do("GET", "/v1/cluster/hash", "", nil, true).json(t, &h2)
	if h1.Index == 0 || h1 != h2 {
		t.Fatalf("hash of an unchanged state changed: %+v %+v", h1, h2)
	}
	ts.create("B", "b@example.com")
	ts.do("GET", "/v1/cluster/hash", "", nil, true).json(t, &h2)
	if h2.Index <= h1.Index || h2.Hash == h1.Hash {
		t.Fatalf("hash did not follow a write: %+v %+v", h1, h2)
	}
	if r := ts.do("GET", "/v1/cluster/backup", "", nil, true); r.status != 200 || !bytes.HasPrefix(r.body, []byte("TROUPE-SNAPSHOT")) {
		t.Fatalf("backup: %d %.40q", r.status, r.body)
	}
	var snap struct{ Index uint64 }
	r := ts.do("POST", "/v1/cluster/snapshot", "", nil, true)
	r.json(t, &snap)
	if r.status != 200 || snap.Index < h2.Index {
		t.Fatalf("snapshot: %d %s", r.status, r.body)
	}
}

func TestMinIndexTimesOut(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
	r := ts.do("GET", "/v1/users/count?min_index=999999999&consistency=stale", "", nil, true)
	if r.status != 504 || r.errorCode(t) != "timeout" {
		t.Fatalf("unreachable min_index: %d %s", r.status, r.body)
	}
	created := ts.do("POST", "/v1/users", `{"name":"A","email":"a@example.com"}`, nil, true)
	idx := created.header.Get("X-Troupe-Index")
	if r := ts.do("GET", "/v1/users/count?consistency=stale&min_index="+idx, "", nil, true); r.status != 200 {
		t.Fatalf("reachable min_index: %d %s", r.status, r.body)
	}
}

func TestBatchAllInvalidProposesNothing(t *testing.T) {
	ts := startServer(t)
	r := ts.do("POST", "/v1/users/batch", `{"users":[{"name":"","email":"a@example.com"},{"name":"B","email":"nope"}]}`, nil, true)
	if r.status != 200 || r.header.Get("X-Troupe-Index") != "" {
		t.Fatalf("all invalid: %d %v %s", r.status, r.header, r.body)
	}
	var out struct{ Results []struct{ Status int } }
	r.json(t, &out)
	if len(out.Results) != 2 || out.Results[0].Status != 400 || out.Results[1].Status != 400 {
		t.Fatalf("results: %s", r.body)
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

func TestMembershipRoutes(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.ClusterSecret = "s3cret" })
	secret := map[string]string{"X-Troupe-Cluster-Secret": "s3cret"}
	learner := `{"id":"learner1","http_addr":"127.0.0.1:9","raft_addr":"127.0.0.1:10","voter":false}`
	if r := ts.do("POST", "/v1/cluster/members", learner, nil, false); r.status != 401 || r.errorCode(t) != "unauthenticated" {
		t.Fatalf("no secret: %d %s", r.status, r.body)
	}
	if r := ts.do("POST", "/v1/cluster/members", learner, map[string]string{"X-Troupe-Cluster-Secret": "wrong"}, false); r.status != 401 {
		t.Fatalf("wrong secret: %d", r.status)
	}
	for _, bad := range []string{`{"id":"x"}`, `{"id":"a b","http_addr":"127.0.0.1:9","raft_addr":"127.0.0.1:10"}`,
		`{"id":"x","http_addr":"0.0.0.0:9","raft_addr":"127.0.0.1:10"}`, `{"id":"x","http_addr":"nohost","raft_addr":"127.0.0.1:10"}`} {
		if r := ts.do("POST", "/v1/cluster/members", bad, secret, false); r.status != 400 || r.errorCode(t) != "bad_request" {
			t.Fatalf("%s: %d %s", bad, r.status, r.body)
		}
	}
	// A learner does not count for the quorum, so adding one that is not
	// running still commits.
	r := ts.do("POST", "/v1/cluster/members", learner, secret, true)
	if r.status != 200 || r.header.Get("X-Troupe-Leader") == "" {
		t.Fatalf("add learner: %d %s", r.status, r.body)
	}
	var st replica.Status
	ts.do("GET", "/v1/cluster", "", nil, true).json(t, &st)
	if len(st.Members) != 2 {
		t.Fatalf("members: %+v", st.Members)
	}
	for _, m := range st.Members {
		if m.ID == "learner1" && (m.Voter || m.State != "learner" || m.HTTPAddr != "127.0.0.1:9") {
			t.Fatalf("learner: %+v", m)
		}
		if m.ID == st.NodeID && m.HTTPAddr != strings.TrimPrefix(ts.base, "http://") {
			t.Fatalf("self: %+v", m)
		}
	}
	if r := ts.do("DELETE", "/v1/cluster/members/learner1", "", secret, true); r.status != 204 {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	if r := ts.do("DELETE", "/v1/cluster/members/learner1", "", secret, true); r.status != 404 {
		t.Fatalf("remove again: %d %s", r.status, r.body)
	}
	ts.do("GET", "/v1/cluster", "", nil, true).json(t, &st)
	if len(st.Members) != 1 {
		t.Fatalf("members after removal: %+v", st.Members)
	}
}

// rawPost sends a request over a bare connection, reading the answer while
// the body is still being written (as curl does): the server answers an
// oversized body with 413 and closes the connection before reading it all,
// and net/http's client then often reports only its failed write.
func (ts *testServer) rawPost(t *testing.T, path string, body []byte) *response {
	t.Helper()
	addr := strings.TrimPrefix(ts.base, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	go func() {
		if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, addr, len(body)); err == nil {
			_, _ = conn.Write(body)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "POST"})
	if err != nil {
		t.Fatalf("no answer to a %d-byte body: %v", len(body), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
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
func serveForTest(t *testing.T, ln net.Listener, hcfg Config, logger *slog.Logger, set *metrics.Set, node Node, state *cluster.Node, after func()) *Server {
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
