// Package stream holds a node's open event streams (SSE and WebSocket
// subscriptions to a document): how many the node and each user may
// hold, the WebSocket connections to close on shutdown, the end of a
// stream whose holder may no longer read its document, and the relay
// that tells the other nodes of its clients' presence. The HTTP handlers
// that serve the streams are package api's; they decide, through
// Config.Denied, whether a holder still may read.
package stream

import (
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/actors"
)

// Open streams (SSE /v1/docs/{id}/events and WebSocket /v1/docs/{id}/ws):
// how many a node and a user may hold, and how a stream ends once its
// holder may no longer read its document.
//
// A stream lasts as long as a GET of its document with its token would
// succeed. What can change that is told to this node as it applies it:
// the document actor reports a document that lost a reader (a member
// removed, a share link revoked), the user shards report a user who was deleted, got a new role
// or token epoch, or lost a session (OnAuthNarrowed); a deleted document
// ends its subscriptions itself. The revoker goroutine then checks again
// every stream of that user or document, against this node's state
// only: the stream's token passed here once, and sessions never reopen,
// epochs never go back, ids are never reused, so a failed check is final
// (no read barrier). A timer per stream fires when its token (or its
// share link) expires;
// every keep-alive checks again as a backstop. A stream that fails ends
// with a "closed" event naming the reason.
//
// Ownership: Registry.mu guards the maps and the pending sets; a stream's
// token fields are guarded by its own mu (a WebSocket's reader replaces
// them on "auth").

// Reasons a stream is closed (the "closed" event's reason).
const (
	ReasonRevoked     = "access_revoked"
	ReasonDeleted     = actors.ReasonDeleted
	ReasonExpired     = "token_expired"
	ReasonRateLimited = "rate_limited" // WebSocket only: kept sending over the limit
	// ReasonLinkExpired: the share link the stream was opened with has
	// expired (a revoked one is ReasonRevoked).
	ReasonLinkExpired = "link_expired"
	// ReasonGone: a change-feed stream fell behind the changes its node
	// keeps.
	ReasonGone = "gone"
)

// Stream is one open subscription: of a document (DocID, Sub), or of
// the change feed (End; DocID empty, Sub nil).
type Stream struct {
	DocID string
	Key   string // what --max-streams-per-user counts: the user, else the share link, else the client address
	Sub   *actors.Subscriber
	// Link is the id of the share link the stream was opened with ("":
	// none); set before Add, never changed. A revoked link narrows its
	// document's readers, so its streams are checked like a user's.
	Link string
	// LinkExpires is when that link expires (zero: never); the stream
	// is checked again then, as when its token expires.
	LinkExpires time.Time
	// End, if set, ends a stream that is not a document's (the change
	// feed's) for reason, instead of Config.Revoke. It must not block.
	End func(reason string)

	mu       sync.Mutex
	token    string
	hasToken bool
	expires  time.Time   // when the token stops being valid (zero: never)
	expiry   *time.Timer // fires then
	closed   bool
}

// Config is what a Registry needs: its limits, and how to decide and
// carry out the end of a stream.
type Config struct {
	MaxStreams        int // on this node (--max-streams)
	MaxStreamsPerUser int // of one Stream.Key (--max-streams-per-user)
	// Denied says why the stream's holder may no longer read its
	// document ("" if it still may, or if that cannot be told now).
	Denied func(x *Stream) string
	// Revoke ends the stream's subscription for reason.
	Revoke func(docID string, sub *actors.Subscriber, reason string)
}

// Registry holds a node's open streams. It is safe for concurrent use;
// its revoker goroutine runs until Close.
type Registry struct {
	cfg Config

	mu       sync.Mutex
	total    int
	perKey   map[string]int
	byUser   map[string]map[*Stream]struct{}
	byDoc    map[string]map[*Stream]struct{}
	dirtyU   map[string]struct{}
	dirtyD   map[string]struct{}
	dirtyAll bool
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	stopped  bool

	refusedNode, refusedUser, refusedPresence *metrics.Counter
	closedBy                                  map[string]*metrics.Counter
}

