package api

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

func withDefaultLimit(limit uint32, window time.Duration) func(*Config) {
	return func(c *Config) {
		p := storage.Policy{Name: storage.DefaultPolicy, Limit: limit, WindowMs: window.Milliseconds()}
		if e := p.Validate(); e != nil {
			panic(e)
		}
		c.RateLimit = &p
	}
}

// TestDefaultPolicy: every /v1 request counts against the caller's
// bucket (user, else address), answers carry the IETF headers, and the
// one over the limit gets 429 with Retry-After; probes are never limited.
func TestDefaultPolicy(t *testing.T) {
	ts := startServer(t, secure, withDefaultLimit(5, time.Second)) // one per 200 ms, burst 5
	admin := ts.login("admin@troupe.local", testAdminPassword)     // login: 1 of the address's 5
	for i := range 5 {
		r := ts.do("GET", "/v1/auth/me", "", bearer(admin.AccessToken), true)
		ts.expect(r, 200, "")
		if got, want := r.header.Get("RateLimit-Policy"), `"default";q=5;w=1`; got != want {
			t.Fatalf("RateLimit-Policy %q, want %q", got, want)
		}
		if got, want := r.header.Get("RateLimit"), fmt.Sprintf(`"default";r=%d;t=1`, 4-i); got != want {
			t.Fatalf("request %d: RateLimit %q, want %q", i, got, want)
		}
	}
	r := ts.do("GET", "/v1/auth/me", "", bearer(admin.AccessToken), true)
	ts.expect(r, 429, "rate_limited")
	if r.header.Get("Retry-After") != "1" || r.header.Get("RateLimit") != `"default";r=0;t=1` {
		t.Fatalf("429 headers: %v", r.header)
	}
	// Probes and metrics are never limited, and carry no policy.
	for range 10 {
		r := ts.do("GET", "/healthz", "", nil, true)
		if r.status != 200 || r.header.Get("RateLimit-Policy") != "" {
			t.Fatalf("healthz: %d %v", r.status, r.header)
		}
	}
	// The anonymous address has its own bucket: 4 left after the login.
	for range 4 {
		ts.expect(ts.do("POST", "/v1/auth/refresh", `{"refresh_token":"x"}`, nil, true), 401, "unauthenticated")
	}
	ts.expect(ts.do("POST", "/v1/auth/refresh", `{"refresh_token":"x"}`, nil, true), 429, "rate_limited")
	// Time refills the buckets: one per 200 ms.
	ts.clock.advance(200 * time.Millisecond)
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(admin.AccessToken), true), 200, "")
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(admin.AccessToken), true), 429, "rate_limited")
}

