package actors

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/storage"
)

// Reads by id and email: from the shard's published view when it is
// current, through the actor when commands are queued, with panics
// recovered and deadlines kept either way.

// waitView waits until shard's published view reflects every message sent.
func waitView(t *testing.T, u *Users, shard int) *shardView {
	t.Helper()
	l := u.links[shard]
	pollFor(t, "a current view", func() bool { return l.view.Load().count == l.sent.Load() })
	return l.view.Load()
}

func TestViewReadOnlyWhenCurrent(t *testing.T) {
	f := newFixture(t, 2)
	u := f.create("Ada", "ada@example.com", storage.RoleUser)
	shard := f.users.homeShard(u.ID)
	link := f.users.links[shard]
	// Nobody has read: the create published nothing, and the view is
	// behind, so a read queues and asks for a view.
	r := getRead(readUser, u.ID)
	if ok, _ := link.readView(r, f.sys, shard); ok {
		t.Fatal("answered from a view that misses the create")
	}
	if !link.wanted.Load() {
		t.Fatal("a reader that queued did not ask for a view")
	}
	if got, err := f.users.Get(u.ID, deadline()); err != nil || got.ID != u.ID {
		t.Fatalf("read through the actor: %v", err)
	}
	waitView(t, f.users, shard)

	r = getRead(readUser, u.ID)
	if ok, err := link.readView(r, f.sys, shard); !ok || err != nil || r.usr == nil || r.usr.ID != u.ID {
		t.Fatalf("current view: ok %v err %v usr %v", ok, err, r.usr)
	}

	// A message sent and not yet applied (as a command queued behind
	// others): the read must not skip it.
	link.sent.Add(1)
	r = getRead(readUser, u.ID)
	if ok, _ := link.readView(r, f.sys, shard); ok {
		t.Fatal("read a view with a message not yet applied")
	}
	link.sent.Add(^uint64(0))

	// While the actor runs a message, its view is behind.
	inside := make(chan bool, 1)
	if !f.users.exec(shard, func(*storage.UserShard) {
		ok, _ := link.readView(getRead(readUser, u.ID), f.sys, shard)
		inside <- ok
	}) || <-inside {
		t.Fatal("read a view while its actor ran a message")
	}
}

// Views are published on demand: writes that nobody reads publish none;
// once a reader has used a view, the next change publishes a fresh one.
func TestViewsPublishedOnDemand(t *testing.T) {
	f := newFixture(t, 1)
	link := f.users.links[0]
	first := link.view.Load()
	var ids []string
	for i := range 20 {
		ids = append(ids, f.create(fmt.Sprint("U", i), fmt.Sprintf("u%d@example.com", i), storage.RoleUser).ID)
	}
	if link.view.Load() != first {
		t.Fatal("writes nobody read published a view")
	}
	if _, err := f.users.Get(ids[0], deadline()); err != nil {
		t.Fatal(err)
	}
	v := waitView(t, f.users, 0)
	if got, err := f.users.Get(ids[1], deadline()); err != nil || got.ID != ids[1] || !v.read.Load() {
		t.Fatalf("read from the view: %v, read mark %v", err, v.read.Load())
	}
	r := wait(t, f.users.Patch(&storage.UserPatch{ID: ids[1], Fields: storage.PatchName, Name: "Renamed"}, 2000))
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	v2 := waitView(t, f.users, 0)
	if v2 == v {
		t.Fatal("no view published after a change to a read view")
	}
	if got, _ := v.shard.Get(ids[1]); got.Name != "U1" {
		t.Fatalf("the old view changed: %q", got.Name)
	}
	if got, _ := v2.shard.Get(ids[1]); got.Name != "Renamed" || got.Version != 2 {
		t.Fatalf("the new view: %+v", got)
	}
	if v2.shard.HasEmailIndex() {
		t.Fatal("a view holds the email index")
	}
	// Reads by email go to the actor, which answers them from the live
	// shard.
	if ok, _ := f.users.links[0].readView(getRead(readEmail, "u1@example.com"), f.sys, 0); ok {
		t.Fatal("a read by email answered from a view")
	}
	if got, err := f.users.FindEmail("U1@example.com", deadline()); err != nil || got == nil || got.ID != ids[1] {
		t.Fatalf("FindEmail: %v %v", got, err)
	}
	// (A read that misses its short deadline answers "not taken", as
	// documented: poll for the answer a machine under load may delay.)
	pollFor(t, "EmailTakenIfIdle on an idle shard", func() bool { return f.users.EmailTakenIfIdle("u1@example.com", "") })
	if f.users.EmailTakenIfIdle("u1@example.com", ids[1]) {
		t.Fatal("EmailTakenIfIdle counts the user it must except")
	}
	f.users.links[0].sent.Add(1) // as a command queued: no waiting behind it
	if f.users.EmailTakenIfIdle("u1@example.com", "") {
		t.Fatal("EmailTakenIfIdle waited for a busy shard")
	}
	f.users.links[0].sent.Add(^uint64(0))
}

