package actors

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// Subscribers: a node's SSE and WebSocket clients of a document. The
// document's actor feeds them as it applies changes, through a bounded
// queue each: a subscriber that falls behind is cut off with a reset and
// never slows the actor. Subscribing replays the changes after the
// client's last version and registers it in one step of the actor, so
// there is no gap and no duplicate.

// EventKind says what an event is.
type EventKind uint8

// Event kinds.
const (
	EventChange EventKind = iota + 1
	// EventReset: the client must reload (its version is older than the
	// kept history, the document was replaced by a restore, or it fell
	// behind). Doc is the current state, nil if the document is gone.
	EventReset
	// EventPresence: someone joined, left or moved their cursor.
	EventPresence
)

// Event is one message to a subscriber.
type Event struct {
	Kind     EventKind
	Change   *storage.Change
	Doc      *storage.Doc
	Presence *Presence
}

// Presence is one collaborator's state in a document (node-local,
// ephemeral: never in the log).
type Presence struct {
	User     string // user id
	ClientID string
	State    string // join, leave, cursor
	Pos      int    // cursor position (code points), with State cursor
	// Selected says the client has a selection, from Anchor to Pos (code
	// points), with State cursor; the zero value is a bare caret.
	Selected bool
	Anchor   int
}

// SubscriberQueue is how many events a subscriber may have waiting.
const SubscriberQueue = 1024

// Subscriber receives a document's events on C until it is closed
// (Done). After a reset event C is closed.
type Subscriber struct {
	C    chan Event
	once sync.Once
	done chan struct{}
	// Presence of this subscriber, announced to the others.
	user, clientID string
	// reason, once set, says why the subscription was ended for its
	// holder's sake (ReasonDeleted, or what Revoke was given); it is
	// set before Done is closed.
	reason atomic.Pointer[string]
}

// Reasons a subscription is ended other than falling behind.
const (
	ReasonDeleted = "document_deleted"
)

