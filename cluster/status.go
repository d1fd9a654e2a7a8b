package cluster

import (
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/replica"
)

// Status reports the node's view of the cluster. httpAddr is this node's
// advertised HTTP address (other members' addresses come with membership
// management).
func (n *Node) Status(httpAddr string) replica.Status {
	st := replica.Status{
		NodeID:       n.cfg.NodeID,
		State:        n.raft.State().String(),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.AppliedIndex(),
		Members:      []replica.Member{},
	}
	dir := n.fsm.Members()
	httpOf := func(id string) string {
		if id == n.cfg.NodeID && httpAddr != "" {
			return httpAddr
		}
		return dir[id].HTTPAddr
	}
	leaderAddr, leaderID := n.raft.LeaderWithID()
	if leaderID != "" {
		st.Leader = &replica.Leader{ID: string(leaderID), RaftAddr: string(leaderAddr), HTTPAddr: httpOf(string(leaderID))}
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			m := replica.Member{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter, State: "follower"}
			if s.ID == leaderID {
				m.State = "leader"
			}
			if s.Suffrage != raft.Voter {
				m.State = "learner"
			}
			m.HTTPAddr = httpOf(string(s.ID))
			if n.raft.State() == raft.Leader && s.ID != leaderID {
				// Only a leader heartbeats the others.
				last, failing := n.health.failingSince(s.ID)
				reachable := !failing
				m.Reachable = &reachable
				if failing && !last.IsZero() {
					ms := time.Since(last).Milliseconds()
					m.LastContactMs = &ms
				}
			}
			st.Members = append(st.Members, m)
		}
	}
	return st
}

// Ready returns nil when this node can serve: it knows a leader, the
// cluster is initialised, it has applied the commit index it knows (within
// the configured lag) and, as leader, has confirmed its term. Otherwise it
// says why.
func (n *Node) Ready() error {
	select {
	case <-n.stop:
		return replica.ErrShutdown
	default:
	}
	_, leaderID := n.raft.LeaderWithID()
	if leaderID == "" {
		return fmt.Errorf("%w: no leader is known", replica.ErrNotReady)
	}
	if n.raft.State() == raft.Leader && n.leaderTerm.Load() != n.raft.CurrentTerm() {
		return fmt.Errorf("%w: the new leader has not yet applied earlier terms", replica.ErrNotReady)
	}
	if n.fsm.Users() == nil || n.fsm.Auth() == nil {
		return n.NotInitialised()
	}
	commit, applied := n.raft.CommitIndex(), n.fsm.AppliedIndex()
	if applied+n.cfg.ReadyLag < commit {
		return fmt.Errorf("%w: applied index %d trails commit index %d", replica.ErrNotReady, applied, commit)
	}
	return nil
}

// NotInitialised says why this node has no state to serve yet: it is
// catching up on the log (a node that joins, or restarts after being
// down, replays it or installs a snapshot first), no leader is known, or
// the cluster was never initialised.
func (n *Node) NotInitialised() error {
	commit, applied := n.raft.CommitIndex(), n.fsm.AppliedIndex()
	if applied < commit {
		return fmt.Errorf("%w: this node is catching up: applied %d of %d log entries", replica.ErrNotReady, applied, commit)
	}
	if _, leaderID := n.raft.LeaderWithID(); leaderID == "" {
		return fmt.Errorf("%w: no leader is known yet (this node is starting, joining, or cut off)", replica.ErrNotReady)
	}
	return fmt.Errorf("%w: the cluster is not initialised yet", replica.ErrNotReady)
}

func (n *Node) registerMetrics(set *metrics.Set) {
	set.NewGauge(`troupe_raft_state`, func() float64 { return float64(n.raft.State()) })
	set.NewGauge(`troupe_raft_term`, func() float64 { return float64(n.raft.CurrentTerm()) })
	set.NewGauge(`troupe_raft_commit_index`, func() float64 { return float64(n.raft.CommitIndex()) })
	set.NewGauge(`troupe_raft_last_index`, func() float64 { return float64(n.raft.LastIndex()) })
	set.NewGauge(`troupe_raft_applied_index`, func() float64 { return float64(n.fsm.AppliedIndex()) })
	set.NewGauge(`troupe_raft_apply_lag`, func() float64 {
		return float64(n.raft.CommitIndex()) - float64(n.fsm.AppliedIndex())
	})
	set.NewGauge(`troupe_raft_last_contact_seconds`, func() float64 {
		if n.raft.State() == raft.Leader {
			return 0
		}
		lc := n.raft.LastContact()
		if lc.IsZero() {
			return -1
		}
		return time.Since(lc).Seconds()
	})
}
