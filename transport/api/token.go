package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/troupe-db/troupe/storage"
)

// Tokens (RFC 8725, RFC 9068): access tokens are JWTs signed with HS256
// by the cluster's current signing key, which every node holds (it is
// replicated state), so any node verifies any token. Only HS256 is ever
// accepted; typ must be "at+jwt"; exp, iat, iss and aud are required and
// checked. Refresh tokens are not JWTs at all but opaque random secrets
// ("rt.<user>.<family>.<secret>"), so neither kind can pass for the other.

const (
	tokenIssuer   = "troupe"
	tokenAudience = "troupe"
	accessTyp     = "at+jwt"
	// The leeway for clock skew is Config.TokenLeeway (--token-leeway).
	maxTokenBytes  = 4096
	refreshPrefix  = "rt"
	familyHexBytes = 12
)

var errBadToken = errors.New("the access token is not valid")

// accessClaims are the claims of an access token. Epoch must equal the
// user's current token epoch; the role is informative (authorization uses
// the user's current role).
type accessClaims struct {
	jwt.RegisteredClaims
	Role  string `json:"role"`
	Epoch uint64 `json:"tep"`
	SID   string `json:"sid,omitempty"` // the session (refresh family) it came from
}

// tokenMaker issues and verifies tokens with the keys of the cluster's
// current AuthState.
type tokenMaker struct {
	auth      func() *storage.AuthState // nil until set up
	accessTTL time.Duration
	leeway    time.Duration // clock skew allowed past exp, before nbf and iat (--token-leeway)
	now       func() time.Time
	parser    *jwt.Parser

	// verified remembers tokens that passed verify, so a client that
	// sends the same token with every request (a WebSocket with every
	// submit) pays for its JSON and signature once: that was a quarter
	// of a node's CPU under many editors. An entry holds only under the
	// AuthState (signing keys) it was verified with, and its times are
	// checked again on every use.
	mu       sync.Mutex
	verified map[string]*accessClaims
	under    *storage.AuthState
}

// maxVerifiedTokens bounds the remembered tokens; when full, they are
// forgotten all at once (and verified again on their next use).
const maxVerifiedTokens = 4096

func newTokenMaker(auth func() *storage.AuthState, accessTTL, leeway time.Duration, now func() time.Time) *tokenMaker {
	if now == nil {
		now = time.Now
	}
	t := &tokenMaker{auth: auth, accessTTL: accessTTL, leeway: leeway, now: now}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithAudience(tokenAudience),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return t.now() }),
		jwt.WithStrictDecoding(),
	)
	return t
}

// issue signs an access token for u.
func (t *tokenMaker) issue(u *storage.User, sid string) (string, error) {
	a := t.auth()
	if a == nil {
		return "", errAuthNotReady
	}
	k := a.Current()
	now := t.now()
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    tokenIssuer,
			Subject:   u.ID,
			Audience:  jwt.ClaimStrings{tokenAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(t.accessTTL)),
		},
		Role: u.Role.String(), Epoch: u.TokenEpoch(), SID: sid,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = k.KID
	tok.Header["typ"] = accessTyp
	return tok.SignedString(k.Secret)
}

// verify checks an access token and returns its claims, which the
// caller must not change (they may be shared). The error says nothing a
// client could use to probe (which check failed is for logs).
func (t *tokenMaker) verify(raw string) (*accessClaims, error) {
	a := t.auth()
	if a == nil {
		return nil, errAuthNotReady
	}
	if raw == "" || len(raw) > maxTokenBytes {
		return nil, errBadToken
	}
	if c := t.remembered(a, raw); c != nil {
		if !t.inTime(c) {
			return nil, errBadToken
		}
		return c, nil
	}
	c, err := t.verifyFully(a, raw)
	if err != nil {
		return nil, err
	}
	t.remember(a, raw, c)
	return c, nil
}

func (t *tokenMaker) remembered(a *storage.AuthState, raw string) *accessClaims {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.under != a {
		return nil
	}
	return t.verified[raw]
}

func (t *tokenMaker) remember(a *storage.AuthState, raw string, c *accessClaims) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.under != a || len(t.verified) >= maxVerifiedTokens {
		t.under, t.verified = a, make(map[string]*accessClaims)
	}
	t.verified[raw] = c
}

// expiresAt is when a token with claims c stops being accepted.
func (t *tokenMaker) expiresAt(c *accessClaims) time.Time { return c.ExpiresAt.Add(t.leeway) }

