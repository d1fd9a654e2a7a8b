package storage

import (
	"crypto/subtle"
	"hash/fnv"
)

// Sessions: a login opens a session (a refresh-token family) kept in the
// user's record, so it is replicated, snapshotted and dropped with the
// user. A refresh token is an opaque secret; only its SHA-256 is stored.
// Each refresh rotates it: the successor is derived by the receiving node
// from the presented token with a replicated key (AuthState.RefreshKey),
// so a client that repeats a refresh within the grace period gets the
// same successor again, while a spent token presented after the grace
// period revokes the whole family (RFC 9700, refresh token rotation).
//
// Everything here is decided by command time: expiry and grace are
// checked in apply, never by a node-local clock.

// Session is one refresh-token family of a user.
type Session struct {
	Family    string   // random id, part of the refresh token
	Hash      [32]byte // SHA-256 of the current refresh token
	PrevHash  [32]byte // of the one it replaced; zero before the first rotation
	RotatedMs int64    // when Hash replaced PrevHash
	ExpiresMs int64    // sliding: each rotation extends it
}

// UserAuth is the authentication state of a user who has logged in at
// least once. It is immutable, like the User holding it.
type UserAuth struct {
	// Epoch is carried by access tokens: a token of an older epoch is
	// refused. Logout of all sessions, a password change and a role change
	// raise it.
	Epoch    uint64
	Sessions []Session // at most AuthParams.MaxSessions
}

// TokenEpoch is the epoch access tokens of u must carry.
func (u *User) TokenEpoch() uint64 {
	if u.Auth == nil {
		return 0
	}
	return u.Auth.Epoch
}

// revokeTokens makes u's access tokens and (if sessions) refresh tokens
// stop working; u must be a fresh copy, not a record a shard holds. A user
// who never logged in has nothing to revoke.
func (u *User) revokeTokens(sessions bool) {
	if u.Auth == nil {
		return
	}
	a := &UserAuth{Epoch: u.Auth.Epoch + 1, Sessions: u.Auth.Sessions}
	if sessions {
		a.Sessions = nil
	}
	u.Auth = a
}

// PasswordCheck fingerprints a password hash: a login carries the one it
// verified, and apply refuses it if the password changed meanwhile (the
// login was served from a lagging state).
func PasswordCheck(phc string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(phc))
	return h.Sum64()
}

// SessionAction says what a SessionOp does.
type SessionAction uint8

// Session actions. Values are part of the command format.
const (
	SessionOpen      SessionAction = 1 // login
	SessionRefresh   SessionAction = 2
	SessionRevoke    SessionAction = 3 // logout of one family
	SessionRevokeAll SessionAction = 4 // logout everywhere
)

// SessionOp is one replicated change to a user's sessions.
type SessionOp struct {
	Action SessionAction
	UserID string
	Family string
	// Hash: Open: of the new token; Refresh and Revoke: of the presented
	// token.
	Hash [32]byte
	// Next is, for Refresh, the hash of the successor the receiving node
	// derived from the presented token.
	Next [32]byte
	// PasswordCheck is, for Open, PasswordCheck of the hash the login
	// verified.
	PasswordCheck uint64
}

// AuthParams are the cluster's session rules, fixed at bootstrap.
type AuthParams struct {
	SessionTTLms int64 // a session unused this long expires
	GraceMs      int64 // a rotated token may be presented again this long
	MaxSessions  int   // per user; opening one more drops the oldest
}

// Refresh outcomes that are errors. Their messages never say more than a
// client needs (nothing about which check failed beyond reuse).
var (
	ErrSessionInvalid = &Error{Kind: KindUnauthenticated, Field: "refresh_token", Message: "the refresh token is not valid or has expired; log in again"}
	ErrSessionReused  = &Error{Kind: KindUnauthenticated, Field: "refresh_token", Message: "the refresh token was already used; its session is revoked; log in again"}
	ErrStaleLogin     = &Error{Kind: KindUnauthenticated, Message: "the password changed during the login; log in again"}
)

