package systemtest

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

type clusterStatus struct {
	NodeID string `json:"node_id"`
	Leader *struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"http_addr"`
	} `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      []struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"http_addr"`
		RaftAddr string `json:"raft_addr"`
		Voter    bool   `json:"voter"`
	} `json:"members"`
}

func status(t *testing.T, n *node) clusterStatus {
	t.Helper()
	r := n.do(t, "GET", "/v1/cluster", nil, nil)
	expectStatus(t, r, 200)
	var st clusterStatus
	if err := json.Unmarshal(r.Body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestThreeProcessCluster forms a cluster of three troupe processes with
// --bootstrap and --join, writes through the leader, reads on followers,
// stops the leader, keeps writing through the new one, and brings the old
// leader back with its data dir and its original flags.
func TestThreeProcessCluster(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	timing := []string{"--raft-heartbeat-timeout", "400ms", "--raft-election-timeout", "400ms", "--cluster-secret", "systemtest"}
	cfgs := map[string]nodeConfig{}
	for _, id := range []string{"a", "b", "c"} {
		cfgs[id] = newNodeConfig(t, id)
	}
	ca := cfgs["a"]
	ca.ExtraArgs = append(append(ca.ExtraArgs, "--bootstrap"), timing...)
	nodes := map[string]*node{"a": startNode(t, ca)}
	for _, id := range []string{"b", "c"} {
		c := cfgs[id]
		c.ExtraArgs = append(append(c.ExtraArgs, "--join", "http://"+ca.HTTPAddr), timing...)
		nodes[id] = startNode(t, c)
	}
	st := status(t, nodes["c"])
	if len(st.Members) != 3 || st.Leader == nil || st.Leader.ID != "a" || st.Leader.HTTPAddr != ca.HTTPAddr {
		t.Fatalf("cluster as c sees it: %+v", st)
	}
	for _, m := range st.Members {
		if m.HTTPAddr != cfgs[m.ID].HTTPAddr || !m.Voter {
			t.Fatalf("member %+v", m)
		}
	}

	var ids []string
	for i := range 20 {
		r := nodes["a"].do(t, "POST", "/v1/users", map[string]string{"name": "U", "email": fmt.Sprintf("u%d@example.com", i)}, nil)
		expectStatus(t, r, 201)
		ids = append(ids, expectUser(t, r, 201).ID)
	}
	idx := writeIndex(t, nodes["a"].do(t, "POST", "/v1/users", map[string]string{"name": "Last", "email": "last@example.com"}, nil))
	// A follower serves stale reads once it has applied the write.
	r := nodes["b"].do(t, "GET", fmt.Sprintf("/v1/users/%s?consistency=stale&min_index=%d", ids[0], idx), nil, nil)
	expectStatus(t, r, 200)
	// A follower serves linearizable reads through the leader's read
	// index: a write acknowledged by the leader is visible at once.
	for i := range 10 {
		w := expectUser(t, nodes["a"].do(t, "POST", "/v1/users", map[string]string{"name": "L", "email": fmt.Sprintf("lin%d@example.com", i)}, nil), 201)
		expectStatus(t, nodes["c"].do(t, "GET", userPath(w.ID), nil, nil), 200)
		ids = append(ids, w.ID)
	}
	// A follower passes writes to the leader and names it.
	key := map[string]string{"Idempotency-Key": "via-follower-1"}
	r = nodes["b"].do(t, "POST", "/v1/users", map[string]string{"name": "X", "email": "x@example.com"}, key)
	x := expectUser(t, r, 201)
	if r.Header.Get("X-Troupe-Leader") != ca.HTTPAddr || r.Header.Get("X-Troupe-Index") == "" || r.Header.Get("Location") == "" {
		t.Fatalf("forwarded write headers: %v", r.Header)
	}
	// The same key through another follower returns the first result.
	r = nodes["c"].do(t, "POST", "/v1/users", map[string]string{"name": "X", "email": "x@example.com"}, key)
	if again := expectUser(t, r, 201); again != x {
		t.Fatalf("repeat through c: %+v, first %+v", again, x)
	}
	expectStatus(t, nodes["c"].do(t, "PATCH", userPath(x.ID), map[string]string{"name": "X2"}, nil), 200)
	expectError(t, nodes["c"].do(t, "POST", "/v1/users", map[string]string{"name": "Dup", "email": "X@example.com"}, nil), 409, "conflict")
	// Replicas agree: once they report the same applied index, their
	// state hashes are equal.
	sameHashes(t, nodes["a"], nodes["b"], nodes["c"])

	// troupe status sees three ready members.
	out, err := exec.Command(troupeBin, "status", "--wait", "20s", "--addr", nodes["c"].URL).CombinedOutput()
	if err != nil || strings.Count(string(out), "yes\n") != 3 || strings.Count(string(out), " yes ") != 2 {
		t.Fatalf("troupe status: %v\n%s", err, out)
	}
	// troupe join adds a learner (it needs no quorum, so it may be down),
	// through a follower; then it is removed.
	out, err = exec.Command(troupeBin, "join", "--addr", nodes["b"].URL, "--id", "d", "--http-addr", "127.0.0.1:9",
		"--raft-addr", "127.0.0.1:10", "--learner", "--cluster-secret", "systemtest").CombinedOutput()
	if err != nil {
		t.Fatalf("troupe join: %v\n%s", err, out)
	}
	if st := status(t, nodes["a"]); len(st.Members) != 4 {
		t.Fatalf("after join: %+v", st)
	}
	expectStatus(t, nodes["b"].do(t, "DELETE", "/v1/cluster/members/d", nil, map[string]string{"X-Troupe-Cluster-Secret": "systemtest"}), 204)

	// Membership changes need the secret.
	r = nodes["a"].do(t, "POST", "/v1/cluster/members", map[string]any{"id": "d", "http_addr": "127.0.0.1:9", "raft_addr": "127.0.0.1:10"}, nil)
	expectError(t, r, 401, "unauthenticated")

	// The leader stops; b and c elect a new one, which has every write.
	nodes["a"].Stop(t)
	var leader *node
	eventually(t, "a new leader", 30*time.Second, func() bool {
		for _, id := range []string{"b", "c"} {
			if r, err := nodes[id].send(t.Context(), "GET", "/v1/cluster", nil, nil); err == nil && r.Status == 200 {
				var s clusterStatus
				if json.Unmarshal(r.Body, &s) == nil && s.Leader != nil && s.Leader.ID == id {
					leader = nodes[id]
					return true
				}
			}
		}
		return false
	})
	eventually(t, "the new leader to be ready", 30*time.Second, func() bool {
		r, err := leader.send(t.Context(), "GET", "/readyz", nil, nil)
		return err == nil && r.Status == 200
	})
	for _, id := range ids {
		expectStatus(t, leader.do(t, "GET", userPath(id), nil, nil), 200)
	}
	expectStatus(t, leader.do(t, "POST", "/v1/users", map[string]string{"name": "After", "email": "after@example.com"}, nil), 201)
	// troupe status, asked on the other survivor, shows a as the leader
	// sees it: not reached, and when it was last heard from.
	other := nodes["b"]
	if leader == other {
		other = nodes["c"]
	}
	eventually(t, "status to show a unreachable", 20*time.Second, func() bool {
		out, _ := exec.Command(troupeBin, "status", "--addr", other.URL).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "a ") && strings.Contains(line, "no (last contact") {
				return true
			}
		}
		return false
	})

	// a comes back with its data dir and the flags it first had; it
	// rejoins as a follower and catches up.
	nodes["a"] = nodes["a"].Restart(t)
	eventually(t, "a to catch up", 30*time.Second, func() bool {
		r, err := nodes["a"].send(t.Context(), "GET", "/v1/users/count?consistency=stale", nil, nil)
		return err == nil && r.Status == 200 && strings.Contains(string(r.Body), `"count":34`)
	})
	if st := status(t, nodes["a"]); st.Leader == nil || st.Leader.ID == "a" || len(st.Members) != 3 {
		t.Fatalf("after rejoining: %+v", st)
	}
	sameHashes(t, nodes["a"], nodes["b"], nodes["c"])
}

type stateHash struct {
	NodeID string `json:"node_id"`
	Index  uint64 `json:"index"`
	Hash   string `json:"hash"`
}

// sameHashes waits until the nodes report one applied index, then checks
// that their state hashes are equal.
func sameHashes(t *testing.T, nodes ...*node) {
	t.Helper()
	sameHashesWith(t, nil, nodes...)
}

// sameHashesWith is sameHashes with credentials (header) for secure nodes.
func sameHashesWith(t *testing.T, header map[string]string, nodes ...*node) {
	t.Helper()
	var hs []stateHash
	eventually(t, "replicas at one index", 30*time.Second, func() bool {
		hs = hs[:0]
		for _, n := range nodes {
			r, err := n.send(t.Context(), "GET", "/v1/cluster/hash", nil, header)
			if err != nil || r.Status != 200 {
				return false
			}
			var h stateHash
			if json.Unmarshal(r.Body, &h) != nil {
				return false
			}
			hs = append(hs, h)
		}
		for _, h := range hs[1:] {
			if h.Index != hs[0].Index {
				return false
			}
		}
		return true
	})
	for _, h := range hs[1:] {
		if h.Hash != hs[0].Hash {
			t.Fatalf("replicas disagree at index %d: %+v", h.Index, hs)
		}
	}
}

// TestJoinWithWrongSecretFails: a node that shows the wrong cluster secret
// is refused at once and stops with a clear message, instead of retrying
// forever.
func TestJoinWithWrongSecretFails(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	ca := newNodeConfig(t, "a")
	ca.ExtraArgs = append(ca.ExtraArgs, "--bootstrap", "--cluster-secret", "right")
	a := startNode(t, ca)
	cb := newNodeConfig(t, "b")
	cb.ExtraArgs = append(cb.ExtraArgs, "--join", a.URL, "--cluster-secret", "wrong")
	b, err := launch(t, cb)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatal("a node with the wrong secret kept trying")
	}
	if b.Cmd.ProcessState.ExitCode() != 1 || !strings.Contains(b.logTail(), "refused") || !strings.Contains(b.logTail(), "TROUPE_CLUSTER_SECRET") {
		t.Fatalf("exit %d, log:\n%s", b.Cmd.ProcessState.ExitCode(), b.logTail())
	}
	if st := status(t, a); len(st.Members) != 1 {
		t.Fatalf("the refused node became a member: %+v", st)
	}
}

// TestRejoinAfterAddressChange restarts a follower on a new raft address
// (its data dir and flags otherwise unchanged): it asks the members it
// joined through to record the new address, rejoins, and catches up.
func TestRejoinAfterAddressChange(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	timing := []string{"--raft-heartbeat-timeout", "300ms", "--raft-election-timeout", "300ms"}
	ca := newNodeConfig(t, "a")
	ca.ExtraArgs = append(append(ca.ExtraArgs, "--bootstrap"), timing...)
	a := startNode(t, ca)
	nodes := map[string]*node{"a": a}
	cfgs := map[string]nodeConfig{}
	for _, id := range []string{"b", "c"} {
		c := newNodeConfig(t, id)
		c.ExtraArgs = append(append(c.ExtraArgs, "--join", a.URL), timing...)
		cfgs[id] = c
		nodes[id] = startNode(t, c)
	}
	nodes["c"].Stop(t)
	for i := range 10 {
		expectStatus(t, a.do(t, "POST", "/v1/users", map[string]string{"name": "M", "email": fmt.Sprintf("moved%d@example.com", i)}, nil), 201)
	}
	moved := cfgs["c"]
	moved.RaftAddr = clustertest.FreeAddr(t) // the host came back elsewhere
	nodes["c"] = startNode(t, moved)
	eventually(t, "c at its new raft address", 30*time.Second, func() bool {
		for _, m := range status(t, a).Members {
			if m.ID == "c" {
				return m.RaftAddr == moved.RaftAddr
			}
		}
		return false
	})
	sameHashes(t, nodes["a"], nodes["b"], nodes["c"])
}

// startCluster starts three insecure nodes, a bootstrapping and b and c
// joining it, with quick raft timeouts and extra flags, and waits until
// a counts three members.
func startCluster(t *testing.T, extra ...string) []*node {
	t.Helper()
	return startThree(t, false, nil, extra...)
}

// testClusterSecret is the cluster secret of secure test clusters.
const testClusterSecret = "systemtest-secret"

// startSecureCluster starts three nodes with authentication on, sharing
// testClusterSecret (and cheap password hashing); peer is the header
// that proves a caller a member.
func startSecureCluster(t *testing.T) (nodes []*node, peer map[string]string) {
	t.Helper()
	peer = map[string]string{"X-Troupe-Cluster-Secret": testClusterSecret}
	return startThree(t, true, peer, "--cluster-secret", testClusterSecret, "--argon2-memory-kib", "1024", "--argon2-time", "1"), peer
}

func startThree(t *testing.T, secure bool, header map[string]string, extra ...string) []*node {
	t.Helper()
	flags := append([]string{"--raft-heartbeat-timeout", "400ms", "--raft-election-timeout", "400ms"}, extra...)
	ca := newNodeConfig(t, "a")
	ca.Secure = secure
	ca.ExtraArgs = append(append(ca.ExtraArgs, "--bootstrap"), flags...)
	nodes := []*node{startNode(t, ca)}
	for _, id := range []string{"b", "c"} {
		c := newNodeConfig(t, id)
		c.Secure = secure
		c.ExtraArgs = append(append(c.ExtraArgs, "--join", "http://"+ca.HTTPAddr), flags...)
		nodes = append(nodes, startNode(t, c))
	}
	eventually(t, "three members", 30*time.Second, func() bool {
		r, err := nodes[0].send(t.Context(), "GET", "/v1/cluster", nil, header)
		var st clusterStatus
		return err == nil && r.Status == 200 && json.Unmarshal(r.Body, &st) == nil && len(st.Members) == 3
	})
	return nodes
}

// TestStatusWaits: `troupe status --wait` run right after a node is started
// waits for it to elect itself and be ready, where a single ask would find
// no leader yet (or nobody listening).
func TestStatusWaits(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	cfg := newNodeConfig(t, "w")
	cfg.ExtraArgs = append(cfg.ExtraArgs, "--bootstrap")
	n, err := launch(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(troupeBin, "status", "--wait", "30s", "--addr", n.URL).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "leader w") || strings.Count(string(out), "yes\n") != 1 {
		t.Fatalf("troupe status --wait: %v\n%s", err, out)
	}
	// Nothing to wait for: a bad range is refused at once.
	if out, err := exec.Command(troupeBin, "status", "--wait", "-1s", "--addr", n.URL).CombinedOutput(); err == nil || !strings.Contains(string(out), "between 0 and 24h") {
		t.Fatalf("--wait -1s: %v\n%s", err, out)
	}
}
