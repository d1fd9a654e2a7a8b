package storage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

var testAuthParams = AuthParams{SessionTTLms: 3_600_000, GraceMs: 10_000, MaxSessions: 3}

const samplePHC = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw"

func tok(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// sessionUser applies ops in order at the given times (a fake clock: the
// times are command times) and returns the final record and each error.
type sessionStep struct {
	at  int64
	op  SessionOp
	err *Error
}

func runSessions(t *testing.T, u *User, steps []sessionStep) *User {
	t.Helper()
	for i, st := range steps {
		before := *u
		next, err := st.op.Apply(u, st.at, testAuthParams)
		if err != st.err {
			t.Fatalf("step %d (%v at %d): error %v, want %v", i, st.op.Action, st.at, err, st.err)
		}
		if *u != before {
			t.Fatalf("step %d changed the record it was given", i)
		}
		if next != nil {
			u = next
		}
	}
	return u
}

func baseUser() *User {
	return &User{ID: "u1", Name: "Ada", Email: "ada@example.com", PasswordHash: samplePHC, Role: RoleUser, Version: 1}
}

func TestSessionRotationAndReuse(t *testing.T) {
	open := SessionOp{Action: SessionOpen, UserID: "u1", Family: "f1", Hash: tok("t0"), PasswordCheck: PasswordCheck(samplePHC)}
	refresh := func(from, to string) SessionOp {
		return SessionOp{Action: SessionRefresh, UserID: "u1", Family: "f1", Hash: tok(from), Next: tok(to)}
	}
	u := runSessions(t, baseUser(), []sessionStep{
		{at: 1000, op: open},
		{at: 2000, op: refresh("t0", "t1")},
		// Within the grace period, the spent token gets the same
		// successor again, and nothing changes.
		{at: 2000 + 10_000, op: refresh("t0", "t1")},
		{at: 3000, op: refresh("t1", "t2")},
	})
	if len(u.Auth.Sessions) != 1 || u.Auth.Sessions[0].Hash != tok("t2") || u.Auth.Sessions[0].ExpiresMs != 3000+testAuthParams.SessionTTLms {
		t.Fatalf("session after rotations: %+v", u.Auth.Sessions)
	}
	// A repeat that claims another successor is not a repeat: reuse.
	mismatched := runSessions(t, u, []sessionStep{{at: 3500, op: refresh("t1", "tX"), err: ErrSessionReused}})
	if len(mismatched.Auth.Sessions) != 0 {
		t.Fatal("a reused token did not revoke its family")
	}
	// After the grace period, the spent token revokes the whole family:
	// even the current token stops working.
	u = runSessions(t, u, []sessionStep{
		{at: 3000 + 10_001, op: refresh("t1", "t2"), err: ErrSessionReused},
		{at: 14_000, op: refresh("t2", "t3"), err: ErrSessionInvalid},
	})
	if len(u.Auth.Sessions) != 0 || u.Auth.Epoch != 0 {
		t.Fatalf("after reuse: %+v", u.Auth)
	}
}

func TestSessionExpiryLimitsAndRevocation(t *testing.T) {
	open := func(fam string) SessionOp {
		return SessionOp{Action: SessionOpen, UserID: "u1", Family: fam, Hash: tok(fam), PasswordCheck: PasswordCheck(samplePHC)}
	}
	ttl := testAuthParams.SessionTTLms
	u := runSessions(t, baseUser(), []sessionStep{
		{at: 0, op: open("a")},
		{at: 10, op: open("b")},
		{at: 20, op: open("c")},
		{at: 30, op: SessionOp{Action: SessionRefresh, UserID: "u1", Family: "a", Hash: tok("a"), Next: tok("a2")}},
		// A fourth session drops the least recently used (b).
		{at: 40, op: open("d")},
	})
	fams := func(u *User) (out []string) {
		for _, s := range u.Auth.Sessions {
			out = append(out, s.Family)
		}
		return out
	}
	if got := fams(u); !reflect.DeepEqual(got, []string{"c", "a", "d"}) {
		t.Fatalf("sessions %v", got)
	}
	// An expired session cannot refresh, and is dropped when the
	// sessions next change.
	u = runSessions(t, u, []sessionStep{
		{at: 20 + ttl, op: SessionOp{Action: SessionRefresh, UserID: "u1", Family: "c", Hash: tok("c"), Next: tok("c2")}, err: ErrSessionInvalid},
	})
	if got := fams(u); !reflect.DeepEqual(got, []string{"a", "d"}) {
		t.Fatalf("sessions after expiry %v", got)
	}
	// Logout of one family needs one of its tokens; a wrong one changes
	// nothing.
	same := runSessions(t, u, []sessionStep{{at: 50, op: SessionOp{Action: SessionRevoke, UserID: "u1", Family: "a", Hash: tok("nope")}}})
	if same != u {
		t.Fatal("a revoke with a wrong token changed the record")
	}
	u = runSessions(t, u, []sessionStep{{at: 50, op: SessionOp{Action: SessionRevoke, UserID: "u1", Family: "a", Hash: tok("a")}}})
	if got := fams(u); !reflect.DeepEqual(got, []string{"d"}) {
		t.Fatalf("sessions after logout %v", got)
	}
	// Logout everywhere: no sessions, and a new epoch for access tokens.
	u = runSessions(t, u, []sessionStep{{at: 60, op: SessionOp{Action: SessionRevokeAll, UserID: "u1"}}})
	if len(u.Auth.Sessions) != 0 || u.TokenEpoch() != 1 {
		t.Fatalf("after logout everywhere: %+v", u.Auth)
	}
	if u.Version != 1 {
		t.Fatal("sessions changed the user's version")
	}
}

func TestSessionOpenChecksPassword(t *testing.T) {
	op := SessionOp{Action: SessionOpen, UserID: "u1", Family: "f", Hash: tok("x"), PasswordCheck: PasswordCheck("an older hash")}
	runSessions(t, baseUser(), []sessionStep{{at: 1, op: op, err: ErrStaleLogin}})
	noPassword := baseUser()
	noPassword.PasswordHash = ""
	op.PasswordCheck = PasswordCheck("")
	runSessions(t, noPassword, []sessionStep{{at: 1, op: op, err: ErrStaleLogin}})
}

func TestPatchRevokesTokens(t *testing.T) {
	u := runSessions(t, baseUser(), []sessionStep{{at: 1, op: SessionOp{Action: SessionOpen, UserID: "u1", Family: "f", Hash: tok("x"), PasswordCheck: PasswordCheck(samplePHC)}}})
	renamed, err := (&UserPatch{ID: "u1", Fields: PatchName, Name: "Ada L."}).Apply(u, 2)
	if err != nil || renamed.TokenEpoch() != 0 || len(renamed.Auth.Sessions) != 1 {
		t.Fatalf("a rename revoked tokens: %+v %v", renamed.Auth, err)
	}
	promoted, err := (&UserPatch{ID: "u1", Fields: PatchRole, Role: RoleAdmin}).Apply(u, 2)
	if err != nil || promoted.TokenEpoch() != 1 || len(promoted.Auth.Sessions) != 1 {
		t.Fatalf("a role change: %+v %v", promoted.Auth, err)
	}
	newHash := "$argon2id$v=19$m=64,t=1,p=1$b3RoZXJzYWx0$a2V5a2V5a2V5a2V5a2V5aw"
	changed, err := (&UserPatch{ID: "u1", Fields: PatchPassword, PasswordHash: newHash}).Apply(u, 2)
	if err != nil || changed.TokenEpoch() != 1 || len(changed.Auth.Sessions) != 0 {
		t.Fatalf("a password change: %+v %v", changed.Auth, err)
	}
	if u.TokenEpoch() != 0 || len(u.Auth.Sessions) != 1 {
		t.Fatal("a patch changed the record it was given")
	}
}

func TestKeyRotation(t *testing.T) {
	secret := func(b byte) []byte { return bytes.Repeat([]byte{b}, SecretBytes) }
	a, err := NewAuthState(&AuthSetup{Params: testAuthParams, RefreshKey: secret(9), Key: SigningKey{KID: "k1", Secret: secret(1)}}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.Rotate(SigningKey{KID: "k2", Secret: secret(2)}, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if a.Current().KID != "k1" || len(a.Keys) != 1 {
		t.Fatal("Rotate changed the state it was given")
	}
	if b.Current().KID != "k2" || b.Key("k1") == nil || b.Key("k1").RetiredMs != 5000 {
		t.Fatalf("after rotation: %+v", b.Keys)
	}
	old := b.Key("k1")
	if !old.Verifies(4000) || !old.Verifies(5000+KeySkew.Milliseconds()) || old.Verifies(5001+KeySkew.Milliseconds()) {
		t.Fatal("a retired key verifies the wrong tokens")
	}
	if _, err := b.Rotate(SigningKey{KID: "k1", Secret: secret(3)}, 6000); err == nil {
		t.Fatal("a key id was reused")
	}
	// Keys retired longer than KeyRetention ago are dropped.
	c, err := b.Rotate(SigningKey{KID: "k3", Secret: secret(3)}, 5000+KeyRetention.Milliseconds()+1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Key("k1") != nil || c.Key("k2") == nil || c.Current().KID != "k3" {
		t.Fatalf("after retention: %+v", c.Keys)
	}
	for i, bad := range []SigningKey{{KID: "", Secret: secret(1)}, {KID: "k 1", Secret: secret(1)}, {KID: "k9", Secret: secret(1)[:16]}} {
		if _, err := c.Rotate(bad, 1); err == nil {
			t.Errorf("bad key %d accepted", i)
		}
	}
	if _, err := NewAuthState(&AuthSetup{Params: AuthParams{}, RefreshKey: secret(1), Key: SigningKey{KID: "k", Secret: secret(1)}}, 0); err == nil {
		t.Fatal("zero session parameters accepted")
	}
}

// richSnapshot has a bit of every part of the state: users with
// sessions, auth keys, policies and documents with history
// (testdata/snapshot-v4.bin holds it as version 4 wrote it).
func richSnapshot(t testing.TB) *Snapshot {
	s := testSnapshot(t, 2, 40)
	a, err := NewAuthState(&AuthSetup{Params: testAuthParams, RefreshKey: bytes.Repeat([]byte{7}, SecretBytes), Key: SigningKey{KID: "k1", Secret: bytes.Repeat([]byte{1}, SecretBytes)}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Meta.Auth, err = a.Rotate(SigningKey{KID: "k2", Secret: bytes.Repeat([]byte{2}, SecretBytes)}, t0+5); err != nil {
		t.Fatal(err)
	}
	// Give some users sessions and epochs.
	n := 0
	for _, sh := range s.Shards {
		var users []*User
		sh.Ascend(func(u *User) bool { users = append(users, u); return true })
		for _, u := range users {
			if n++; n%3 != 0 || u.PasswordHash == "" {
				continue
			}
			op := SessionOp{Action: SessionOpen, UserID: u.ID, Family: fmt.Sprint("f", n), Hash: tok(u.ID), PasswordCheck: PasswordCheck(u.PasswordHash)}
			next, err := op.Apply(u, t0+int64(n), testAuthParams)
			if err != nil {
				t.Fatal(err)
			}
			if n%2 == 0 {
				next, _ = (&SessionOp{Action: SessionRevokeAll, UserID: u.ID}).Apply(next, t0+int64(n), testAuthParams)
			}
			sh.Put(next)
		}
	}
	s.Meta.Policies = []Policy{
		{Name: "api", Limit: 100, WindowMs: 1000, Burst: 100},
		{Name: "login", Limit: 5, WindowMs: 60_000, Burst: 2, Shadow: true},
	}
	for i := range 300 {
		d, err := NewDoc(fmt.Sprintf("doc-%04d", i), "Title", "u1", strings.Repeat("text ", i*10), t0)
		if err != nil {
			t.Fatal(err)
		}
		for v := range uint64(i % 5) {
			d, _, err = d.Submit("c", v+1, v, []Op{{Kind: OpInsert, Pos: 0, Text: "ab"}}, t0+int64(v), 3)
			if err != nil {
				t.Fatal(err)
			}
		}
		s.Docs = append(s.Docs, d.WithEditor("u2"))
	}
	return s
}

func TestSnapshotWithAuth(t *testing.T) {
	s := richSnapshot(t)
	b := writeSnap(t, s)
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, s)
}

// TestReadSnapshotVersion1 reads a snapshot written by the build before
// authentication existed (testdata/snapshot-v1.bin: testSnapshot(t, 2, 40)).
func TestReadSnapshotVersion1(t *testing.T) {
	b, err := os.ReadFile("testdata/snapshot-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, testSnapshot(t, 2, 40))
	if got.Meta.Auth != nil {
		t.Fatal("a version 1 snapshot has auth state")
	}
	// Damaged versions are still refused.
	bad := bytes.Clone(b)
	bad[len(snapshotMagic)] = SnapshotVersion + 1
	if _, err := ReadSnapshot(bytes.NewReader(bad)); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("a newer version: %v", err)
	}
}

func TestAuthNarrowed(t *testing.T) {
	base := &User{ID: "u", Role: RoleUser, Auth: &UserAuth{Epoch: 1, Sessions: []Session{{Family: "a"}, {Family: "b"}}}}
	with := func(f func(u *User)) *User {
		u := *base
		a := *base.Auth
		u.Auth = &a
		f(&u)
		return &u
	}
	cases := map[string]struct {
		next *User
		want bool
	}{
		"deleted":          {nil, true},
		"unchanged":        {with(func(*User) {}), false},
		"login":            {with(func(u *User) { u.Auth.Sessions = append(u.Auth.Sessions, Session{Family: "c"}) }), false},
		"session ended":    {with(func(u *User) { u.Auth.Sessions = u.Auth.Sessions[1:] }), true},
		"new epoch":        {with(func(u *User) { u.Auth.Epoch = 2 }), true},
		"new role":         {with(func(u *User) { u.Role = RoleAdmin }), true},
		"another name":     {with(func(u *User) { u.Name = "x" }), false},
		"sessions reorder": {with(func(u *User) { u.Auth.Sessions = []Session{{Family: "b"}, {Family: "a"}} }), false},
	}
	for name, c := range cases {
		if got := AuthNarrowed(base, c.next); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
	if !base.HasSession("a") || base.HasSession("z") || (&User{}).HasSession("") {
		t.Error("HasSession")
	}
}
