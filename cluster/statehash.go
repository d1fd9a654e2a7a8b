package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/storage"
)

// StateHash is a digest of the replicated data at one applied index: the
// cluster parameters, the idempotency window and every user. Replicas that
// applied the same log have equal hashes, and so do a backup and the
// cluster restored from it. Bookkeeping that legitimately differs between
// such clusters (the log index, the last stamp, the member directory)
// is left out of the digest; Index says how far the state goes.
type StateHash struct {
	NodeID string `json:"node_id"`
	Index  uint64 `json:"index"`
	Hash   string `json:"hash"` // hex SHA-256 of the snapshot encoding
}

// StateHash captures the state and hashes its snapshot encoding. It costs
// a pass over every record: an operator's and a test's tool.
func (n *Node) StateHash() (StateHash, error) {
	snap := n.fsm.Capture()
	index := snap.Meta.Index
	data := *snap
	data.Meta.Index, data.Meta.LastStamp, data.Meta.LastMs, data.Meta.Members = 0, 0, 0, nil
	h := sha256.New()
	if err := storage.WriteSnapshot(h, &data); err != nil {
		return StateHash{}, err
	}
	return StateHash{NodeID: n.cfg.NodeID, Index: index, Hash: hex.EncodeToString(h.Sum(nil))}, nil
}

// TakeSnapshot makes raft take a snapshot now (and truncate its log) and
// returns the index it covers.
func (n *Node) TakeSnapshot(deadline time.Time) (uint64, error) {
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		if err == raft.ErrNothingNewToSnapshot {
			return n.fsm.AppliedIndex(), nil
		}
		return 0, fmt.Errorf("cannot take a snapshot: %w", mapRaftError(err))
	}
	meta, rc, err := f.Open()
	if err != nil {
		return 0, err
	}
	rc.Close()
	return meta.Index, nil
}
