package cluster

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// Admission to the idempotency window. Every write with a request id (a
// client's Idempotency-Key, a follower's forwarded write, a WebSocket
// submit) leaves a key in the window for the retention, on every node: a
// client that writes fast enough for long enough would fill memory. So a
// node refuses such a write before proposing it while the window holds
// Config.MaxIdempotencyKeys keys, with replica.WindowFullError (503
// unavailable, nothing applied: the client retries shortly with the same
// key). Writes without a request id, reads and everything already in the
// log go on. The count is the node's applied window, so a bound the
// leader checks too, slightly late on a follower: the window can pass it
// by the writes in flight, not by more.
//
// Only commands make the window expire (by their time), so while it is
// full the leader proposes a no-op every settle tick (settleTextChanges):
// room comes back as the oldest keys age out, even if every write that
// arrives is refused.

// admitMetrics counts the refusals.
type admitMetrics struct {
	refused *metrics.Counter // troupe_idempotency_refused_total
}

func newAdmitMetrics(set *metrics.Set) admitMetrics {
	return admitMetrics{refused: set.NewCounter(`troupe_idempotency_refused_total`)}
}

// windowFull reports whether the idempotency window holds its maximum.
func (n *Node) windowFull() bool {
	return n.fsm.idemKept.Load().kept.Load() >= n.cfg.MaxIdempotencyKeys
}

// AdmitKeyed refuses cmd, a write about to be proposed or forwarded, if
// it carries a request id and the idempotency window is full.
func (n *Node) AdmitKeyed(cmd *storage.Command) error {
	if cmd.RequestID == "" || !n.windowFull() {
		return nil
	}
	n.admit.refused.Inc()
	return &replica.WindowFullError{Limit: n.cfg.MaxIdempotencyKeys}
}

// admitAll sorts cmds, forwarded to this leader, by AdmitKeyed: it
// returns the admitted ones and their places in cmds, and sets out[i].Err
// of each refused one. While the window has room, the usual case, that
// is cmds itself and nil places: nothing is copied on the way.
func (n *Node) admitAll(cmds []*storage.Command, out []replica.Proposal) (admitted []*storage.Command, at []int) {
	if !n.windowFull() {
		return cmds, nil
	}
	for i, cmd := range cmds {
		if out[i].Err = n.AdmitKeyed(cmd); out[i].Err == nil {
			admitted, at = append(admitted, cmd), append(at, i)
		}
	}
	return admitted, at
}
