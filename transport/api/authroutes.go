package api

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/auth"
)

// The /v1/auth routes (API.md, Auth).

type registerRequest struct {
	Name     *string `json:"name"`
	Email    *string `json:"email"`
	Password *string `json:"password"`
}

type loginRequest struct {
	Email    *string `json:"email"`
	Password *string `json:"password"`
}

type refreshRequest struct {
	RefreshToken *string `json:"refresh_token"`
}

type logoutRequest struct {
	RefreshToken *string `json:"refresh_token"`
	All          *bool   `json:"all"`
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// authMetrics count what the auth routes decide.
type authMetrics struct {
	loginOK, loginFailed, loginThrottled    *metrics.Counter
	refreshOK, refreshFailed, refreshReused *metrics.Counter
	tokenRejected, logouts, keyRotations    *metrics.Counter
	shareRejected                           *metrics.Counter // share tokens refused (unknown, revoked, expired)
}

func newAuthMetrics(set *metrics.Set) authMetrics {
	return authMetrics{
		loginOK:        set.NewCounter(`troupe_auth_logins_total{result="ok"}`),
		loginFailed:    set.NewCounter(`troupe_auth_logins_total{result="failed"}`),
		loginThrottled: set.NewCounter(`troupe_auth_logins_total{result="throttled"}`),
		refreshOK:      set.NewCounter(`troupe_auth_refreshes_total{result="ok"}`),
		refreshFailed:  set.NewCounter(`troupe_auth_refreshes_total{result="failed"}`),
		refreshReused:  set.NewCounter(`troupe_auth_refreshes_total{result="reuse_detected"}`),
		tokenRejected:  set.NewCounter(`troupe_auth_token_rejections_total`),
		logouts:        set.NewCounter(`troupe_auth_logouts_total`),
		keyRotations:   set.NewCounter(`troupe_auth_key_rotations_total`),
		shareRejected:  set.NewCounter(`troupe_auth_share_rejections_total`),
	}
}

var errBadCredentials = newError("unauthenticated", "invalid email or password")

// register creates a user with role "user": the one write anyone may make.
func (s *Server) register(ctx *fasthttp.RequestCtx) {
	var req registerRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	if req.Password == nil {
		writeError(ctx, badRequest("password is required", "password"))
		return
	}
	role := "user"
	s.createFrom(ctx, w, &createUserRequest{Name: req.Name, Email: req.Email, Password: req.Password, Role: &role})
}

// throttledLogin wraps the login handler, on the node that received the
// request: a client address or email with too many recent failures gets
// 429 before any password is checked, and a failure (401) is recorded
// after. A login forwarded by another node was throttled there.
func (s *Server) throttledLogin(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if s.forwardedByPeer(ctx) {
			h(ctx)
			return
		}
		var req loginRequest
		emailKey := ""
		if decodeJSON(ctx.PostBody(), &req) == nil && req.Email != nil {
			emailKey = "email:" + storage.EmailKey(*req.Email)
		}
		// The client address as the default policy counts it: behind a
		// trusted proxy, the client's, not the proxy's.
		addrKey := "addr:" + s.clientAddr(ctx)
		wait, blocked := s.loginThrottle.Blocked(addrKey)
		if emailKey != "" {
			if w, b := s.loginThrottle.Blocked(emailKey); b {
				wait, blocked = max(wait, w), true
			}
		}
		if blocked {
			s.authMetrics.loginThrottled.Inc()
			s.audit(ctx, "login throttled", slog.String("email_key", emailKey))
			e := newError("rate_limited", "too many failed logins; try again later")
			secs := int64(math.Ceil(wait.Seconds()))
			e.Details = map[string]any{"retry_after_s": secs}
			ctx.Response.Header.Set("Retry-After", strconv.FormatInt(secs, 10))
			writeError(ctx, e)
			return
		}
		h(ctx)
		if ctx.Response.StatusCode() == http.StatusUnauthorized {
			s.loginThrottle.Fail(addrKey)
			if emailKey != "" {
				s.loginThrottle.Fail(emailKey)
			}
		}
	}
}

// login checks a password and opens a session. The check runs on this
// node's state; apply checks again that the password did not change
// meanwhile. An unknown email costs the same hash as a wrong password.
func (s *Server) login(ctx *fasthttp.RequestCtx) {
	var req loginRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	if req.Email == nil || req.Password == nil {
		writeError(ctx, badRequest("email and password are required", ""))
		return
	}
	deadline := s.deadline()
	u, err := w.users.FindEmail(*req.Email, deadline)
	if err != nil {
		writeError(ctx, err)
		return
	}
	phc := s.hasher.Dummy()
	if u != nil && u.PasswordHash != "" {
		phc = u.PasswordHash
	}
	match, err := s.verifyPassword(*req.Password, phc, deadline)
	if err != nil {
		writeError(ctx, err)
		return
	}
	if !match || u == nil || u.PasswordHash == "" {
		s.authMetrics.loginFailed.Inc()
		s.audit(ctx, "login failed", slog.String("email_key", storage.EmailKey(*req.Email)))
		writeError(ctx, errBadCredentials)
		return
	}
	rt := auth.NewRefreshToken(u.ID)
	op := &storage.SessionOp{Action: storage.SessionOpen, UserID: u.ID, Family: rt.Family, Hash: rt.Hash(), PasswordCheck: storage.PasswordCheck(u.PasswordHash)}
	res, ok := s.propose(ctx, &storage.Command{Kind: storage.CmdSession, Stamp: s.node.Stamps(1), RequestID: w.key, Fingerprint: w.fp, Session: op}, deadline)
	if !ok {
		return
	}
	s.authMetrics.loginOK.Inc()
	s.audit(ctx, "login", slog.String("user_id", u.ID), slog.String("session", rt.Family))
	s.writeTokens(ctx, res.User, rt)
}