func TestPoliciesAndCheck(t *testing.T) {
	ts := startServer(t, secure, withDefaultLimit(1000, time.Second))
	admin := bearer(ts.login("admin@troupe.local", testAdminPassword).AccessToken)
	ada := ts.register("Ada", "ada@example.com", "correct horse")
	user := bearer(ts.login("ada@example.com", "correct horse").AccessToken)
	k := func(name string) string { return "user:" + ada + ":" + name } // a key of Ada's own

	r := ts.do("PUT", "/v1/ratelimit/policies/api", `{"limit":3,"window_ms":1000}`, admin, true)
	ts.expect(r, 200, "")
	var p policyJSON
	r.json(t, &p)
	if p != (policyJSON{Name: "api", Algorithm: "gcra", Limit: 3, WindowMs: 1000, Burst: 3, Scope: "cluster"}) {
		t.Fatalf("put: %+v", p)
	}
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/shadowed", `{"limit":1,"window_ms":60000,"burst":1,"shadow":true}`, admin, true), 200, "")
	// Bad policies, the default, and users are refused.
	for _, body := range []string{`{"limit":0,"window_ms":1000}`, `{"limit":1}`, `{"limit":1,"window_ms":0}`, `{"limit":1,"window_ms":1000,"burst":0}`, `{"limit":1,"window_ms":1000,"extra":1}`, `{"limit":-1,"window_ms":1000}`} {
		ts.expect(ts.do("PUT", "/v1/ratelimit/policies/bad", body, admin, false), 400, "bad_request")
	}
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/bad%20name", `{"limit":1,"window_ms":1000}`, admin, false), 400, "bad_request")
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/default", `{"limit":1,"window_ms":1000}`, admin, true), 400, "bad_request")
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/api", `{"limit":1,"window_ms":1000}`, user, true), 403, "forbidden")

	r = ts.do("GET", "/v1/ratelimit/policies", "", admin, true)
	var list struct {
		Items []policyJSON `json:"items"`
	}
	r.json(t, &list)
	if len(list.Items) != 3 || list.Items[0].Name != "default" || list.Items[0].Scope != "node" || list.Items[1].Name != "api" || list.Items[2].Name != "shadowed" {
		t.Fatalf("list: %s", r.body)
	}

	// Check: exactly the burst, then denials with a retry time.
	check := func(body string) checkResponse {
		t.Helper()
		r := ts.do("POST", "/v1/ratelimit/check", body, user, true)
		ts.expect(r, 200, "")
		var c checkResponse
		r.json(t, &c)
		return c
	}
	for i := range 3 {
		if c := check(fmt.Sprintf(`{"policy":"api","key":%q}`, k("k1"))); !c.Allowed || c.Remaining != uint32(2-i) || c.Limit != 3 {
			t.Fatalf("check %d: %+v", i, c)
		}
	}
	if c := check(fmt.Sprintf(`{"policy":"api","key":%q}`, k("k1"))); c.Allowed || c.RetryAfterMs != 334 || c.ResetMs < 1000 || c.ResetMs > 1001 {
		t.Fatalf("over the limit: %+v", c)
	}
	if c := check(fmt.Sprintf(`{"policy":"api","key":%q,"cost":3}`, k("k2"))); !c.Allowed || c.Remaining != 0 {
		t.Fatalf("another key, cost 3: %+v", c)
	}
	ts.expect(ts.do("POST", "/v1/ratelimit/check", fmt.Sprintf(`{"policy":"api","key":%q,"cost":4}`, k("k3")), user, true), 400, "bad_request")
	ts.expect(ts.do("POST", "/v1/ratelimit/check", fmt.Sprintf(`{"policy":"nope","key":%q}`, k("k")), user, true), 404, "not_found")
	ts.expect(ts.do("POST", "/v1/ratelimit/check", `{"policy":"api"}`, user, false), 400, "bad_request")
	ts.expect(ts.do("POST", "/v1/ratelimit/check", fmt.Sprintf(`{"policy":"api","key":%q}`, k("k")), nil, true), 401, "unauthenticated")
	// A shadow policy counts but never denies.
	check(fmt.Sprintf(`{"policy":"shadowed","key":%q}`, k("k")))
	if c := check(fmt.Sprintf(`{"policy":"shadowed","key":%q}`, k("k"))); !c.Allowed || c.RetryAfterMs == 0 {
		t.Fatalf("shadow: %+v", c)
	}
	// Decisions reach the metrics on the next sweep.
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, ts, `troupe_ratelimit_decisions_total{policy="shadowed",decision="shadow_denied"}`) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("shadow denial not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}

	ts.expect(ts.do("DELETE", "/v1/ratelimit/policies/api", "", admin, true), 204, "")
	ts.expect(ts.do("DELETE", "/v1/ratelimit/policies/api", "", admin, true), 404, "not_found")
	ts.expect(ts.do("DELETE", "/v1/ratelimit/policies/default", "", admin, true), 400, "bad_request")
	ts.expect(ts.do("POST", "/v1/ratelimit/check", fmt.Sprintf(`{"policy":"api","key":%q}`, k("k1")), user, true), 404, "not_found")
}

func TestClientAddrBehindTrustedProxy(t *testing.T) {
	proxies, err := ParseTrustedProxies("127.0.0.1, 10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, secure, withDefaultLimit(2, time.Second), func(c *Config) { c.TrustedProxies = proxies })
	// Through the trusted proxy, each forwarded client has its own bucket;
	// addresses of further trusted proxies are skipped.
	for i := range 3 {
		hdr := map[string]string{"X-Forwarded-For": "203.0.113." + strconv.Itoa(i) + ", 10.1.2.3"}
		for range 2 {
			ts.expect(ts.do("POST", "/v1/auth/refresh", `{"refresh_token":"x"}`, hdr, true), 401, "unauthenticated")
		}
		ts.expect(ts.do("POST", "/v1/auth/refresh", `{"refresh_token":"x"}`, hdr, true), 429, "rate_limited")
	}
	if _, err := ParseTrustedProxies("10.0.0.0/99"); err == nil {
		t.Fatal("bad CIDR accepted")
	}
	if p, _ := ParseTrustedProxies("::1"); len(p) != 1 || p[0] != netip.MustParsePrefix("::1/128") {
		t.Fatalf("%v", p)
	}
}
