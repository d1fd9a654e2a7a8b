package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/cluster/clustertest"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// testCluster is a cluster of real nodes in this process, raft over
// loopback TCP, with multi-node timeouts short enough for tests.
type testCluster struct {
	t     *testing.T
	nodes map[string]*Node
	stops map[string]func()
}

func startMember(t *testing.T, id string, mode Mode, dir, raftAddr string) (*Node, func()) {
	t.Helper()
	return startMemberWith(t, id, mode, dir, raftAddr, nil)
}

func startMemberWith(t *testing.T, id string, mode Mode, dir, raftAddr string, tune func(*Config)) (*Node, func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.RaftAddr, cfg.Mode = id, dir, raftAddr, mode
	cfg.AdvertiseHTTP = "127.0.0.1:1" + raftAddr[len(raftAddr)-4:] // a stand-in: no HTTP here
	// Generous timeouts (with -race on two shared cores, 300 ms let
	// leadership move in the middle of tests that write through one node).
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
	cfg.UserShards = 4
	if tune != nil {
		tune(&cfg)
	}
	return openTestNode(t, cfg)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *testCluster) leader() *Node {
	for _, n := range c.nodes {
		if n.raft.State() == raft.Leader && n.Ready() == nil {
			return n
		}
	}
	return nil
}

func stateHash(n *Node) (uint64, [32]byte) {
	snap := n.fsm.capture()
	var buf bytes.Buffer
	_ = storage.WriteSnapshot(&buf, snap)
	return snap.Meta.Index, sha256.Sum256(buf.Bytes())
}

