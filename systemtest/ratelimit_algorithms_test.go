package systemtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGlobalRateLimitAlgorithms runs three processes in
// --rate-limit-mode=global with a calendar-window policy and a
// semaphore: each key's count is exact whichever node is asked, a lease
// taken through one node is given back through another, and concurrent
// multi-checks through all three never spend more than a key's limit.
func TestGlobalRateLimitAlgorithms(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	nodes := startCluster(t, "--rate-limit-mode", "global")
	expectStatus(t, nodes[0].do(t, "PUT", "/v1/ratelimit/policies/daily", map[string]any{"algorithm": "fixed_window", "limit": 6, "window": "day", "time_zone": "Asia/Tokyo"}, nil), 200)
	expectStatus(t, nodes[0].do(t, "PUT", "/v1/ratelimit/policies/sem", map[string]any{"algorithm": "concurrency", "limit": 3}, nil), 200)
	for _, n := range nodes {
		eventually(t, "the policies on "+n.cfg.ID, 10*time.Second, func() bool {
			r := n.do(t, "GET", "/v1/ratelimit/policies", nil, nil)
			return strings.Contains(string(r.Body), `"daily"`) && strings.Contains(string(r.Body), `"sem"`)
		})
	}
	type decision struct {
		Allowed bool   `json:"allowed"`
		LeaseID string `json:"lease_id"`
		ResetMs int64  `json:"reset_ms"`
	}
	post := func(n *node, path string, body any, v any) {
		t.Helper()
		r := n.do(t, "POST", path, body, nil)
		expectStatus(t, r, 200)
		if err := json.Unmarshal(r.Body, v); err != nil {
			t.Fatal(err)
		}
	}
	for k := range 4 {
		key := fmt.Sprint("calendar-", k)
		allowed := 0
		for i := range 12 {
			var d decision
			post(nodes[i%3], "/v1/ratelimit/check", map[string]any{"policy": "daily", "key": key}, &d)
			if d.Allowed {
				allowed++
			}
			if d.ResetMs <= 0 || d.ResetMs > 24*3600*1000 {
				t.Fatalf("reset_ms %d is not the time to Tokyo's midnight", d.ResetMs)
			}
		}
		if allowed != 6 {
			t.Fatalf("key %s: %d allowed through three nodes in a day, limit 6", key, allowed)
		}
		var leases []string
		for i := range 5 {
			var d decision
			post(nodes[i%3], "/v1/ratelimit/check", map[string]any{"policy": "sem", "key": key, "lease_ms": 60000}, &d)
			if d.Allowed != (d.LeaseID != "") {
				t.Fatalf("lease: %+v", d)
			}
			if d.Allowed {
				leases = append(leases, d.LeaseID)
			}
		}
		if len(leases) != 3 {
			t.Fatalf("key %s: %d leases through three nodes, limit 3", key, len(leases))
		}
		for i, id := range leases {
			var rel struct {
				Released bool `json:"released"`
			}
			post(nodes[(i+1)%3], "/v1/ratelimit/release", map[string]any{"policy": "sem", "key": key, "lease_id": id}, &rel)
			if !rel.Released {
				t.Fatalf("lease %s not released through another node", id)
			}
		}
	}

	// Concurrent multi-checks over keys of every owner.
	keys := []string{"m0", "m1", "m2", "m3", "m4", "m5"}
	var mu sync.Mutex
	spent := map[string]int{}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				k1, k2 := keys[(g+i)%len(keys)], keys[(g+2*i+1)%len(keys)]
				var m struct {
					Allowed bool `json:"allowed"`
				}
				post(nodes[g%3], "/v1/ratelimit/check", map[string]any{"checks": []map[string]any{
					{"policy": "daily", "key": k1, "cost": 2}, {"policy": "daily", "key": k2},
				}}, &m)
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
		var st struct {
			Remaining int `json:"remaining"`
		}
		r := nodes[0].do(t, "GET", "/v1/ratelimit/policies/daily/keys/"+k, nil, nil)
		expectStatus(t, r, 200)
		if err := json.Unmarshal(r.Body, &st); err != nil {
			t.Fatal(err)
		}
		// Across owners a race may leave a denied multi-check's spending
		// (DESIGN.md): the key never counts more than its limit, and at
		// least what the allowed multi-checks spent.
		if spent[k] > 6 || 6-st.Remaining < spent[k] {
			t.Fatalf("key %s: allowed multi-checks spent %d, the key counts %d, limit 6", k, spent[k], 6-st.Remaining)
		}
	}
}
