package api

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// Share links and the rights of a request on a document (API.md, "Roles
// and share links"). A request to one document's routes (access level
// docRoute) may present a share token, in ?share= or X-Troupe-Share: it
// then acts with the link's role, without an account (a guest) or beside
// the user of its access token. A token is looked up only among the
// route's document's links, by a hash bound to that document's id, so it
// is nothing on another document or on any other route. What a caller may
// do is always storage's Doc.Access (through Server.access): routes,
// streams and apply ask the same rule.

// shareHeader carries a share token (the query's share= does too).
const shareHeader = "X-Troupe-Share"

// maxShareTokenBytes bounds a presented token: ours are 32 hex digits.
const maxShareTokenBytes = 128

// shareCaller is the share link a request presents.
type shareCaller struct {
	docID string // the document whose link it is
	id    string // the link's id
	// token as presented: a submit forwarded to the leader shows it, and
	// the leader resolves it again.
	token     string
	expiresMs int64 // 0: never
}

// shareToken returns the share token a request presents ("" none).
func shareToken(ctx *fasthttp.RequestCtx) string {
	if v := ctx.Request.Header.Peek(shareHeader); len(v) > 0 {
		return string(v)
	}
	return string(ctx.QueryArgs().Peek("share"))
}

// authenticateShare finds the caller of a document route's request that
// presents a share token: the user of its access token if it sends one
// (refused as any request if that token is bad), else nobody, with the
// route's document's link of that token.
func (s *Server) authenticateShare(ctx *fasthttp.RequestCtx, token string) (*caller, *apiError) {
	c := &caller{}
	if _, hasBearer := bearerToken(ctx); hasBearer {
		u, e := s.authenticate(ctx)
		if e != nil {
			return nil, e
		}
		cc := *u
		c = &cc
	}
	link, e := s.resolveShare(context.Background(), docID(ctx), token, s.deadline())
	if e != nil {
		s.authMetrics.shareRejected.Inc()
		return nil, e
	}
	c.link = link
	return c, nil
}

// resolveShare finds the link of document docID whose token is token. A
// follower that does not know it yet (a link created a moment ago on the
// leader) catches up with the leader first. A token that matches no link
// is 401 unauthenticated; an expired link's, 401 link_expired.
func (s *Server) resolveShare(ctx context.Context, docID, token string, deadline time.Time) (*shareCaller, *apiError) {
	var l *storage.ShareLink
	if len(token) <= maxShareTokenBytes {
		l = s.findLink(docID, token)
		if l == nil && !s.node.IsLeader() {
			if err := s.node.ReadBarrier(ctx, replica.Linearizable, 0, deadline); err != nil {
				return nil, toAPIError(err)
			}
			l = s.findLink(docID, token)
		}
	}
	if l == nil {
		return nil, newError("unauthenticated", "the share link is not valid for this document: revoked, or never one of its links")
	}
	if l.Expired(s.nowMs()) {
		e := newError("link_expired", "the share link has expired; ask the document's owner for another")
		e.Details = map[string]any{"expires_at": formatTime(l.ExpiresMs)}
		return nil, e
	}
	return &shareCaller{docID: docID, id: l.ID, token: token, expiresMs: l.ExpiresMs}, nil
}

// findLink returns a copy of document docID's link of token on this
// node's state, or nil.
func (s *Server) findLink(docID, token string) *storage.ShareLink {
	d := s.docs.Latest(docID)
	if d == nil {
		return nil
	}
	l := d.LinkByToken(token)
	if l == nil {
		return nil
	}
	c := *l
	return &c
}

func (s *Server) nowMs() int64 { return s.tokens.Now().UnixMilli() }

// docCaller is who c is to document docID, for Doc.Access: its share
// link counts only on the document it is a link of.
func (c *caller) docCaller(docID string) storage.DocCaller {
	dc := storage.DocCaller{Admin: c.admin}
	if c.signedIn() {
		dc.User = c.uid
	}
	if c.link != nil && c.link.docID == docID {
		dc.Link = c.link.id
	}
	return dc
}

// access is what the request's caller may do with d now. Every document
// route asks it (apply asks storage's Doc.Access again, at the command's
// time); streams ask it through streamDenied.
func (s *Server) access(ctx *fasthttp.RequestCtx, d *storage.Doc) storage.DocAccess {
	return d.Access(callerOf(ctx).docCaller(d.ID), s.nowMs())
}

// guest reports whether c acts through a share link without an account.
func (c *caller) guest() bool { return !c.signedIn() && !c.admin && c.link != nil }

// presenceName is how c shows in a document's presence: its user id, or
// for a guest "guest-" and the start of its link's id.
func (c *caller) presenceName() string {
	switch {
	case c.signedIn():
		return c.uid
	case c.guest():
		return "guest-" + c.link.id[:4]
	}
	return ""
}

// linkLimitKey is the rate-limit key of a guest: its link's, so that
// guests of one link share a bucket, as a user's requests do.
func linkLimitKey(l *shareCaller) string { return "link:" + l.docID + "/" + l.id }
