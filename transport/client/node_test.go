package client

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/troupe-db/troupe/internal/nodetest"
)

// startNode runs a real one-node troupe (nodetest) until the test
// ends, and returns its base URL once it is ready.
func startNode(t *testing.T) string { return "http://" + nodetest.Start(t, 8) }

// testConfig is a config for tests: short idle connections (so that the
// connection cleaners end soon after Close) and short backoff.
func testConfig(nodes ...string) Config {
	cfg := DefaultConfig()
	cfg.Nodes = nodes
	cfg.IdleConnTimeout = 100 * time.Millisecond
	cfg.BackoffBase = time.Millisecond
	cfg.BackoffMax = 10 * time.Millisecond
	return cfg
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func apiErr(t *testing.T, err error) *APIError {
	t.Helper()
	e, ok := asAPIError(err)
	if !ok {
		t.Fatalf("not an APIError: %v", err)
	}
	return e
}

func TestNodeUsersRoundTrip(t *testing.T) {
	base := startNode(t)
	c := newTestClient(t, testConfig(base))
	ctx := testCtx(t)

	if _, err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Ready(ctx, OnNode(base), WithMaxAttempts(1)); err != nil || m.Node != base || m.Status != 200 {
		t.Fatalf("ready: %+v %v", m, err)
	}
	st, _, err := c.ClusterStatus(ctx)
	if err != nil || st.NodeID == "" || st.Leader == nil || st.Leader.ID != st.NodeID || len(st.Members) != 1 || st.AppliedIndex == 0 {
		t.Fatalf("cluster status: %+v %v", st, err)
	}
	// The node names itself in X-Troupe-Leader.
	if ns := c.NodeStates(); !ns[0].Leader || !ns[0].Preferred || ns[0].Breaker != BreakerClosed {
		t.Fatalf("node states: %+v", ns)
	}

	u, meta, err := c.CreateUser(ctx, NewUser{Name: " Ada ", Email: "ada@example.com", Password: "correct horse", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == "" || u.Name != "Ada" || u.Email != "ada@example.com" || u.Role != RoleAdmin || u.Version != 1 ||
		u.CreatedAt.IsZero() || !u.CreatedAt.Equal(u.UpdatedAt) || u.CreatedAt.Location() != time.UTC {
		t.Fatalf("created: %+v", u)
	}
	if meta.Status != 201 || meta.Index == 0 || meta.Node != base || meta.Attempts != 1 || meta.IdempotencyKey == "" || meta.Version != 1 {
		t.Fatalf("create meta: %+v", meta)
	}
	created := meta.Index

	got, meta, err := c.GetUser(ctx, u.ID, ReadOptions{Consistency: Stale, MinIndex: created})
	if err != nil || got != u || meta.Version != 1 || meta.IdempotencyKey != "" {
		t.Fatalf("get: %+v %+v %v", got, meta, err)
	}
	if got, _, err = c.GetUser(ctx, u.ID, ReadOptions{}); err != nil || got != u {
		t.Fatalf("linearizable get: %+v %v", got, err)
	}

	patched, meta, err := c.PatchUser(ctx, u.ID, UserPatch{Name: new("Ada King")}, 1)
	if err != nil || patched.Name != "Ada King" || patched.Version != 2 || meta.Version != 2 || meta.Index <= created {
		t.Fatalf("patch: %+v %+v %v", patched, meta, err)
	}
	_, _, err = c.PatchUser(ctx, u.ID, UserPatch{Name: new("Stale")}, 1)
	if !IsPreconditionFailed(err) || apiErr(t, err).Code != "precondition_failed" || apiErr(t, err).Node != base {
		t.Fatalf("stale If-Match: %v", err)
	}
	if _, _, err := c.PatchUser(ctx, "0000000000000000", UserPatch{Name: new("x")}, 0); !IsNotFound(err) {
		t.Fatalf("patch unknown: %v", err)
	}

	_, meta, err = c.CreateUser(ctx, NewUser{Name: "Other", Email: "ADA@example.com"})
	if !IsConflict(err) || apiErr(t, err).Field() != "email" || meta.Status != 409 || meta.Attempts != 1 {
		t.Fatalf("duplicate email: %v %+v", err, meta)
	}
	_, meta, err = c.CreateUser(ctx, NewUser{Name: "Bad", Email: "not an email"})
	if e := apiErr(t, err); e.Status != 400 || e.Code != "bad_request" || e.Field() != "email" || e.Message == "" || meta.Attempts != 1 {
		t.Fatalf("bad email: %v %+v", err, meta)
	}

	n, _, err := c.CountUsers(ctx, CountOptions{})
	if err != nil || n != 2 {
		t.Fatalf("count: %d %v", n, err)
	}
	if n, _, err = c.CountUsers(ctx, CountOptions{Q: "KING", ReadOptions: ReadOptions{Consistency: Stale}}); err != nil || n != 1 {
		t.Fatalf("count q: %d %v", n, err)
	}

	// The generic route: the same machinery, any path.
	var count struct{ Count int }
	if m, err := c.Do(ctx, "GET", "/v1/users/count?q=ada", nil, &count); err != nil || count.Count != 1 || m.Status != 200 {
		t.Fatalf("Do count: %+v %+v %v", count, m, err)
	}
	var raw []byte
	if _, err := c.Do(ctx, "GET", "/healthz", nil, &raw); err != nil || string(raw) != `{"status":"ok"}` {
		t.Fatalf("Do raw: %s %v", raw, err)
	}
	var viaDo User
	if m, err := c.Do(ctx, "POST", "/v1/users", map[string]string{"name": "Via Do", "email": "do@example.com"}, &viaDo); err != nil ||
		viaDo.ID == "" || m.Index == 0 || m.IdempotencyKey == "" {
		t.Fatalf("Do create: %+v %+v %v", viaDo, m, err)
	}
	if _, err := c.Do(ctx, "PUT", "/v1/users", nil, nil); apiErr(t, err).Status != 405 {
		t.Fatalf("Do wrong method: %v", err)
	}

	meta, err = c.DeleteUser(ctx, u.ID)
	if err != nil || meta.Status != 204 || meta.Index == 0 {
		t.Fatalf("delete: %+v %v", meta, err)
	}
	if _, _, err := c.GetUser(ctx, u.ID, ReadOptions{MinIndex: meta.Index}); !IsNotFound(err) || apiErr(t, err).Code != "not_found" {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := c.DeleteUser(ctx, u.ID); !IsNotFound(err) {
		t.Fatalf("delete again: %v", err)
	}
}

func TestNodeIdempotencyKey(t *testing.T) {
	base := startNode(t)
	c := newTestClient(t, testConfig(base))
	ctx := testCtx(t)
	nu := NewUser{Name: "Grace", Email: "grace@example.com"}
	first, m1, err := c.CreateUser(ctx, nu, WithIdempotencyKey("create-grace"))
	if err != nil || m1.IdempotencyKey != "create-grace" {
		t.Fatal(err, m1)
	}
	again, m2, err := c.CreateUser(ctx, nu, WithIdempotencyKey("create-grace"))
	// The repeat goes through the log too (that is how it learns, in
	// order, whether the first was applied), so its index may be later.
	if err != nil || again != first || m2.Index < m1.Index {
		t.Fatalf("repeat: %+v %+v / %+v %+v %v", first, m1, again, m2, err)
	}
	if _, _, err := c.CreateUser(ctx, NewUser{Name: "Other", Email: "other@example.com"}, WithIdempotencyKey("create-grace")); !IsConflict(err) {
		t.Fatalf("key reused for another request: %v", err)
	}
	// Without a caller's key every call gets its own.
	_, m3, _ := c.CreateUser(ctx, NewUser{Name: "A", Email: "a@example.com"})
	_, m4, _ := c.CreateUser(ctx, NewUser{Name: "B", Email: "b@example.com"})
	if m3.IdempotencyKey == "" || m3.IdempotencyKey == m4.IdempotencyKey {
		t.Fatalf("generated keys: %q %q", m3.IdempotencyKey, m4.IdempotencyKey)
	}
}

func TestNodeListIteration(t *testing.T) {
	base := startNode(t)
	c := newTestClient(t, testConfig(base))
	ctx := testCtx(t)
	batch := make([]NewUser, 120)
	for i := range batch {
		batch[i] = NewUser{Name: fmt.Sprintf("User %03d", i), Email: fmt.Sprintf("u%03d@example.com", i)}
	}
	results, meta, err := c.BatchCreateUsers(ctx, batch)
	if err != nil || len(results) != 120 || meta.Index == 0 {
		t.Fatalf("batch: %d %+v %v", len(results), meta, err)
	}
	want := map[string]bool{}
	for i, r := range results {
		if r.Status != 201 || r.User == nil || r.Error != nil || r.User.Email != batch[i].Email {
			t.Fatalf("item %d: %+v", i, r)
		}
		want[r.User.ID] = true
	}

	seen := map[string]int{}
	var order []string
	err = c.AllUsers(ctx, ListOptions{Limit: 50, ReadOptions: ReadOptions{MinIndex: meta.Index}}, func(u User) error {
		seen[u.ID]++
		order = append(order, u.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 121 { // the 120 and the admin
		t.Fatalf("visited %d users", len(order))
	}
	for id := range want {
		if seen[id] != 1 {
			t.Fatalf("user %s visited %d times", id, seen[id])
		}
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Fatalf("not in id order at %d", i)
		}
	}

	// The pages themselves: 50, 50, 21, and no cursor after the last.
	var sizes []int
	lo := ListOptions{Limit: 50}
	for {
		page, _, err := c.ListUsers(ctx, lo)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(page.Items))
		if page.Next == "" {
			break
		}
		lo.After = page.Next
	}
	if fmt.Sprint(sizes) != "[50 50 21]" {
		t.Fatalf("page sizes %v", sizes)
	}

	// fn's error stops the iteration and comes back as it is.
	stop := fmt.Errorf("enough")
	visits := 0
	if err := c.AllUsers(ctx, ListOptions{Limit: 50}, func(User) error { visits++; return stop }); err != stop || visits != 1 {
		t.Fatalf("stop: %v after %d", err, visits)
	}
	page, _, err := c.ListUsers(ctx, ListOptions{Q: "U00", Limit: 1000})
	if err != nil || len(page.Items) != 10 || page.Next != "" {
		t.Fatalf("search: %d %q %v", len(page.Items), page.Next, err)
	}
	if _, _, err := c.ListUsers(ctx, ListOptions{Limit: 1001}); apiErr(t, err).Field() != "limit" {
		t.Fatalf("limit 1001: %v", err)
	}
	if _, _, err := c.ListUsers(ctx, ListOptions{After: "!!"}); apiErr(t, err).Field() != "after" {
		t.Fatalf("bad cursor: %v", err)
	}
}

func TestNodeBatchResults(t *testing.T) {
	base := startNode(t)
	c := newTestClient(t, testConfig(base))
	ctx := testCtx(t)
	results, meta, err := c.BatchCreateUsers(ctx, []NewUser{
		{Name: "A", Email: "a@example.com"},
		{Name: "B", Email: "not an email"},
		{Name: "C", Email: "c@example.com", Password: "long enough"},
		{Name: "D", Email: "A@example.com"},
		{Name: "E", Email: "e@example.com", PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"},
		{Name: "F", Email: "f@example.com", Password: "short"},
	})
	if err != nil || meta.Index == 0 || meta.Status != 200 {
		t.Fatalf("batch: %+v %v", meta, err)
	}
	want := []struct {
		status int
		code   string
		field  string
	}{{201, "", ""}, {400, "bad_request", "users[1].email"}, {201, "", ""}, {409, "conflict", "email"}, {201, "", ""}, {400, "bad_request", "users[5].password"}}
	if len(results) != len(want) {
		t.Fatalf("%d results", len(results))
	}
	for i, w := range want {
		r := results[i]
		if r.Status != w.status {
			t.Fatalf("item %d: %+v, want %d", i, r, w.status)
		}
		if w.status == 201 {
			if r.User == nil || r.Error != nil || r.User.Version != 1 {
				t.Fatalf("item %d: %+v", i, r)
			}
			continue
		}
		if r.User != nil || r.Error == nil || r.Error.Status != w.status || r.Error.Code != w.code || r.Error.Field() != w.field || r.Error.Node != base {
			t.Fatalf("item %d: %+v %+v", i, r, r.Error)
		}
		if w.status == 409 && !IsConflict(r.Error) {
			t.Fatalf("item %d: not a conflict", i)
		}
	}
	// A batch where every item is invalid enters no log entry.
	results, meta, err = c.BatchCreateUsers(ctx, []NewUser{{Name: "", Email: "x@example.com"}, {Name: "Y", Email: "nope"}})
	if err != nil || meta.Index != 0 || len(results) != 2 || results[0].Status != 400 || results[1].Status != 400 {
		t.Fatalf("all invalid: %+v %+v %v", results, meta, err)
	}
	// A malformed batch is refused as a whole, once.
	if _, meta, err := c.BatchCreateUsers(ctx, nil); apiErr(t, err).Status != 400 || meta.Attempts != 1 {
		t.Fatalf("empty batch: %v %+v", err, meta)
	}
}
