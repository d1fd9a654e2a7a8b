package api

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/auth"
)

// Open streams (SSE /v1/docs/{id}/events and WebSocket /v1/docs/{id}/ws):
// how many a node and a user may hold, and how a stream ends once its
// holder may no longer read its document.
//
// A stream lasts as long as a GET of its document with its token would
// succeed. What can change that is told to this node as it applies it:
// the document actor reports a document that lost a reader (an editor
// removed), the user shards report a user who was deleted, got a new role
// or token epoch, or lost a session (OnAuthNarrowed); a deleted document
// ends its subscriptions itself. The revoker goroutine then checks again
// every stream of that user or document, against this node's state
// only: the stream's token passed here once, and sessions never reopen,
// epochs never go back, ids are never reused, so a failed check is final
// (no read barrier). A timer per stream fires when its token expires;
// every keep-alive checks again as a backstop. A stream that fails ends
// with a "closed" event naming the reason.
//
// Ownership: streams.mu guards the maps and the pending sets; a stream's
// token fields are guarded by its own mu (a WebSocket's reader replaces
// them on "auth").

// Reasons a stream is closed (the "closed" event's reason).
const (
	reasonRevoked     = "access_revoked"
	reasonDeleted     = actors.ReasonDeleted
	reasonExpired     = "token_expired"
	reasonRateLimited = "rate_limited" // WebSocket only: kept sending over the limit
)

// stream is one open subscription.
type stream struct {
	docID string
	key   string // what --max-streams-per-user counts: the user, else the client address
	sub   *actors.Subscriber

	mu       sync.Mutex
	token    string
	hasToken bool
	expires  time.Time   // when the token stops being valid (zero: never)
	expiry   *time.Timer // fires then
	closed   bool
}

