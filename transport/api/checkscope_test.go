package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCheckIsScoped: a user checks only its own namespace, a service any
// key of the named policies, and nobody but an admin another user's
// default bucket — in both rate-limit modes (global mode sends the
// decision to the key's owner, after the same scoping).
func TestCheckIsScoped(t *testing.T) {
	for _, mode := range []string{"local", "global"} {
		t.Run(mode, func(t *testing.T) {
			var ts *testServer
			var remoteKey string // an api key owned by the other node (global)
			if mode == "local" {
				ts = startServer(t, secure, withDefaultLimit(1000, time.Second))
				ts.expect(ts.do("PUT", "/v1/ratelimit/policies/api", `{"limit":5,"window_ms":60000}`, ts.adminToken(), true), 200, "")
			} else {
				a, _, set := twoOwners(t, secure)
				ts, remoteKey = a, keyOwnedBy(set, 1)
			}
			testCheckScope(t, ts)
			if mode == "global" {
				// A service's key that the other node owns is decided there.
				svc := ts.serviceToken()
				before := metricValue(t, ts, "troupe_ratelimit_remote_decisions_total")
				ts.expect(ts.do("POST", "/v1/ratelimit/check", fmt.Sprintf(`{"policy":"api","key":%q}`, remoteKey), svc, true), 200, "")
				if metricValue(t, ts, "troupe_ratelimit_remote_decisions_total") <= before {
					t.Fatal("the service's check did not go to the key's owner")
				}
			}
		})
	}
}

func (ts *testServer) adminToken() map[string]string {
	ts.t.Helper()
	return bearer(ts.login("admin@troupe.local", testAdminPassword).AccessToken)
}

// serviceToken creates (once) a user with role service and logs it in.
func (ts *testServer) serviceToken() map[string]string {
	ts.t.Helper()
	r := ts.do("POST", "/v1/users", `{"name":"Billing","email":"billing@example.com","password":"service password","role":"service"}`, ts.adminToken(), true)
	if r.status != 201 && r.status != 409 {
		ts.t.Fatalf("create service: %d %s", r.status, r.body)
	}
	return bearer(ts.login("billing@example.com", "service password").AccessToken)
}

func testCheckScope(t *testing.T, ts *testServer) {
	admin := ts.adminToken()
	ada := ts.register("Ada", "ada@example.com", "correct horse")
	bob := ts.register("Bob", "bob@example.com", "correct horse")
	user := bearer(ts.login("ada@example.com", "correct horse").AccessToken)
	svc := ts.serviceToken()
	check := func(who map[string]string, policy, key string, status int, code string) {
		t.Helper()
		r := ts.do("POST", "/v1/ratelimit/check", fmt.Sprintf(`{"policy":%q,"key":%q}`, policy, key), who, true)
		ts.expect(r, status, code)
	}
	// A user: its own namespace only, under any policy.
	check(user, "default", "user:"+ada, 200, "")
	check(user, "api", "user:"+ada, 200, "")
	check(user, "api", "user:"+ada+":uploads", 200, "")
	check(user, "default", "user:"+bob, 403, "forbidden")
	check(user, "api", "user:"+bob+":uploads", 403, "forbidden")
	check(user, "api", "user:"+ada+"x", 403, "forbidden")
	check(user, "api", "user:"+ada[:len(ada)-1], 403, "forbidden")
	check(user, "api", "tenant:7", 403, "forbidden")
	check(user, "default", "addr:127.0.0.1", 403, "forbidden")
	// Refused before the policy is looked up: no probing for policies.
	check(user, "nope", "tenant:7", 403, "forbidden")
	check(user, "nope", "user:"+ada, 404, "not_found")

	// A service: any key of the named policies, not others' default buckets.
	check(svc, "api", "tenant:7", 200, "")
	check(svc, "api", "user:"+bob, 200, "")
	check(svc, "nope", "tenant:7", 404, "not_found")
	check(svc, "default", "user:"+bob, 403, "forbidden")
	check(svc, "default", "addr:127.0.0.1", 403, "forbidden")

	// An admin: anything.
	check(admin, "default", "user:"+bob, 200, "")
	check(admin, "api", "tenant:7", 200, "")

	// Ada cannot lock Bob out: her attempts on his bucket spend nothing.
	for range 5 {
		check(user, "default", "user:"+bob, 403, "forbidden")
	}
	bobTok := bearer(ts.login("bob@example.com", "correct horse").AccessToken)
	ts.expect(ts.do("GET", "/v1/auth/me", "", bobTok, true), 200, "")

	// The role is in the token, the user record, and changes by admin.
	if role := tokenRole(t, svc["Authorization"]); role != "service" {
		t.Fatalf("service token's role claim %q", role)
	}
	r := ts.do("PATCH", "/v1/users/"+ada, `{"role":"service"}`, user, true)
	ts.expect(r, 403, "forbidden")
	r = ts.do("PATCH", "/v1/users/"+ada, `{"role":"service"}`, admin, true)
	ts.expect(r, 200, "")
	if !strings.Contains(string(r.body), `"role":"service"`) {
		t.Fatalf("patched: %s", r.body)
	}
	ts.expect(ts.do("POST", "/v1/ratelimit/check", `{"policy":"api","key":"tenant:8"}`, user, true), 401, "unauthenticated") // a role change ends access tokens
	user = bearer(ts.login("ada@example.com", "correct horse").AccessToken)
	check(user, "api", "tenant:8", 200, "")
	// A service is otherwise a user: no admin routes.
	ts.expect(ts.do("GET", "/v1/users", "", svc, true), 403, "forbidden")
	ts.expect(ts.do("GET", "/v1/ratelimit/policies", "", svc, true), 403, "forbidden")
	ts.expect(ts.do("GET", "/v1/users/"+bob, "", svc, true), 403, "forbidden")
	ts.expect(ts.do("PATCH", "/v1/users/"+ada, `{"role":"owner"}`, admin, false), 400, "bad_request")
}

// tokenRole reads the role claim of an "Authorization: Bearer" value.
func tokenRole(t *testing.T, authz string) string {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(authz, "Bearer "), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", authz)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Role string `json:"role"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Role
}