// Apply computes the record after op at nowMs, without changing cur. It
// returns cur itself when nothing changes. An error may come with a new
// record: a detected reuse revokes the family and reports it.
func (op *SessionOp) Apply(cur *User, nowMs int64, p AuthParams) (*User, *Error) {
	next := *cur
	var sessions []Session
	if cur.Auth != nil {
		// Expired sessions go whenever the user's sessions change.
		for _, s := range cur.Auth.Sessions {
			if s.ExpiresMs > nowMs {
				sessions = append(sessions, s)
			}
		}
	}
	epoch := cur.TokenEpoch()
	set := func(sessions []Session) *User {
		if len(sessions) == 0 {
			sessions = nil // one form for "none": results and snapshots compare equal
		}
		next.Auth = &UserAuth{Epoch: epoch, Sessions: sessions}
		return &next
	}
	find := func() int {
		for i := range sessions {
			if sessions[i].Family == op.Family {
				return i
			}
		}
		return -1
	}
	switch op.Action {
	case SessionOpen:
		if op.PasswordCheck != PasswordCheck(cur.PasswordHash) || cur.PasswordHash == "" {
			return nil, ErrStaleLogin
		}
		if op.Family == "" || find() >= 0 {
			return nil, errorf(KindInternal, "session family id is empty or in use")
		}
		if p.MaxSessions > 0 && len(sessions) >= p.MaxSessions {
			// Drop the one closest to expiring: the least recently used.
			oldest := 0
			for i := range sessions {
				if sessions[i].ExpiresMs < sessions[oldest].ExpiresMs {
					oldest = i
				}
			}
			sessions = append(sessions[:oldest:oldest], sessions[oldest+1:]...)
		}
		sessions = append(sessions, Session{Family: op.Family, Hash: op.Hash, RotatedMs: nowMs, ExpiresMs: nowMs + p.SessionTTLms})
		return set(sessions), nil
	case SessionRefresh:
		i := find()
		if i < 0 {
			return set(sessions), ErrSessionInvalid
		}
		s := sessions[i]
		switch {
		case equalHash(s.Hash, op.Hash):
			s.PrevHash, s.Hash = s.Hash, op.Next
			s.RotatedMs, s.ExpiresMs = nowMs, nowMs+p.SessionTTLms
			sessions = append(sessions[:i:i], sessions[i+1:]...)
			return set(append(sessions, s)), nil
		case equalHash(s.PrevHash, op.Hash) && nowMs-s.RotatedMs <= p.GraceMs && equalHash(s.Hash, op.Next):
			// A repeat within the grace period (two tabs, a lost reply):
			// the same successor again, nothing changes.
			return cur, nil
		default:
			// A spent token (or a forged one naming a real family): the
			// family is compromised.
			sessions = append(sessions[:i:i], sessions[i+1:]...)
			return set(sessions), ErrSessionReused
		}
	case SessionRevoke:
		if i := find(); i >= 0 && (equalHash(sessions[i].Hash, op.Hash) || equalHash(sessions[i].PrevHash, op.Hash)) {
			sessions = append(sessions[:i:i], sessions[i+1:]...)
			return set(sessions), nil
		}
		return cur, nil
	case SessionRevokeAll:
		epoch++
		return set(nil), nil
	}
	return nil, badRequest("", "unknown session action %d", op.Action)
}

func equalHash(a, b [32]byte) bool {
	var zero [32]byte
	return a != zero && subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// HasSession reports whether u holds the session (refresh-token family)
// family. Families are random and never reused, so a session that is gone
// never comes back: an access token naming it is revoked for good.
func (u *User) HasSession(family string) bool {
	if u.Auth == nil {
		return false
	}
	for i := range u.Auth.Sessions {
		if u.Auth.Sessions[i].Family == family {
			return true
		}
	}
	return false
}

// AuthNarrowed reports whether a change of a user's record from cur to
// next (nil: deleted) may take rights away from tokens cur's access
// tokens held: the user is gone, its role or token epoch changed, or one
// of its sessions ended. Logins and refreshes narrow nothing.
func AuthNarrowed(cur, next *User) bool {
	if cur == nil {
		return false
	}
	if next == nil {
		return true
	}
	if cur.Role != next.Role || cur.TokenEpoch() != next.TokenEpoch() {
		return true
	}
	if cur.Auth == nil {
		return false
	}
	for i := range cur.Auth.Sessions {
		if !next.HasSession(cur.Auth.Sessions[i].Family) {
			return true
		}
	}
	return false
}
