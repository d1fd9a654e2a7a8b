package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// FuzzTokens feeds arbitrary bytes to the token parsers: the access token
// verifier and the refresh token parser must never panic, and accept only
// what the cluster issued.
func FuzzTokens(f *testing.F) {
	auth := testAuth(f)
	now := tokenT0.Add(time.Minute)
	tm := NewTokens(func() *storage.AuthState { return auth }, 15*time.Minute, DefaultLeeway, func() time.Time { return now })
	u := testUser()
	good, err := tm.Issue(u, "fam")
	if err != nil {
		f.Fatal(err)
	}
	rt := NewRefreshToken(u.ID)
	for _, seed := range []string{good, rt.String(), "", "a.b.c", "rt....", good + "x", strings.ToUpper(good)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if c, err := tm.Verify(raw); err == nil && raw != good {
			t.Fatalf("accepted a token that was never issued: %q (%+v)", raw, c)
		}
		if r, ok := ParseRefreshToken(raw); ok && r.String() != raw {
			t.Fatalf("refresh token %q parsed as %q", raw, r.String())
		}
	})
}
