package systemtest

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// TestRateLimitCheckScope runs a secure node: a user checks only its own
// keys, a service (created in a batch, and made by a PATCH) any key of a
// named policy but not another user's default bucket; the role outlives
// a snapshot and a restart.
func TestRateLimitCheckScope(t *testing.T) {
	t.Parallel()
	cfg := newNodeConfig(t, "n1")
	cfg.Secure = true
	cfg.ExtraArgs = append(cfg.ExtraArgs, "--rate-limit", "1000/1s", "--argon2-memory-kib", "1024", "--argon2-time", "1")
	n := startNode(t, cfg)
	admin := bearer(login(t, n, "admin@troupe.local", adminPassword).AccessToken)
	expectStatus(t, n.do(t, "PUT", "/v1/ratelimit/policies/api", map[string]any{"limit": 100, "window_ms": 60_000}, admin), 200)
	batch := map[string]any{"users": []map[string]string{
		{"name": "Billing", "email": "billing@example.com", "password": "service password", "role": "service"},
		{"name": "Ada", "email": "ada@example.com", "password": "correct horse"},
		{"name": "Bob", "email": "bob@example.com", "password": "correct horse"},
	}}
	r := n.do(t, "POST", "/v1/users/batch", batch, admin)
	expectStatus(t, r, 200)
	var res struct {
		Results []struct {
			Status int  `json:"status"`
			User   user `json:"user"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.Body, &res); err != nil || len(res.Results) != 3 {
		t.Fatalf("batch: %s %v", r.Body, err)
	}
	billing, ada, bob := res.Results[0].User, res.Results[1].User, res.Results[2].User
	if billing.Role != "service" || ada.Role != "user" {
		t.Fatalf("batch roles: %s", r.Body)
	}
	// Carol becomes a service by an admin's PATCH.
	carol := expectUser(t, n.do(t, "POST", "/v1/users", map[string]string{"name": "Carol", "email": "carol@example.com", "password": "correct horse"}, admin), 201)
	if u := expectUser(t, n.do(t, "PATCH", userPath(carol.ID), map[string]string{"role": "service"}, admin), 200); u.Role != "service" {
		t.Fatalf("patched role %q", u.Role)
	}

	scoped := func(n *node) {
		t.Helper()
		svc := bearer(login(t, n, "billing@example.com", "service password").AccessToken)
		svc2 := bearer(login(t, n, "carol@example.com", "correct horse").AccessToken)
		usr := bearer(login(t, n, "ada@example.com", "correct horse").AccessToken)
		check := func(who map[string]string, policy, key string) response {
			return n.do(t, "POST", "/v1/ratelimit/check", map[string]string{"policy": policy, "key": key}, who)
		}
		expectStatus(t, check(svc, "api", "tenant:1"), 200)
		expectStatus(t, check(svc2, "api", "user:"+bob.ID), 200)
		expectError(t, check(svc, "default", "user:"+bob.ID), 403, "forbidden")
		expectStatus(t, check(usr, "default", "user:"+ada.ID), 200)
		expectStatus(t, check(usr, "api", "user:"+ada.ID+":uploads"), 200)
		expectError(t, check(usr, "default", "user:"+bob.ID), 403, "forbidden")
		expectError(t, check(usr, "api", "tenant:1"), 403, "forbidden")
		expectStatus(t, check(admin, "default", "user:"+bob.ID), 200)
		// A service is otherwise a user.
		expectError(t, n.do(t, "GET", "/v1/users", nil, svc), 403, "forbidden")
	}
	scoped(n)

	// Through a snapshot and a restart, the roles stay.
	expectStatus(t, n.do(t, "POST", "/v1/cluster/snapshot", nil, admin), 200)
	n.Stop(t)
	n = n.Restart(t)
	admin = bearer(login(t, n, "admin@troupe.local", adminPassword).AccessToken)
	for _, id := range []string{billing.ID, carol.ID} {
		if u := expectUser(t, n.do(t, "GET", userPath(id), nil, admin), 200); u.Role != "service" {
			t.Fatalf("after the restart, %s has role %q", id, u.Role)
		}
	}
	scoped(n)
}

// TestLoginThrottleBehindProxy: behind a proxy listed in
// --trusted-proxies, failed logins are counted per forwarded client
// address, so one client's failures do not lock out the others.
func TestLoginThrottleBehindProxy(t *testing.T) {
	t.Parallel()
	cfg := newNodeConfig(t, "n1")
	cfg.Secure = true
	cfg.ExtraArgs = append(cfg.ExtraArgs, "--trusted-proxies", "127.0.0.1", "--argon2-memory-kib", "1024", "--argon2-time", "1")
	n := startNode(t, cfg)
	fail := func(i int, client string) response {
		body := map[string]string{"email": "nobody" + strconv.Itoa(i) + "@example.com", "password": "wrong horse"}
		return n.do(t, "POST", "/v1/auth/login", body, map[string]string{"X-Forwarded-For": client})
	}
	for i := range 10 {
		expectError(t, fail(i, "203.0.113.7"), 401, "unauthenticated")
	}
	expectError(t, fail(10, "203.0.113.7"), 429, "rate_limited")
	expectError(t, fail(11, "203.0.113.8"), 401, "unauthenticated")
	if !strings.Contains(n.logTail(), "client=203.0.113.7") {
		t.Fatal("the audit log does not name the forwarded client")
	}
}
