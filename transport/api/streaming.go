package api

import (
	"bufio"
	"errors"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/auth"
	"github.com/troupe-db/troupe/transport/stream"
)

// Opening and closing the event streams of GET /v1/docs/{id}/events (SSE)
// and /v1/docs/{id}/ws, and deciding whether a stream's holder still may
// read its document; package stream keeps the open streams and ends them.

// streamDenied says why the stream's holder may no longer read its
// document ("" if it still may, or if that cannot be told now: a check
// that times out waits for the next one).
func (s *Server) streamDenied(x *stream.Stream) string {
	if x.End != nil {
		return s.watchDenied(x)
	}
	doc := s.docs.Latest(x.DocID)
	if doc == nil {
		return stream.ReasonDeleted
	}
	token, hasToken, expires := x.Credentials()
	now := s.tokens.Now()
	c := &caller{} // a guest: its link is all it has
	if hasToken || x.Link == "" {
		if !expires.IsZero() && !now.Before(expires) {
			return stream.ReasonExpired
		}
		var reason string
		c, reason = s.streamCaller(token, hasToken)
		if reason != "" || c == nil {
			return reason
		}
	}
	dc := c.docCaller(doc.ID)
	dc.Link = x.Link
	if doc.Access(dc, now.UnixMilli()) >= storage.AccessRead {
		return ""
	}
	if l := doc.Link(x.Link); l != nil && l.Expired(now.UnixMilli()) {
		return stream.ReasonLinkExpired
	}
	return stream.ReasonRevoked
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
		return nil, stream.ReasonRevoked
	}
	users := s.users()
	if users == nil {
		return nil, ""
	}
	st, err := users.TokenState(claims.Subject, claims.SID, s.deadline())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, stream.ReasonRevoked
	}
	if err != nil {
		return nil, ""
	}
	if tokenHolds(st, claims) != nil {
		return nil, stream.ReasonRevoked
	}
	return &caller{uid: claims.Subject, role: st.Role, admin: st.Role == storage.RoleAdmin, sid: claims.SID}, ""
}

// openStream admits and registers a stream of the request's document, or
// answers why not. The caller must end it with closeStream.
func (s *Server) openStream(ctx *fasthttp.RequestCtx) (x *stream.Stream, d *storage.Doc, clientID string, ok bool) {
	key := s.limitKey(ctx)
	if !s.admitStream(ctx, key) {
		return nil, nil, "", false
	}
	d, sub, clientID, ok := s.subscribe(ctx)
	if !ok {
		s.streams.Release(key)
		return nil, nil, "", false
	}
	token, hasToken := bearerToken(ctx)
	x = &stream.Stream{DocID: d.ID, Key: key, Sub: sub}
	c := callerOf(ctx)
	user := ""
	if c.signedIn() {
		user = c.uid
	}
	if dc := c.docCaller(d.ID); dc.Link != "" {
		x.Link = dc.Link
		if c.link.expiresMs != 0 {
			x.LinkExpires = time.UnixMilli(c.link.expiresMs)
		}
	}
	s.streams.Add(x, token, hasToken, user, s.tokenExpiry(token, hasToken))
	// A right lost between the request's authentication and the
	// registration above was told to nobody: check once now.
	s.streams.Check(x)
	return x, d, clientID, true
}

// admitStream reserves a stream's place for key (the node's and the
// key's limits), or answers why not; s.streams.Release gives it back.
func (s *Server) admitStream(ctx *fasthttp.RequestCtx, key string) bool {
	err := s.streams.Admit(key)
	if err == nil {
		return true
	}
	e := newError("unavailable", err.Error())
	var le *stream.LimitError
	if errors.As(err, &le) {
		if le.PerUser {
			e = newError("rate_limited", err.Error())
			ctx.Response.Header.Set("Retry-After", "1")
		}
		e.Details = map[string]any{"limit": le.Limit}
	}
	writeError(ctx, e)
	return false
}

// closeStream ends a stream: unsubscribes and gives its place back.
func (s *Server) closeStream(x *stream.Stream) {
	s.docs.Unsubscribe(x.DocID, x.Sub)
	user := x.Sub.User()
	s.streams.Remove(x, user)
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

// serveSSE answers ctx with an event stream (text/event-stream, not
// cached or buffered by proxies) and runs body as the response's writer.
// send writes b and flushes it, and reports whether the client still
// reads; the server's write timeout covers a whole response, so a stream
// extends it per write.
func serveSSE(ctx *fasthttp.RequestCtx, body func(send func(b []byte) bool)) {
	conn := ctx.Conn()
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		body(func(b []byte) bool {
			_ = conn.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
			if _, err := w.Write(b); err != nil {
				return false
			}
			return w.Flush() == nil
		})
	})
}
