package api

import (
	"errors"
	"strconv"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/transport/stream"
)

// GET /v1/watch (SSE) and /v1/watch/ws (WebSocket): the change feed of
// users, documents, policies and members, as this node applies the log
// (package feed), filtered by the caller's rights. Each event is one
// change, its id "<index>-<n>". A stream starts after ?from=<index>
// (default: this node's applied index), or after the Last-Event-ID (or
// ?last_event_id=) it resumes from: everything after it is replayed from
// the node's history, then the stream goes live, with no gap and no
// duplicate; a position older than the history is 410 gone with
// details.oldest (list again: every listing answers X-Troupe-Index, the
// index to watch from). A stream counts against the stream limits and
// ends with its holder's rights, as a document's stream does (package
// stream); one that falls behind the history ends with "closed"
// {"reason":"gone"}.
//
// Goroutines: the handler's stream writer (SSE) or the socket's pump
// (WebSocket) alone reads the subscription; the registry's revoker may
// end the stream (watcher.end) from its own.

// watchBatch bounds the changes read from the feed at once.
const watchBatch = 256

// watcher is one open watch stream.
type watcher struct {
	x      *stream.Stream
	sub    *feed.Subscription
	kinds  feed.Kind
	user   string // the caller's id ("" for an anonymous --insecure admin)
	admin  bool
	start  feed.Position
	ended  chan struct{}
	once   sync.Once
	reason string // why it ended, set before ended closes
}

// end ends the stream for reason (the registry's revoker, any goroutine).
func (w *watcher) end(reason string) {
	w.once.Do(func() {
		w.reason = reason
		close(w.ended)
	})
}

// visible says whether the watcher may hear of c: admins of everything
// they asked for; users of their own record and of the documents they
// may read (by the documents' own rule), the change that takes a
// document away from them being the last they hear of it.
func (w *watcher) visible(c *feed.Change) bool {
	if w.kinds&c.Kind == 0 {
		return false
	}
	if w.admin {
		return true
	}
	if w.user == "" {
		return false
	}
	switch c.Kind {
	case feed.KindUser:
		return c.ID == w.user
	case feed.KindDoc:
		return c.Doc != nil && (c.Doc.MayRead(w.user, false) || c.LostReader == w.user)
	}
	return false
}

// watchQuery is what a watch request asks for.
type watchQuery struct {
	kinds    feed.Kind
	after    feed.Position
	hasAfter bool
}

// parseWatchQuery reads kinds, from and Last-Event-ID (or
// last_event_id; it wins over from) for a caller.
func parseWatchQuery(kinds, from, lastEventID []byte, admin bool) (watchQuery, *apiError) {
	q := watchQuery{kinds: feed.KindUser | feed.KindDoc}
	if admin {
		q.kinds = feed.AllKinds
	}
	if kinds != nil {
		k, err := feed.ParseKinds(string(kinds))
		if err != nil {
			return q, badRequest(err.Error(), "kinds")
		}
		if !admin && k&(feed.KindPolicy|feed.KindMember) != 0 {
			return q, newError("forbidden", "only admins may watch policies and members")
		}
		q.kinds = k
	}
	switch {
	case len(lastEventID) > 0:
		p, err := feed.ParsePosition(string(lastEventID))
		if err != nil {
			return q, badRequest(err.Error(), "Last-Event-ID")
		}
		q.after, q.hasAfter = p, true
	case from != nil:
		i, err := feed.ParseIndex(string(from))
		if err != nil {
			return q, badRequest("from must be a log index, an integer from 0 to "+maxUint64Text, "from")
		}
		q.after, q.hasAfter = feed.After(i), true
	}
	return q, nil
}