// refresh rotates a refresh token: the successor is derived from it, so
// a repeat within the grace period gets the same one.
func (s *Server) refresh(ctx *fasthttp.RequestCtx) {
	var req refreshRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	if req.RefreshToken == nil {
		writeError(ctx, badRequest("refresh_token is required", "refresh_token"))
		return
	}
	a := s.node.Auth()
	if a == nil {
		writeError(ctx, s.node.NotInitialised())
		return
	}
	rt, valid := auth.ParseRefreshToken(*req.RefreshToken)
	if !valid {
		s.authMetrics.refreshFailed.Inc()
		writeError(ctx, storage.ErrSessionInvalid)
		return
	}
	next := auth.Successor(a.RefreshKey, rt)
	op := &storage.SessionOp{Action: storage.SessionRefresh, UserID: rt.UserID, Family: rt.Family, Hash: rt.Hash(), Next: next.Hash()}
	res, idx, err := s.node.Propose(s.traceCtx(ctx), &storage.Command{Kind: storage.CmdSession, Stamp: s.node.Stamps(1), RequestID: w.key, Fingerprint: w.fp, Session: op}, s.deadline())
	setIndex(ctx, idx)
	switch {
	case err != nil:
		writeError(ctx, err)
		return
	case res.Err == nil:
	case res.Err.Message == storage.ErrSessionReused.Message:
		s.authMetrics.refreshReused.Inc()
		s.audit(ctx, "refresh token reuse detected; session revoked", slog.String("user_id", rt.UserID), slog.String("session", rt.Family))
		writeError(ctx, res.Err)
		return
	case res.Err.Kind == storage.KindNotFound:
		// The user is gone: to the client, just an invalid token.
		s.authMetrics.refreshFailed.Inc()
		writeError(ctx, storage.ErrSessionInvalid)
		return
	default:
		s.authMetrics.refreshFailed.Inc()
		writeError(ctx, res.Err)
		return
	}
	s.authMetrics.refreshOK.Inc()
	s.writeTokens(ctx, res.User, next)
}

// logout ends one session (the caller's refresh token) or, with "all",
// every session and every access token of the caller.
func (s *Server) logout(ctx *fasthttp.RequestCtx) {
	var req logoutRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	c := callerOf(ctx)
	if !c.signedIn() {
		writeError(ctx, newError("unauthenticated", "log in first: this request has no user to log out"))
		return
	}
	all := req.All != nil && *req.All
	op := &storage.SessionOp{Action: storage.SessionRevokeAll, UserID: c.uid}
	if !all {
		if req.RefreshToken == nil {
			writeError(ctx, badRequest("give refresh_token, or all: true", "refresh_token"))
			return
		}
		rt, valid := auth.ParseRefreshToken(*req.RefreshToken)
		if !valid {
			writeError(ctx, badRequest("refresh_token is not a refresh token", "refresh_token"))
			return
		}
		if rt.UserID != c.uid {
			writeError(ctx, newError("forbidden", "the refresh token belongs to another user"))
			return
		}
		op = &storage.SessionOp{Action: storage.SessionRevoke, UserID: rt.UserID, Family: rt.Family, Hash: rt.Hash()}
	}
	if _, ok := s.propose(ctx, &storage.Command{Kind: storage.CmdSession, Stamp: s.node.Stamps(1), RequestID: w.key, Fingerprint: w.fp, Session: op}, s.deadline()); !ok {
		return
	}
	s.authMetrics.logouts.Inc()
	s.audit(ctx, "logout", slog.String("user_id", c.uid), slog.Bool("all", all))
	ctx.SetStatusCode(http.StatusNoContent)
}

// me answers the caller's own record.
func (s *Server) me(ctx *fasthttp.RequestCtx) {
	c := callerOf(ctx)
	if !c.signedIn() {
		writeError(ctx, newError("unauthenticated", "this request has no user (--insecure without a token acts as admin); log in to get one"))
		return
	}
	deadline := s.deadline()
	if !s.readGate(ctx, deadline) {
		return
	}
	u, err := s.users().GetProfile(c.uid, deadline)
	if err != nil {
		writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("ETag", etag(u.Version))
	writeJSON(ctx, http.StatusOK, toUserJSON(u))
}

// rotateKey makes a fresh signing key current (admin).
func (s *Server) rotateKey(ctx *fasthttp.RequestCtx) {
	kid, idx, err := s.node.RotateKey(s.deadline())
	setIndex(ctx, idx)
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.authMetrics.keyRotations.Inc()
	s.audit(ctx, "signing key rotated", slog.String("kid", kid))
	writeJSON(ctx, http.StatusOK, map[string]string{"kid": kid})
}

// writeTokens answers a login or refresh.
func (s *Server) writeTokens(ctx *fasthttp.RequestCtx, u *storage.User, rt *auth.RefreshToken) {
	access, err := s.tokens.Issue(u, rt.Family)
	if err != nil {
		writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(ctx, http.StatusOK, tokenResponse{
		AccessToken: access, TokenType: "Bearer", ExpiresIn: int64(s.cfg.AccessTTL / time.Second), RefreshToken: rt.String(),
	})
}

// verifyPassword checks a password against a PHC hash, holding a hashing
// slot. A stored hash that does not parse never matches.
func (s *Server) verifyPassword(password, phc string, deadline time.Time) (bool, error) {
	ok, err := s.hasher.Verify(password, phc, deadline)
	if errors.Is(err, auth.ErrStoredHash) {
		s.log.Error("stored password hash does not parse", slog.Any("err", err))
		return false, nil
	}
	return ok, err
}
