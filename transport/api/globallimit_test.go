package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// twoOwners starts two nodes in global mode that see each other as the
// members owning keys (each is its own one-node cluster; they prove
// themselves to each other with the cluster secret).
func twoOwners(t *testing.T, extra ...func(*Config)) (a, b *testServer, set *ownerSet) {
	t.Helper()
	opts := append([]func(*Config){withDefaultLimit(1000, time.Second), func(c *Config) {
		c.RateLimitGlobal = true
		c.ClusterSecret = "global-secret"
	}}, extra...)
	a, b = startServer(t, opts...), startServer(t, opts...)
	set = &ownerSet{at: time.Now().Add(time.Hour), ids: []string{"a", "b"},
		addrs: []string{strings.TrimPrefix(a.base, "http://"), strings.TrimPrefix(b.base, "http://")}}
	for i, ts := range []*testServer{a, b} {
		view := *set
		view.self = i
		ts.srv.global.members = func() *ownerSet { return &view }
		// Two one-node clusters: the policy is put on each.
		ts.expect(ts.do("PUT", "/v1/ratelimit/policies/api", `{"limit":5,"window_ms":60000}`, ts.adminToken(), true), 200, "")
	}
	return a, b, set
}

// keyOwnedBy returns a key of policy "api" that member i owns.
func keyOwnedBy(set *ownerSet, i int) string {
	for n := 0; ; n++ {
		k := fmt.Sprint("key-", n)
		if set.owner("api", k) == i {
			return k
		}
	}
}

