package actors

import (
	"errors"
	"strconv"
	"testing"

	"github.com/troupe-db/troupe/storage"
)

// TestTokenStateRead: Users.TokenState answers as Get does, through the
// actor while the shard's view is behind and from the view once it is
// current, and follows a session opened and the user deleted.
func TestTokenStateRead(t *testing.T) {
	f := newFixture(t, 2)
	it := f.createWithPassword("Ada", "ada@example.com", storage.RoleAdmin)
	id, shard := it.ID, f.users.homeShard(it.ID)
	link := f.users.links[shard]
	check := func(what, sid string, want storage.TokenState) {
		t.Helper()
		got, err := f.users.TokenState(id, sid, deadline())
		if err != nil || got != want {
			t.Fatalf("%s: %+v %v, want %+v", what, got, err, want)
		}
		u, err := f.users.Get(id, deadline())
		if err != nil || u.Role != got.Role || u.TokenEpoch() != got.Epoch || u.HasSession(sid) != got.Session {
			t.Fatalf("%s: Get disagrees: %+v %v", what, u, err)
		}
		if p, err := f.users.GetProfile(id, deadline()); err != nil || p.Auth != nil || p.ID != id || p.Version != u.Version || p.Role != u.Role {
			t.Fatalf("%s: GetProfile %+v %v", what, p, err)
		}
	}
	// The create published no view: this read goes through the actor.
	if link.view.Load().count == link.sent.Load() {
		t.Fatal("the view is current before any read")
	}
	check("through the actor", "fam", storage.TokenState{Role: storage.RoleAdmin})
	waitView(t, f.users, shard)
	r := getRead(readToken, id)
	r.sid = "fam"
	if ok, err := link.readView(r, f.sys, shard); !ok || err != nil || !r.found {
		t.Fatalf("a current view did not answer: %v %v", ok, err)
	}
	open := &storage.SessionOp{Action: storage.SessionOpen, UserID: id, Family: "fam", Hash: [32]byte{1},
		PasswordCheck: storage.PasswordCheck(it.User.PasswordHash)}
	if res := wait(t, f.users.Session(open, 2000, storage.AuthParams{SessionTTLms: 60_000, GraceMs: 1000, MaxSessions: 4})); res.Err != nil {
		t.Fatal(res.Err)
	}
	check("after login", "fam", storage.TokenState{Role: storage.RoleAdmin, Session: true})
	check("another session", "other", storage.TokenState{Role: storage.RoleAdmin})
	f.create("Bob", "bob@example.com", storage.RoleAdmin) // not the last admin
	if res := wait(t, f.users.Delete(id)); res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, err := f.users.TokenState(id, "fam", deadline()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted user: %v", err)
	}
	if _, err := f.users.GetProfile(id, deadline()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted user's profile: %v", err)
	}
	if _, err := f.users.TokenState("not-an-id", "fam", deadline()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
}

// TestTokenStateBesideCreates: under a stream of creates, token checks of
// users that existed before are answered from the published view, which
// no create makes stale for them and which they do not ask to refresh;
// a change to any record (a logout) sends them to the actor at once, and
// a user created after the view is answered by the actor too.
func TestTokenStateBesideCreates(t *testing.T) {
	f := newFixture(t, 1)
	it := f.createWithPassword("Ada", "ada@example.com", storage.RoleUser)
	id, link := it.ID, f.users.links[0]
	params := storage.AuthParams{SessionTTLms: 60_000, GraceMs: 1000, MaxSessions: 4}
	open := &storage.SessionOp{Action: storage.SessionOpen, UserID: id, Family: "fam", Hash: [32]byte{1},
		PasswordCheck: storage.PasswordCheck(it.User.PasswordHash)}
	if res := wait(t, f.users.Session(open, 2000, params)); res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, err := f.users.Get(id, deadline()); err != nil { // asks for a view
		t.Fatal(err)
	}
	view := waitView(t, f.users, 0)

	// Creates after the view: it misses them, but not for Ada's token.
	for i := range 20 {
		f.create("Bob", "bob"+strconv.Itoa(i)+"@example.com", storage.RoleUser)
	}
	r := getRead(readUser, id)
	if ok, _ := link.readView(r, f.sys, 0); ok {
		t.Fatal("a read by id answered from a view that misses creates")
	}
	link.wanted.Store(false) // that read asked for a fresh view; this test watches the token checks alone
	for range 3 {
		r := getRead(readToken, id)
		r.sid = "fam"
		if ok, err := link.readTokenView(r, f.sys, 0); !ok || err != nil || r.tok != (storage.TokenState{Role: storage.RoleUser, Session: true}) {
			t.Fatalf("token check beside creates: ok %v err %v %+v", ok, err, r.tok)
		}
		if st, err := f.users.TokenState(id, "fam", deadline()); err != nil || !st.Session {
			t.Fatalf("TokenState: %+v %v", st, err)
		}
	}
	f.create("Carl", "carl@example.com", storage.RoleUser)
	if link.view.Load() != view || link.wanted.Load() {
		t.Fatal("token checks had a view published")
	}

	// A user created after the view: not in it, so the actor answers
	// (found, no such session), and the view's answer is not taken.
	carl := f.item("Carl", "carl2@example.com", storage.RoleUser)
	if res := wait(t, f.users.Create(carl, 3000)); res.Err != nil {
		t.Fatal(res.Err)
	}
	r = getRead(readToken, carl.ID)
	r.sid = "fam"
	if ok, _ := link.readTokenView(r, f.sys, 0); ok {
		t.Fatal("the view answered for a user it does not hold")
	}
	if st, err := f.users.TokenState(carl.ID, "x", deadline()); err != nil || st.Session || st.Role != storage.RoleUser {
		t.Fatalf("user created after the view: %+v %v", st, err)
	}

	// A logout is a change to a record: the next check goes to the actor
	// and sees the session closed.
	revoke := &storage.SessionOp{Action: storage.SessionRevoke, UserID: id, Family: "fam", Hash: [32]byte{1}}
	if res := wait(t, f.users.Session(revoke, 4000, params)); res.Err != nil {
		t.Fatal(res.Err)
	}
	r = getRead(readToken, id)
	r.sid = "fam"
	if ok, _ := link.readTokenView(r, f.sys, 0); ok {
		t.Fatal("a view older than the logout answered")
	}
	if st, err := f.users.TokenState(id, "fam", deadline()); err != nil || st.Session {
		t.Fatalf("after the logout: %+v %v", st, err)
	}
}

// createWithPassword creates a user with a password hash (so sessions
// can be opened for it) and returns the item it was created from.
func (f *fixture) createWithPassword(name, email string, role storage.Role) *storage.BatchItem {
	f.t.Helper()
	it := f.item(name, email, role)
	it.User.PasswordHash = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw"
	if r := wait(f.t, f.users.Create(it, 1000)); r.Err != nil {
		f.t.Fatalf("create %s: %v", email, r.Err)
	}
	return it
}
