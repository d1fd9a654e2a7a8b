package cluster

import (
	"context"
	"time"

	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/storage"
)

// The change feed as the transport reaches it (GET /v1/watch): the
// FSM's feed, read from any goroutine.

// Watch subscribes to the changes after p (see feed.Feed.Subscribe).
func (n *Node) Watch(p feed.Position) (*feed.Subscription, error) { return n.fsm.feed.Subscribe(p) }

// WaitWatchable waits until every change up to index is in the feed, or
// answers feed.ErrNotYet at deadline.
func (n *Node) WaitWatchable(index uint64, deadline time.Time) error {
	return n.fsm.feed.WaitProcessed(index, deadline)
}

// AppliedIndex is the index of the last command this node applied: a
// read that passed the read barrier and then read the state reflects
// every change up to it, so watching from it misses nothing.
func (n *Node) AppliedIndex() uint64 { return n.fsm.AppliedIndex() }

// settleTextChanges runs on every node until Shutdown; on the leader it
// proposes a no-op when the change feed holds back a document's text
// change whose bucket is over and no other command came to announce it
// (feed.OwedUntil): commands decide when such changes are announced, so
// that every node announces them at the same log position. It does the
// same while the idempotency window is full (admit.go): a command's time
// is what expires the window's oldest keys.
func (n *Node) settleTextChanges() {
	defer n.wg.Done()
	t := time.NewTicker(feed.TextBucketMs * time.Millisecond / 2)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		due := n.fsm.feed.OwedUntil()
		owed := due != 0 && time.Now().UnixMilli() >= due
		if !n.IsLeader() || !owed && !n.windowFull() {
			continue
		}
		_, _, _ = n.Propose(context.Background(), &storage.Command{Kind: storage.CmdNoop, Stamp: n.Stamps(1)}, time.Now().Add(n.cfg.ApplyTimeout))
	}
}
