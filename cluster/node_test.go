package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/cluster/clustertest"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// openTestNode opens a node with cfg, its own logger, metrics and actor
// system; the returned stop shuts all of it down, once.
func openTestNode(t testing.TB, cfg Config) (*Node, func()) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	set := metrics.NewSet()
	sys := actors.NewSystem(logger, set)
	n, err := Open(cfg, logger, set, sys, func() (storage.NewUser, error) {
		return storage.NewUser{Name: "Admin", Email: "admin@troupe.local"}, nil
	})
	if err != nil {
		sys.Shutdown()
		t.Fatal(err)
	}
	var once sync.Once
	return n, func() {
		once.Do(func() {
			if err := n.Shutdown(); err != nil {
				t.Logf("shutdown %s: %v", cfg.NodeID, err)
			}
			sys.Shutdown()
		})
	}
}

// testNode opens a one-node cluster in dir and waits until it is ready.
func testNode(t testing.TB, dir string) (*Node, func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.RaftAddr = clustertest.FreeAddr(t)
	cfg.UserShards = 4
	n, stop := openTestNode(t, cfg)
	if err := n.WaitInitialised(time.Now().Add(10*time.Second), true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("node not ready: %v", n.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return n, stop
}

func createUser(t testing.TB, n *Node, name, email string) storage.Result {
	t.Helper()
	stamp := n.Stamps(1)
	id := storage.MakeUserID(stamp, n.Users().HomeShardFor(email))
	res, idx, err := n.Propose(context.Background(), &storage.Command{Kind: storage.CmdUserCreate, Stamp: stamp,
		Create: &storage.BatchItem{ID: id, User: storage.NewUser{Name: name, Email: email, Role: storage.RoleUser}}},
		time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if idx == 0 {
		t.Fatal("no index")
	}
	return res
}

func TestNodeCreateReadRestart(t *testing.T) {
	dir := t.TempDir()
	n, stop := testNode(t, dir)
	res := createUser(t, n, "Ada", "ada@example.com")
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if again := createUser(t, n, "Ada2", "ADA@example.com"); again.Err == nil || again.Err.Kind != storage.KindConflict {
		t.Fatalf("duplicate email: %+v", again)
	}
	if err := n.ReadBarrier(context.Background(), replica.Linearizable, 0, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := n.Users().Get(res.User.ID, time.Now().Add(time.Second))
	if err != nil || got.Email != "ada@example.com" {
		t.Fatalf("get: %v %+v", err, got)
	}
	stop()

	n, stop = testNode(t, dir)
	defer stop()
	if err := n.ReadBarrier(context.Background(), replica.Linearizable, 0, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err = n.Users().Get(res.User.ID, time.Now().Add(time.Second))
	if err != nil || got.Name != "Ada" {
		t.Fatalf("after restart: %v %+v", err, got)
	}
	c, err := n.Users().Count("", time.Now().Add(time.Second))
	if err != nil || c != 2 {
		t.Fatalf("count %d %v (want admin + Ada)", c, err)
	}
}

func TestRestartFromSnapshotAndLog(t *testing.T) {
	dir := t.TempDir()
	n, stop := testNode(t, dir)
	var ids []string
	for i := range 50 {
		ids = append(ids, createUser(t, n, "User", fmt.Sprintf("s%d@example.com", i)).User.ID)
	}
	if err := n.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		ids = append(ids, createUser(t, n, "Later", fmt.Sprintf("l%d@example.com", i)).User.ID)
	}
	applied := n.FSM().AppliedIndex()
	stop()

	n, stop = testNode(t, dir)
	defer stop()
	if err := n.ReadBarrier(context.Background(), replica.Linearizable, applied, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := n.Users().Get(id, time.Now().Add(time.Second)); err != nil {
			t.Fatalf("user %s lost: %v", id, err)
		}
	}
	// A new leader never reuses stamps: a create after restart gets an id
	// that sorts after every earlier one.
	res := createUser(t, n, "New", "new@example.com")
	for _, id := range ids {
		if res.User.ID <= id {
			t.Fatalf("new id %s does not sort after %s", res.User.ID, id)
		}
	}
}

func TestUserShardsMismatchIsRefused(t *testing.T) {
	dir := t.TempDir()
	_, stop := testNode(t, dir) // 4 shards
	stop()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.RaftAddr = clustertest.FreeAddr(t)
	cfg.UserShards = 8
	n, stop := openTestNode(t, cfg)
	defer stop()
	err := n.WaitInitialised(time.Now().Add(10*time.Second), true)
	if err == nil || !strings.Contains(err.Error(), "user-shards") {
		t.Fatalf("mismatch not refused: %v", err)
	}
	if err := n.WaitInitialised(time.Now().Add(10*time.Second), false); err != nil {
		t.Fatalf("without the flag the node follows the cluster: %v", err)
	}
}

func TestLinearizableReadsBothPaths(t *testing.T) {
	n, stop := testNode(t, t.TempDir())
	defer stop()
	if n.soloTerm.Load() != n.raft.CurrentTerm() {
		t.Fatal("a one-node leader did not take the solo read path")
	}
	res := createUser(t, n, "Ada", "ada@example.com")
	for _, solo := range []bool{true, false} {
		if !solo {
			n.soloTerm.Store(0) // as a membership change would: reads verify leadership
		}
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					if err := n.ReadBarrier(context.Background(), replica.Linearizable, 0, time.Now().Add(5*time.Second)); err != nil {
						t.Error(err)
						return
					}
					if _, err := n.Users().Get(res.User.ID, time.Now().Add(5*time.Second)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
}

// Commands a follower built carry its stamps; the leader stamps them anew,
// so ids come from the leader's clock, and a batch shares group commits.
func TestProposeRestamped(t *testing.T) {
	n, stop := testNode(t, t.TempDir())
	defer stop()
	var cmds []*storage.Command
	for i, email := range []string{"r1@example.com", "r2@example.com", "r1@example.com"} {
		cmds = append(cmds, &storage.Command{Kind: storage.CmdUserCreate, Stamp: 1, RequestID: fmt.Sprintf("-:fwd-%d", i),
			Create: &storage.BatchItem{ID: storage.MakeUserID(1, n.Users().HomeShardFor(email)), User: storage.NewUser{Name: "R", Email: email, Role: storage.RoleUser}}})
	}
	out := n.ProposeRestamped(context.Background(), cmds, time.Now().Add(5*time.Second))
	seen := map[string]bool{}
	for i, p := range out[:2] {
		if p.Err != nil || p.Result.Err != nil || p.Index == 0 {
			t.Fatalf("%d: %+v", i, p)
		}
		stamp, _, _ := storage.ParseUserID(p.Result.User.ID)
		if stamp <= 1 || seen[p.Result.User.ID] {
			t.Fatalf("%d: id %s not from a fresh stamp", i, p.Result.User.ID)
		}
		seen[p.Result.User.ID] = true
	}
	if r := out[2].Result; out[2].Err != nil || r.Err == nil || r.Err.Kind != storage.KindConflict {
		t.Fatalf("duplicate email: %+v", out[2])
	}

	// More than MaxMulti: one entry per MaxMulti, every result in place.
	cmds = cmds[:0]
	for i := range storage.MaxMulti + 44 {
		email := fmt.Sprintf("many%d@example.com", i)
		cmds = append(cmds, &storage.Command{Kind: storage.CmdUserCreate, Stamp: 1, RequestID: fmt.Sprintf("-:many-%d", i),
			Create: &storage.BatchItem{ID: storage.MakeUserID(1, n.Users().HomeShardFor(email)), User: storage.NewUser{Name: "M", Email: email, Role: storage.RoleUser}}})
	}
	out = n.ProposeRestamped(context.Background(), cmds, time.Now().Add(5*time.Second))
	for i, p := range out {
		if p.Err != nil || p.Result.Err != nil || p.Result.User.Email != cmds[i].Create.User.Email {
			t.Fatalf("%d: %+v", i, p)
		}
	}
	if first, last := out[0].Index, out[len(out)-1].Index; out[storage.MaxMulti-1].Index != first || out[storage.MaxMulti].Index != last || first == last {
		t.Fatalf("indexes %d, %d, %d, %d: want one entry per %d commands", first, out[storage.MaxMulti-1].Index, out[storage.MaxMulti].Index, last, storage.MaxMulti)
	}
}

// Concurrent proposals share log entries (group.go) and each still gets
// its own result, forwarded batches among them.
func TestGroupProposals(t *testing.T) {
	n, stop := testNode(t, t.TempDir())
	defer stop()
	before := n.raft.LastIndex()
	counted := func() uint64 {
		c, _ := strconv.ParseUint(sinkSamples(t, n.metrics)["troupe_raft_entry_commands_count"], 10, 64)
		return c
	}
	countedBefore := counted()
	const writers, each = 32, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]string{} // id → email
	record := func(t *testing.T, r storage.Result, err error, email string) {
		if err != nil || r.Err != nil || r.User == nil || r.User.Email != email {
			t.Errorf("%s: %+v %v", email, r, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if other, dup := ids[r.User.ID]; dup {
			t.Errorf("id %s given to %s and %s", r.User.ID, other, email)
		}
		ids[r.User.ID] = email
	}
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				email := fmt.Sprintf("g%d-%d@example.com", w, i)
				if w%8 == 0 {
					// A forwarded batch of three, the last a duplicate.
					var cmds []*storage.Command
					for _, e := range []string{email, "x" + email, email} {
						cmds = append(cmds, &storage.Command{Kind: storage.CmdUserCreate, Stamp: 1,
							Create: &storage.BatchItem{ID: storage.MakeUserID(1, n.Users().HomeShardFor(e)), User: storage.NewUser{Name: "F", Email: e, Role: storage.RoleUser}}})
					}
					out := n.ProposeRestamped(context.Background(), cmds, time.Now().Add(10*time.Second))
					record(t, out[0].Result, out[0].Err, email)
					record(t, out[1].Result, out[1].Err, "x"+email)
					if r := out[2].Result; out[2].Err != nil || r.Err == nil || r.Err.Kind != storage.KindConflict {
						t.Errorf("duplicate %s: %+v", email, out[2])
					}
					continue
				}
				stamp := n.Stamps(1)
				cmd := &storage.Command{Kind: storage.CmdUserCreate, Stamp: stamp,
					Create: &storage.BatchItem{ID: storage.MakeUserID(stamp, n.Users().HomeShardFor(email)), User: storage.NewUser{Name: "G", Email: email, Role: storage.RoleUser}}}
				r, idx, err := n.Propose(context.Background(), cmd, time.Now().Add(10*time.Second))
				if err == nil && idx <= before {
					t.Errorf("%s: index %d", email, idx)
				}
				record(t, r, err, email)
			}
		})
	}
	wg.Wait()
	users := writers*each + writers/8*each
	if len(ids) != users {
		t.Fatalf("%d users created, want %d", len(ids), users)
	}
	for id, email := range ids {
		u, err := n.Users().Get(id, time.Now().Add(time.Second))
		if err != nil || u == nil || u.Email != email {
			t.Fatalf("%s: %+v %v", id, u, err)
		}
	}
	commands := writers*each + writers/8*each*2
	entries := n.raft.LastIndex() - before
	if entries >= uint64(commands) {
		t.Fatalf("%d commands took %d log entries: none shared one", commands, entries)
	}
	if c := counted() - countedBefore; c != entries {
		t.Fatalf("troupe_raft_entry_commands counted %d entries, the log grew by %d", c, entries)
	}
}

// Proposers caught by a shutdown return: raft may leave a future it had
// queued unanswered, and neither its proposer nor those queued behind it
// may wait for it forever.
func TestProposersReturnOnShutdown(t *testing.T) {
	for round := range 3 {
		n, stop := testNode(t, t.TempDir())
		users := n.Users() // n.Users is nil once the node has stopped
		var wg sync.WaitGroup
		var blocked atomic.Int64
		for w := range 32 {
			blocked.Add(1)
			wg.Go(func() {
				defer blocked.Add(-1)
				for i := 0; ; i++ {
					email := fmt.Sprintf("s%d-%d-%d@example.com", round, w, i)
					stamp := n.Stamps(1)
					cmd := &storage.Command{Kind: storage.CmdUserCreate, Stamp: stamp,
						Create: &storage.BatchItem{ID: storage.MakeUserID(stamp, users.HomeShardFor(email)), User: storage.NewUser{Name: "S", Email: email, Role: storage.RoleUser}}}
					if _, _, err := n.Propose(context.Background(), cmd, time.Now().Add(2*time.Second)); err != nil {
						return
					}
				}
			})
		}
		time.Sleep(100 * time.Millisecond)
		stop()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: %d proposers still waiting 10 s after shutdown", round, blocked.Load())
		}
	}
}

// A node with no state to serve says why: one waiting to join knows no
// leader; an initialised one is ready.
func TestNotInitialisedSaysWhy(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.RaftAddr = clustertest.FreeAddr(t)
	cfg.Mode = Join
	n, stop := openTestNode(t, cfg)
	defer stop()
	err := n.NotInitialised()
	if !errors.Is(err, replica.ErrNotReady) || !strings.Contains(err.Error(), "no leader is known yet") {
		t.Fatalf("a joining node: %v", err)
	}
	if err := n.Ready(); !errors.Is(err, replica.ErrNotReady) {
		t.Fatalf("a joining node is ready: %v", err)
	}
	m, stopM := testNode(t, t.TempDir())
	defer stopM()
	if err := m.Ready(); err != nil {
		t.Fatalf("an initialised node: %v", err)
	}
}