// NewRegistry returns a registry that counts in set and starts its
// revoker.
func NewRegistry(cfg Config, set *metrics.Set) *Registry {
	st := &Registry{cfg: cfg,
		perKey: map[string]int{}, byUser: map[string]map[*Stream]struct{}{}, byDoc: map[string]map[*Stream]struct{}{},
		dirtyU: map[string]struct{}{}, dirtyD: map[string]struct{}{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		refusedNode:     set.NewCounter(`troupe_streams_refused_total{reason="node_limit"}`),
		refusedUser:     set.NewCounter(`troupe_streams_refused_total{reason="user_limit"}`),
		refusedPresence: set.NewCounter(`troupe_streams_refused_total{reason="presence_limit"}`),
		closedBy:        map[string]*metrics.Counter{},
	}
	for _, r := range []string{ReasonRevoked, ReasonDeleted, ReasonExpired, ReasonRateLimited, ReasonLinkExpired, ReasonGone} {
		st.closedBy[r] = set.NewCounter(`troupe_streams_closed_total{reason="` + r + `"}`)
	}
	set.NewGauge(`troupe_streams_open`, func() float64 {
		st.mu.Lock()
		defer st.mu.Unlock()
		return float64(st.total)
	})
	go st.revoker()
	return st
}

// Close stops the revoker (streams themselves end with their connections).
func (st *Registry) Close() {
	st.mu.Lock()
	if st.stopped {
		st.mu.Unlock()
		return
	}
	st.stopped = true
	st.mu.Unlock()
	close(st.stop)
	<-st.done
}

// Len is the number of streams open (or being opened).
func (st *Registry) Len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.total
}

// LimitError is why Admit refused a stream: the node's limit, or the
// key's (PerUser).
type LimitError struct {
	PerUser bool
	Limit   int
}

func (e *LimitError) Error() string {
	if e.PerUser {
		return "you hold the maximum of " + strconv.Itoa(e.Limit) + " open streams on this node; close one first"
	}
	return "this node serves its maximum of " + strconv.Itoa(e.Limit) + " streams; retry later or on another node"
}

// Admit reserves a place for a new stream of key, or says why not
// (*LimitError).
func (st *Registry) Admit(key string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.total >= st.cfg.MaxStreams {
		st.refusedNode.Inc()
		return &LimitError{Limit: st.cfg.MaxStreams}
	}
	if st.perKey[key] >= st.cfg.MaxStreamsPerUser {
		st.refusedUser.Inc()
		return &LimitError{PerUser: true, Limit: st.cfg.MaxStreamsPerUser}
	}
	st.total++
	st.perKey[key]++
	return nil
}

// Release gives back a place Admit reserved.
func (st *Registry) Release(key string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.total--
	if st.perKey[key]--; st.perKey[key] <= 0 {
		delete(st.perKey, key)
	}
}

// Add registers an admitted stream that holds token (hasToken: one was
// given); user is its user's id ("" if none), expires when its token
// stops being valid (zero: never).
func (st *Registry) Add(x *Stream, token string, hasToken bool, user string, expires time.Time) {
	x.mu.Lock()
	x.token, x.hasToken = token, hasToken
	x.mu.Unlock()
	st.mu.Lock()
	if user != "" {
		addTo(st.byUser, user, x)
	}
	addTo(st.byDoc, x.DocID, x)
	st.mu.Unlock()
	x.setExpiry(st, expires)
}

// Remove unregisters a stream and releases its place.
func (st *Registry) Remove(x *Stream, user string) {
	x.mu.Lock()
	x.closed = true
	if x.expiry != nil {
		x.expiry.Stop()
	}
	x.mu.Unlock()
	st.mu.Lock()
	if user != "" {
		removeFrom(st.byUser, user, x)
	}
	removeFrom(st.byDoc, x.DocID, x)
	st.mu.Unlock()
	st.Release(x.Key)
}

