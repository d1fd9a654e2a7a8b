package actors

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/goleak"

	"github.com/troupe-db/troupe/storage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	t     *testing.T
	sys   *System
	set   *metrics.Set
	users *Users
	stamp uint64
}

func newFixture(t *testing.T, shards int) *fixture {
	set := metrics.NewSet()
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	f := &fixture{t: t, sys: sys, set: set, users: NewUsers(sys, shards), stamp: storage.StampAt(1_700_000_000_000)}
	t.Cleanup(func() {
		f.users.Stop()
		sys.Shutdown()
	})
	return f
}

func wait(t *testing.T, p *Pending) storage.Result {
	t.Helper()
	select {
	case <-p.Done():
		return p.Result()
	case <-time.After(5 * time.Second):
		t.Fatal("pending never resolved")
		return storage.Result{}
	}
}

func (f *fixture) item(name, email string, role storage.Role) *storage.BatchItem {
	f.stamp++
	return &storage.BatchItem{ID: storage.MakeUserID(f.stamp, f.users.HomeShardFor(email)),
		User: storage.NewUser{Name: name, Email: email, Role: role}}
}

func (f *fixture) create(name, email string, role storage.Role) *storage.User {
	f.t.Helper()
	r := wait(f.t, f.users.Create(f.item(name, email, role), 1000))
	if r.Err != nil {
		f.t.Fatalf("create %s: %v", email, r.Err)
	}
	return r.User
}

func deadline() time.Time { return time.Now().Add(5 * time.Second) }

