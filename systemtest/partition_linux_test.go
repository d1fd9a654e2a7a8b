//go:build linux

package systemtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLinearizableUnderPartitions runs a three-process cluster, each
// process in its own network namespace, and partitions it with iptables
// while clients keep using every node: the leader is cut off from both
// followers (clients still reach it, so a deposed leader keeps getting
// requests), then one follower, then only the link between the leader and
// one follower. Each user's name is a register (writes set it,
// linearizable reads return it) and porcupine checks the history; users
// created meanwhile must all exist on every node once the network is
// healed, and the replicas' state hashes must agree.
func TestLinearizableUnderPartitions(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	lab := newNetLab(t, 3)
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("TROUPE_PARTITION_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (TROUPE_PARTITION_SEED repeats the clients' and the schedule's choices)", seed)

	timing := []string{"--raft-heartbeat-timeout", "300ms", "--raft-election-timeout", "300ms", "--request-timeout", "3s"}
	ca := lab.nodeConfig(t, 0, "a")
	ca.ExtraArgs = append(append(ca.ExtraArgs, "--bootstrap"), timing...)
	nodes := []*node{startNode(t, ca)}
	for i, id := range []string{"b", "c"} {
		c := lab.nodeConfig(t, i+1, id)
		c.ExtraArgs = append(append(c.ExtraArgs, "--join", "http://"+ca.HTTPAddr), timing...)
		nodes = append(nodes, startNode(t, c))
	}
	for _, n := range nodes {
		// ip netns exec execs troupe: the pid the test kills is troupe's.
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", n.Cmd.Process.Pid)); err != nil || exe != troupeBin {
			t.Fatalf("node %s: pid %d runs %q (%v), want %s", n.cfg.ID, n.Cmd.Process.Pid, exe, err, troupeBin)
		}
	}
	if st := status(t, nodes[2]); len(st.Members) != 3 {
		t.Fatalf("cluster as c sees it: %+v", st)
	}

	const keys = 6
	var ids []string
	for i := range keys {
		u := expectUser(t, nodes[0].do(t, "POST", "/v1/users", map[string]string{"name": "initial", "email": fmt.Sprintf("reg%d@example.com", i)}, nil), 201)
		ids = append(ids, u.ID)
	}

	const (
		// Well above --request-timeout, so that the node's own answer
		// normally comes first; short enough to bound every loop.
		reqTimeout = 10 * time.Second
		// Answers slower than this are listed in the log.
		slowAnswer = 4 * time.Second
	)

	var (
		mu       sync.Mutex
		regs     = newRegisters()
		created  []string              // ids of acknowledged creates
		outcomes = map[string]*tally{} // "PATCH 200", "GET client timeout", ...
		failures []string              // the first few failed requests, for the log
		slow     []string              // the first few answers slower than slowAnswer
		seq      atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	// Also on t.Fatal: the load must end before the nodes are killed.
	defer func() {
		stop.Store(true)
		cancel()
		wg.Wait()
	}()
	start := time.Now()
	send := func(n *node, method, path string, body any) (response, error) {
		rctx, rcancel := context.WithTimeout(ctx, reqTimeout)
		defer rcancel()
		began := time.Now()
		r, err := n.send(rctx, method, path, body, nil)
		outcome := method + " " + strconv.Itoa(r.Status)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			outcome = method + " client timeout"
		case err != nil:
			outcome = method + " transport error"
		}
		took := time.Since(began)
		mu.Lock()
		o := outcomes[outcome]
		if o == nil {
			o = &tally{}
			outcomes[outcome] = o
		}
		o.n++
		o.slowest = max(o.slowest, took)
		failed := err != nil || r.Status >= 300
		if (failed && len(failures) < 10) || (took > slowAnswer && len(slow) < 20) {
			detail := fmt.Sprint(err)
			if err == nil {
				detail = strings.TrimSpace(string(r.Body[:min(len(r.Body), 200)]))
			}
			line := fmt.Sprintf("%6.2fs +%v %s %s via %s: %s: %s", began.Sub(start).Seconds(),
				took.Round(time.Millisecond), method, path, n.cfg.ID, outcome, detail)
			if failed && len(failures) < 10 {
				failures = append(failures, line)
			}
			if took > slowAnswer && len(slow) < 20 {
				slow = append(slow, line)
			}
		}
		mu.Unlock()
		return r, err
	}
	for c := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			for !stop.Load() {
				n := nodes[rng.IntN(len(nodes))]
				key := ids[rng.IntN(len(ids))]
				via := func(method, path string, body any) (response, error) { return send(n, method, path, body) }
				if rng.IntN(2) == 0 {
					regs.write(c, via, key, fmt.Sprintf("v%d", seq.Add(1)))
				} else {
					regs.read(c, via, key)
				}
			}
		})
	}
	for g := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(100+g)))
			for i := 0; !stop.Load(); i++ {
				n := nodes[rng.IntN(len(nodes))]
				body := map[string]string{"name": "P", "email": fmt.Sprintf("part-%d-%d@example.com", g, i)}
				r, err := send(n, "POST", "/v1/users", body)
				if err != nil || r.Status != 201 {
					continue // unknown outcome, or refused: nothing to check
				}
				u, err := parseUser(r.Body)
				if err != nil {
					t.Errorf("POST /v1/users through %s: %v", n.cfg.ID, err)
					continue
				}
				mu.Lock()
				created = append(created, u.ID)
				mu.Unlock()
			}
		})
	}

	// One round of faults by default; `make torture` sets
	// TROUPE_TORTURE_ROUNDS for many.
	rounds := 1
	if v, err := strconv.Atoi(os.Getenv("TROUPE_TORTURE_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	rng := rand.New(rand.NewPCG(seed, 1000))
	other := func(not ...int) int {
		for {
			i := rng.IntN(len(nodes))
			if !slices.Contains(not, i) {
				return i
			}
		}
	}
	phase := func(what string, d time.Duration) {
		t.Logf("%6.1fs %s", time.Since(start).Seconds(), what)
		time.Sleep(d)
	}
	for round := range rounds {
		phase(fmt.Sprintf("round %d: load", round+1), 1500*time.Millisecond)
		l := findLeader(t, nodes)
		lab.isolate(l)
		phase(fmt.Sprintf("leader %s isolated", nodes[l].cfg.ID), 3*time.Second)
		lab.heal()
		phase("healed", 2*time.Second)
		l = findLeader(t, nodes)
		f := other(l)
		lab.isolate(f)
		phase(fmt.Sprintf("follower %s isolated (leader %s)", nodes[f].cfg.ID, nodes[l].cfg.ID), 3*time.Second)
		lab.heal()
		l = findLeader(t, nodes)
		f = other(l)
		lab.cut(l, f)
		phase(fmt.Sprintf("link %s–%s cut (leader %s)", nodes[l].cfg.ID, nodes[f].cfg.ID, nodes[l].cfg.ID), 3*time.Second)
		lab.heal()
	}
	phase("healed: load", 1500*time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("%6.1fs load stopped", time.Since(start).Seconds())
	var summary []string
	for k, v := range outcomes {
		summary = append(summary, fmt.Sprintf("%s: %d (slowest %v)", k, v.n, v.slowest.Round(time.Millisecond)))
	}
	sort.Strings(summary)
	t.Logf("answers: %s", strings.Join(summary, ", "))
	if len(failures) > 0 {
		t.Logf("first failed requests (start, duration, request, node, outcome):\n%s", strings.Join(failures, "\n"))
	}
	if len(slow) > 0 {
		t.Logf("answers slower than %v (--request-timeout is 3s):\n%s", slowAnswer, strings.Join(slow, "\n"))
	}

	regs.check(t, fmt.Sprintf("seed %d", seed))

	// Once the replicas report one applied index, that index is at least
	// that of every acknowledged create (the leader that acknowledged one
	// had applied it), so stale reads on every node must find them all.
	sameHashes(t, nodes...)
	for _, n := range nodes {
		var missing []string
		for _, id := range created {
			r, err := n.send(t.Context(), "GET", userPath(id)+"?consistency=stale", nil, nil)
			if err != nil || r.Status != 200 {
				missing = append(missing, fmt.Sprintf("%s (%v %v)", id, r.Status, err))
			}
		}
		if len(missing) > 0 {
			t.Errorf("node %s lacks %d of %d acknowledged creates, e.g. %s", n.cfg.ID, len(missing), len(created), strings.Join(missing[:min(5, len(missing))], ", "))
		}
	}
	t.Logf("%d acknowledged creates looked up on every node; total %v", len(created), time.Since(start).Round(100*time.Millisecond))
	if len(created) == 0 {
		t.Error("no create was acknowledged: the test checked nothing")
	}
}

// tally counts the answers of one kind.
type tally struct {
	n       int
	slowest time.Duration
}

// findLeader returns the index of the node that a majority of the nodes
// name as leader, waiting for one.
func findLeader(t *testing.T, nodes []*node) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		votes := map[string]int{}
		for _, n := range nodes {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			r, err := n.send(ctx, "GET", "/v1/cluster", nil, nil)
			cancel()
			var st clusterStatus
			if err == nil && r.Status == 200 && json.Unmarshal(r.Body, &st) == nil && st.Leader != nil {
				votes[st.Leader.ID]++
			}
		}
		for i, n := range nodes {
			if votes[n.cfg.ID] > len(nodes)/2 {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader named by a majority within 20s (votes %v)", votes)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
