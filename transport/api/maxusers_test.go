package api

import (
	"fmt"
	"testing"
	"time"
)

// TestMaxUsers: creates, registrations and batches that would take the
// cluster past --max-users are refused with 403 quota_exceeded
// (details.field "users", details.limit) before anything is hashed or
// proposed, and counted; a delete makes room again.
func TestMaxUsers(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxUsers = 3 }) // the first admin is one
	var ids []string
	for i := range 2 {
		r := ts.do("POST", "/v1/users", fmt.Sprintf(`{"name":"U%d","email":"u%d@example.com"}`, i, i), nil, true)
		ts.expect(r, 201, "")
		var u struct {
			ID string `json:"id"`
		}
		r.json(t, &u)
		ids = append(ids, u.ID)
	}
	full := func(r *response) {
		t.Helper()
		ts.expect(r, 403, "quota_exceeded")
		if r.detailsLimit(t) != 3 {
			t.Fatalf("refusal %s", r.body)
		}
	}
	full(ts.do("POST", "/v1/users", `{"name":"C","email":"c@example.com"}`, nil, true))
	full(ts.do("POST", "/v1/auth/register", `{"name":"R","email":"r@example.com","password":"long enough"}`, nil, true))
	full(ts.do("POST", "/v1/users/batch", `{"users":[{"name":"B","email":"b@example.com"}]}`, nil, true))
	if got := metricValue(t, ts, "troupe_user_limit_refusals_total"); got != 3 {
		t.Fatalf("troupe_user_limit_refusals_total %v", got)
	}
	// Nothing of them was created.
	ts.expect(ts.do("GET", "/v1/users/count", "", nil, true), 200, "")
	var c struct {
		Count int `json:"count"`
	}
	ts.do("GET", "/v1/users/count", "", nil, true).json(t, &c)
	if c.Count != 3 {
		t.Fatalf("%d users", c.Count)
	}
	// A delete makes room (once this node's shards have applied it).
	ts.expect(ts.do("DELETE", "/v1/users/"+ids[0], "", nil, true), 204, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := ts.do("POST", "/v1/users", `{"name":"C","email":"c@example.com"}`, nil, true)
		if r.status == 201 {
			break
		}
		full(r)
		if time.Now().After(deadline) {
			t.Fatal("no room after a delete")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
