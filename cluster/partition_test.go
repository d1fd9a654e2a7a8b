package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/storage"
)

// netSim is a network between in-process nodes whose links the test can
// cut and heal. Every raft connection starts with the dialer's id, so
// both ends know which link a connection belongs to; cutting a link
// closes its connections and refuses new ones, in both directions.
type netSim struct {
	mu    sync.Mutex
	cut   map[[2]string]bool
	conns map[[2]string][]net.Conn
}

func newNetSim() *netSim {
	return &netSim{cut: map[[2]string]bool{}, conns: map[[2]string][]net.Conn{}}
}

func link(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// partition cuts every link between the two groups.
func (s *netSim) partition(side []string, others []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range side {
		for _, b := range others {
			l := link(a, b)
			s.cut[l] = true
			for _, c := range s.conns[l] {
				c.Close()
			}
			delete(s.conns, l)
		}
	}
}

func (s *netSim) heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut = map[[2]string]bool{}
}

// track records a connection of a link; false if the link is cut.
func (s *netSim) track(a, b string, c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut[link(a, b)] {
		return false
	}
	s.conns[link(a, b)] = append(s.conns[link(a, b)], c)
	return true
}

// simLayer is one node's raft.StreamLayer on the simulated network.
type simLayer struct {
	id    string
	ln    net.Listener
	sim   *netSim
	peers func(addr string) string // raft address → node id
}

func (l *simLayer) Accept() (net.Conn, error) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return nil, err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		from, err := bufio.NewReader(&oneByteReader{c}).ReadString('\n')
		_ = c.SetReadDeadline(time.Time{})
		if err != nil || !l.sim.track(from[:len(from)-1], l.id, c) {
			c.Close()
			continue
		}
		return c, nil
	}
}

// oneByteReader keeps bufio from reading past the hello line.
type oneByteReader struct{ c net.Conn }

func (r *oneByteReader) Read(p []byte) (int, error) { return r.c.Read(p[:1]) }

func (l *simLayer) Close() error   { return l.ln.Close() }
func (l *simLayer) Addr() net.Addr { return l.ln.Addr() }

func (l *simLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	to := l.peers(string(addr))
	l.sim.mu.Lock()
	cut := l.sim.cut[link(l.id, to)]
	l.sim.mu.Unlock()
	if cut {
		return nil, errors.New("link cut")
	}
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(c, "%s\n", l.id); err != nil || !l.sim.track(l.id, to, c) {
		c.Close()
		return nil, errors.New("link cut")
	}
	return c, nil
}

// simCluster is n nodes on a netSim, formed by the first.
type simCluster struct {
	t     *testing.T
	sim   *netSim
	ids   []string
	nodes map[string]*Node
	stops []func()
}

func newSimCluster(t *testing.T, size int) *simCluster {
	c := &simCluster{t: t, sim: newNetSim(), nodes: map[string]*Node{}}
	byAddr := map[string]string{}
	var mu sync.Mutex
	peers := func(addr string) string { mu.Lock(); defer mu.Unlock(); return byAddr[addr] }
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		byAddr[ln.Addr().String()] = id
		mu.Unlock()
		mode := Join
		if i == 0 {
			mode = Bootstrap
		}
		layer := &simLayer{id: id, ln: ln, sim: c.sim, peers: peers}
		n, stop := startMemberWith(t, id, mode, t.TempDir(), ln.Addr().String(), func(cfg *Config) { cfg.StreamLayer = layer })
		c.ids = append(c.ids, id)
		c.nodes[id] = n
		c.stops = append(c.stops, stop)
	}
	t.Cleanup(func() {
		c.sim.heal()
		for _, stop := range c.stops {
			stop()
		}
	})
	first := c.nodes[c.ids[0]]
	waitFor(t, "the first node to lead", func() bool { return first.Ready() == nil })
	for _, id := range c.ids[1:] {
		if err := first.AddMember(c.nodes[id].self(), true, time.Now().Add(10*time.Second)); err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
	}
	return c
}

// leaderAmong returns the ready leader among ids, waiting for one.
func (c *simCluster) leaderAmong(ids ...string) *Node {
	c.t.Helper()
	var l *Node
	waitFor(c.t, fmt.Sprintf("a leader among %v", ids), func() bool {
		for _, id := range ids {
			if n := c.nodes[id]; n.IsLeader() && n.Ready() == nil {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func (c *simCluster) others(except ...string) []string {
	var out []string
	for _, id := range c.ids {
		skip := false
		for _, e := range except {
			skip = skip || id == e
		}
		if !skip {
			out = append(out, id)
		}
	}
	return out
}

// converged waits until every node has applied the same index, then
// checks their state hashes agree.
func (c *simCluster) converged() {
	c.t.Helper()
	waitFor(c.t, "every node at one index", func() bool {
		idx := c.nodes[c.ids[0]].FSM().AppliedIndex()
		for _, id := range c.ids[1:] {
			if c.nodes[id].FSM().AppliedIndex() != idx {
				return false
			}
		}
		return true
	})
	_, h0 := stateHash(c.nodes[c.ids[0]])
	for _, id := range c.ids[1:] {
		if _, h := stateHash(c.nodes[id]); h != h0 {
			c.t.Fatalf("%s disagrees with %s", id, c.ids[0])
		}
	}
}

func TestPartitionIsolatedLeader(t *testing.T) {
	c := newSimCluster(t, 3)
	old := c.leaderAmong(c.ids...)
	oldID := old.cfg.NodeID
	var acked []string
	for i := range 10 {
		acked = append(acked, createUser(t, old, "Before", fmt.Sprintf("p%d@example.com", i)).User.ID)
	}
	rest := c.others(oldID)
	c.sim.partition([]string{oldID}, rest)
	// The majority elects a new leader and takes writes.
	l := c.leaderAmong(rest...)
	for i := range 10 {
		acked = append(acked, createUser(t, l, "During", fmt.Sprintf("d%d@example.com", i)).User.ID)
	}
	// The isolated old leader cannot commit: it steps down or fails.
	if _, _, err := old.Propose(context.Background(), &storage.Command{Kind: storage.CmdNoop, Stamp: old.Stamps(1)}, time.Now().Add(3*time.Second)); err == nil {
		t.Fatal("an isolated leader committed a write")
	}
	c.sim.heal()
	c.converged()
	if old.IsLeader() && l.IsLeader() {
		t.Fatal("two leaders after healing")
	}
	for _, id := range acked {
		if _, err := old.Users().Get(id, time.Now().Add(time.Second)); err != nil {
			t.Fatalf("acknowledged write %s missing on the old leader: %v", id, err)
		}
	}
}

func TestPartitionMinorityOfFive(t *testing.T) {
	c := newSimCluster(t, 5)
	l := c.leaderAmong(c.ids...)
	minority := c.others(l.cfg.NodeID)[:2]
	c.sim.partition(minority, c.others(minority...))
	for i := range 30 {
		createUser(t, l, "Majority", fmt.Sprintf("m%d@example.com", i))
	}
	// Flap one of the minority's links a few times while writing.
	for i := range 3 {
		c.sim.heal()
		createUser(t, l, "Flap", fmt.Sprintf("f%d@example.com", i))
		c.sim.partition(minority[:1], c.others(minority[:1]...))
	}
	c.sim.heal()
	c.converged()
}
