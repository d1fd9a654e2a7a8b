package api

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/replica"
)

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
