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
