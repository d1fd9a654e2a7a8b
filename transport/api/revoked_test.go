package api

import (
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/troupe-db/troupe/transport/auth"
)

// The set of revoked tokens knows what it was told, tells sessions,
// epochs and users apart, and stays bounded, dropping the expired first.
func TestRevokedTokensBounded(t *testing.T) {
	var r revokedTokens
	now := time.Unix(1_000_000, 0)
	claims := func(user string, epoch uint64, sid string, exp time.Time) *auth.Claims {
		return &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: user, ExpiresAt: jwt.NewNumericDate(exp)}, Epoch: epoch, SID: sid}
	}
	a := claims("u1", 1, "s1", now.Add(time.Minute))
	r.add(a, now)
	if !r.known(a) || r.known(claims("u1", 2, "s1", now)) || r.known(claims("u1", 1, "s2", now)) || r.known(claims("u2", 1, "s1", now)) {
		t.Fatal("the set confuses tokens")
	}
	// Fields do not run into each other (a user id ending as a session
	// begins).
	var joined revokedTokens
	joined.add(claims("u3", 1, "\x00s", now.Add(time.Minute)), now)
	if joined.known(claims("u3\x001", 1, "s", now)) || joined.known(claims("u3\x00", 1, "s", now)) || !joined.known(claims("u3", 1, "\x00s", now)) {
		t.Fatal("the set confuses tokens whose fields join alike")
	}
	if n := testing.AllocsPerRun(100, func() { r.known(a) }); n != 0 {
		t.Fatalf("a look-up allocates %v times", n)
	}
	// Fill it with tokens that expired, then one more: the expired go.
	for i := range maxRevokedTokens {
		r.add(claims("old"+strconv.Itoa(i), 1, "s", now.Add(-time.Second)), now.Add(-2*time.Second))
	}
	if r.len() > maxRevokedTokens {
		t.Fatalf("%d entries", r.len())
	}
	fresh := claims("fresh", 1, "s", now.Add(time.Minute))
	r.add(fresh, now)
	if !r.known(fresh) || r.len() > maxRevokedTokens/2+1 {
		t.Fatalf("after pruning: %d entries, fresh known %v", r.len(), r.known(fresh))
	}
}
