package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The leader's view follows raft's heartbeat observations and is reset
// when leadership changes.
func TestPeerHealth(t *testing.T) {
	var h peerHealth
	if _, failing := h.failingSince("b"); failing {
		t.Fatal("failing with nothing observed")
	}
	seen := time.Unix(100, 0)
	h.record(raft.FailedHeartbeatObservation{PeerID: "b", LastContact: seen})
	h.record(raft.FailedHeartbeatObservation{PeerID: "b", LastContact: time.Time{}}) // a later failure keeps the time
	if last, failing := h.failingSince("b"); !failing || !last.Equal(seen) {
		t.Fatalf("after failures: %v %v", last, failing)
	}
	h.record(raft.ResumedHeartbeatObservation{PeerID: "b"})
	if _, failing := h.failingSince("b"); failing {
		t.Fatal("still failing after resuming")
	}
	h.record(raft.FailedHeartbeatObservation{PeerID: "c", LastContact: seen})
	h.record(raft.LeaderObservation{LeaderID: "b"})
	if _, failing := h.failingSince("c"); failing {
		t.Fatal("a new leadership keeps the old view")
	}
}
