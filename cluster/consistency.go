package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// ReadBarrier returns once a read sent to an actor now would be allowed:
// for Linearizable, after this node confirmed its leadership and applied
// the commit index it had when the read arrived; for Stale at once. Either
// way it first waits until this node has applied minIndex. With a
// recording span in ctx, the barrier is a span ("read barrier").
func (n *Node) ReadBarrier(ctx context.Context, c replica.Consistency, minIndex uint64, deadline time.Time) error {
	if tracing.Recording(ctx) {
		return n.tracedReadBarrier(ctx, c, minIndex, deadline)
	}
	return n.readBarrier(c, minIndex, deadline, nil)
}

func (n *Node) readBarrier(c replica.Consistency, minIndex uint64, deadline time.Time, readIndex *uint64) error {
	idx := minIndex
	if c == replica.Linearizable {
		ri, err := n.readIndex(deadline)
		if err != nil {
			return err
		}
		idx = max(idx, ri)
		if readIndex != nil {
			*readIndex = ri
		}
	}
	return n.WaitApplied(idx, deadline)
}

func (n *Node) tracedReadBarrier(ctx context.Context, c replica.Consistency, minIndex uint64, deadline time.Time) error {
	_, span := tracing.Child(ctx, "read barrier")
	defer span.End()
	var ri uint64
	leader := n.raft.State() == raft.Leader
	err := n.readBarrier(c, minIndex, deadline, &ri)
	span.SetAttributes(attribute.Bool("troupe.linearizable", c == replica.Linearizable), attribute.Int64("troupe.min_index", int64(minIndex)),
		attribute.Int64("troupe.read_index", int64(ri)), attribute.Bool("troupe.leader", leader),
		attribute.Int64("troupe.applied_index", int64(n.fsm.AppliedIndex())))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// WaitApplied waits until the FSM has applied index or the deadline passes.
func (n *Node) WaitApplied(index uint64, deadline time.Time) error {
	if n.fsm.AppliedIndex() >= index {
		return nil
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		ch := n.fsm.appliedChanged()
		if n.fsm.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return replica.ErrTimeout
		case <-n.stop:
			return replica.ErrShutdown
		}
	}
}

// readIndex returns the commit index as of a confirmed leadership. Many
// concurrent reads share one confirmation: the batcher takes every waiting
// read and, on the leader, reads the commit index then verifies
// leadership once for all; on a follower it asks the leader for its read
// index, once for all.
func (n *Node) readIndex(deadline time.Time) (uint64, error) {
	if n.raft.State() == raft.Leader {
		if n.leaderTerm.Load() != n.raft.CurrentTerm() {
			return 0, replica.ErrNotReady
		}
		if n.soloTerm.Load() == n.raft.CurrentTerm() {
			// The only voter of its configuration cannot be deposed
			// without a configuration change that it appends itself (and
			// that resets soloTerm first), so its commit index is already
			// confirmed, as etcd's raft answers a singleton's ReadIndex.
			return n.raft.CommitIndex(), nil
		}
	}
	w := make(chan readIndexResult, 1)
	n.reads.mu.Lock()
	n.reads.waiting = append(n.reads.waiting, w)
	n.reads.mu.Unlock()
	select {
	case n.reads.kick <- struct{}{}:
	default:
	}
	// The batcher answers every waiter once its check returns (raft
	// bounds a leader's; a follower's call to the leader has a timeout),
	// but a read gives up at its own deadline: it may have queued behind
	// a check that was already waiting on an unreachable leader.
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case r := <-w:
		return r.index, r.err
	case <-n.stop:
		return 0, replica.ErrShutdown
	case <-t.C:
		return 0, fmt.Errorf("%w: no read index from the leader in time", replica.ErrTimeout)
	}
}

type readIndexResult struct {
	index uint64
	err   error
}

type readIndexer struct {
	mu      sync.Mutex
	waiting []chan readIndexResult
	kick    chan struct{}
}

func (r *readIndexer) init() { r.kick = make(chan struct{}, 1) }

func (r *readIndexer) run(n *Node) {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-r.kick:
		}
		r.mu.Lock()
		batch := r.waiting
		r.waiting = nil
		r.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		var res readIndexResult
		if n.raft.State() == raft.Leader {
			res = n.verifiedCommitIndex()
		} else {
			res.index, res.err = n.remoteReadIndex()
		}
		for _, w := range batch {
			w <- res
		}
	}
}

// watchLeadership marks this node ready to serve linearizable reads once,
// as leader, it has applied a no-op command of its own term (and so every
// entry of earlier terms), and makes sure the cluster is initialised.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case isLeader := <-n.raft.LeaderCh():
			n.leaderTerm.Store(0)
			n.soloTerm.Store(0)
			if isLeader {
				n.establishLeadership()
			}
		}
	}
}

func (n *Node) establishLeadership() {
	for attempt := 0; ; attempt++ {
		term := n.raft.CurrentTerm()
		_, _, err := n.Propose(context.Background(), &storage.Command{Kind: storage.CmdNoop, Stamp: n.Stamps(1)}, time.Now().Add(n.cfg.ApplyTimeout))
		if err == nil {
			n.leaderTerm.Store(term)
			n.noteSolo(term)
			n.registerSelf()
			break
		}
		if n.raft.State() != raft.Leader {
			return
		}
		n.log.Warn("leader barrier failed; retrying", slog.Any("err", err))
		select {
		case <-n.stop:
			return
		case <-time.After(backoff(attempt)):
		}
	}
	if n.restorePath != "" {
		if err := n.restoreBackup(n.restorePath); err != nil {
			n.fatal(err)
			return
		}
		n.restorePath = ""
	}
	if n.fsm.Users() == nil {
		if err := n.initialise(); err != nil {
			n.log.Error("cannot initialise the cluster", slog.Any("err", err))
			return
		}
	}
	// Clusters created before authentication existed get it here too.
	if n.fsm.Auth() == nil {
		if err := n.setupAuth(); err != nil {
			n.log.Error("cannot set up token signing keys", slog.Any("err", err))
		}
	}
}

func backoff(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(attempt, 5)
	return min(d, 2*time.Second)
}

// noteSolo records that this leader, in term, is the only voter of its
// latest configuration. Any membership change must reset soloTerm to 0
// before it proposes the new configuration.
func (n *Node) noteSolo(term uint64) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters, self := 0, false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
			self = self || string(s.ID) == n.cfg.NodeID
		}
	}
	if voters == 1 && self {
		n.soloTerm.Store(term)
	}
}

// verifiedCommitIndex is the leader's side of a read index. The commit
// index is read before the leadership check: if the check passes, no
// other leader could have committed beyond it.
func (n *Node) verifiedCommitIndex() readIndexResult {
	term := n.raft.CurrentTerm()
	res := readIndexResult{index: n.raft.CommitIndex()}
	if n.leaderTerm.Load() != term {
		return readIndexResult{err: replica.ErrNotReady}
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		res.err = replica.ErrNotLeader
		if errors.Is(err, raft.ErrRaftShutdown) {
			res.err = replica.ErrShutdown
		}
	}
	return res
}

// LeaderReadIndex serves a follower's read index: it is the leader's
// confirmed commit index, batched with this node's own reads.
func (n *Node) LeaderReadIndex() (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, replica.ErrNotLeader
	}
	return n.readIndex(time.Now().Add(remoteReadTimeout))
}