// openWatch admits, subscribes and registers a watch stream, or answers
// why not. The caller must end it with closeWatch.
func (s *Server) openWatch(ctx *fasthttp.RequestCtx) (*watcher, bool) {
	c := callerOf(ctx)
	args := ctx.QueryArgs()
	last := ctx.Request.Header.Peek("Last-Event-ID")
	if len(last) == 0 {
		last = args.Peek("last_event_id")
	}
	var kinds, from []byte
	if args.Has("kinds") {
		kinds = append([]byte{}, args.Peek("kinds")...)
	}
	if args.Has("from") {
		from = append([]byte{}, args.Peek("from")...)
	}
	q, e := parseWatchQuery(kinds, from, last, c.admin)
	if e != nil {
		writeError(ctx, e)
		return nil, false
	}
	if s.users() == nil {
		writeError(ctx, s.node.NotInitialised())
		return nil, false
	}
	key := s.limitKey(ctx)
	if !s.admitStream(ctx, key) {
		return nil, false
	}
	w := &watcher{kinds: q.kinds, admin: c.admin, ended: make(chan struct{})}
	if c.signedIn() {
		w.user = c.uid
	}
	if !q.hasAfter {
		q.after = feed.After(s.node.AppliedIndex())
	} else if err := s.node.WaitWatchable(q.after.Index, time.Now().Add(notYetWait)); err != nil {
		s.streams.Release(key)
		writeError(ctx, newError("unavailable", "this node has not applied index "+strconv.FormatUint(q.after.Index, 10)+" yet; retry, or watch on another node"))
		return nil, false
	}
	sub, err := s.node.Watch(q.after)
	if err != nil {
		s.streams.Release(key)
		var gone *feed.GoneError
		if errors.As(err, &gone) {
			ae := newError("gone", gone.Error())
			ae.Details = map[string]any{"oldest": gone.Oldest}
			writeError(ctx, ae)
			return nil, false
		}
		writeError(ctx, err)
		return nil, false
	}
	w.sub, w.start = sub, q.after
	token, hasToken := bearerToken(ctx)
	w.x = &stream.Stream{Key: key, End: w.end}
	s.streams.Add(w.x, token, hasToken, w.user, s.tokenExpiry(token, hasToken))
	// A right lost between the request's authentication and the
	// registration above was told to nobody: check once now.
	s.streams.Check(w.x)
	setIndex(ctx, q.after.Index)
	return w, true
}

// closeWatch ends a watch stream: unsubscribes and gives its place back.
func (s *Server) closeWatch(w *watcher) {
	w.sub.Close()
	s.streams.Remove(w.x, w.user)
}

// watchDenied says why a watch stream's holder may no longer hold it
// ("" if it still may, or if that cannot be told now).
func (s *Server) watchDenied(x *stream.Stream) string {
	token, hasToken, expires := x.Credentials()
	if !expires.IsZero() && !s.tokens.Now().Before(expires) {
		return stream.ReasonExpired
	}
	_, reason := s.streamCaller(token, hasToken)
	return reason
}

// next reads the next changes the watcher may hear of into buf (each
// rendered by add), or says the stream must end (gone: it fell behind
// the history). changes is scratch space, returned for reuse.
func (w *watcher) next(changes []*feed.Change, buf []byte, add func([]byte, *feed.Change) []byte) (_ []*feed.Change, _ []byte, more bool, _ *feed.GoneError) {
	changes, err := w.sub.Next(changes[:0], watchBatch)
	var gone *feed.GoneError
	if errors.As(err, &gone) {
		return changes, buf, false, gone
	}
	for _, c := range changes {
		if w.visible(c) {
			buf = add(buf, c)
		}
	}
	more = len(changes) == watchBatch // a full read: more may wait, read on at once
	clear(changes)
	return changes, buf, more, nil
}

