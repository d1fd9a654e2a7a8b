package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/auth"
)

// Authentication and authorization happen here, in one place: every route
// is registered with the access it needs (API.md, Roles), and guard
// enforces it before the handler runs, leaving the caller in the request
// context. Handlers that act on one user (the /v1/users/{id} routes)
// check "self or admin" with the caller they are given.

// access is what a route requires of its caller.
type access uint8

const (
	// public routes need no caller: probes, metrics, register, login,
	// refresh, and the node-to-node routes, which check the cluster
	// secret themselves.
	public access = iota
	// signedIn routes need a valid access token (any role).
	signedIn
	// adminOnly routes need an admin's token.
	adminOnly
	// peerOrAdmin routes accept another node proving itself (cluster
	// secret or client certificate) or an admin.
	peerOrAdmin
	// docRoute routes are one document's (/v1/docs/{id}...): they need a
	// valid access token, or a share link of that document (share.go),
	// or both; the handler asks Doc.Access what the caller may do.
	docRoute
)

// caller is who sent a request.
type caller struct {
	// uid is the authenticated user's id; "" for an anonymous --insecure
	// request, another node or a guest with a share link. The token
	// check reads only the user's token state (storage.TokenState), not
	// the record: a handler that needs more reads it.
	uid   string
	role  storage.Role // the user's role when the token was checked
	admin bool
	sid   string // the session the access token came from
	// link is the share link of the route's document the request
	// presents (nil: none).
	link *shareCaller
}

// is reports whether the caller is the user with id.
func (c *caller) is(id string) bool { return c.uid != "" && c.uid == id }

// signedIn reports whether the caller is a user with a valid access token.
func (c *caller) signedIn() bool { return c.uid != "" }

type callerKey struct{}

// callerOf returns the caller guard left in the request context.
func callerOf(ctx *fasthttp.RequestCtx) *caller {
	c, _ := ctx.UserValue(callerKey{}).(*caller)
	if c == nil {
		return &caller{}
	}
	return c
}

var (
	insecureCaller = &caller{admin: true}
	peerCaller     = &caller{admin: true}
)

// guard enforces a route's access and records its caller.
func (s *Server) guard(level access, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	if level == public {
		return h
	}
	return func(ctx *fasthttp.RequestCtx) {
		if level == peerOrAdmin && s.peerProven(ctx) {
			ctx.SetUserValue(callerKey{}, peerCaller)
			h(ctx)
			return
		}
		if level == docRoute {
			if token := shareToken(ctx); token != "" {
				c, e := s.authenticateShare(ctx, token)
				if e != nil {
					writeError(ctx, e)
					return
				}
				ctx.SetUserValue(callerKey{}, c)
				h(ctx)
				return
			}
		}
		c, e := s.authenticate(ctx)
		if e != nil {
			writeError(ctx, e)
			return
		}
		if (level == adminOnly || level == peerOrAdmin) && !c.admin {
			writeError(ctx, newError("forbidden", "this route is for admins"))
			return
		}
		ctx.SetUserValue(callerKey{}, c)
		h(ctx)
	}
}

// authenticate finds the caller of a request from its bearer token. With
// --insecure a request without a (valid) token acts as admin.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx) (*caller, *apiError) {
	b, hasToken := bearerBytes(ctx)
	// The token is only verified, never kept (Tokens.Verify copies what
	// it remembers): it is read where it lies in the request.
	c, e := s.tokenCaller(unsafe.String(unsafe.SliceData(b), len(b)), hasToken)
	switch {
	case e != nil && !hasToken:
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="troupe"`)
	case e != nil:
		s.authMetrics.tokenRejected.Inc()
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="troupe", error="invalid_token"`)
	}
	return c, e
}

// tokenCaller finds the caller a bearer token (hasToken: an Authorization
// header was sent) stands for. A forwarded write is checked with it again
// on the leader, with the token the follower was shown.
func (s *Server) tokenCaller(raw string, hasToken bool) (*caller, *apiError) {
	if !hasToken && s.cfg.Insecure {
		return insecureCaller, nil
	}
	if !hasToken {
		return nil, newError("unauthenticated", "this route needs an access token: Authorization: Bearer <token> (POST /v1/auth/login)")
	}
	c, e := s.verifyCaller(raw)
	if e != nil && s.cfg.Insecure {
		return insecureCaller, nil
	}
	return c, e
}