type streams struct {
	s       *Server
	maxNode int
	maxUser int

	mu       sync.Mutex
	total    int
	perKey   map[string]int
	byUser   map[string]map[*stream]struct{}
	byDoc    map[string]map[*stream]struct{}
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

func newStreams(s *Server, set *metrics.Set) *streams {
	st := &streams{s: s, maxNode: s.cfg.MaxStreams, maxUser: s.cfg.MaxStreamsPerUser,
		perKey: map[string]int{}, byUser: map[string]map[*stream]struct{}{}, byDoc: map[string]map[*stream]struct{}{},
		dirtyU: map[string]struct{}{}, dirtyD: map[string]struct{}{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		refusedNode:     set.NewCounter(`troupe_streams_refused_total{reason="node_limit"}`),
		refusedUser:     set.NewCounter(`troupe_streams_refused_total{reason="user_limit"}`),
		refusedPresence: set.NewCounter(`troupe_streams_refused_total{reason="presence_limit"}`),
		closedBy:        map[string]*metrics.Counter{},
	}
	for _, r := range []string{reasonRevoked, reasonDeleted, reasonExpired, reasonRateLimited} {
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

// close stops the revoker (streams themselves end with their connections).
func (st *streams) close() {
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

// count is the number of streams open (or being opened).
func (st *streams) count() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.total
}

// admit reserves a place for a new stream of key, or says why not.
func (st *streams) admit(key string) *apiError {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.total >= st.maxNode {
		st.refusedNode.Inc()
		e := newError("unavailable", "this node serves its maximum of "+strconv.Itoa(st.maxNode)+" streams; retry later or on another node")
		e.Details = map[string]any{"limit": st.maxNode}
		return e
	}
	if st.perKey[key] >= st.maxUser {
		st.refusedUser.Inc()
		e := newError("rate_limited", "you hold the maximum of "+strconv.Itoa(st.maxUser)+" open streams on this node; close one first")
		e.Details = map[string]any{"limit": st.maxUser}
		return e
	}
	st.total++
	st.perKey[key]++
	return nil
}

// release gives back a place admit reserved.
func (st *streams) release(key string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.total--
	if st.perKey[key]--; st.perKey[key] <= 0 {
		delete(st.perKey, key)
	}
}

// add registers an admitted stream; user is its user's id ("" if none),
// expires when its token stops being valid (zero: never).
func (st *streams) add(x *stream, user string, expires time.Time) {
	st.mu.Lock()
	if user != "" {
		addTo(st.byUser, user, x)
	}
	addTo(st.byDoc, x.docID, x)
	st.mu.Unlock()
	x.setExpiry(st, expires)
}

// remove unregisters a stream and releases its place.
func (st *streams) remove(x *stream, user string) {
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
	removeFrom(st.byDoc, x.docID, x)
	st.mu.Unlock()
	st.release(x.key)
}

func addTo(m map[string]map[*stream]struct{}, k string, x *stream) {
	set := m[k]
	if set == nil {
		set = map[*stream]struct{}{}
		m[k] = set
	}
	set[x] = struct{}{}
}

func removeFrom(m map[string]map[*stream]struct{}, k string, x *stream) {
	if set := m[k]; set != nil {
		delete(set, x)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// setExpiry (re)arms the stream's token-expiry check.
func (x *stream) setExpiry(st *streams, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expires = at
	if x.expiry != nil {
		x.expiry.Stop()
		x.expiry = nil
	}
	if x.closed || at.IsZero() {
		return
	}
	x.expiry = time.AfterFunc(time.Until(at), func() { st.check(x) })
}

// userNarrowed and docNarrowed are told (by the actors, which must not
// block) of a user or document whose streams must be checked again.
func (st *streams) userNarrowed(userID string) {
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

func (st *streams) docNarrowed(docID string) {
	st.mu.Lock()
	if _, ok := st.byDoc[docID]; !ok {
		st.mu.Unlock()
		return
	}
	st.dirtyD[docID] = struct{}{}
	st.mu.Unlock()
	st.poke()
}

func (st *streams) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// revoker checks the streams of the users and documents it is told of.
func (st *streams) revoker() {
	defer close(st.done)
	for {
		select {
		case <-st.stop:
			return
		case <-st.wake:
		}
		st.mu.Lock()
		var todo []*stream
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
			st.check(x)
		}
	}
}

// check ends the stream if its holder may no longer read its document.
func (st *streams) check(x *stream) {
	x.mu.Lock()
	closed := x.closed
	x.mu.Unlock()
	if closed {
		return
	}
	if reason := st.s.streamDenied(x); reason != "" {
		st.s.docs.Revoke(x.docID, x.sub, reason)
	}
}

// ended counts a stream closed for reason.
func (st *streams) ended(reason string) {
	if c := st.closedBy[reason]; c != nil {
		c.Inc()
	}
}

// streamDenied says why the stream's holder may no longer read its
// document ("" if it still may, or if that cannot be told now: a check
// that times out waits for the next one).
func (s *Server) streamDenied(x *stream) string {
	doc := s.docs.Latest(x.docID)
	if doc == nil {
		return reasonDeleted
	}
	x.mu.Lock()
	token, hasToken, expires := x.token, x.hasToken, x.expires
	x.mu.Unlock()
	if !expires.IsZero() && !s.tokens.Now().Before(expires) {
		return reasonExpired
	}
	c, reason := s.streamCaller(token, hasToken)
	if reason != "" || c == nil {
		return reason
	}
	uid := ""
	if c.user != nil {
		uid = c.user.ID
	}
	if !doc.MayRead(uid, c.admin) {
		return reasonRevoked
	}
	return ""
}

// streamCaller is tokenCaller for a token that passed on this node
// before: no read barrier. A nil caller with no reason: undecided (the
// user's shard did not answer in time).
func (s *Server) streamCaller(raw string, hasToken bool) (*caller, string) {
	if !hasToken && s.cfg.Insecure {
		return insecureCaller, ""
	}
	claims, err := s.tokens.Verify(raw)
	if err != nil {
		if s.cfg.Insecure {
			return insecureCaller, ""
		}
		if errors.Is(err, auth.ErrNotReady) {
			return nil, ""
		}
		return nil, reasonRevoked
	}
	users := s.users()
	if users == nil {
		return nil, ""
	}
	u, err := users.Get(claims.Subject, s.deadline())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, reasonRevoked
	}
	if err != nil {
		return nil, ""
	}
	if tokenHolds(u, claims) != nil {
		return nil, reasonRevoked
	}
	return &caller{user: u, admin: u.Role == storage.RoleAdmin, sid: claims.SID}, ""
}

// openStream admits and registers a stream of the request's document, or
// answers why not. The caller must end it with closeStream.
func (s *Server) openStream(ctx *fasthttp.RequestCtx) (x *stream, d *storage.Doc, clientID string, ok bool) {
	key := s.limitKey(ctx)
	if e := s.streams.admit(key); e != nil {
		if e.Code == "rate_limited" {
			ctx.Response.Header.Set("Retry-After", "1")
		}
		writeError(ctx, e)
		return nil, nil, "", false
	}
	d, sub, clientID, ok := s.subscribe(ctx)
	if !ok {
		s.streams.release(key)
		return nil, nil, "", false
	}
	token, hasToken := bearerToken(ctx)
	x = &stream{docID: d.ID, key: key, sub: sub, token: token, hasToken: hasToken}
	user := ""
	if c := callerOf(ctx); c.user != nil {
		user = c.user.ID
	}
	s.streams.add(x, user, s.tokenExpiry(token, hasToken))
	// A right lost between the request's authentication and the
	// registration above was told to nobody: check once now.
	s.streams.check(x)
	return x, d, clientID, true
}

// closeStream ends a stream: unsubscribes and gives its place back.
func (s *Server) closeStream(x *stream) {
	s.docs.Unsubscribe(x.docID, x.sub)
	user := x.sub.User()
	s.streams.remove(x, user)
}

// tokenExpiry is when a stream's token stops being valid (zero: it has
// none to expire).
func (s *Server) tokenExpiry(raw string, hasToken bool) time.Time {
	if !hasToken || s.cfg.Insecure {
		return time.Time{}
	}
	if c, err := s.tokens.Verify(raw); err == nil {
		return s.tokens.ExpiresAt(c)
	}
	return time.Time{}
}
