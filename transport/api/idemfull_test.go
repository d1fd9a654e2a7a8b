package api

import (
	"fmt"
	"testing"
	"time"

	"github.com/troupe-db/troupe/cluster"
)

// TestIdempotencyWindowFull: a node whose idempotency window holds its
// --max-idempotency-keys refuses writes that carry a key with 503
// unavailable (details.limit, Retry-After), applies nothing of them, goes
// on with writes without one, and admits keys again once the oldest have
// aged out — though every keyed write meanwhile was refused, the leader's
// no-ops move the window's time on.
func TestIdempotencyWindowFull(t *testing.T) {
	ts := startServerWith(t, func(c *cluster.Config) {
		c.MaxIdempotencyKeys, c.IdempotencyRetention = 3, cluster.MinIdempotencyRetention
	})
	create := func(i int, key string) *response {
		h := map[string]string{}
		if key != "" {
			h["Idempotency-Key"] = key
		}
		return ts.do("POST", "/v1/users", fmt.Sprintf(`{"name":"U%d","email":"u%d@example.com"}`, i, i), h, true)
	}
	admitted := 0
	var refused *response
	for i := range 5 {
		r := create(i, fmt.Sprintf("k-%d", i))
		if r.status == 503 {
			refused = r
			break
		}
		ts.expect(r, 201, "")
		admitted++
	}
	if refused == nil || admitted == 0 || admitted > 3 {
		t.Fatalf("%d keyed creates admitted before a refusal (%v)", admitted, refused)
	}
	ts.expect(refused, 503, "unavailable")
	if refused.detailsLimit(t) != 3 || refused.header.Get("Retry-After") != "1" {
		t.Fatalf("refusal %s (Retry-After %q)", refused.body, refused.header.Get("Retry-After"))
	}
	// A write without a key goes on; this one, with the refused
	// create's email, shows that nothing of that create was applied
	// (else its email would be taken: 409).
	ts.expect(create(admitted, ""), 201, "")
	if got := metricValue(t, ts, "troupe_idempotency_refused_total"); got < 1 {
		t.Fatalf("troupe_idempotency_refused_total %v", got)
	}
	// Room comes back once the oldest keys are older than the retention.
	deadline := time.Now().Add(cluster.MinIdempotencyRetention + 15*time.Second)
	for {
		r := create(200, "k-200")
		if r.status == 201 {
			break
		}
		ts.expect(r, 503, "unavailable")
		if time.Now().After(deadline) {
			t.Fatal("the window never made room")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// A follower checks before it forwards: a write it would forward (keyed
// on the way, even without an Idempotency-Key) is refused there while the
// window is full, and nothing of it is applied.
func TestIdempotencyWindowFullOnFollower(t *testing.T) {
	leader := startServerWith(t, func(c *cluster.Config) { c.MaxIdempotencyKeys = 2 })
	follower := startFollower(t, leader)
	for i := 0; ; i++ {
		r := leader.do("POST", "/v1/users", fmt.Sprintf(`{"name":"U%d","email":"u%d@example.com"}`, i, i), map[string]string{"Idempotency-Key": fmt.Sprint("k", i)}, true)
		if r.status == 503 {
			break
		}
		leader.expect(r, 201, "")
		if i > 2 {
			t.Fatal("a window of 2 took more")
		}
	}
	before := metricValue(t, leader, "troupe_idempotency_refused_total")
	r := follower.do("POST", "/v1/users", `{"name":"F","email":"f@example.com"}`, nil, true)
	follower.expect(r, 503, "unavailable")
	if r.detailsLimit(t) != 2 {
		t.Fatalf("refusal %s", r.body)
	}
	if got := metricValue(t, leader, "troupe_idempotency_refused_total"); got != before+1 {
		t.Fatalf("refusals %v → %v", before, got)
	}
	// The leader took nothing of it: the email is free.
	leader.expect(leader.do("POST", "/v1/users", `{"name":"F","email":"f@example.com"}`, nil, true), 201, "")
}
