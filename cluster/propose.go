package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// Stamps reserves k consecutive command stamps; the caller derives ids and
// time from them before proposing.
func (n *Node) Stamps(k int) uint64 { return n.stamps.reserve(k, n.fsm.LastStamp()) }

// Propose replicates cmd, waits until it is applied here, and returns its
// result and log index. cmd.Stamp must come from Stamps. The write is
// acknowledged only after commit on a quorum and apply on this node.
// Commands proposed together share log entries (see group.go). With a
// recording span in ctx, the wait and the apply are traced (tracing.go).
func (n *Node) Propose(ctx context.Context, cmd *storage.Command, deadline time.Time) (storage.Result, uint64, error) {
	if err := n.canPropose(); err != nil {
		return storage.Result{}, 0, err
	}
	if err := n.AdmitKeyed(cmd); err != nil {
		return storage.Result{}, 0, err
	}
	p := singles.Get().(*proposal)
	p.cmds[0], p.deadline = encode(cmd), deadline
	t := n.traceCommit(ctx, cmd)
	if !n.submit(p) {
		// A lead may still write and wake p: it is not recycled.
		if t != nil {
			t.end(nil, errStopped)
		}
		return storage.Result{}, 0, errStopped
	}
	res, index, err := p.out[0].result(deadline)
	if t != nil {
		t.end(p.out[:1], err)
	}
	// Nothing refers to p now: whoever settled its entry woke it last.
	// The command's bytes are not reused (raft may hold them as the
	// entry's data).
	*p = proposal{cmds: p.cmds, wake: p.wake, out: p.out}
	p.cmds[0], p.out[0] = nil, outcome{}
	singles.Put(p)
	return res, index, err
}

// errStopped is the outcome of a proposal the node let go while stopping:
// it may have been committed, or not.
var errStopped = errOutcome("the node stopped before the write was confirmed")

// singles recycles the proposals of one command: a create allocates
// little else on its way through the node.
var singles = sync.Pool{New: func() any { return newProposal(1) }}

func newProposal(cmds int) *proposal {
	return &proposal{cmds: make([][]byte, cmds), wake: make(chan wakeReason, 1), out: make([]outcome, cmds)}
}

func encode(cmd *storage.Command) []byte { return storage.EncodeCommand(make([]byte, 0, 128), cmd) }

// ProposeRestamped proposes commands built on another node (a follower
// forwarding its writes): each gets fresh stamps from this leader
// (storage.Command.Restamp), they enter the log together and in order,
// sharing entries with whatever else is proposed meanwhile, and out[i] is
// the outcome of cmds[i]. A command the idempotency window has no room
// for (AdmitKeyed) is left out, its outcome the refusal.
func (n *Node) ProposeRestamped(ctx context.Context, cmds []*storage.Command, deadline time.Time) []replica.Proposal {
	out := make([]replica.Proposal, len(cmds))
	if err := n.canPropose(); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	admitted, at := n.admitAll(cmds, out)
	if len(admitted) == 0 {
		return out
	}
	slot := func(j int) int { // where admitted[j]'s outcome goes
		if at == nil {
			return j
		}
		return at[j]
	}
	p := newProposal(len(admitted))
	p.deadline = deadline
	for i, cmd := range admitted {
		cmd.Restamp(n.Stamps(cmd.StampCount()))
		p.cmds[i] = encode(cmd)
	}
	t := n.traceCommit(ctx, admitted...)
	if !n.submit(p) {
		for j := range admitted {
			out[slot(j)].Err = errStopped
		}
		if t != nil {
			t.end(nil, errStopped)
		}
		return out
	}
	for j := range admitted {
		i := slot(j)
		out[i].Result, out[i].Index, out[i].Err = p.out[j].result(deadline)
	}
	if t != nil {
		t.end(p.out, out[slot(0)].Err)
	}
	return out
}

func (n *Node) canPropose() error {
	select {
	case <-n.stop:
		return replica.ErrShutdown
	default:
	}
	if n.raft.State() != raft.Leader {
		return replica.ErrNotLeader
	}
	return nil
}

// futureError waits for f and maps raft's error to this package's.
func futureError(f raft.ApplyFuture) error {
	err := f.Error()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Never entered the log: safe to report as not applied.
		return replica.ErrNotLeader
	case errors.Is(err, raft.ErrRaftShutdown):
		return replica.ErrShutdown
	default:
		// ErrLeadershipLost and anything else: it may commit later.
		return errOutcome("%v", err)
	}
}

