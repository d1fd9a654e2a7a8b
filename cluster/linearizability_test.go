package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/troupe-db/troupe/cluster/clustertest"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// TestLinearizableUnderPartitions drives writes and linearizable reads at
// every node of three while the test isolates the leader, heals, and
// isolates a follower; porcupine checks the history. A deposed leader
// must refuse reads rather than serve stale state.
func TestLinearizableUnderPartitions(t *testing.T) {
	c := newSimCluster(t, 3)
	l := c.leaderAmong(c.ids...)
	var keys []string
	for i := range 4 {
		res := createUser(t, l, "initial", fmt.Sprintf("lin%d@example.com", i))
		keys = append(keys, res.User.ID)
	}
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		stop    atomic.Bool
		seq     atomic.Int64
		reads   atomic.Int64
		writes  atomic.Int64
	)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for !stop.Load() {
				n := c.nodes[c.ids[rng.IntN(len(c.ids))]]
				key := keys[rng.IntN(len(keys))]
				op := porcupine.Operation{ClientId: w, Call: now()}
				if rng.IntN(2) == 0 {
					v := fmt.Sprintf("v%d", seq.Add(1))
					op.Input = clustertest.RegOp{Key: key, Write: true, Value: v}
					res, _, err := n.Propose(context.Background(), &storage.Command{Kind: storage.CmdUserPatch, Stamp: n.Stamps(1),
						Patch: &storage.UserPatch{ID: key, Fields: storage.PatchName, Name: v}}, time.Now().Add(2*time.Second))
					switch {
					case errors.Is(err, replica.ErrNotLeader) || errors.Is(err, replica.ErrShutdown):
						continue // never entered the log
					case err == nil && res.Err == nil:
						op.Return = now()
						writes.Add(1)
					default:
						op.Return = math.MaxInt64 // unknown: may take effect later
					}
					op.Output = ""
				} else {
					op.Input = clustertest.RegOp{Key: key}
					if err := n.ReadBarrier(context.Background(), replica.Linearizable, 0, time.Now().Add(2*time.Second)); err != nil {
						continue
					}
					u, err := n.Users().Get(key, time.Now().Add(2*time.Second))
					if err != nil {
						continue
					}
					op.Return = now()
					op.Output = u.Name
					reads.Add(1)
				}
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	old := c.leaderAmong(c.ids...).cfg.NodeID
	c.sim.partition([]string{old}, c.others(old))
	c.leaderAmong(c.others(old)...)
	time.Sleep(700 * time.Millisecond)
	c.sim.heal()
	time.Sleep(500 * time.Millisecond)
	follower := c.others(c.leaderAmong(c.ids...).cfg.NodeID)[0]
	c.sim.partition([]string{follower}, c.others(follower))
	time.Sleep(700 * time.Millisecond)
	c.sim.heal()
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	res := porcupine.CheckOperationsTimeout(clustertest.RegisterModel, history, 60*time.Second)
	t.Logf("checked %d operations (%d acknowledged writes, %d reads): %v", len(history), writes.Load(), reads.Load(), res)
	if res != porcupine.Ok {
		t.Fatalf("history is not linearizable: %v", res)
	}
	if writes.Load() == 0 || reads.Load() == 0 {
		t.Fatal("the test checked nothing")
	}
	c.converged()
}