func TestThreeNodeCluster(t *testing.T) {
	c := &testCluster{t: t, nodes: map[string]*Node{}, stops: map[string]func(){}}
	defer func() {
		for _, stop := range c.stops {
			stop()
		}
	}()
	addrs := map[string]string{}
	for _, id := range []string{"n1", "n2", "n3"} {
		mode := Join
		if id == "n1" {
			mode = Bootstrap
		}
		addrs[id] = clustertest.FreeAddr(t)
		c.nodes[id], c.stops[id] = startMember(t, id, mode, t.TempDir(), addrs[id])
	}
	n1 := c.nodes["n1"]
	waitFor(t, "n1 to lead", func() bool { return n1.Ready() == nil })
	for _, id := range []string{"n2", "n3"} {
		m := c.nodes[id].self()
		if err := n1.AddMember(m, true, time.Now().Add(10*time.Second)); err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
		// Adding again is a no-op.
		if err := n1.AddMember(m, true, time.Now().Add(10*time.Second)); err != nil {
			t.Fatalf("re-add %s: %v", id, err)
		}
	}
	if err := c.nodes["n2"].AddMember(storage.Member{ID: "x", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}, true, time.Now().Add(time.Second)); err != replica.ErrNotLeader {
		t.Fatalf("a follower added a member: %v", err)
	}
	var ids []string
	for i := range 30 {
		ids = append(ids, createUser(t, n1, "User", fmt.Sprintf("c%d@example.com", i)).User.ID)
	}
	// Every node applies everything and holds the same state.
	for id, n := range c.nodes {
		waitFor(t, id+" to catch up", func() bool { return n.Ready() == nil && n.FSM().AppliedIndex() >= n1.FSM().AppliedIndex() })
	}
	i1, h1 := stateHash(n1)
	for id, n := range c.nodes {
		if i, h := stateHash(n); i != i1 || h != h1 {
			t.Fatalf("%s: state at %d differs from n1's at %d", id, i, i1)
		}
	}
	st := c.nodes["n3"].Status("")
	if len(st.Members) != 3 || st.Leader == nil || st.Leader.ID != "n1" || st.Leader.HTTPAddr == "" {
		t.Fatalf("status on a follower: %+v", st)
	}
	for _, m := range st.Members {
		if m.HTTPAddr == "" || !m.Voter {
			t.Fatalf("member without directory entry: %+v", m)
		}
	}
	// Followers serve stale reads; a follower's node refuses to propose
	// (the HTTP layer forwards writes to the leader).
	f := c.nodes["n2"]
	if err := f.ReadBarrier(context.Background(), replica.Stale, n1.FSM().AppliedIndex(), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Users().Get(ids[0], time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Propose(context.Background(), &storage.Command{Kind: storage.CmdNoop, Stamp: f.Stamps(1)}, time.Now().Add(time.Second)); err != replica.ErrNotLeader {
		t.Fatalf("follower write: %v", err)
	}
	if f.LeaderHTTP() != n1.cfg.AdvertiseHTTP {
		t.Fatalf("leader hint %q", f.LeaderHTTP())
	}

	// The leader goes away: the others elect a new one, which has every
	// acknowledged write and accepts new ones.
	c.stops["n1"]()
	delete(c.stops, "n1")
	delete(c.nodes, "n1")
	var l *Node
	waitFor(t, "a new leader", func() bool { l = c.leader(); return l != nil })
	for _, id := range ids {
		if _, err := l.Users().Get(id, time.Now().Add(time.Second)); err != nil {
			t.Fatalf("write lost after failover: %v", err)
		}
	}
	createUser(t, l, "After", "after@example.com")
	// The old leader is removed; the remaining two keep a quorum of 2.
	if err := l.RemoveMember("n1", time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := l.RemoveMember("nobody", time.Now().Add(time.Second)); err == nil {
		t.Fatal("removed a member that does not exist")
	}
	if st := l.Status(""); len(st.Members) != 2 {
		t.Fatalf("members after removal: %+v", st.Members)
	}
}

// TestLaggingNodeCatchesUpBySnapshot stops a follower, writes enough that
// the leader's snapshot lets raft drop the log it missed, and restarts the
// follower: it catches up by installing the leader's snapshot.
func TestLaggingNodeCatchesUpBySnapshot(t *testing.T) {
	dirs := map[string]string{"n1": t.TempDir(), "n2": t.TempDir(), "n3": t.TempDir()}
	addrs := map[string]string{"n1": clustertest.FreeAddr(t), "n2": clustertest.FreeAddr(t), "n3": clustertest.FreeAddr(t)}
	start := func(id string, mode Mode) (*Node, func()) {
		return startMemberWith(t, id, mode, dirs[id], addrs[id], func(c *Config) {
			c.WALSegmentSize = 64 << 10
			c.TrailingLogs = 16
		})
	}
	n1, stop1 := start("n1", Bootstrap)
	defer stop1()
	n2, stop2 := start("n2", Join)
	defer stop2()
	n3, stop3 := start("n3", Join)
	waitFor(t, "n1 to lead", func() bool { return n1.Ready() == nil })
	for _, n := range []*Node{n2, n3} {
		if err := n1.AddMember(n.self(), true, time.Now().Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "n3 to catch up", func() bool { return n3.FSM().AppliedIndex() >= n1.FSM().AppliedIndex() })
	stop3()
	for i := range 1500 {
		createUser(t, n1, "Lagging", fmt.Sprintf("lag%d@example.com", i))
	}
	if _, err := n1.TakeSnapshot(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	first, err := n1.wal.FirstIndex()
	if err != nil || first <= 2 {
		t.Fatalf("the leader kept its whole log (first index %d, %v): the test would not need a snapshot", first, err)
	}
	n3, stop3 = start("n3", Join)
	defer stop3()
	waitFor(t, "n3 to catch up again", func() bool { return n3.FSM().AppliedIndex() >= n1.FSM().AppliedIndex() })
	// The FSM's restore moves its applied index before raft records the
	// snapshot it installed, so the record may come a moment later.
	waitFor(t, "n3 to record the leader's snapshot it caught up from", func() bool {
		return n3.raft.Stats()["last_snapshot_index"] != "0"
	})
	i1, h1 := stateHash(n1)
	if i3, h3 := stateHash(n3); i3 != i1 || h3 != h1 {
		t.Fatalf("n3 at %d differs from n1 at %d", i3, i1)
	}
}

// TestJoinRemoveRejoinCycles removes a member and adds it back (with a
// fresh data dir, as an operator replacing a node would) three times,
// writing in between; every node ends with the same state.
func TestJoinRemoveRejoinCycles(t *testing.T) {
	n1, stop1 := startMember(t, "n1", Bootstrap, t.TempDir(), clustertest.FreeAddr(t))
	defer stop1()
	n2, stop2 := startMember(t, "n2", Join, t.TempDir(), clustertest.FreeAddr(t))
	defer stop2()
	waitFor(t, "n1 to lead", func() bool { return n1.Ready() == nil })
	if err := n1.AddMember(n2.self(), true, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	addr3 := clustertest.FreeAddr(t)
	for cycle := range 3 {
		n3, stop3 := startMember(t, "n3", Join, t.TempDir(), addr3)
		if err := n1.AddMember(n3.self(), true, time.Now().Add(10*time.Second)); err != nil {
			t.Fatalf("cycle %d: add: %v", cycle, err)
		}
		for i := range 5 {
			createUser(t, n1, "Cycle", fmt.Sprintf("c%d-%d@example.com", cycle, i))
		}
		waitFor(t, "n3 to catch up", func() bool { return n3.FSM().AppliedIndex() >= n1.FSM().AppliedIndex() })
		i1, h1 := stateHash(n1)
		if i3, h3 := stateHash(n3); i3 != i1 || h3 != h1 {
			t.Fatalf("cycle %d: n3 differs", cycle)
		}
		if err := n1.RemoveMember("n3", time.Now().Add(10*time.Second)); err != nil {
			t.Fatalf("cycle %d: remove: %v", cycle, err)
		}
		stop3()
		if st := n1.Status(""); len(st.Members) != 2 {
			t.Fatalf("cycle %d: members after removal: %+v", cycle, st.Members)
		}
		// Two voters remain: writes still commit.
		createUser(t, n1, "Between", fmt.Sprintf("b%d@example.com", cycle))
	}
	waitFor(t, "n2 to catch up", func() bool { return n2.FSM().AppliedIndex() >= n1.FSM().AppliedIndex() })
	_, h1 := stateHash(n1)
	if _, h2 := stateHash(n2); h2 != h1 {
		t.Fatal("n2 differs from n1")
	}
}
