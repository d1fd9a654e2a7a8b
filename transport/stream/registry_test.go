package stream

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/actors"
)

// registry returns a registry whose Denied answers *denied and whose
// Revoke reports "doc:reason" on the returned channel.
func registry(t *testing.T, maxNode, maxUser int, denied *atomic.Value) (*Registry, <-chan string) {
	t.Helper()
	revoked := make(chan string, 16)
	r := NewRegistry(Config{MaxStreams: maxNode, MaxStreamsPerUser: maxUser,
		Denied: func(*Stream) string { return denied.Load().(string) },
		Revoke: func(docID string, _ *actors.Subscriber, reason string) { revoked <- docID + ":" + reason },
	}, metrics.NewSet())
	t.Cleanup(r.Close)
	return r, revoked
}

func allowed() *atomic.Value {
	var v atomic.Value
	v.Store("")
	return &v
}

func expectRevoked(t *testing.T, revoked <-chan string, want string) {
	t.Helper()
	select {
	case got := <-revoked:
		if got != want {
			t.Fatalf("revoked %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%q was not revoked within 5s", want)
	}
}

func expectNoRevocation(t *testing.T, revoked <-chan string) {
	t.Helper()
	select {
	case got := <-revoked:
		t.Fatalf("unexpected revocation %q", got)
	default:
	}
}

func TestAdmitLimits(t *testing.T) {
	r, _ := registry(t, 3, 2, allowed())
	for range 2 {
		if err := r.Admit("ada"); err != nil {
			t.Fatal(err)
		}
	}
	var le *LimitError
	if err := r.Admit("ada"); !errors.As(err, &le) || !le.PerUser || le.Limit != 2 {
		t.Fatalf("third stream of one user: %v, want a per-user limit of 2", err)
	}
	if err := r.Admit("bob"); err != nil {
		t.Fatal(err)
	}
	if err := r.Admit("cy"); !errors.As(err, &le) || le.PerUser || le.Limit != 3 {
		t.Fatalf("fourth stream of the node: %v, want the node's limit of 3", err)
	}
	if r.Len() != 3 {
		t.Fatalf("Len = %d, want 3", r.Len())
	}
	r.Release("ada")
	if err := r.Admit("cy"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if err := r.Admit("ada"); err == nil {
		t.Fatal("the node is full again, yet a stream was admitted")
	}
}

func TestNarrowedStreamsAreCheckedAgain(t *testing.T) {
	denied := allowed()
	r, revoked := registry(t, 10, 10, denied)
	x := &Stream{DocID: "d1", Key: "ada"}
	y := &Stream{DocID: "d2", Key: "bob"}
	for _, s := range []*Stream{x, y} {
		if err := r.Admit(s.Key); err != nil {
			t.Fatal(err)
		}
		r.Add(s, "token-"+s.Key, true, s.Key, time.Time{})
	}
	if tok, has, exp := x.Credentials(); tok != "token-ada" || !has || !exp.IsZero() {
		t.Fatalf("credentials %q %v %v", tok, has, exp)
	}
	r.Check(x)
	expectNoRevocation(t, revoked)

	denied.Store(ReasonRevoked)
	r.UserNarrowed("ada")
	expectRevoked(t, revoked, "d1:"+ReasonRevoked)
	r.DocNarrowed("d2")
	expectRevoked(t, revoked, "d2:"+ReasonRevoked)
	r.UserNarrowed("nobody")
	r.DocNarrowed("nothing")

	// A removed stream is never checked again, and gives its place back.
	r.Remove(x, "ada")
	r.Remove(y, "bob")
	r.Check(x) // synchronous: a closed stream is left alone
	expectNoRevocation(t, revoked)
	if r.Len() != 0 {
		t.Fatalf("Len = %d after removing every stream", r.Len())
	}
}

func TestTokenExpiryChecksTheStream(t *testing.T) {
	denied := allowed()
	r, revoked := registry(t, 10, 10, denied)
	x := &Stream{DocID: "d1", Key: "ada"}
	if err := r.Admit("ada"); err != nil {
		t.Fatal(err)
	}
	denied.Store(ReasonExpired)
	r.Add(x, "old", true, "ada", time.Now().Add(time.Hour))
	// A fresh token that expires at once re-arms the timer.
	r.Renew(x, "new", time.Now().Add(20*time.Millisecond))
	if tok, _, _ := x.Credentials(); tok != "new" {
		t.Fatalf("token after Renew: %q", tok)
	}
	expectRevoked(t, revoked, "d1:"+ReasonExpired)
}

// A stream opened with a share link is checked again when the link
// expires, whether it has a token that lasts longer (renewed or not) or
// none; Credentials still tell the token's own expiry.
func TestLinkExpiryChecksTheStream(t *testing.T) {
	denied := allowed()
	r, revoked := registry(t, 10, 10, denied)
	denied.Store(ReasonLinkExpired)
	for _, tc := range []struct {
		name     string
		hasToken bool
		expires  time.Time
	}{
		{"a guest", false, time.Time{}},
		{"a user with a link", true, time.Now().Add(time.Hour)},
	} {
		x := &Stream{DocID: "d1", Key: "link:d1/00000000000000aa", Link: "00000000000000aa", LinkExpires: time.Now().Add(20 * time.Millisecond)}
		if err := r.Admit(x.Key); err != nil {
			t.Fatal(err)
		}
		r.Add(x, "tok", tc.hasToken, "", tc.expires)
		if tc.hasToken {
			r.Renew(x, "fresh", time.Now().Add(2*time.Hour)) // a later token does not put the check off
		}
		expectRevoked(t, revoked, "d1:"+ReasonLinkExpired)
		if _, _, exp := x.Credentials(); tc.hasToken && !exp.After(time.Now().Add(time.Hour)) {
			t.Fatalf("%s: the token's expiry became %v", tc.name, exp)
		}
		r.Remove(x, "")
	}
}
