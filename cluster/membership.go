package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// self is this node as the member directory should record it.
func (n *Node) self() storage.Member {
	return storage.Member{ID: n.cfg.NodeID, HTTPAddr: n.cfg.AdvertiseHTTP, RaftAddr: string(n.trans.LocalAddr())}
}

// registerSelf records this leader's addresses in the member directory
// if they are missing or changed (after a restart on a new address).
func (n *Node) registerSelf() {
	me := n.self()
	if me.HTTPAddr == "" {
		return
	}
	if cur, ok := n.fsm.Members()[me.ID]; ok && cur == me {
		return
	}
	if err := n.proposeMember(storage.MemberChange{Member: me}, time.Now().Add(n.cfg.ApplyTimeout)); err != nil {
		n.log.Warn("cannot record this node in the member directory", slog.Any("err", err))
	}
}

func (n *Node) proposeMember(c storage.MemberChange, deadline time.Time) error {
	res, _, err := n.Propose(context.Background(), &storage.Command{Kind: storage.CmdMember, Stamp: n.Stamps(1), Member: &c}, deadline)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	return nil
}

// AddMember adds a node to the cluster, as a voter or as a learner that
// only replicates (promote it later by adding it again as a voter). It
// records its addresses first, so every node can reach its HTTP API, then
// changes raft's configuration. Adding a member that is already there
// with the same addresses succeeds and changes nothing; with a new raft
// address it updates the address (a node that moved rejoins this way).
// Only the leader can add members (ErrNotLeader otherwise).
func (n *Node) AddMember(m storage.Member, voter bool, deadline time.Time) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: %v", replica.ErrBadMember, err)
	}
	n.memberMu.Lock()
	defer n.memberMu.Unlock()
	if n.raft.State() != raft.Leader {
		return replica.ErrNotLeader
	}
	conf := n.raft.GetConfiguration()
	if err := conf.Error(); err != nil {
		return err
	}
	for _, s := range conf.Configuration().Servers {
		if string(s.ID) == m.ID && string(s.Address) == m.RaftAddr && (s.Suffrage == raft.Voter) == voter {
			if cur, ok := n.fsm.Members()[m.ID]; ok && cur == m {
				return nil
			}
		}
	}
	// From here on this leader may have company: reads verify leadership
	// again, and raft leaves the one-node timeouts.
	n.soloTerm.Store(0)
	n.leaveSoloTimeouts()
	if err := n.proposeMember(storage.MemberChange{Member: m}, deadline); err != nil {
		return err
	}
	timeout := time.Until(deadline)
	var f raft.IndexFuture
	if voter {
		f = n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, timeout)
	} else {
		f = n.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, timeout)
	}
	if err := f.Error(); err != nil {
		return mapRaftError(err)
	}
	n.log.Info("member added", slog.String("id", m.ID), slog.String("raft_addr", m.RaftAddr), slog.String("http_addr", m.HTTPAddr), slog.Bool("voter", voter))
	return nil
}

// RemoveMember removes a node from the cluster and the directory. Only
// the leader can remove members; removing the leader itself makes it
// step down once the change commits.
func (n *Node) RemoveMember(id string, deadline time.Time) error {
	n.memberMu.Lock()
	defer n.memberMu.Unlock()
	if n.raft.State() != raft.Leader {
		return replica.ErrNotLeader
	}
	found := false
	if conf := n.raft.GetConfiguration(); conf.Error() == nil {
		for _, s := range conf.Configuration().Servers {
			found = found || string(s.ID) == id
		}
	}
	if _, ok := n.fsm.Members()[id]; !found && !ok {
		return fmt.Errorf("%w: no member %q", replica.ErrNoSuchMember, id)
	}
	n.soloTerm.Store(0)
	if found {
		if err := n.raft.RemoveServer(raft.ServerID(id), 0, time.Until(deadline)).Error(); err != nil {
			return mapRaftError(err)
		}
	}
	if id == n.cfg.NodeID {
		// This leader is no longer a member: it cannot propose.
		return nil
	}
	if err := n.proposeMember(storage.MemberChange{Member: storage.Member{ID: id}, Remove: true}, deadline); err != nil {
		return err
	}
	n.log.Info("member removed", slog.String("id", id))
	return nil
}

// leaveSoloTimeouts lengthens raft's timeouts when a node that started
// alone (with SoloTimeout) gets company. raft cannot change its leader
// lease at run time, so the heartbeat stays within it until a restart.
func (n *Node) leaveSoloTimeouts() {
	if !n.soloTimeouts.CompareAndSwap(true, false) {
		return
	}
	rc := n.raft.ReloadableConfig()
	rc.HeartbeatTimeout = min(n.cfg.HeartbeatTimeout, 3*n.cfg.SoloTimeout)
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	if err := n.raft.ReloadConfig(rc); err != nil {
		n.log.Warn("cannot lengthen raft timeouts", slog.Any("err", err))
		return
	}
	n.log.Warn("this node started alone with short raft timeouts; restart it to use the cluster timeouts",
		slog.Duration("heartbeat_timeout", rc.HeartbeatTimeout))
}

func mapRaftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		return replica.ErrNotLeader
	case errors.Is(err, raft.ErrRaftShutdown):
		return replica.ErrShutdown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return replica.ErrTimeout
	}
	return err
}

// LeaderHTTP returns the leader's HTTP address as the member directory
// knows it, or "".
func (n *Node) LeaderHTTP() string {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	if id == raft.ServerID(n.cfg.NodeID) && n.cfg.AdvertiseHTTP != "" {
		return n.cfg.AdvertiseHTTP
	}
	return n.fsm.Members()[string(id)].HTTPAddr
}

// Unconfigured reports whether this node has no cluster configuration:
// a node started to join that no member has added yet.
func (n *Node) Unconfigured() bool {
	f := n.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) == 0
}

// RaftAddr is the raft address this node advertises.
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// IsLeader reports whether this node leads now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Identity returns this node's identity.
func (n *Node) Identity() replica.Identity {
	return replica.Identity{ID: n.cfg.NodeID, HTTPAddr: n.cfg.AdvertiseHTTP, RaftAddr: n.RaftAddr(), Configured: !n.Unconfigured()}
}

// BootstrapWith bootstraps a cluster whose first members are servers
// (this node among them). Every node that forms the cluster together
// calls it with the same list, sorted by id.
func (n *Node) BootstrapWith(servers []replica.Identity) error {
	conf := raft.Configuration{}
	self := false
	for _, s := range servers {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.RaftAddr), Suffrage: raft.Voter})
		self = self || s.ID == n.cfg.NodeID
	}
	if !self {
		return fmt.Errorf("%w: the servers to bootstrap with do not include this node", replica.ErrBadMember)
	}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return err
	}
	n.log.Info("bootstrapped a cluster together with its expected members", slog.Int("members", len(servers)))
	return nil
}

// Registered reports whether the member directory holds this node's
// current addresses.
func (n *Node) Registered() bool {
	cur, ok := n.fsm.Members()[n.cfg.NodeID]
	me := n.self()
	return ok && cur == me || me.HTTPAddr == ""
}
