package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// peerHealth is the leader's view of its followers: which of them failed
// their last heartbeats, and when each was last heard from before that.
// Raft tells a leader when heartbeats to a peer start failing and when
// they resume (observations); a peer with no failure on record answers.
// The view is reset on every leadership change: only a leader has one.
type peerHealth struct {
	mu      sync.Mutex
	failing map[raft.ServerID]time.Time // peer → its last contact before failing
}

// observe runs until stop, recording raft's heartbeat observations.
func (h *peerHealth) observe(r *raft.Raft, stop <-chan struct{}, done func()) {
	defer done()
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(obs)
	defer r.DeregisterObserver(obs)
	for {
		select {
		case <-stop:
			return
		case o := <-ch:
			h.record(o.Data)
		}
	}
}

func (h *peerHealth) record(data any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch d := data.(type) {
	case raft.FailedHeartbeatObservation:
		if h.failing == nil {
			h.failing = map[raft.ServerID]time.Time{}
		}
		if _, already := h.failing[d.PeerID]; !already || !d.LastContact.IsZero() {
			h.failing[d.PeerID] = d.LastContact
		}
	case raft.ResumedHeartbeatObservation:
		delete(h.failing, d.PeerID)
	case raft.LeaderObservation:
		clear(h.failing)
	}
}

// failingSince reports whether heartbeats to peer fail now and, if so,
// when it was last heard from (zero if never).
func (h *peerHealth) failingSince(peer raft.ServerID) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.failing[peer]
	return t, ok
}