// verifyCaller checks an access token against the keys and the user's
// current state on this node: a deleted user, one whose token epoch moved
// on (logout everywhere, new password, new role), or a token whose session
// (refresh family) has ended (logout, reuse detected, evicted) is refused.
func (s *Server) verifyCaller(raw string) (*caller, *apiError) {
	claims, err := s.tokens.Verify(raw)
	if errors.Is(err, auth.ErrNotReady) {
		return nil, toAPIError(s.node.NotInitialised())
	}
	if err != nil {
		return nil, newError("unauthenticated", "the access token is not valid or has expired")
	}
	users := s.users()
	if users == nil {
		return nil, toAPIError(s.node.NotInitialised())
	}
	if s.revoked.known(claims) {
		return nil, newError("unauthenticated", "the access token was revoked; refresh it or log in again")
	}
	deadline := s.deadline()
	st, err := users.TokenState(claims.Subject, claims.SID, deadline)
	if errors.Is(err, storage.ErrNotFound) || err == nil && (st.Epoch < claims.Epoch || st.Epoch == claims.Epoch && !st.Session) {
		// This node may lag the one that issued the token (a user who
		// just registered or logged in elsewhere, a token of a newer
		// epoch): catch up to the leader's commit index and look again.
		if err := s.node.ReadBarrier(context.Background(), replica.Linearizable, 0, deadline); err != nil {
			return nil, toAPIError(err)
		}
		st, err = users.TokenState(claims.Subject, claims.SID, deadline)
		// Caught up: a token refused now is refused for good.
		if errors.Is(err, storage.ErrNotFound) || err == nil && tokenHolds(st, claims) != nil {
			s.revoked.add(claims, time.Now())
		}
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, newError("unauthenticated", "the access token's user no longer exists")
	}
	if err != nil {
		return nil, toAPIError(err)
	}
	if e := tokenHolds(st, claims); e != nil {
		return nil, e
	}
	return &caller{uid: claims.Subject, role: st.Role, admin: st.Role == storage.RoleAdmin, sid: claims.SID}, nil
}

// tokenHolds checks an access token's claims against its user's token
// state: the same token epoch, and its session still open. Sessions are
// never reopened and epochs never go back, so once this fails on a node
// that has seen the token pass, it fails for good.
func tokenHolds(st storage.TokenState, claims *auth.Claims) *apiError {
	if !st.Holds(claims.Epoch) {
		return newError("unauthenticated", "the access token was revoked; refresh it or log in again")
	}
	return nil
}

// bearerToken returns the token of an "Authorization: Bearer" header,
// or, on the streaming routes (which browsers cannot give headers), of
// the access_token query parameter (never logged: metrics and logs name
// routes, not URLs).
func bearerToken(ctx *fasthttp.RequestCtx) (string, bool) {
	b, ok := bearerBytes(ctx)
	return string(b), ok
}

// bearerBytes is bearerToken without the copy: the bytes are the
// request's, valid until it ends.
func bearerBytes(ctx *fasthttp.RequestCtx) ([]byte, bool) {
	h := ctx.Request.Header.Peek("Authorization")
	if len(h) == 0 {
		if streamingRoute(ctx.Path()) {
			if t := ctx.QueryArgs().Peek("access_token"); len(t) > 0 {
				return t, true
			}
		}
		return nil, false
	}
	const prefix = "bearer "
	if len(h) <= len(prefix) || !bytes.EqualFold(h[:len(prefix)], []byte(prefix)) {
		return nil, true // present but not a bearer token: refused as invalid
	}
	return bytes.TrimSpace(h[len(prefix):]), true
}

// peerProven reports whether the request comes from another node: it
// shows the cluster secret, or a client certificate from the cluster's CA.
func (s *Server) peerProven(ctx *fasthttp.RequestCtx) bool {
	if ctx.IsTLS() {
		if st := ctx.TLSConnectionState(); st != nil && len(st.VerifiedChains) > 0 {
			return true
		}
	}
	if s.cfg.ClusterSecret == "" {
		return false
	}
	got := ctx.Request.Header.Peek("X-Troupe-Cluster-Secret")
	return subtle.ConstantTimeCompare(got, []byte(s.cfg.ClusterSecret)) == 1
}

// proof is the forwarding proof for the current auth state, computed once
// per state.
type proof struct {
	auth  *storage.AuthState
	value string
}

func (s *Server) forwardProof() string {
	a := s.node.Auth()
	if a == nil {
		return ""
	}
	if p := s.proof.Load(); p != nil && p.auth == a {
		return p.value
	}
	p := &proof{auth: a, value: auth.ForwardProof(a.RefreshKey)}
	s.proof.Store(p)
	return p.value
}

// forwardedByPeer reports whether a request was forwarded by a node of
// this cluster (which already throttled and limited its caller).
func (s *Server) forwardedByPeer(ctx *fasthttp.RequestCtx) bool {
	want := s.forwardProof()
	got := ctx.Request.Header.Peek(forwardedHeader)
	return want != "" && subtle.ConstantTimeCompare(got, []byte(want)) == 1
}

type authProof = atomic.Pointer[proof]

// audit writes one line of the audit log: who did what, never a secret.
func (s *Server) audit(ctx *fasthttp.RequestCtx, msg string, attrs ...any) {
	attrs = append(attrs, slog.String("client", s.clientAddr(ctx)))
	s.reqLog(ctx).Info("audit: "+msg, attrs...)
}

// streamingRoute reports whether path is a document's events or
// WebSocket route.
func streamingRoute(path []byte) bool {
	if string(path) == "/v1/watch" || string(path) == "/v1/watch/ws" {
		return true
	}
	return bytes.HasPrefix(path, []byte("/v1/docs/")) && (bytes.HasSuffix(path, []byte("/events")) || bytes.HasSuffix(path, []byte("/ws")))
}