func TestEmailChangeAcrossShards(t *testing.T) {
	f := newFixture(t, 8)
	u := f.create("Ada", "ada@example.com", storage.RoleUser)
	home := f.users.homeShard(u.ID)
	// Find a new address whose shard differs from the home shard.
	var newEmail string
	for i := 0; ; i++ {
		newEmail = fmt.Sprintf("ada%d@example.org", i)
		if f.users.emailShard(newEmail) != home {
			break
		}
	}
	r := wait(t, f.users.Patch(&storage.UserPatch{ID: u.ID, Fields: storage.PatchEmail, Email: newEmail}, 2000))
	if r.Err != nil || r.User.Email != newEmail || r.User.Version != 2 || r.User.UpdatedMs != 2000 {
		t.Fatalf("patch: %+v %v", r.User, r.Err)
	}
	if got, _ := f.users.FindEmail(strings.ToUpper(newEmail), deadline()); got == nil || got.ID != u.ID {
		t.Fatalf("new email not indexed: %+v", got)
	}
	if got, _ := f.users.FindEmail("ada@example.com", deadline()); got != nil {
		t.Fatalf("old email still indexed: %+v", got)
	}
	// The old address is free; the new one is taken.
	f.create("Other Ada", "ada@example.com", storage.RoleUser)
	if r := wait(t, f.users.Create(f.item("Dup", newEmail, storage.RoleUser), 3000)); r.Err == nil || r.Err.Kind != storage.KindConflict {
		t.Fatalf("duplicate of moved email: %+v", r)
	}
	// Deleting the user frees its (foreign-shard) email.
	if r := wait(t, f.users.Delete(u.ID)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got, _ := f.users.FindEmail(newEmail, deadline()); got != nil {
		t.Fatalf("deleted user's email still indexed")
	}
	f.create("Reuse", newEmail, storage.RoleUser)
}

func TestPatchConflictsChangeNothing(t *testing.T) {
	f := newFixture(t, 4)
	a := f.create("A", "a@example.com", storage.RoleUser)
	f.create("B", "b@example.com", storage.RoleUser)
	r := wait(t, f.users.Patch(&storage.UserPatch{ID: a.ID, Fields: storage.PatchEmail | storage.PatchName, Email: "B@example.com", Name: "New"}, 2000))
	if r.Err == nil || r.Err.Kind != storage.KindConflict {
		t.Fatalf("taken email: %+v", r)
	}
	got, err := f.users.Get(a.ID, deadline())
	if err != nil || got.Name != "A" || got.Version != 1 {
		t.Fatalf("half-applied patch: %+v %v", got, err)
	}
	r = wait(t, f.users.Patch(&storage.UserPatch{ID: a.ID, IfVersion: 7, Fields: storage.PatchRole, Role: storage.RoleAdmin}, 2000))
	if r.Err == nil || r.Err.Kind != storage.KindPreconditionFailed {
		t.Fatalf("stale version: %+v", r)
	}
	if f.users.AdminCount() != 0 {
		t.Fatal("failed promotion counted")
	}
}

func TestLastAdmin(t *testing.T) {
	f := newFixture(t, 4)
	root := f.create("Root", "root@example.com", storage.RoleAdmin)
	if f.users.AdminCount() != 1 {
		t.Fatalf("admins %d", f.users.AdminCount())
	}
	if r := wait(t, f.users.Delete(root.ID)); r.Err == nil || r.Err.Kind != storage.KindConflict {
		t.Fatalf("delete last admin: %+v", r)
	}
	if r := wait(t, f.users.Patch(&storage.UserPatch{ID: root.ID, Fields: storage.PatchRole, Role: storage.RoleUser}, 2)); r.Err == nil {
		t.Fatalf("demote last admin: %+v", r)
	}
	// A batch that creates an admin updates the set.
	items := []storage.BatchItem{*f.item("X", "x@example.com", storage.RoleAdmin), *f.item("Y", "y@example.com", storage.RoleUser)}
	if r := wait(t, f.users.Batch(items, 3)); r.Items[0].Err != nil || r.Items[1].Err != nil {
		t.Fatalf("batch: %+v", r)
	}
	if f.users.AdminCount() != 2 {
		t.Fatalf("admins after batch %d", f.users.AdminCount())
	}
	if r := wait(t, f.users.Delete(root.ID)); r.Err != nil {
		t.Fatalf("delete one of two admins: %v", r.Err)
	}
	if f.users.AdminCount() != 1 {
		t.Fatalf("admins after delete %d", f.users.AdminCount())
	}
}

func TestBatchOrderAndDuplicates(t *testing.T) {
	f := newFixture(t, 4)
	var items []storage.BatchItem
	for i := range 40 {
		items = append(items, *f.item(fmt.Sprint("U", i), fmt.Sprintf("u%d@example.com", i%30), storage.RoleUser))
	}
	r := wait(t, f.users.Batch(items, 5))
	for i, it := range r.Items {
		dup := i >= 30
		if dup != (it.Err != nil) || (it.Err == nil && it.User.ID != items[i].ID) {
			t.Fatalf("item %d: %+v", i, it)
		}
	}
	n, err := f.users.Count("", deadline())
	if err != nil || n != 30 {
		t.Fatalf("count %d %v", n, err)
	}
	list, more, err := f.users.List("", "u1", 5, deadline())
	if err != nil || len(list) != 5 || !more {
		t.Fatalf("list: %d %v %v", len(list), more, err)
	}
}

func TestPanicIsRecoveredAndCounted(t *testing.T) {
	f := newFixture(t, 2)
	u := f.create("A", "a@example.com", storage.RoleUser)
	recovered := make(chan struct{})
	f.users.send(0, &shardMsg{run: func(*storage.UserShard) { panic("boom") }, recovered: func() { close(recovered) }})
	f.users.send(1, &shardMsg{run: func(*storage.UserShard) { panic("boom") }, recovered: func() {}})
	<-recovered
	// The shards go on serving, with their state.
	if got, err := f.users.Get(u.ID, deadline()); err != nil || got.ID != u.ID {
		t.Fatalf("after panic: %v", err)
	}
	f.create("B", "b@example.com", storage.RoleUser)
	var buf bytes.Buffer
	f.set.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), "troupe_actor_panics_total 2") {
		t.Fatalf("panics not counted:\n%s", buf.String())
	}
}

func TestViewsAndRestore(t *testing.T) {
	f := newFixture(t, 4)
	for i := range 20 {
		f.create(fmt.Sprint("U", i), fmt.Sprintf("u%d@example.com", i), storage.RoleUser)
	}
	views := f.users.Views()
	f.create("After", "after@example.com", storage.RoleAdmin)
	total := 0
	for _, v := range views {
		total += v.Len()
	}
	if total != 20 {
		t.Fatalf("views hold %d users, want 20 (taken before the 21st)", total)
	}
	g := newFixture(t, 4)
	if err := g.users.Restore(views); err != nil {
		t.Fatal(err)
	}
	if n, _ := g.users.Count("", deadline()); n != 20 {
		t.Fatalf("restored count %d", n)
	}
	if g.users.AdminCount() != 0 || f.users.AdminCount() != 1 {
		t.Fatalf("admins: restored %d, live %d", g.users.AdminCount(), f.users.AdminCount())
	}
}
