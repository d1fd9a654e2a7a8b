package api

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// errorField returns details.field of an error answer.
func errorField(t *testing.T, r *response) string {
	t.Helper()
	var e struct {
		Error struct {
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	r.json(t, &e)
	f, _ := e.Error.Details["field"].(string)
	return f
}

// TestPolicyAlgorithmsPut: each algorithm is put with its own fields and
// shown with them; a field that does not belong, or a bad value, is 400
// naming the field.
func TestPolicyAlgorithmsPut(t *testing.T) {
	ts := startServer(t, secure, withDefaultLimit(1000, time.Second))
	admin := ts.adminToken()
	for _, c := range []struct{ body, want string }{
		{`{"limit":3,"window_ms":1000}`, `{"name":"p","algorithm":"gcra","limit":3,"window_ms":1000,"burst":3,"shadow":false,"scope":"cluster"}`},
		{`{"algorithm":"gcra","limit":3,"window_ms":1000,"burst":1}`, `{"name":"p","algorithm":"gcra","limit":3,"window_ms":1000,"burst":1,"shadow":false,"scope":"cluster"}`},
		{`{"algorithm":"sliding_window","limit":3,"window_ms":60000}`, `{"name":"p","algorithm":"sliding_window","limit":3,"window_ms":60000,"shadow":false,"scope":"cluster"}`},
		{`{"algorithm":"fixed_window","limit":1000,"window":"day","time_zone":"Europe/Paris"}`, `{"name":"p","algorithm":"fixed_window","limit":1000,"window":"day","time_zone":"Europe/Paris","shadow":false,"scope":"cluster"}`},
		{`{"algorithm":"fixed_window","limit":10,"window":"month"}`, `{"name":"p","algorithm":"fixed_window","limit":10,"window":"month","time_zone":"UTC","shadow":false,"scope":"cluster"}`},
		{`{"algorithm":"fixed_window","limit":10,"window":"hour","time_zone":"UTC"}`, `{"name":"p","algorithm":"fixed_window","limit":10,"window":"hour","time_zone":"UTC","shadow":false,"scope":"cluster"}`},
		{`{"algorithm":"concurrency","limit":4,"burst":4,"shadow":true}`, `{"name":"p","algorithm":"concurrency","limit":4,"shadow":true,"scope":"cluster"}`},
	} {
		r := ts.do("PUT", "/v1/ratelimit/policies/p", c.body, admin, true)
		ts.expect(r, 200, "")
		if got := strings.TrimSpace(string(r.body)); got != c.want {
			t.Fatalf("put %s:\n got %s\nwant %s", c.body, got, c.want)
		}
	}
	for _, c := range []struct{ body, field string }{
		{`{"algorithm":"leaky","limit":3,"window_ms":1000}`, "algorithm"},
		{`{"algorithm":"","limit":3,"window_ms":1000}`, "algorithm"},
		{`{"algorithm":"gcra","limit":3}`, "window_ms"},
		{`{"algorithm":"sliding_window","limit":3}`, "window_ms"},
		{`{"algorithm":"fixed_window","limit":3,"window":"day","window_ms":1000}`, "window_ms"},
		{`{"algorithm":"fixed_window","limit":3,"window":"day","window_ms":0}`, "window_ms"},
		{`{"algorithm":"concurrency","limit":3,"window_ms":1000}`, "window_ms"},
		{`{"algorithm":"fixed_window","limit":3}`, "window"},
		{`{"algorithm":"fixed_window","limit":3,"window":"fortnight"}`, "window"},
		{`{"algorithm":"sliding_window","limit":3,"window_ms":1000,"window":"day"}`, "window"},
		{`{"algorithm":"fixed_window","limit":3,"window":"day","time_zone":"Mars/Olympus"}`, "time_zone"},
		{`{"algorithm":"fixed_window","limit":3,"window":"day","time_zone":"Local"}`, "time_zone"},
		{`{"algorithm":"fixed_window","limit":3,"window":"day","time_zone":""}`, "time_zone"},
		{`{"limit":3,"window_ms":1000,"time_zone":"UTC"}`, "time_zone"},
		{`{"algorithm":"concurrency","limit":3,"burst":2}`, "burst"},
		{`{"algorithm":"concurrency","limit":10001}`, "limit"},
		{`{"algorithm":"sliding_window","window_ms":1000}`, "limit"},
	} {
		r := ts.do("PUT", "/v1/ratelimit/policies/bad", c.body, admin, false)
		ts.expect(r, 400, "bad_request")
		if f := errorField(t, r); f != c.field {
			t.Fatalf("put %s: field %q, want %q (%s)", c.body, f, c.field, r.body)
		}
	}
}

// TestCheckEveryAlgorithm: checks under each algorithm over HTTP, with
// reset_ms as each defines it, leases taken and given back, and the
// refusals that name their field.
func TestCheckEveryAlgorithm(t *testing.T) {
	ts := startServer(t, secure, withDefaultLimit(1000, time.Second))
	start := time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC)
	ts.clock.ns.Store(start.UnixNano())
	admin := ts.adminToken()
	for _, put := range []string{
		`"fixed":{"algorithm":"fixed_window","limit":2,"window":"day","time_zone":"America/New_York"}`,
		`"sliding":{"algorithm":"sliding_window","limit":2,"window_ms":10000}`,
		`"sem":{"algorithm":"concurrency","limit":2}`,
		`"semshadow":{"algorithm":"concurrency","limit":1,"shadow":true}`,
		`"gcra":{"limit":2,"window_ms":1000}`,
	} {
		name, body, _ := strings.Cut(put, ":")
		ts.expect(ts.do("PUT", "/v1/ratelimit/policies/"+strings.Trim(name, `"`), body, admin, true), 200, "")
	}
	check := func(body string) checkResponse {
		t.Helper()
		r := ts.do("POST", "/v1/ratelimit/check", body, admin, true)
		ts.expect(r, 200, "")
		var c checkResponse
		r.json(t, &c)
		return c
	}
	// Fixed: exactly the limit, reset_ms the time to New York's midnight.
	ny, _ := time.LoadLocation("America/New_York")
	toMidnight := time.Date(2026, 3, 9, 0, 0, 0, 0, ny).Sub(start).Milliseconds()
	for i, allowed := range []bool{true, true, false} {
		c := check(`{"policy":"fixed","key":"k"}`)
		if c.Allowed != allowed || c.ResetMs != toMidnight || (!allowed && c.RetryAfterMs != toMidnight) {
			t.Fatalf("fixed %d: %+v (midnight in %d ms)", i, c, toMidnight)
		}
	}
	// Sliding: reset_ms is when the counts have fully aged out (the end
	// of the next window).
	if c := check(`{"policy":"sliding","key":"k","cost":2}`); !c.Allowed || c.ResetMs != 20000 {
		t.Fatalf("sliding: %+v", c)
	}
	// Concurrency: a lease per check, reset when all have expired.
	hex16 := regexp.MustCompile(`^[0-9a-f]{16}$`)
	a := check(`{"policy":"sem","key":"k","lease_ms":5000}`)
	ts.clock.advance(time.Second)
	b := check(`{"policy":"sem","key":"k","lease_ms":1000}`)
	if !a.Allowed || !b.Allowed || !hex16.MatchString(a.LeaseID) || a.LeaseID == b.LeaseID || b.Remaining != 0 || b.ResetMs != 4000 {
		t.Fatalf("leases: %+v %+v", a, b)
	}
	if c := check(`{"policy":"sem","key":"k","lease_ms":1000}`); c.Allowed || c.LeaseID != "" || c.RetryAfterMs != 1000 {
		t.Fatalf("over the limit: %+v", c)
	}
	release := func(body string) releaseResponse {
		t.Helper()
		r := ts.do("POST", "/v1/ratelimit/release", body, admin, true)
		ts.expect(r, 200, "")
		var rr releaseResponse
		r.json(t, &rr)
		return rr
	}
	if r := release(`{"policy":"sem","key":"k","lease_id":"` + a.LeaseID + `"}`); !r.Released || r.Remaining != 1 || r.ResetMs != 1000 {
		t.Fatalf("release: %+v", r)
	}
	if r := release(`{"policy":"sem","key":"k","lease_id":"` + a.LeaseID + `"}`); r.Released {
		t.Fatalf("second release: %+v", r)
	}
	ts.clock.advance(time.Second) // b expires
	if r := release(`{"policy":"sem","key":"k","lease_id":"` + b.LeaseID + `"}`); r.Released || r.Remaining != 2 {
		t.Fatalf("release after expiry: %+v", r)
	}
	if r := release(`{"policy":"sem","key":"k","lease_id":"00000000000000ff"}`); r.Released {
		t.Fatalf("unknown lease: %+v", r)
	}
	// A shadow semaphore allows past its limit, without a lease.
	check(`{"policy":"semshadow","key":"k","lease_ms":1000}`)
	if c := check(`{"policy":"semshadow","key":"k","lease_ms":1000}`); !c.Allowed || c.LeaseID != "" {
		t.Fatalf("shadow over the limit: %+v", c)
	}
	for _, c := range []struct {
		path, body, field string
	}{
		{"check", `{"policy":"sem","key":"k"}`, "lease_ms"},
		{"check", `{"policy":"sem","key":"k","lease_ms":0}`, "lease_ms"},
		{"check", `{"policy":"sem","key":"k","lease_ms":86400001}`, "lease_ms"},
		{"check", `{"policy":"gcra","key":"k","lease_ms":1000}`, "lease_ms"},
		{"check", `{"policy":"fixed","key":"k","cost":3}`, "cost"},
		{"release", `{"policy":"sem","key":"k","lease_id":"xyz"}`, "lease_id"},
		{"release", `{"policy":"sem","key":"k","lease_id":"0000000000000000"}`, "lease_id"},
		{"release", `{"policy":"sem","key":"k","lease_id":"00000000000000fff"}`, "lease_id"},
		{"release", `{"policy":"sem","key":"k"}`, "lease_id"},
		{"release", `{"policy":"gcra","key":"k","lease_id":"00000000000000ff"}`, "lease_id"},
	} {
		r := ts.do("POST", "/v1/ratelimit/"+c.path, c.body, admin, false)
		ts.expect(r, 400, "bad_request")
		if f := errorField(t, r); f != c.field {
			t.Fatalf("%s %s: field %q, want %q", c.path, c.body, f, c.field)
		}
	}
	ts.expect(ts.do("POST", "/v1/ratelimit/release", `{"policy":"nope","key":"k","lease_id":"00000000000000ff"}`, admin, true), 404, "not_found")
}

// TestMultiCheck: all or nothing over HTTP; a denied multi-check spends
// nothing and keeps no lease; concurrent multi-checks never spend more
// than a key's limit.
func TestMultiCheck(t *testing.T) {
	ts := startServer(t, secure, withDefaultLimit(100000, time.Second))
	admin := ts.adminToken()
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/day", `{"algorithm":"fixed_window","limit":20,"window":"day"}`, admin, true), 200, "")
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/sem", `{"algorithm":"concurrency","limit":20}`, admin, true), 200, "")
	multi := func(body string) multiCheckResponse {
		t.Helper()
		r := ts.do("POST", "/v1/ratelimit/check", body, admin, true)
		ts.expect(r, 200, "")
		var m multiCheckResponse
		r.json(t, &m)
		return m
	}
	peek := func(policy, key string) keyStateResponse {
		t.Helper()
		r := ts.do("GET", "/v1/ratelimit/policies/"+policy+"/keys/"+key, "", admin, true)
		ts.expect(r, 200, "")
		var k keyStateResponse
		r.json(t, &k)
		return k
	}
	ts.expect(ts.do("POST", "/v1/ratelimit/check", `{"policy":"day","key":"full","cost":20}`, admin, true), 200, "")
	m := multi(`{"checks":[{"policy":"day","key":"a","cost":5},{"policy":"sem","key":"b","lease_ms":60000},{"policy":"day","key":"full"}]}`)
	if m.Allowed || len(m.Results) != 3 || !m.Results[0].Allowed || !m.Results[1].Allowed || m.Results[1].LeaseID != "" || m.Results[2].Allowed {
		t.Fatalf("denied multi-check: %+v", m)
	}
	if a, b := peek("day", "a"), peek("sem", "b"); a.Remaining != 20 || b.Remaining != 20 || b.Leases != 0 {
		t.Fatalf("a denied multi-check spent: %+v %+v", a, b)
	}
	m = multi(`{"checks":[{"policy":"day","key":"a","cost":5},{"policy":"sem","key":"b","lease_ms":60000}]}`)
	if !m.Allowed || m.Results[0].Remaining != 15 || m.Results[1].LeaseID == "" {
		t.Fatalf("allowed multi-check: %+v", m)
	}
	var hundred, tooMany []string
	for i := range 101 {
		c := fmt.Sprintf(`{"policy":"day","key":"m%d"}`, i)
		tooMany = append(tooMany, c)
		if i < 100 {
			hundred = append(hundred, c)
		}
	}
	if m := multi(`{"checks":[` + strings.Join(hundred, ",") + `]}`); !m.Allowed || len(m.Results) != 100 {
		t.Fatalf("100 checks: %v", m.Allowed)
	}
	for _, c := range []struct{ body, field string }{
		{`{"checks":[]}`, "checks"},
		{`{"checks":[` + strings.Join(tooMany, ",") + `]}`, "checks"},
		{`{"checks":[{"policy":"day","key":"a"}],"policy":"day"}`, "checks"},
		{`{"checks":[{"policy":"day","key":"a"},{"policy":"day","key":"a","cost":0}]}`, "checks[1].cost"},
		{`{"checks":[{"policy":"sem","key":"a"}]}`, "checks[0].lease_ms"},
		{`{"checks":[{"policy":"day","key":""}]}`, "checks[0].key"},
	} {
		r := ts.do("POST", "/v1/ratelimit/check", c.body, admin, false)
		ts.expect(r, 400, "bad_request")
		if f := errorField(t, r); f != c.field {
			t.Fatalf("%s: field %q, want %q", c.body, f, c.field)
		}
	}
	ts.expect(ts.do("POST", "/v1/ratelimit/check", `{"checks":[{"policy":"nope","key":"a"}]}`, admin, true), 404, "not_found")

	// Concurrent callers over overlapping keys.
	keys := []string{"c0", "c1", "c2", "c3", "c4"}
	var mu sync.Mutex
	spent := map[string]int{}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				k1, k2 := keys[(g+i)%len(keys)], keys[(g+2*i+1)%len(keys)]
				r := ts.do("POST", "/v1/ratelimit/check", fmt.Sprintf(`{"checks":[{"policy":"day","key":%q,"cost":2},{"policy":"day","key":%q}]}`, k1, k2), admin, true)
				var m multiCheckResponse
				r.json(t, &m)
				if m.Allowed {
					mu.Lock()
					spent[k1] += 2
					spent[k2]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, k := range keys {
		if s := peek("day", k); spent[k] > 20 || int(20-s.Remaining) != spent[k] {
			t.Fatalf("key %s: allowed multi-checks spent %d, the key counts %d (limit 20)", k, spent[k], 20-s.Remaining)
		}
	}
}

// TestPeekAndResetKey: a peek spends nothing and is scoped as a check; a
// reset is for admins and services.
func TestPeekAndResetKey(t *testing.T) {
	ts := startServer(t, secure, withDefaultLimit(1000, time.Second))
	admin := ts.adminToken()
	ada := ts.register("Ada", "ada@example.com", "correct horse")
	user := bearer(ts.login("ada@example.com", "correct horse").AccessToken)
	svc := ts.serviceToken()
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/api", `{"limit":3,"window_ms":3000}`, admin, true), 200, "")
	own := "user:" + ada + ":uploads"
	ts.expect(ts.do("POST", "/v1/ratelimit/check", `{"policy":"api","key":"`+own+`","cost":2}`, user, true), 200, "")
	for range 3 {
		r := ts.do("GET", "/v1/ratelimit/policies/api/keys/"+own, "", user, true)
		ts.expect(r, 200, "")
		var k keyStateResponse
		r.json(t, &k)
		if k != (keyStateResponse{Policy: "api", Key: own, Algorithm: "gcra", Limit: 3, Remaining: 1, ResetMs: 2000}) {
			t.Fatalf("peek: %+v", k)
		}
	}
	// Keys may hold slashes, percent-encoded.
	ts.expect(ts.do("POST", "/v1/ratelimit/check", `{"policy":"api","key":"tenant/7/x"}`, svc, true), 200, "")
	var k keyStateResponse
	for _, path := range []string{"tenant%2F7%2Fx", "tenant/7/x"} {
		r := ts.rawRequest(t, "GET /v1/ratelimit/policies/api/keys/"+path+" HTTP/1.1\r\nHost: x\r\nAuthorization: "+svc["Authorization"]+"\r\nConnection: close\r\n\r\n")
		ts.expect(r, 200, "")
		if r.json(t, &k); k.Key != "tenant/7/x" || k.Remaining != 2 {
			t.Fatalf("peek of a key with slashes: %+v", k)
		}
	}
	ts.expect(ts.rawRequest(t, "GET /v1/ratelimit/policies/api/keys/bad%zz HTTP/1.1\r\nHost: x\r\nAuthorization: "+svc["Authorization"]+"\r\nConnection: close\r\n\r\n"), 400, "bad_request")
	ts.expect(ts.do("GET", "/v1/ratelimit/policies/api/keys/tenant:7", "", user, true), 403, "forbidden")
	ts.expect(ts.do("GET", "/v1/ratelimit/policies/nope/keys/"+own, "", user, true), 404, "not_found")
	ts.expect(ts.do("GET", "/v1/ratelimit/policies/api/keys/"+own, "", nil, true), 401, "unauthenticated")
	// Reset: not for a plain user, even of its own keys.
	ts.expect(ts.do("DELETE", "/v1/ratelimit/policies/api/keys/"+own, "", user, true), 403, "forbidden")
	ts.expect(ts.do("DELETE", "/v1/ratelimit/policies/default/keys/user:"+ada, "", svc, true), 403, "forbidden")
	ts.expect(ts.do("DELETE", "/v1/ratelimit/policies/api/keys/"+own, "", svc, true), 204, "")
	r := ts.do("GET", "/v1/ratelimit/policies/api/keys/"+own, "", admin, true)
	r.json(t, &k)
	if k.Remaining != 3 || k.ResetMs != 0 {
		t.Fatalf("after the reset: %+v", k)
	}
	ts.expect(ts.do("DELETE", "/v1/ratelimit/policies/default/keys/user:"+ada, "", admin, true), 204, "")
	// Resets are counted.
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, ts, `troupe_ratelimit_decisions_total{policy="api",decision="reset"}`) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("reset not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRateLimitPolicyHeader(t *testing.T) {
	for _, c := range []struct {
		p    storage.Policy
		want string
	}{
		{storage.Policy{Limit: 100, WindowMs: 1000}, `"x";q=100;w=1`},
		{storage.Policy{Limit: 5, WindowMs: 1500}, `"x";q=5;w=2`},
		{storage.Policy{Algorithm: storage.SlidingWindow, Limit: 5, WindowMs: 60000}, `"x";q=5;w=60`},
		{storage.Policy{Algorithm: storage.FixedWindow, Limit: 5, Window: storage.UnitHour}, `"x";q=5;w=3600`},
		{storage.Policy{Algorithm: storage.FixedWindow, Limit: 5, Window: storage.UnitDay}, `"x";q=5;w=86400`},
		{storage.Policy{Algorithm: storage.FixedWindow, Limit: 5, Window: storage.UnitMonth}, `"x";q=5;w=2678400`},
		{storage.Policy{Algorithm: storage.Concurrency, Limit: 5}, `"x";q=5`},
	} {
		if got := rateLimitPolicy("x", &c.p); got != c.want {
			t.Errorf("%+v: %s, want %s", c.p, got, c.want)
		}
	}
}
