package systemtest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

// TestLinearizableUnderLeaderKill treats each user's name as a register:
// writes set it, linearizable reads return it. Operations go to every
// node of a three-process cluster while the test kills the leader with
// SIGKILL and brings it back; porcupine then checks the history.
func TestLinearizableUnderLeaderKill(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	timing := []string{"--raft-heartbeat-timeout", "300ms", "--raft-election-timeout", "300ms", "--request-timeout", "3s"}
	ca := newNodeConfig(t, "a")
	ca.ExtraArgs = append(append(ca.ExtraArgs, "--bootstrap"), timing...)
	nodes := []*node{startNode(t, ca)}
	for _, id := range []string{"b", "c"} {
		c := newNodeConfig(t, id)
		c.ExtraArgs = append(append(c.ExtraArgs, "--join", "http://"+ca.HTTPAddr), timing...)
		nodes = append(nodes, startNode(t, c))
	}
	const keys = 6
	var ids []string
	for i := range keys {
		u := expectUser(t, nodes[0].do(t, "POST", "/v1/users", map[string]string{"name": "initial", "email": fmt.Sprintf("reg%d@example.com", i)}, nil), 201)
		ids = append(ids, u.ID)
	}

	var (
		mu       sync.Mutex
		history  []porcupine.Operation
		seq      atomic.Int64
		nodesMu  sync.RWMutex
		stop     atomic.Bool
		acked    atomic.Int64
		unknowns atomic.Int64
	)
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var wg sync.WaitGroup
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for !stop.Load() {
				nodesMu.RLock()
				n := nodes[rng.IntN(len(nodes))]
				nodesMu.RUnlock()
				key := ids[rng.IntN(len(ids))]
				op := porcupine.Operation{ClientId: c, Call: now()}
				if rng.IntN(2) == 0 {
					v := fmt.Sprintf("v%d", seq.Add(1))
					op.Input = clustertest.RegOp{Key: key, Write: true, Value: v}
					r, err := n.send(t.Context(), "PATCH", userPath(key), map[string]string{"name": v}, nil)
					switch {
					case err == nil && r.Status == 200:
						op.Return = now()
						acked.Add(1)
					default:
						// Unknown outcome: the write may take effect at any
						// time after its call.
						op.Return = math.MaxInt64
						unknowns.Add(1)
					}
					op.Output = ""
				} else {
					op.Input = clustertest.RegOp{Key: key}
					r, err := n.send(t.Context(), "GET", userPath(key), nil, nil)
					if err != nil || r.Status != 200 {
						continue // a failed read says nothing
					}
					var u user
					if json.Unmarshal(r.Body, &u) != nil {
						continue
					}
					op.Return = now()
					op.Output = u.Name
				}
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
			}
		}()
	}

	// One kill-and-restart round by default; `make torture` sets
	// TROUPE_TORTURE_ROUNDS for many.
	rounds := 1
	if v, err := strconv.Atoi(os.Getenv("TROUPE_TORTURE_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	for round := range rounds {
		time.Sleep(1500 * time.Millisecond)
		leader := -1
		for i, n := range nodes {
			if st := status(t, n); st.Leader != nil && st.Leader.ID == n.cfg.ID {
				leader = i
			}
		}
		if leader < 0 {
			leader = round % len(nodes) // no leader known: kill any node
		}
		t.Logf("round %d: killing the leader %s", round+1, nodes[leader].cfg.ID)
		nodes[leader].Kill(t)
		time.Sleep(2500 * time.Millisecond)
		restarted := nodes[leader].Restart(t)
		nodesMu.Lock()
		nodes[leader] = restarted
		nodesMu.Unlock()
	}
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	res, info := porcupine.CheckOperationsVerbose(clustertest.RegisterModel, history, 60*time.Second)
	t.Logf("checked %d operations (%d acknowledged writes, %d writes with unknown outcome): %v",
		len(history), acked.Load(), unknowns.Load(), res)
	if res != porcupine.Ok {
		if res == porcupine.Illegal {
			path := t.TempDir() + "/linearizability.html"
			if err := porcupine.VisualizePath(clustertest.RegisterModel, info, path); err == nil {
				t.Logf("visualization: %s", path)
			}
		}
		t.Fatalf("history is not linearizable (%v)", res)
	}
	if acked.Load() == 0 {
		t.Fatal("no write was acknowledged: the test checked nothing")
	}
	sameHashes(t, nodes...)
}
