package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// StateHash captures the state and hashes its snapshot encoding. It costs
// a pass over every record: an operator's and a test's tool.
func (n *Node) StateHash() (replica.StateHash, error) {
	snap := n.fsm.Capture()
	index := snap.Meta.Index
	data := *snap
	data.Meta.Index, data.Meta.LastStamp, data.Meta.LastMs, data.Meta.Members = 0, 0, 0, nil
	h := sha256.New()
	if err := storage.WriteSnapshot(h, &data); err != nil {
		return replica.StateHash{}, err
	}
	return replica.StateHash{NodeID: n.cfg.NodeID, Index: index, Hash: hex.EncodeToString(h.Sum(nil))}, nil
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
