// Package replica is the vocabulary shared by the node that replicates
// troupe's state (package cluster) and the front end that uses one
// (package transport), so that neither imports the other: the errors of
// proposing and reading, read consistency levels, the outcome of a
// forwarded proposal, the node's reports of itself and of the cluster,
// and the paths nodes call each other on. It holds no logic.
package replica

import (
	"errors"
	"fmt"

	"github.com/troupe-db/troupe/storage"
)

// Errors of proposing and reading, matched with errors.Is. The transport
// maps them to API codes.
var (
	// ErrNotLeader: this node cannot accept writes now (no leader, or
	// another node leads and forwarding is not available).
	ErrNotLeader = errors.New("this node is not the leader")
	// ErrOutcomeUnknown: the write may or may not have been applied; the
	// client may retry with the same Idempotency-Key.
	ErrOutcomeUnknown = errors.New("the outcome of the write is unknown")
	// ErrShutdown: the node is stopping.
	ErrShutdown = errors.New("the node is shutting down")
	// ErrTimeout: the node did not reach the required index in time.
	ErrTimeout = errors.New("timed out waiting for the log to be applied")
	// ErrNotReady: the cluster has not been initialised or no leader has
	// confirmed its term yet.
	ErrNotReady = errors.New("the node is not ready")
	// ErrBadMember: a membership request with a bad id or address.
	ErrBadMember = errors.New("bad member")
	// ErrNoSuchMember: the member to remove is not in the cluster.
	ErrNoSuchMember = errors.New("no such member")
	// ErrIdempotencyFull: the idempotency window holds its maximum of
	// keys; a write with a request id was refused before it was proposed
	// (nothing applied). Returned as a *WindowFullError.
	ErrIdempotencyFull = errors.New("the idempotency window is full")
)

// WindowFullError is ErrIdempotencyFull with the limit that was met.
type WindowFullError struct{ Limit int64 }

func (e *WindowFullError) Error() string {
	return fmt.Sprintf("this node's idempotency window holds its maximum of %d keys (writes with an Idempotency-Key, forwarded writes and WebSocket submits of the last retention); nothing was applied, retry shortly", e.Limit)
}

// Is makes errors.Is(err, ErrIdempotencyFull) hold.
func (e *WindowFullError) Is(target error) bool { return target == ErrIdempotencyFull }

// Consistency of a read.
type Consistency uint8

// Read consistency levels (API.md).
const (
	// Linearizable: the read reflects every write acknowledged before it
	// started, on any node.
	Linearizable Consistency = iota
	// Stale: this node's state as it is, no coordination.
	Stale
)

// Proposal is the outcome of one command of a batch a leader proposes
// for a follower (ProposeRestamped).
type Proposal struct {
	Result storage.Result
	Index  uint64 // the log index, when known
	Err    error
}

// Paths nodes serve each other on, beside the public API.
const (
	// IdentityPath is where a node serves its Identity to its peers.
	IdentityPath = "/internal/v1/node"
	// ReadIndexPath is where a leader serves read indexes to its
	// followers.
	ReadIndexPath = "/internal/v1/read-index"
)
