package cluster

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/storage"
)

// Webhooks in the FSM: the registrations and their delivery progress are
// one copy-on-write map, replaced by the FSM goroutine as it applies
// CmdWebhook and CmdWebhookProgress, read by any goroutine (the API and,
// on the leader, the deliverer of internal/webhook).

// applyWebhook creates, updates or deletes a webhook.
func (f *FSM) applyWebhook(c *storage.WebhookCommand, now int64) *actors.Pending {
	if c == nil {
		return actors.Resolved(internal("webhook command without its payload"))
	}
	next, r := storage.ApplyWebhook(f.webhookMap(), c, f.index, now)
	f.webhooks.Store(&next)
	return actors.Resolved(r)
}

// applyWebhookProgress records the leader's delivery progress.
func (f *FSM) applyWebhookProgress(rs []storage.WebhookReport) *actors.Pending {
	next := storage.ApplyWebhookProgress(f.webhookMap(), rs)
	f.webhooks.Store(&next)
	return actors.Resolved(storage.Result{})
}

func (f *FSM) webhookMap() map[string]*storage.Webhook {
	if m := f.webhooks.Load(); m != nil {
		return *m
	}
	return nil
}

// Webhooks returns the webhooks in id order; they must not be changed.
func (f *FSM) Webhooks() []*storage.Webhook {
	m := f.webhookMap()
	out := make([]*storage.Webhook, 0, len(m))
	for _, w := range m {
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b *storage.Webhook) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Webhook returns one webhook, or nil; it must not be changed.
func (f *FSM) Webhook(id string) *storage.Webhook { return f.webhookMap()[id] }

// captureWebhooks copies the webhooks into a snapshot's meta.
func (f *FSM) captureWebhooks(m *storage.Meta) {
	for _, w := range f.Webhooks() {
		m.Webhooks = append(m.Webhooks, *w)
	}
}

// restoreWebhooks takes the webhooks of a snapshot.
func (f *FSM) restoreWebhooks(m *storage.Meta) {
	hooks := make(map[string]*storage.Webhook, len(m.Webhooks))
	for i := range m.Webhooks {
		w := m.Webhooks[i]
		hooks[w.ID] = &w
	}
	f.webhooks.Store(&hooks)
}

// Webhooks returns the webhooks in id order (see FSM.Webhooks).
func (n *Node) Webhooks() []*storage.Webhook { return n.fsm.Webhooks() }

// Webhook returns one webhook, or nil.
func (n *Node) Webhook(id string) *storage.Webhook { return n.fsm.Webhook(id) }

// Leading reports whether this node leads and has applied every entry
// committed before its term (its no-op barrier returned): only then does
// its state hold every position acknowledged under earlier leaders.
func (n *Node) Leading() bool {
	return n.IsLeader() && n.leaderTerm.Load() == n.raft.CurrentTerm()
}

// The change feed as the webhook deliverer reads it (internal/webhook's
// Source): every change after a position, in order.

// Since appends the changes after p (see feed.Feed.Since).
func (n *Node) Since(p feed.Position, dst []*feed.Change, max int) ([]*feed.Change, error) {
	return n.fsm.feed.Since(p, dst, max)
}

// WaitProcessed waits until the feed holds every change up to index (see
// feed.Feed.WaitProcessed).
func (n *Node) WaitProcessed(index uint64, deadline time.Time) error {
	return n.fsm.feed.WaitProcessed(index, deadline)
}

// Processed is the index up to which the feed holds every change.
func (n *Node) Processed() uint64 { return n.fsm.feed.Processed() }

// Report proposes the deliverer's progress on webhooks.
func (n *Node) Report(ctx context.Context, reports []storage.WebhookReport) error {
	deadline := time.Now().Add(n.cfg.ApplyTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	res, _, err := n.Propose(ctx, &storage.Command{Kind: storage.CmdWebhookProgress, Stamp: n.Stamps(1), Progress: reports}, deadline)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	return nil
}
