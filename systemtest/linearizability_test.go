package systemtest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
		regs    = newRegisters()
		seq     atomic.Int64
		nodesMu sync.RWMutex
		stop    atomic.Bool
	)
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
				via := func(method, path string, body any) (response, error) {
					return n.send(t.Context(), method, path, body, nil)
				}
				if rng.IntN(2) == 0 {
					regs.write(c, via, key, fmt.Sprintf("v%d", seq.Add(1)))
				} else {
					regs.read(c, via, key)
				}
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

	regs.check(t, fmt.Sprintf("%d leader kills", rounds))
	sameHashes(t, nodes...)
}