func addTo(m map[string]map[*Stream]struct{}, k string, x *Stream) {
	set := m[k]
	if set == nil {
		set = map[*Stream]struct{}{}
		m[k] = set
	}
	set[x] = struct{}{}
}

func removeFrom(m map[string]map[*Stream]struct{}, k string, x *Stream) {
	if set := m[k]; set != nil {
		delete(set, x)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// Renew gives a stream a fresh token, which stops being valid at
// expires (zero: never).
func (st *Registry) Renew(x *Stream, token string, expires time.Time) {
	x.mu.Lock()
	x.token, x.hasToken = token, true
	x.mu.Unlock()
	x.setExpiry(st, expires)
}

// Credentials are the token the stream holds (hasToken: one was given)
// and when it stops being valid (zero: never).
func (x *Stream) Credentials() (token string, hasToken bool, expires time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.token, x.hasToken, x.expires
}

// setExpiry (re)arms the stream's token-expiry check.
func (x *Stream) setExpiry(st *Registry, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expires = at
	if x.expiry != nil {
		x.expiry.Stop()
		x.expiry = nil
	}
	if !x.LinkExpires.IsZero() && (at.IsZero() || x.LinkExpires.Before(at)) {
		at = x.LinkExpires
	}
	if x.closed || at.IsZero() {
		return
	}
	x.expiry = time.AfterFunc(time.Until(at), func() { st.Check(x) })
}

// UserNarrowed and DocNarrowed are told (by the actors, which must not
// block) of a user ("": every user) or document whose streams must be
// checked again.
func (st *Registry) UserNarrowed(userID string) {
	st.mu.Lock()
	if userID == "" {
		st.dirtyAll = true
	} else if _, ok := st.byUser[userID]; ok {
		st.dirtyU[userID] = struct{}{}
	} else {
		st.mu.Unlock()
		return
	}
	st.mu.Unlock()
	st.poke()
}

// DocNarrowed: see UserNarrowed.
func (st *Registry) DocNarrowed(docID string) {
	st.mu.Lock()
	if _, ok := st.byDoc[docID]; !ok {
		st.mu.Unlock()
		return
	}
	st.dirtyD[docID] = struct{}{}
	st.mu.Unlock()
	st.poke()
}

func (st *Registry) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// revoker checks the streams of the users and documents it is told of.
func (st *Registry) revoker() {
	defer close(st.done)
	for {
		select {
		case <-st.stop:
			return
		case <-st.wake:
		}
		st.mu.Lock()
		var todo []*Stream
		if st.dirtyAll {
			for _, set := range st.byDoc {
				for x := range set {
					todo = append(todo, x)
				}
			}
		} else {
			for u := range st.dirtyU {
				for x := range st.byUser[u] {
					todo = append(todo, x)
				}
			}
			for d := range st.dirtyD {
				for x := range st.byDoc[d] {
					todo = append(todo, x)
				}
			}
		}
		st.dirtyAll = false
		clear(st.dirtyU)
		clear(st.dirtyD)
		st.mu.Unlock()
		for _, x := range todo {
			st.Check(x)
		}
	}
}

// Check ends the stream if its holder may no longer read its document.
func (st *Registry) Check(x *Stream) {
	x.mu.Lock()
	closed := x.closed
	x.mu.Unlock()
	if closed {
		return
	}
	if reason := st.cfg.Denied(x); reason != "" {
		if x.End != nil {
			x.End(reason)
			return
		}
		st.cfg.Revoke(x.DocID, x.Sub, reason)
	}
}

// Ended counts a stream closed for reason.
func (st *Registry) Ended(reason string) {
	if c := st.closedBy[reason]; c != nil {
		c.Inc()
	}
}

// RefusedPresence counts a stream refused for its document's presence
// limit.
func (st *Registry) RefusedPresence() { st.refusedPresence.Inc() }
