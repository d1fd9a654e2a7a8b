package cluster

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// Stamps reserves k consecutive command stamps; the caller derives ids and
// time from them before proposing.
func (n *Node) Stamps(k int) uint64 { return n.stamps.reserve(k, n.fsm.LastStamp()) }

// Propose replicates cmd, waits until it is applied here, and returns its
// result and log index. cmd.Stamp must come from Stamps. The write is
// acknowledged only after commit on a quorum and apply on this node.
func (n *Node) Propose(cmd *storage.Command, deadline time.Time) (storage.Result, uint64, error) {
	if err := n.canPropose(); err != nil {
		return storage.Result{}, 0, err
	}
	return n.await(n.enqueue(cmd, deadline), deadline)
}

// Proposal is the outcome of one command of ProposeRestamped.
type Proposal struct {
	Result storage.Result
	Index  uint64 // the log index, when known
	Err    error
}

// ProposeRestamped proposes commands built on another node (a follower
// forwarding its writes): each gets fresh stamps from this leader
// (storage.Command.Restamp), all enter raft's queue before any is waited
// for, so they share group commits, and out[i] is the outcome of cmds[i].
func (n *Node) ProposeRestamped(cmds []*storage.Command, deadline time.Time) []Proposal {
	out := make([]Proposal, len(cmds))
	if err := n.canPropose(); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	for _, cmd := range cmds {
		cmd.Restamp(n.Stamps(cmd.StampCount()))
	}
	if len(cmds) == 1 {
		out[0].Result, out[0].Index, out[0].Err = n.await(n.enqueue(cmds[0], deadline), deadline)
		return out
	}
	// One log entry per MaxMulti of them: raft replicates, stores and
	// hands over one entry instead of each command's. All entries are
	// enqueued before any is awaited, so they share a group commit.
	var futures []raft.ApplyFuture
	for from := 0; from < len(cmds); from += storage.MaxMulti {
		part := cmds[from:min(from+storage.MaxMulti, len(cmds))]
		futures = append(futures, n.enqueue(&storage.Command{Kind: storage.CmdMulti, Multi: part}, deadline))
	}
	for k, f := range futures {
		from := k * storage.MaxMulti
		part := cmds[from:min(from+storage.MaxMulti, len(cmds))]
		res, idx, err := n.await(f, deadline)
		for i := range part {
			p := &out[from+i]
			p.Index, p.Err = idx, err
			switch {
			case err != nil:
			case len(res.Items) == len(part):
				p.Result = res.Items[i]
			case res.Err != nil: // refused as a whole (a node that stopped applying)
				p.Result = res
			default:
				p.Err = fmt.Errorf("%w: %d results for %d commands", ErrOutcomeUnknown, len(res.Items), len(part))
			}
		}
	}
	return out
}

func (n *Node) canPropose() error {
	select {
	case <-n.stop:
		return ErrShutdown
	default:
	}
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	return nil
}

func (n *Node) enqueue(cmd *storage.Command, deadline time.Time) raft.ApplyFuture {
	data := storage.EncodeCommand(make([]byte, 0, 128), cmd)
	return n.raft.Apply(data, time.Until(deadline))
}

// await waits until the command of f is applied here.
func (n *Node) await(f raft.ApplyFuture, deadline time.Time) (storage.Result, uint64, error) {
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
			// Never entered the log: safe to report as not applied.
			return storage.Result{}, 0, ErrNotLeader
		case errors.Is(err, raft.ErrRaftShutdown):
			return storage.Result{}, 0, ErrShutdown
		default:
			// ErrLeadershipLost and anything else: it may commit later.
			return storage.Result{}, 0, fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
		}
	}
	p, ok := f.Response().(*actors.Pending)
	if !ok {
		return storage.Result{}, 0, fmt.Errorf("unexpected apply response %T", f.Response())
	}
	select {
	case <-p.Done():
		return p.Result(), f.Index(), nil
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.Done():
		return p.Result(), f.Index(), nil
	case <-t.C:
		return storage.Result{}, f.Index(), fmt.Errorf("%w: committed at index %d but not applied in time", ErrOutcomeUnknown, f.Index())
	}
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
	res, _, err := n.Propose(&storage.Command{Kind: storage.CmdInit, Stamp: stamp, Init: params}, time.Now().Add(n.cfg.ApplyTimeout))
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
	res, _, err := n.Propose(&storage.Command{Kind: storage.CmdAuthSetup, Stamp: n.Stamps(1), Auth: setup}, time.Now().Add(n.cfg.ApplyTimeout))
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

// Policies returns the named rate-limit policies this node has applied;
// the map must not be changed.
func (n *Node) Policies() map[string]storage.Policy { return n.fsm.Policies() }

// RotateKey makes a fresh key the signing key for access tokens; the old
// one keeps verifying the tokens it signed until they expire. It returns
// the new key's id.
func (n *Node) RotateKey(deadline time.Time) (string, uint64, error) {
	k := &storage.SigningKey{KID: randomKID(), Secret: randomSecret()}
	res, index, err := n.Propose(&storage.Command{Kind: storage.CmdKeyRotate, Stamp: n.Stamps(1), Key: k}, deadline)
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
			return ErrShutdown
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
