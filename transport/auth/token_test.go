package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/troupe-db/troupe/storage"
)

// testAuth is an auth state with one key, "k1", set up at t0.
func testAuth(t testing.TB) *storage.AuthState { return testAuthWithKey(t, "k1", 1) }

// testAuthWithKey is an AuthState whose signing key is kid, its secret
// made of the byte b.
func testAuthWithKey(t testing.TB, kid string, b byte) *storage.AuthState {
	t.Helper()
	a, err := storage.NewAuthState(&storage.AuthSetup{
		Params:     storage.AuthParams{SessionTTLms: 3_600_000, GraceMs: 10_000, MaxSessions: 4},
		RefreshKey: bytes.Repeat([]byte{9}, storage.SecretBytes),
		Key:        storage.SigningKey{KID: kid, Secret: bytes.Repeat([]byte{b}, storage.SecretBytes)},
	}, tokenT0.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var tokenT0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func testUser() *storage.User {
	return &storage.User{ID: storage.MakeUserID(storage.StampAt(tokenT0.UnixMilli()), 3), Name: "Ada", Email: "ada@example.com", Role: storage.RoleUser, Version: 1}
}

// sign makes a token with any header and claims, for forging.
func sign(t *testing.T, method jwt.SigningMethod, key any, header map[string]any, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAccessTokenDefects(t *testing.T) {
	auth := testAuth(t)
	now := tokenT0.Add(time.Minute)
	tm := NewTokens(func() *storage.AuthState { return auth }, 15*time.Minute, DefaultLeeway, func() time.Time { return now })
	u := testUser()
	good, err := tm.Issue(u, "fam")
	if err != nil {
		t.Fatal(err)
	}
	c, err := tm.Verify(good)
	if err != nil || c.Subject != u.ID || c.Epoch != 0 || c.SID != "fam" || c.Role != "user" {
		t.Fatalf("a good token: %+v %v", c, err)
	}

	secret := auth.Current().Secret
	claims := func(edit func(*Claims)) *Claims {
		c := &Claims{RegisteredClaims: jwt.RegisteredClaims{
			Issuer: tokenIssuer, Subject: u.ID, Audience: jwt.ClaimStrings{tokenAudience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute)),
		}, Role: "admin"}
		if edit != nil {
			edit(c)
		}
		return c
	}
	hdr := map[string]any{"kid": "k1", "typ": accessTyp}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte(`"role":"user"`), []byte(`"role":"admin"`), 1)) + "." + parts[2]
	refresh := NewRefreshToken(u.ID).String()

	// The forger's own well-formed token passes: the defects below are
	// what makes each of them fail.
	if _, err := tm.Verify(sign(t, jwt.SigningMethodHS256, secret, hdr, claims(nil))); err != nil {
		t.Fatalf("the forger's baseline token fails: %v", err)
	}
	cases := map[string]string{
		"alg none":         sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hdr, claims(nil)),
		"RS256":            sign(t, jwt.SigningMethodRS256, rsaKey, hdr, claims(nil)),
		"HS512, right key": sign(t, jwt.SigningMethodHS512, secret, hdr, claims(nil)),
		"wrong key":        sign(t, jwt.SigningMethodHS256, bytes.Repeat([]byte{2}, 32), hdr, claims(nil)),
		"unknown kid":      sign(t, jwt.SigningMethodHS256, secret, map[string]any{"kid": "k9", "typ": accessTyp}, claims(nil)),
		"no kid":           sign(t, jwt.SigningMethodHS256, secret, map[string]any{"typ": accessTyp}, claims(nil)),
		"typ JWT":          sign(t, jwt.SigningMethodHS256, secret, map[string]any{"kid": "k1", "typ": "JWT"}, claims(nil)),
		"no typ":           sign(t, jwt.SigningMethodHS256, secret, map[string]any{"kid": "k1", "typ": nil}, claims(nil)),
		"expired":          sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) })),
		"no exp":           sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) { c.ExpiresAt = nil })),
		"not yet valid":    sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })),
		"issued in future": sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) })),
		"no iat":           sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) { c.IssuedAt = nil })),
		"wrong aud":        sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) { c.Audience = jwt.ClaimStrings{"other"} })),
		"no aud":           sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) { c.Audience = nil })),
		"wrong iss":        sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) { c.Issuer = "evil" })),
		"bad subject":      sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) { c.Subject = "root" })),
		"lives > 24h": sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(storage.MaxAccessTTL + time.Hour))
		})),
		"tampered payload": tampered,
		"refresh token":    refresh,
		"garbage":          "not.a.token",
		"empty":            "",
		"huge":             strings.Repeat("a", maxTokenBytes+1),
		"padded base64":    strings.Replace(good, ".", "=.", 1),
	}
	for name, raw := range cases {
		if c, err := tm.Verify(raw); err == nil {
			t.Errorf("%s: accepted (%+v)", name, c)
		}
	}

	// Rotation: the old key verifies what it signed before it was
	// retired, not what it signs after (plus skew).
	rotatedAt := now.Add(time.Minute)
	auth2, err := auth.Rotate(storage.SigningKey{KID: "k2", Secret: bytes.Repeat([]byte{5}, 32)}, rotatedAt.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	tm2 := NewTokens(func() *storage.AuthState { return auth2 }, 15*time.Minute, DefaultLeeway, func() time.Time { return now })
	if _, err := tm2.Verify(good); err != nil {
		t.Fatalf("a token of the retired key: %v", err)
	}
	late := rotatedAt.Add(storage.KeySkew + time.Second)
	tm2.now = func() time.Time { return late }
	lateOld := sign(t, jwt.SigningMethodHS256, secret, hdr, claims(func(c *Claims) {
		c.IssuedAt, c.NotBefore, c.ExpiresAt = jwt.NewNumericDate(late), jwt.NewNumericDate(late), jwt.NewNumericDate(late.Add(time.Minute))
	}))
	if _, err := tm2.Verify(lateOld); err == nil {
		t.Fatal("the retired key signed a new token")
	}
	fresh, err := tm2.Issue(u, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok, _, _ := jwt.NewParser().ParseUnverified(fresh, &Claims{}); tok.Header["kid"] != "k2" {
		t.Fatalf("new tokens signed with %v", tok.Header["kid"])
	}
	if _, err := tm2.Verify(fresh); err != nil {
		t.Fatal(err)
	}
	// Expiry with the clock.
	tm2.now = func() time.Time { return late.Add(15*time.Minute + DefaultLeeway + time.Second) }
	if _, err := tm2.Verify(fresh); err == nil {
		t.Fatal("an expired token was accepted")
	}
}

func TestRefreshTokenFormat(t *testing.T) {
	u := testUser()
	rt := NewRefreshToken(u.ID)
	got, ok := ParseRefreshToken(rt.String())
	if !ok || *got != *rt {
		t.Fatalf("round trip: %v %+v", ok, got)
	}
	key := bytes.Repeat([]byte{9}, 32)
	next := Successor(key, rt)
	if next.Secret == rt.Secret || next.Family != rt.Family || next.UserID != rt.UserID || *Successor(key, rt) != *next {
		t.Fatal("successor is not a deterministic new secret of the same family")
	}
	if Successor(bytes.Repeat([]byte{8}, 32), rt).Secret == next.Secret {
		t.Fatal("successor does not depend on the key")
	}
	s := rt.String()
	for _, bad := range []string{
		"", "rt", "rt...", "xx" + s[2:], s + ".x", s[:len(s)-1], strings.ToUpper(s[:3]) + s[3:],
		strings.Replace(s, rt.Family, strings.ToUpper(rt.Family), 1),
		strings.Replace(s, u.ID, "nope", 1), s + "A", strings.Repeat("rt.", 100),
	} {
		if _, ok := ParseRefreshToken(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

// A token verified once is remembered, but only under the keys it was
// verified with and only while its times hold.
func TestVerifiedTokenMemory(t *testing.T) {
	auth := testAuth(t)
	now := tokenT0
	current := auth
	tm := NewTokens(func() *storage.AuthState { return current }, 15*time.Minute, DefaultLeeway, func() time.Time { return now })
	tok, err := tm.Issue(testUser(), "")
	if err != nil {
		t.Fatal(err)
	}
	first, err := tm.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tm.Verify(tok)
	if err != nil || again != first {
		t.Fatalf("second verify: %v (remembered: %v)", err, again == first)
	}
	// Another string is verified on its own, however close.
	// The last character carries the signature's low bits and two unused
	// ones: 'A' and 'g' differ in a used bit, and one of them is new.
	changed := tok[:len(tok)-1] + "A"
	if changed == tok {
		changed = tok[:len(tok)-1] + "g"
	}
	if _, err := tm.Verify(changed); err == nil {
		t.Fatal("a changed signature was accepted")
	}
	// Past its expiry (and the leeway) it fails from memory too.
	now = tokenT0.Add(15*time.Minute + DefaultLeeway + time.Second)
	if _, err := tm.Verify(tok); err == nil {
		t.Fatal("an expired remembered token was accepted")
	}
	now = tokenT0.Add(time.Minute)
	if _, err := tm.Verify(tok); err != nil {
		t.Fatal(err)
	}
	// Keys that no longer hold the token's key: the memory is not used.
	current = testAuthWithKey(t, "k9", 7)
	if _, err := tm.Verify(tok); err == nil {
		t.Fatal("a token of an unknown key was accepted from memory")
	}
	// The memory is bounded.
	current = auth
	for i := range maxVerifiedTokens + 10 {
		u := testUser()
		u.Name = fmt.Sprint(i)
		now = tokenT0.Add(time.Duration(i) * time.Second)
		tk, err := tm.Issue(u, fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tm.Verify(tk); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(tm.verified); n > maxVerifiedTokens {
		t.Fatalf("%d tokens remembered", n)
	}
}

// TestTokenLeeway: --token-leeway is the skew given to a token's times,
// on the first verification and from memory alike.
func TestTokenLeeway(t *testing.T) {
	auth := testAuth(t)
	for _, leeway := range []time.Duration{0, DefaultLeeway, 2 * time.Minute} {
		now := tokenT0.Add(time.Minute)
		clock := func() time.Time { return now }
		tm := NewTokens(func() *storage.AuthState { return auth }, 15*time.Minute, leeway, clock)
		issued := now
		tok, err := tm.Issue(testUser(), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tm.Verify(tok); err != nil { // now remembered by tm
			t.Fatal(err)
		}
		expires := issued.Add(15 * time.Minute)
		for _, tc := range []struct {
			at   time.Time
			want bool
		}{
			{expires.Add(leeway - time.Second), true},
			{expires.Add(leeway + time.Second), false},
			{issued.Add(-leeway), true},                // a node whose clock is behind
			{issued.Add(-leeway - time.Second), false}, // too far behind
		} {
			now = tc.at
			fresh := NewTokens(func() *storage.AuthState { return auth }, 15*time.Minute, leeway, clock)
			_, errFresh := fresh.Verify(tok)
			_, errMem := tm.Verify(tok)
			if (errFresh == nil) != tc.want || (errMem == nil) != tc.want {
				t.Errorf("leeway %v, at issue%+v: accepted %v (from memory %v), want %v", leeway, tc.at.Sub(issued), errFresh == nil, errMem == nil, tc.want)
			}
		}
	}
}