// inTime makes the parser's time checks (exp, nbf, iat, with the
// leeway) for a token verified before.
func (t *tokenMaker) inTime(c *accessClaims) bool {
	now := t.now()
	return now.Before(c.ExpiresAt.Add(t.leeway)) &&
		(c.NotBefore == nil || !now.Add(t.leeway).Before(c.NotBefore.Time)) &&
		!now.Add(t.leeway).Before(c.IssuedAt.Time)
}

// verifyFully is verify without the memory: the token's signature,
// header and claims.
func (t *tokenMaker) verifyFully(a *storage.AuthState, raw string) (*accessClaims, error) {
	claims := &accessClaims{}
	_, err := t.parser.ParseWithClaims(raw, claims, func(tok *jwt.Token) (any, error) {
		if typ, _ := tok.Header["typ"].(string); typ != accessTyp {
			return nil, errors.New("typ is not " + accessTyp)
		}
		kid, _ := tok.Header["kid"].(string)
		k := a.Key(kid)
		if k == nil {
			return nil, errors.New("unknown key id")
		}
		// Claims are decoded before the key is chosen: a retired key
		// verifies only tokens issued while it was current.
		if claims.IssuedAt == nil || !k.Verifies(claims.IssuedAt.UnixMilli()) {
			return nil, errors.New("token issued after its key was retired")
		}
		return k.Secret, nil
	})
	if err != nil {
		return nil, errBadToken
	}
	if _, _, ok := storage.ParseUserID(claims.Subject); !ok {
		return nil, errBadToken
	}
	if claims.ExpiresAt.Sub(claims.IssuedAt.Time) > storage.MaxAccessTTL {
		return nil, errBadToken
	}
	return claims, nil
}

// refreshToken is a parsed refresh token.
type refreshToken struct {
	UserID string
	Family string
	Secret [32]byte
}

// String is the token as clients hold it.
func (r *refreshToken) String() string {
	return refreshPrefix + "." + r.UserID + "." + r.Family + "." + base64.RawURLEncoding.EncodeToString(r.Secret[:])
}

// Hash is what the user's session stores of the token.
func (r *refreshToken) Hash() [32]byte { return sha256.Sum256(r.Secret[:]) }

// newRefreshToken opens a new family for a user.
func newRefreshToken(userID string) *refreshToken {
	var fam [familyHexBytes]byte
	_, _ = rand.Read(fam[:])
	r := &refreshToken{UserID: userID, Family: hex.EncodeToString(fam[:])}
	_, _ = rand.Read(r.Secret[:])
	return r
}

// parseRefreshToken accepts exactly what String produces.
func parseRefreshToken(s string) (*refreshToken, bool) {
	if len(s) > 256 {
		return nil, false
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 || parts[0] != refreshPrefix {
		return nil, false
	}
	if _, _, ok := storage.ParseUserID(parts[1]); !ok {
		return nil, false
	}
	if len(parts[2]) != 2*familyHexBytes {
		return nil, false
	}
	if _, err := hex.DecodeString(parts[2]); err != nil || strings.ToLower(parts[2]) != parts[2] {
		return nil, false
	}
	secret, err := base64.RawURLEncoding.Strict().DecodeString(parts[3])
	if err != nil || len(secret) != 32 {
		return nil, false
	}
	r := &refreshToken{UserID: parts[1], Family: parts[2]}
	copy(r.Secret[:], secret)
	return r, true
}

// successor derives the token that replaces r on refresh. It is a keyed
// function of r (the key is replicated, never leaves the cluster), so a
// repeated refresh within the grace period gets the same successor from
// any node, and a thief holding r cannot compute it.
func successor(refreshKey []byte, r *refreshToken) *refreshToken {
	m := hmac.New(sha256.New, refreshKey)
	m.Write([]byte("troupe refresh successor\x00"))
	m.Write([]byte(r.Family))
	m.Write([]byte{0})
	m.Write(r.Secret[:])
	next := &refreshToken{UserID: r.UserID, Family: r.Family}
	copy(next.Secret[:], m.Sum(nil))
	return next
}

// forwardProof is what a node shows another to mark a request as
// forwarded by a member of the cluster (so its caller is not throttled or
// limited twice): a key derived from the replicated refresh key.
func forwardProof(refreshKey []byte) string {
	m := hmac.New(sha256.New, refreshKey)
	m.Write([]byte("troupe forwarded request"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