// A restore replaces every shard: views published before it are not
// read after it.
func TestRestoreRetiresViews(t *testing.T) {
	f := newFixture(t, 2)
	var ids []string
	for i := range 10 {
		ids = append(ids, f.create(fmt.Sprint("U", i), fmt.Sprintf("u%d@example.com", i), storage.RoleUser).ID)
	}
	views := f.users.Views()
	late := f.create("Late", "late@example.com", storage.RoleUser)
	for _, id := range append(ids, late.ID) { // every shard's view current and read
		if _, err := f.users.Get(id, deadline()); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.users.Restore(views); err != nil {
		t.Fatal(err)
	}
	if _, err := f.users.Get(late.ID, deadline()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a user created after the snapshot: %v, want not found", err)
	}
	if got, err := f.users.FindEmail("late@example.com", deadline()); err != nil || got != nil {
		t.Fatalf("an email indexed after the snapshot: %v %v", got, err)
	}
	if f.users.EmailTakenIfIdle("late@example.com", "") {
		t.Fatal("an email indexed after the snapshot is taken")
	}
	for _, id := range ids {
		if _, err := f.users.Get(id, deadline()); err != nil {
			t.Fatalf("restored user %s: %v", id, err)
		}
	}
}

// A read that finds its shard busy queues behind the commands sent before
// it and sees their effect.
func TestReadOfBusyShardSeesQueuedCommand(t *testing.T) {
	f := newFixture(t, 1)
	release := make(chan struct{})
	started := make(chan struct{})
	// From another goroutine: the sender of a message to an idle shard runs
	// it (inlineDispatcher).
	go f.users.send(0, &shardMsg{run: func(*storage.UserShard) { close(started); <-release }, recovered: func() {}})
	<-started
	it := f.item("Ada", "ada@example.com", storage.RoleUser)
	p := f.users.Create(it, 1000) // queued behind the blocked message
	got := make(chan error, 1)
	go func() {
		usr, err := f.users.Get(it.ID, deadline())
		if err == nil && usr.ID != it.ID {
			err = errors.New("wrong user")
		}
		got <- err
	}()
	close(release)
	if err := <-got; err != nil {
		t.Fatalf("read after a queued create: %v", err)
	}
	wait(t, p)
	if usr, err := f.users.FindEmail("ADA@example.com", deadline()); err != nil || usr == nil || usr.ID != it.ID {
		t.Fatalf("FindEmail: %v %v", usr, err)
	}
}

func TestReadGivesUpAtDeadline(t *testing.T) {
	f := newFixture(t, 1)
	u := f.create("Ada", "ada@example.com", storage.RoleUser)
	release := make(chan struct{})
	started := make(chan struct{})
	// From another goroutine: the sender of a message to an idle shard runs
	// it (inlineDispatcher).
	go f.users.send(0, &shardMsg{run: func(*storage.UserShard) { close(started); <-release }, recovered: func() {}})
	<-started
	if _, err := f.users.Get(u.ID, time.Now().Add(20*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("busy shard: %v, want ErrTimeout", err)
	}
	if _, err := f.users.FindEmail(u.Email, time.Now().Add(-time.Second)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("past deadline: %v, want ErrTimeout", err)
	}
	close(release)
	// The abandoned read's late answer harms nothing; reads go on.
	for range 100 {
		if got, err := f.users.Get(u.ID, deadline()); err != nil || got.ID != u.ID {
			t.Fatalf("after the timeout: %v", err)
		}
	}
}

func TestReadPanicIsRecovered(t *testing.T) {
	f := newFixture(t, 1)
	u := f.create("Ada", "ada@example.com", storage.RoleUser)
	link := f.users.links[0]

	// Through the actor: its shard emptied to its zero value, on which
	// every lookup panics; so does taking a view of it, which the queued
	// read by id asks for: the actor keeps its last view, and that panic
	// is counted too (3 panics, then 1 from a view).
	var saved storage.UserShard
	f.users.exec(0, func(s *storage.UserShard) { saved, *s = *s, storage.UserShard{} })
	if _, err := f.users.Get(u.ID, deadline()); !errors.Is(err, errReadPanicked) {
		t.Fatalf("actor read: %v, want internal", err)
	}
	if _, err := f.users.FindEmail(u.Email, deadline()); !errors.Is(err, errReadPanicked) {
		t.Fatalf("actor email read: %v, want internal", err)
	}
	f.users.exec(0, func(s *storage.UserShard) { *s = saved })
	if got, err := f.users.Get(u.ID, deadline()); err != nil || got.ID != u.ID {
		t.Fatalf("after the actor's panics: %v", err)
	}

	// From a view: a current view on which every lookup panics.
	good := waitView(t, f.users, 0)
	link.view.Store(&shardView{shard: &storage.UserShard{}, count: good.count})
	if _, err := f.users.Get(u.ID, deadline()); !errors.Is(err, errReadPanicked) {
		t.Fatalf("view read: %v, want internal", err)
	}
	link.view.Store(good)
	if got, err := f.users.Get(u.ID, deadline()); err != nil || got.ID != u.ID {
		t.Fatalf("after the panics: %v", err)
	}
	var buf bytes.Buffer
	f.set.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), "troupe_actor_panics_total 4") {
		t.Fatalf("panics not counted:\n%s", buf.String())
	}
}

// The views of stopped shards (replaced by a restore) are not read: a read
// goes to the stopped actor and gives up at its deadline. (Not
// sent here: a dead letter starts protoactor's throttle goroutine, which
// outlives the test.)
func TestNoDirectReadAfterStop(t *testing.T) {
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	defer sys.Shutdown()
	users := NewUsers(sys, 1)
	it := &storage.BatchItem{ID: storage.MakeUserID(storage.StampAt(1_700_000_000_000), 0),
		User: storage.NewUser{Name: "Ada", Email: "ada@example.com", Role: storage.RoleUser}}
	wait(t, users.Create(it, 1000))
	if _, err := users.Get(it.ID, deadline()); err != nil {
		t.Fatal(err)
	}
	waitView(t, users, 0)
	users.Stop()
	if ok, _ := users.links[0].readView(getRead(readUser, it.ID), sys, 0); ok {
		t.Fatal("read a stopped shard's view")
	}
}
