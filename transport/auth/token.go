package auth

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
	tokenIssuer    = "troupe"
	tokenAudience  = "troupe"
	accessTyp      = "at+jwt"
	maxTokenBytes  = 4096
	refreshPrefix  = "rt"
	familyHexBytes = 12
)

var (
	errBadToken = errors.New("the access token is not valid")
	// ErrNotReady: the cluster's keys are not set up yet (no token can
	// be issued or verified).
	ErrNotReady = errors.New("authentication is not set up yet")
)

// The clock skew between nodes that an access token's times are given
// (--token-leeway): the default and the most accepted.
const (
	DefaultLeeway = 5 * time.Second
	MaxLeeway     = 5 * time.Minute
)

// Claims are the claims of an access token. Epoch must equal the
// user's current token epoch; the role is informative (authorization uses
// the user's current role).
type Claims struct {
	jwt.RegisteredClaims
	Role  string `json:"role"`
	Epoch uint64 `json:"tep"`
	SID   string `json:"sid,omitempty"` // the session (refresh family) it came from
}

// Tokens issues and verifies access tokens with the keys of the
// cluster's current AuthState. It is safe for concurrent use.
type Tokens struct {
	auth      func() *storage.AuthState // nil until set up
	accessTTL time.Duration
	leeway    time.Duration // clock skew allowed past exp, before nbf and iat (--token-leeway)
	now       func() time.Time
	parser    *jwt.Parser

	// verified remembers tokens that passed Verify, so a client that
	// sends the same token with every request (a WebSocket with every
	// submit) pays for its JSON and signature once: that was a quarter
	// of a node's CPU under many editors. An entry holds only under the
	// AuthState (signing keys) it was verified with, and its times are
	// checked again on every use.
	mu       sync.Mutex
	verified map[string]*Claims
	under    *storage.AuthState
}

// maxVerifiedTokens bounds the remembered tokens; when full, they are
// forgotten all at once (and verified again on their next use).
const maxVerifiedTokens = 4096

// NewTokens returns tokens signed with the keys of auth() (nil until
// the cluster is set up), valid for accessTTL, whose times are given
// leeway; now is its clock (nil: time.Now).
func NewTokens(auth func() *storage.AuthState, accessTTL, leeway time.Duration, now func() time.Time) *Tokens {
	if now == nil {
		now = time.Now
	}
	t := &Tokens{auth: auth, accessTTL: accessTTL, leeway: leeway, now: now}
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

// Issue signs an access token for u, of the session (refresh family) sid.
func (t *Tokens) Issue(u *storage.User, sid string) (string, error) {
	a := t.auth()
	if a == nil {
		return "", ErrNotReady
	}
	k := a.Current()
	now := t.now()
	claims := Claims{
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

// Verify checks an access token and returns its claims, which the
// caller must not change (they may be shared). The error says nothing a
// client could use to probe (which check failed is for logs). Verify
// keeps no reference to raw (what it remembers, it copies): raw may be a
// view of a buffer the caller reuses after the call.
func (t *Tokens) Verify(raw string) (*Claims, error) {
	a := t.auth()
	if a == nil {
		return nil, ErrNotReady
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

func (t *Tokens) remembered(a *storage.AuthState, raw string) *Claims {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.under != a {
		return nil
	}
	return t.verified[raw]
}

func (t *Tokens) remember(a *storage.AuthState, raw string, c *Claims) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.under != a || len(t.verified) >= maxVerifiedTokens {
		t.under, t.verified = a, make(map[string]*Claims)
	}
	t.verified[strings.Clone(raw)] = c
}

// Now is the time by the tokens' clock.
func (t *Tokens) Now() time.Time { return t.now() }

// ExpiresAt is when a token with claims c stops being accepted.
func (t *Tokens) ExpiresAt(c *Claims) time.Time { return c.ExpiresAt.Add(t.leeway) }

// inTime makes the parser's time checks (exp, nbf, iat, with the
// leeway) for a token verified before.
func (t *Tokens) inTime(c *Claims) bool {
	now := t.now()
	return now.Before(c.ExpiresAt.Add(t.leeway)) &&
		(c.NotBefore == nil || !now.Add(t.leeway).Before(c.NotBefore.Time)) &&
		!now.Add(t.leeway).Before(c.IssuedAt.Time)
}

// verifyFully is verify without the memory: the token's signature,
// header and claims.
func (t *Tokens) verifyFully(a *storage.AuthState, raw string) (*Claims, error) {
	claims := &Claims{}
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

// RefreshToken is a parsed refresh token.
type RefreshToken struct {
	UserID string
	Family string
	Secret [32]byte
}

// String is the token as clients hold it.
func (r *RefreshToken) String() string {
	return refreshPrefix + "." + r.UserID + "." + r.Family + "." + base64.RawURLEncoding.EncodeToString(r.Secret[:])
}

// Hash is what the user's session stores of the token.
func (r *RefreshToken) Hash() [32]byte { return sha256.Sum256(r.Secret[:]) }

// NewRefreshToken opens a new family for a user.
func NewRefreshToken(userID string) *RefreshToken {
	var fam [familyHexBytes]byte
	_, _ = rand.Read(fam[:])
	r := &RefreshToken{UserID: userID, Family: hex.EncodeToString(fam[:])}
	_, _ = rand.Read(r.Secret[:])
	return r
}

// ParseRefreshToken accepts exactly what String produces.
func ParseRefreshToken(s string) (*RefreshToken, bool) {
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
	r := &RefreshToken{UserID: parts[1], Family: parts[2]}
	copy(r.Secret[:], secret)
	return r, true
}

// Successor derives the token that replaces r on refresh. It is a keyed
// function of r (the key is replicated, never leaves the cluster), so a
// repeated refresh within the grace period gets the same successor from
// any node, and a thief holding r cannot compute it.
func Successor(refreshKey []byte, r *RefreshToken) *RefreshToken {
	m := hmac.New(sha256.New, refreshKey)
	m.Write([]byte("troupe refresh successor\x00"))
	m.Write([]byte(r.Family))
	m.Write([]byte{0})
	m.Write(r.Secret[:])
	next := &RefreshToken{UserID: r.UserID, Family: r.Family}
	copy(next.Secret[:], m.Sum(nil))
	return next
}

// ForwardProof is what a node shows another to mark a request as
// forwarded by a member of the cluster (so its caller is not throttled or
// limited twice): a key derived from the replicated refresh key.
func ForwardProof(refreshKey []byte) string {
	m := hmac.New(sha256.New, refreshKey)
	m.Write([]byte("troupe forwarded request"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
