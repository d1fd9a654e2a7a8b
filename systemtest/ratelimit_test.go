package systemtest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGlobalRateLimit runs three processes in --rate-limit-mode=global: a
// key's limit holds across the nodes, whichever node is asked; with one
// node killed, the others fall back to their shares, within one extra
// burst per key.
func TestGlobalRateLimit(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	nodes := startCluster(t, "--rate-limit-mode", "global")
	const limit = 9
	expectStatus(t, nodes[1].do(t, "PUT", "/v1/ratelimit/policies/api", map[string]any{"limit": limit, "window_ms": 3_600_000}, nil), 200)
	check := func(n *node, key string) bool {
		t.Helper()
		r := n.do(t, "POST", "/v1/ratelimit/check", map[string]string{"policy": "api", "key": key}, nil)
		if r.Status == 404 {
			return false // this node has not applied the policy yet
		}
		expectStatus(t, r, 200)
		var d struct {
			Allowed bool `json:"allowed"`
		}
		if err := json.Unmarshal(r.Body, &d); err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	// Every node must know the policy first.
	for _, n := range nodes {
		eventually(t, "the policy on "+n.cfg.ID, 10*time.Second, func() bool {
			r := n.do(t, "GET", "/v1/ratelimit/policies", nil, nil)
			return strings.Contains(string(r.Body), `"api"`)
		})
	}
	for k := range 5 {
		key := fmt.Sprint("exact-", k)
		allowed := 0
		for i := range 3 * limit {
			if check(nodes[i%3], key) {
				allowed++
			}
		}
		if allowed != limit {
			t.Fatalf("key %s: %d allowed through three nodes, the limit is %d", key, allowed, limit)
		}
	}

	// Kill c: keys it owned fall back to each node's share (9/3 = 3).
	nodes[2].Kill(t)
	for k := range 20 {
		key := fmt.Sprint("degraded-", k)
		allowed := 0
		for i := range 3 * limit {
			if check(nodes[i%2], key) {
				allowed++
			}
		}
		if allowed < 2*(limit/3) || allowed > 2*limit {
			t.Fatalf("key %s with a node down: %d allowed, want between %d and %d", key, allowed, 2*(limit/3), 2*limit)
		}
	}
	fallbacks := 0.0
	for _, n := range nodes[:2] {
		fallbacks += metric(t, n, "troupe_ratelimit_fallback_decisions_total")
	}
	if fallbacks == 0 {
		t.Fatal("no decision fell back although a member is down")
	}
}

// metric reads one value from a node's /metrics.
func metric(t *testing.T, n *node, name string) float64 {
	t.Helper()
	r := n.do(t, "GET", "/metrics", nil, nil)
	for _, line := range strings.Split(string(r.Body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}
