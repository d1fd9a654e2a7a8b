package cluster

import (
	"time"

	"github.com/troupe-db/troupe/feed"
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