func errOutcome(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{replica.ErrOutcomeUnknown}, args...)...)
}

// initialise proposes the cluster parameters and the first admin.
func (n *Node) initialise() error {
	admin, err := n.admin()
	if err != nil {
		return fmt.Errorf("cannot prepare the first admin: %w", err)
	}
	admin.Role = storage.RoleAdmin
	params := &storage.InitParams{
		ClusterID:            randomID(),
		UserShards:           uint32(n.cfg.UserShards),
		IdempotencyRetention: uint64(n.cfg.IdempotencyRetention.Milliseconds()),
	}
	stamp := n.Stamps(1)
	shard := storage.ShardOf(storage.EmailKey(admin.Email), n.cfg.UserShards)
	params.Admin = storage.BatchItem{ID: storage.MakeUserID(stamp, shard), User: admin}
	res, _, err := n.Propose(context.Background(), &storage.Command{Kind: storage.CmdInit, Stamp: stamp, Init: params}, time.Now().Add(n.cfg.ApplyTimeout))
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	n.log.Info("initialised a new cluster", slog.Int("user_shards", n.cfg.UserShards), slog.String("admin_email", admin.Email))
	return nil
}

// setupAuth proposes the cluster's authentication state: fresh random
// keys, decided here, replicated to every node.
func (n *Node) setupAuth() error {
	setup := &storage.AuthSetup{Params: n.cfg.Sessions, RefreshKey: randomSecret(), Key: storage.SigningKey{KID: randomKID(), Secret: randomSecret()}}
	res, _, err := n.Propose(context.Background(), &storage.Command{Kind: storage.CmdAuthSetup, Stamp: n.Stamps(1), Auth: setup}, time.Now().Add(n.cfg.ApplyTimeout))
	if err != nil {
		return err
	}
	if res.Err != nil && !errors.Is(res.Err, storage.ErrConflict) {
		return res.Err
	}
	n.log.Info("set up token signing keys")
	return nil
}

// Auth returns the authentication state this node has applied, or nil.
func (n *Node) Auth() *storage.AuthState { return n.fsm.Auth() }

// Docs returns the documents this node holds.
func (n *Node) Docs() *actors.Docs { return n.fsm.Docs() }

// OnAuthNarrowed adds a function told of users whose tokens may have lost
// rights as this node applies the change (FSM.OnAuthNarrowed).
func (n *Node) OnAuthNarrowed(fn func(userID string)) (remove func()) {
	return n.fsm.OnAuthNarrowed(fn)
}

// Policies returns the named rate-limit policies this node has applied;
// the map must not be changed.
func (n *Node) Policies() map[string]storage.Policy { return n.fsm.Policies() }

// RotateKey makes a fresh key the signing key for access tokens; the old
// one keeps verifying the tokens it signed until they expire. It returns
// the new key's id.
func (n *Node) RotateKey(deadline time.Time) (string, uint64, error) {
	k := &storage.SigningKey{KID: randomKID(), Secret: randomSecret()}
	res, index, err := n.Propose(context.Background(), &storage.Command{Kind: storage.CmdKeyRotate, Stamp: n.Stamps(1), Key: k}, deadline)
	if err != nil {
		return "", 0, err
	}
	if res.Err != nil {
		return "", 0, res.Err
	}
	n.log.Info("rotated the token signing key", slog.String("kid", k.KID))
	return k.KID, index, nil
}

func randomSecret() []byte {
	b := make([]byte, storage.SecretBytes)
	_, _ = rand.Read(b)
	return b
}

func randomKID() string { return "k-" + randomID()[:16] }

// WaitInitialised waits until the cluster parameters are applied on this
// node, then checks that the ones this node was started with agree.
// explicit says which parameters were set by the operator (others follow
// the cluster).
func (n *Node) WaitInitialised(deadline time.Time, explicitShards bool) error {
	for n.fsm.Users() == nil || n.fsm.Auth() == nil {
		select {
		case <-n.stop:
			return replica.ErrShutdown
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster was not initialised within the start timeout")
		}
	}
	if got := n.fsm.Users().Shards(); explicitShards && got != n.cfg.UserShards {
		return fmt.Errorf("--user-shards=%d disagrees with this cluster's %d user shards (fixed when it was created); drop the flag or set it to %d", n.cfg.UserShards, got, got)
	}
	return nil
}