func TestGlobalLimitHoldsAcrossNodes(t *testing.T) {
	a, b, set := twoOwners(t)
	check := func(ts *testServer, key string) checkResponse {
		t.Helper()
		r := ts.do("POST", "/v1/ratelimit/check", fmt.Sprintf(`{"policy":"api","key":%q}`, key), nil, true)
		ts.expect(r, 200, "")
		var c checkResponse
		r.json(t, &c)
		return c
	}
	for owner := range 2 {
		key := keyOwnedBy(set, owner)
		allowed := 0
		for i := range 8 {
			ts := a
			if i%2 == 1 {
				ts = b
			}
			if check(ts, key).Allowed {
				allowed++
			}
		}
		if allowed != 5 {
			t.Fatalf("key owned by member %d: %d allowed through two nodes, the limit is 5", owner, allowed)
		}
	}
	if metricValue(t, a, "troupe_ratelimit_fallback_decisions_total") != 0 || metricValue(t, a, "troupe_ratelimit_remote_decisions_total") == 0 {
		t.Fatal("decisions did not go to their owner")
	}

	// The owner goes away: the other node decides alone with its share
	// (5 / 2 members = 2), and says so in a metric.
	key := keyOwnedBy(set, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for range 5 {
		if check(a, key).Allowed {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("%d allowed with the owner down, want the local share of 2", allowed)
	}
	// (the default policy's own decisions on this request may fall back too)
	if metricValue(t, a, "troupe_ratelimit_fallback_decisions_total") < 5 {
		t.Fatal("fallback decisions not counted")
	}
}

func TestDecideRouteNeedsAMember(t *testing.T) {
	a, _, _ := twoOwners(t)
	body := `{"checks":[{"policy":{"name":"p","limit":1,"window_ms":1000,"burst":1,"shadow":false,"scope":""},"key":"k","cost":1}]}`
	r := a.do("POST", decidePath, body, nil, false)
	if r.status != 403 {
		t.Fatalf("a stranger got %d %s", r.status, r.body)
	}
	r = a.do("POST", decidePath, body, map[string]string{"X-Troupe-Cluster-Secret": "global-secret"}, false)
	if r.status != 200 || !strings.Contains(string(r.body), `"allowed":true`) {
		t.Fatalf("a member got %d %s", r.status, r.body)
	}
	for _, bad := range []string{`{"checks":[]}`, `{"checks":[{"policy":{"name":"p","limit":0,"window_ms":1000,"burst":1,"shadow":false,"scope":""},"key":"k","cost":1}]}`, `nope`} {
		if r := a.do("POST", decidePath, bad, map[string]string{"X-Troupe-Cluster-Secret": "global-secret"}, false); r.status != 400 {
			t.Fatalf("%s: %d %s", bad, r.status, r.body)
		}
	}
}

func TestRendezvousOwnership(t *testing.T) {
	three := &ownerSet{ids: []string{"a", "b", "c"}}
	four := &ownerSet{ids: []string{"a", "b", "c", "d"}}
	counts := make([]int, 3)
	moved := 0
	const n = 30_000
	for i := range n {
		k := fmt.Sprint("user:", i)
		o3, o4 := three.owner("default", k), four.owner("default", k)
		counts[o3]++
		if o3 != o4 {
			if o4 != 3 {
				t.Fatalf("key %s moved between old members (%d → %d)", k, o3, o4)
			}
			moved++
		}
	}
	for i, c := range counts {
		if c < n/3*9/10 || c > n/3*11/10 {
			t.Fatalf("member %d owns %d of %d keys: not balanced (%v)", i, c, n, counts)
		}
	}
	if moved < n/4*9/10 || moved > n/4*11/10 {
		t.Fatalf("%d keys moved to a fourth member, want about a quarter", moved)
	}
}

// keyOwnedIn returns a key of policy that member i owns.
func keyOwnedIn(set *ownerSet, policy string, i int, prefix string) string {
	for n := 0; ; n++ {
		k := fmt.Sprint(prefix, n)
		if set.owner(policy, k) == i {
			return k
		}
	}
}

// TestGlobalEveryAlgorithm: in global mode the owner decides under the
// policy's own algorithm: leases taken through one node are given back
// through either, peeks and resets reach the owner, a multi-check over
// keys of both owners is all or nothing; with the owner down, a peek is
// unavailable and a check gets the local share.
func TestGlobalEveryAlgorithm(t *testing.T) {
	a, b, set := twoOwners(t)
	for _, ts := range []*testServer{a, b} {
		admin := ts.adminToken()
		ts.expect(ts.do("PUT", "/v1/ratelimit/policies/sem", `{"algorithm":"concurrency","limit":2}`, admin, true), 200, "")
		ts.expect(ts.do("PUT", "/v1/ratelimit/policies/day", `{"algorithm":"fixed_window","limit":3,"window":"day","time_zone":"Europe/Paris"}`, admin, true), 200, "")
	}
	do := func(ts *testServer, method, path, body string, v any) {
		t.Helper()
		r := ts.do(method, path, body, nil, true)
		ts.expect(r, 200, "")
		r.json(t, v)
	}
	semKey := keyOwnedIn(set, "sem", 1, "s")
	var l1, l2, l3 checkResponse
	do(a, "POST", "/v1/ratelimit/check", `{"policy":"sem","key":"`+semKey+`","lease_ms":60000}`, &l1)
	do(b, "POST", "/v1/ratelimit/check", `{"policy":"sem","key":"`+semKey+`","lease_ms":60000}`, &l2)
	do(a, "POST", "/v1/ratelimit/check", `{"policy":"sem","key":"`+semKey+`","lease_ms":60000}`, &l3)
	if !l1.Allowed || !l2.Allowed || l3.Allowed || l1.LeaseID == "" || l2.LeaseID == "" || l3.LeaseID != "" {
		t.Fatalf("leases through two nodes: %+v %+v %+v", l1, l2, l3)
	}
	var rel releaseResponse
	do(a, "POST", "/v1/ratelimit/release", `{"policy":"sem","key":"`+semKey+`","lease_id":"`+l2.LeaseID+`"}`, &rel)
	if !rel.Released || rel.Remaining != 1 {
		t.Fatalf("release through the other node: %+v", rel)
	}
	var st keyStateResponse
	do(a, "GET", "/v1/ratelimit/policies/sem/keys/"+semKey, "", &st)
	if st.Leases != 1 || st.Remaining != 1 {
		t.Fatalf("peek through the other node: %+v", st)
	}
	a.expect(a.do("DELETE", "/v1/ratelimit/policies/sem/keys/"+semKey, "", nil, true), 204, "")
	do(b, "GET", "/v1/ratelimit/policies/sem/keys/"+semKey, "", &st)
	if st.Leases != 0 || st.Remaining != 2 {
		t.Fatalf("after a reset through the other node: %+v", st)
	}

	// Fixed windows: exactly the limit across both nodes.
	dayKey := keyOwnedIn(set, "day", 1, "d")
	allowed := 0
	for i := range 5 {
		var c checkResponse
		do([]*testServer{a, b}[i%2], "POST", "/v1/ratelimit/check", `{"policy":"day","key":"`+dayKey+`"}`, &c)
		if c.Allowed {
			allowed++
		}
		if c.ResetMs <= 0 || c.ResetMs > 25*3600*1000 {
			t.Fatalf("reset_ms %d", c.ResetMs)
		}
	}
	if allowed != 3 {
		t.Fatalf("%d allowed across two nodes, limit 3", allowed)
	}
	// A multi-check over keys of both owners: denied whole while one key
	// is spent, spending nothing on the other.
	other := keyOwnedIn(set, "day", 0, "d")
	var m multiCheckResponse
	do(a, "POST", "/v1/ratelimit/check", `{"checks":[{"policy":"day","key":"`+other+`"},{"policy":"day","key":"`+dayKey+`"},{"policy":"sem","key":"`+semKey+`","lease_ms":1000}]}`, &m)
	if m.Allowed || !m.Results[0].Allowed || m.Results[1].Allowed || m.Results[2].LeaseID != "" {
		t.Fatalf("multi-check over two owners: %+v", m)
	}
	do(b, "GET", "/v1/ratelimit/policies/day/keys/"+other, "", &st)
	if st.Remaining != 3 {
		t.Fatalf("a denied multi-check spent: %+v", st)
	}
	do(b, "GET", "/v1/ratelimit/policies/sem/keys/"+semKey, "", &st)
	if st.Leases != 0 {
		t.Fatalf("a denied multi-check kept a lease: %+v", st)
	}
	fresh := keyOwnedIn(set, "day", 1, "f")
	do(b, "POST", "/v1/ratelimit/check", `{"checks":[{"policy":"day","key":"`+other+`","cost":2},{"policy":"day","key":"`+fresh+`"},{"policy":"sem","key":"`+semKey+`","lease_ms":60000}]}`, &m)
	if !m.Allowed || m.Results[0].Remaining != 1 || m.Results[1].Remaining != 2 || m.Results[2].LeaseID == "" {
		t.Fatalf("allowed multi-check over two owners: %+v", m)
	}

	// The owner goes away.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	a.expect(a.do("GET", "/v1/ratelimit/policies/sem/keys/"+semKey, "", nil, true), 503, "unavailable")
	var c1, c2 checkResponse
	do(a, "POST", "/v1/ratelimit/check", `{"policy":"sem","key":"`+semKey+`","lease_ms":60000}`, &c1)
	do(a, "POST", "/v1/ratelimit/check", `{"policy":"sem","key":"`+semKey+`","lease_ms":60000}`, &c2)
	if !c1.Allowed || c1.LeaseID == "" || c2.Allowed {
		t.Fatalf("the local share of a semaphore of 2 over 2 members is 1: %+v %+v", c1, c2)
	}
	// Its lease lives on this node's share: released here.
	do(a, "POST", "/v1/ratelimit/release", `{"policy":"sem","key":"`+semKey+`","lease_id":"`+c1.LeaseID+`"}`, &rel)
	if !rel.Released {
		t.Fatalf("release of a share's lease: %+v", rel)
	}
}

// TestDecideRouteChecksItsBatch: the owner's route takes each algorithm's
// policy as the asker sends it, and refuses what no node would send.
func TestDecideRouteChecksItsBatch(t *testing.T) {
	a, _, _ := twoOwners(t)
	member := map[string]string{"X-Troupe-Cluster-Secret": "global-secret"}
	sem := `{"name":"s","algorithm":"concurrency","limit":1,"shadow":false}`
	day := `{"name":"d","algorithm":"fixed_window","limit":1,"window":"day","time_zone":"UTC","shadow":false}`
	for _, ok := range []string{
		`{"checks":[{"policy":` + sem + `,"key":"k","cost":1,"lease_ms":1000},{"policy":` + sem + `,"key":"k","cost":1,"lease_ms":1000}]}`,
		`{"all":true,"checks":[{"policy":` + day + `,"key":"k","cost":1},{"policy":` + sem + `,"key":"j","cost":1,"lease_ms":1000}]}`,
		`{"checks":[{"policy":` + day + `,"key":"k","peek":true},{"policy":` + sem + `,"key":"k","release":12345},{"policy":` + day + `,"key":"k","reset":true}]}`,
	} {
		if r := a.do("POST", decidePath, ok, member, false); r.status != 200 {
			t.Fatalf("%s: %d %s", ok, r.status, r.body)
		}
	}
	for _, bad := range []string{
		`{"checks":[{"policy":` + sem + `,"key":"k","cost":1}]}`,                                               // no lease
		`{"checks":[{"policy":` + day + `,"key":"k","cost":1,"lease_ms":5}]}`,                                  // a lease for a window
		`{"checks":[{"policy":` + day + `,"key":"k","cost":2}]}`,                                               // above the limit
		`{"checks":[{"policy":` + day + `,"key":"k","release":7}]}`,                                            // a release of a window
		`{"checks":[{"policy":` + day + `,"key":"k","peek":true,"reset":true}]}`,                               // both
		`{"all":true,"checks":[{"policy":` + day + `,"key":"k","peek":true}]}`,                                 // a peek all or nothing
		`{"checks":[{"policy":{"name":"x","algorithm":"leaky","limit":1,"shadow":false},"key":"k","cost":1}]}`, // unknown algorithm
		`{"checks":[{"policy":{"name":"x","algorithm":"fixed_window","limit":1,"window":"week","shadow":false},"key":"k","cost":1}]}`,
	} {
		if r := a.do("POST", decidePath, bad, member, false); r.status != 400 {
			t.Fatalf("%s: %d %s", bad, r.status, r.body)
		}
	}
	// The all-or-nothing batch above took the lease on j: a second is denied
	// whole, and spends nothing on k's window (already spent: 1 of 1).
	r := a.do("POST", decidePath, `{"all":true,"checks":[{"policy":`+sem+`,"key":"j","cost":1,"lease_ms":1000},{"policy":`+day+`,"key":"other","cost":1}]}`, member, false)
	var resp decideResponse
	if r.json(t, &resp); r.status != 200 || resp.Allowed || resp.Decisions[0].Allowed || !resp.Decisions[1].Allowed {
		t.Fatalf("second batch: %d %s", r.status, r.body)
	}
	r = a.do("POST", decidePath, `{"checks":[{"policy":`+day+`,"key":"other","peek":true}]}`, member, false)
	if r.json(t, &resp); resp.Decisions[0].Remaining != 1 {
		t.Fatalf("a denied batch spent: %s", r.body)
	}
}
