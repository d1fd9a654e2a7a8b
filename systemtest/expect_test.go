package systemtest

import (
	"strings"
	"testing"
	"time"
)

// TestBootstrapExpect starts three nodes at once with --bootstrap-expect
// 3, each knowing the others' URLs: they form one cluster together, and
// every member ends up in the member directory.
func TestBootstrapExpect(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	var cfgs []nodeConfig
	for _, id := range []string{"x", "y", "z"} {
		cfgs = append(cfgs, newNodeConfig(t, id))
	}
	var nodes []*node
	for i, c := range cfgs {
		var peers []string
		for j, o := range cfgs {
			if j != i {
				peers = append(peers, "http://"+o.HTTPAddr)
			}
		}
		c.ExtraArgs = append(c.ExtraArgs, "--bootstrap-expect", "3", "--join", strings.Join(peers, ","),
			"--raft-heartbeat-timeout", "300ms", "--raft-election-timeout", "300ms", "--cluster-secret", "expect")
		n, err := launch(t, c)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.waitReady(readyTimeout); err != nil {
			t.Fatalf("node %s: %v", n.cfg.ID, err)
		}
	}
	eventually(t, "every member in the directory", 30*time.Second, func() bool {
		st := status(t, nodes[2])
		if len(st.Members) != 3 || st.Leader == nil {
			return false
		}
		for _, m := range st.Members {
			if m.HTTPAddr == "" {
				return false
			}
		}
		return true
	})
	expectStatus(t, nodes[1].do(t, "POST", "/v1/users", map[string]string{"name": "E", "email": "e@example.com"}, nil), 201)
	sameHashes(t, nodes...)
}