// Done is closed when the subscription ends (by Unsubscribe, a reset, or
// the document going away).
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Reason says why the subscription was ended ("" if it was not: it fell
// behind, or its holder left). Read it after Done is closed, or after a
// reset event.
func (s *Subscriber) Reason() string {
	if r := s.reason.Load(); r != nil {
		return *r
	}
	return ""
}

// User is the user id the subscriber was registered with.
func (s *Subscriber) User() string { return s.user }

func (s *Subscriber) setReason(r string) { s.reason.CompareAndSwap(nil, &r) }

func (s *Subscriber) end() { s.once.Do(func() { close(s.done) }) }

// ErrPresenceFull: a document holds its maximum of present clients.
type ErrPresenceFull struct{ Limit int }

func (e *ErrPresenceFull) Error() string {
	return fmt.Sprintf("the document has its maximum of %d clients present", e.Limit)
}

// ErrNotYet: the client knows a version this node has not applied yet.
var ErrNotYet = errors.New("this node has not applied that version of the document yet")

// Subscribe registers a subscriber of document id for the changes after
// version after (when hasAfter), or from now on. user and clientID name
// it in presence events (empty: no presence).
func (d *Docs) Subscribe(id string, after uint64, hasAfter bool, user, clientID string, deadline time.Time) (*Subscriber, error) {
	s := &Subscriber{C: make(chan Event, SubscriberQueue), done: make(chan struct{}), user: user, clientID: clientID}
	var subErr error
	err := d.query(id, deadline, func(b *docBox) {
		if b.doc == nil {
			subErr = notFoundDoc(id)
			return
		}
		if hasAfter {
			if after > b.doc.Version {
				subErr = ErrNotYet
				return
			}
			changes, err := b.doc.ChangesSince(after)
			if err != nil {
				// Too old: a reset with the whole document, then live.
				s.C <- Event{Kind: EventReset, Doc: b.doc}
			}
			for i := range changes {
				if len(s.C) == cap(s.C) {
					s.C <- Event{Kind: EventReset, Doc: b.doc} // cannot happen: cap > history
					break
				}
				s.C <- Event{Kind: EventChange, Change: &changes[i]}
			}
		}
		if limit := int(d.maxPresence.Load()); clientID != "" && b.presentCount() >= limit {
			d.presenceRefused.Add(1)
			subErr = &ErrPresenceFull{Limit: limit}
			return
		}
		b.subs[s] = struct{}{}
		d.subscribers.Add(1)
		// The newcomer learns who is here (on any node), and the others
		// learn of it.
		for other := range b.subs {
			if other != s && other.clientID != "" {
				b.offer(s, Event{Kind: EventPresence, Presence: &Presence{User: other.user, ClientID: other.clientID, State: "join"}})
			}
		}
		for _, rp := range b.remote {
			p := rp.Presence
			b.offer(s, Event{Kind: EventPresence, Presence: &p})
		}
		if clientID != "" {
			b.localPresence(Presence{User: user, ClientID: clientID, State: "join"}, s)
		}
	})
	if err == nil {
		err = subErr
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// presentCount is the number of clients present in the document: this
// node's subscribers that gave a client id, and other nodes' reports.
func (b *docBox) presentCount() int {
	n := len(b.remote)
	for s := range b.subs {
		if s.clientID != "" {
			n++
		}
	}
	return n
}

// Revoke ends a subscription for reason (its holder lost the right to
// read): Done closes at once, with Reason set; events still queued are
// not the holder's to read.
func (d *Docs) Revoke(id string, s *Subscriber, reason string) {
	s.setReason(reason)
	d.Unsubscribe(id, s)
}

// Unsubscribe ends a subscription (its presence leaves).
func (d *Docs) Unsubscribe(id string, s *Subscriber) {
	d.send(id, &docMsg{run: func(b *docBox) {
		if _, ok := b.subs[s]; !ok {
			return
		}
		delete(b.subs, s)
		b.d.subscribers.Add(-1)
		s.end()
		if s.clientID != "" {
			b.localPresence(Presence{User: s.user, ClientID: s.clientID, State: "leave"}, nil)
		}
	}})
	s.end()
}

// Cursor announces a subscriber's cursor and selection (anchor to pos;
// anchor == pos when nothing is selected) to the others.
func (d *Docs) Cursor(id string, s *Subscriber, pos, anchor int) {
	d.send(id, &docMsg{run: func(b *docBox) {
		if _, ok := b.subs[s]; ok && s.clientID != "" {
			p := Presence{User: s.user, ClientID: s.clientID, State: "cursor", Pos: pos}
			if anchor != pos {
				p.Selected, p.Anchor = true, anchor
			}
			b.localPresence(p, s)
		}
	}})
}

// Collaborators returns the users present in a document, on this node
// and (as last reported) on the others, sorted.
func (d *Docs) Collaborators(id string, deadline time.Time) []string {
	var users []string
	_ = d.query(id, deadline, func(b *docBox) {
		seen := map[string]bool{}
		add := func(u string) {
			if u != "" && !seen[u] {
				seen[u] = true
				users = append(users, u)
			}
		}
		for s := range b.subs {
			add(s.user)
		}
		for _, rp := range b.remote {
			add(rp.User)
		}
	})
	slices.Sort(users)
	return users
}

// OnPresence sets the function told of every presence change of this
// node's own subscribers (to relay them to the other nodes). It must not
// block: it runs in the document's actor.
func (d *Docs) OnPresence(fn func(docID string, p Presence)) { d.onPresence.Store(&fn) }

// RemotePresence records a presence reported by another node (join and
// cursor renew it for the presence TTL; leave ends it) and tells this
// node's subscribers when something changed. A document without an
// active actor has no subscribers here: the report is dropped.
func (d *Docs) RemotePresence(id string, p Presence) {
	d.sendIfActive(id, &docMsg{run: func(b *docBox) {
		if p.ClientID == "" {
			return
		}
		cur, known := b.remote[p.ClientID]
		if p.State == "leave" {
			if known {
				delete(b.remote, p.ClientID)
				b.publish(Event{Kind: EventPresence, Presence: &p})
			}
			return
		}
		if !known && b.presentCount() >= int(d.maxPresence.Load()) {
			d.presenceRefused.Add(1) // the reporting node's own cap keeps it in bounds
			return
		}
		b.remote[p.ClientID] = remotePresence{Presence: p, expires: time.Now().Add(d.presenceTTL)}
		// A renewal of what everyone knows says nothing new.
		if known && cur.User == p.User && (cur.State == p.State || p.State == "join") && (p.State != "cursor" || (cur.Pos == p.Pos && cur.Selected == p.Selected && cur.Anchor == p.Anchor)) {
			return
		}
		b.publish(Event{Kind: EventPresence, Presence: &p})
	}})
}

// expirePresence drops other nodes' presence not renewed in time.
func (b *docBox) expirePresence(now time.Time) {
	for id, rp := range b.remote {
		if now.After(rp.expires) {
			delete(b.remote, id)
			b.publish(Event{Kind: EventPresence, Presence: &Presence{User: rp.User, ClientID: rp.ClientID, State: "leave"}})
		}
	}
}

// localPresence tells this node's subscribers (but except) and the other
// nodes of a change in a local subscriber's presence.
func (b *docBox) localPresence(p Presence, except *Subscriber) {
	b.publish(Event{Kind: EventPresence, Presence: &p}, except)
	if fn := b.d.onPresence.Load(); fn != nil {
		(*fn)(b.id, p)
	}
}

// publish queues ev to every subscriber but except; subscribers cut off
// for falling behind leave.
func (b *docBox) publish(ev Event, except ...*Subscriber) {
	for s := range b.subs {
		if len(except) > 0 && s == except[0] {
			continue
		}
		b.offer(s, ev)
	}
	for len(b.cut) > 0 {
		s := b.cut[0]
		b.cut = b.cut[1:]
		if s.clientID != "" {
			b.localPresence(Presence{User: s.user, ClientID: s.clientID, State: "leave"}, nil)
		}
	}
}

// offer queues ev to s, or cuts s off with a reset if its queue is full.
func (b *docBox) offer(s *Subscriber, ev Event) {
	if ev.Kind == EventChange {
		b.d.published.Add(1)
	}
	select {
	case s.C <- ev:
	default:
		b.d.dropped.Add(1)
		delete(b.subs, s)
		b.d.subscribers.Add(-1)
		s.end()
		b.cut = append(b.cut, s)
	}
}

// closeSubs ends every subscription, with a reset event carrying doc (nil
// if the document is gone: the reason is then ReasonDeleted) where there
// is room.
func (b *docBox) closeSubs(doc *storage.Doc) {
	for s := range b.subs {
		if doc == nil {
			s.setReason(ReasonDeleted)
		}
		select {
		case s.C <- Event{Kind: EventReset, Doc: doc}:
		default:
		}
		delete(b.subs, s)
		b.d.subscribers.Add(-1)
		s.end()
	}
}