func (s *Server) watchSSE(ctx *fasthttp.RequestCtx) {
	w, ok := s.openWatch(ctx)
	if !ok {
		return
	}
	shutdown := ctx.Done()
	serveSSEConn(ctx, func(send func([]byte) bool) {
		defer s.closeWatch(w)
		if !send([]byte(": watching after " + w.start.String() + "\n\n")) {
			return
		}
		keepAlive := time.NewTicker(s.cfg.StreamKeepAlive)
		defer keepAlive.Stop()
		var buf []byte
		var changes []*feed.Change
		var pace watchPace
		for {
			select {
			case <-pace.wake(w.sub.Wake()):
				var gone *feed.GoneError
				var more bool
				changes, buf, more, gone = w.next(changes, buf[:0], appendWatchSSE)
				if len(buf) > 0 {
					if !send(buf) {
						return
					}
					if !more {
						pace.wrote()
					}
				}
				if gone != nil {
					s.streams.Ended(stream.ReasonGone)
					send(appendSSEClosed(buf[:0], stream.ReasonGone))
					return
				}
			case <-pace.hold:
				pace.hold = nil
			case <-w.ended:
				s.streams.Ended(w.reason)
				send(appendSSEClosed(buf[:0], w.reason))
				return
			case <-keepAlive.C:
				if !send([]byte(": keep-alive\n\n")) {
					return
				}
				s.streams.Check(w.x) // the backstop of the revocation events
			case <-shutdown:
				return
			}
		}
	})
}

// watchBatchEvery is how long a watch stream waits after a write before
// it reads the feed again, so that the changes that came meanwhile go out
// in one write. With 64 watchers, a write per applied batch per watcher
// was half the node's CPU in write system calls (docs/BENCHMARKS-notes.md,
// the watch row); the wait adds at most this to a change's lag.
const watchBatchEvery = 10 * time.Millisecond

// watchPace holds a watch stream back for watchBatchEvery after a write.
// The subscription's wake-up stays pending meanwhile.
type watchPace struct {
	hold <-chan time.Time // fires when the stream may write again; nil: now
}

// wake is c, or nil (never ready) while the stream is held back.
func (p *watchPace) wake(c <-chan struct{}) <-chan struct{} {
	if p.hold != nil {
		return nil
	}
	return c
}

func (p *watchPace) wrote() { p.hold = time.After(watchBatchEvery) }

// watchChangeJSON is a change as the streams send it.
type watchChangeJSON struct {
	Index   uint64  `json:"index"`
	N       uint32  `json:"n"`
	Kind    string  `json:"kind"`
	Op      string  `json:"op"`
	ID      string  `json:"id"`
	Version *uint64 `json:"version,omitempty"`
	At      string  `json:"at"`
	Data    any     `json:"data,omitempty"`
}

// clusterMemberJSON is a cluster member in a change: its id and addresses.
type clusterMemberJSON struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
}

// renderChange is a change's JSON object: the record after the change as
// GET shows it (a document's listing, without its text); nothing for a
// deletion.
func renderChange(c *feed.Change) []byte {
	j := watchChangeJSON{Index: c.Index, N: c.N, Kind: c.Kind.String(), Op: c.Op.String(), ID: c.ID, At: formatTime(c.AtMs)}
	switch {
	case c.Kind == feed.KindDoc:
		v := c.Version
		j.Version = &v
		if c.Op != feed.OpDeleted && c.Doc != nil {
			j.Data = toDocJSON(c.Doc, false, nil)
		}
	case c.User != nil:
		v := c.Version
		j.Version = &v
		j.Data = toUserJSON(c.User)
	case c.Policy != nil:
		j.Data = toPolicyJSON(c.Policy, "cluster")
	case c.Member != nil:
		j.Data = clusterMemberJSON{ID: c.Member.ID, HTTPAddr: c.Member.HTTPAddr, RaftAddr: c.Member.RaftAddr}
	}
	b, err := json.Marshal(j)
	if err != nil {
		return []byte(`{"index":` + strconv.FormatUint(c.Index, 10) + `,"n":` + strconv.FormatUint(uint64(c.N), 10) + `}`)
	}
	return b
}

// appendWatchSSE appends a change as an SSE event.
func appendWatchSSE(b []byte, c *feed.Change) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, c.Index, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(c.N), 10)
	b = append(b, "\nevent: change\ndata: "...)
	b = append(b, c.Rendered(renderChange)...)
	return append(b, "\n\n"...)
}
