package actors

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/storage"
)

// Reads by id and email: directly on an idle shard, through the actor when
// the shard is busy, with panics recovered and deadlines kept either way.

func TestDirectReadOnlyWhenShardIdle(t *testing.T) {
	f := newFixture(t, 2)
	u := f.create("Ada", "ada@example.com", storage.RoleUser)
	shard := f.users.homeShard(u.ID)
	box := f.users.boxes[shard]
	// The create's Pending resolves inside the actor's run, just before
	// it counts the message and unlocks; a read through the actor comes
	// after both and answers after unlocking: the shard is idle then.
	r := getRead(readUser, u.ID)
	if err := f.users.askActor(shard, r, deadline()); err != nil || r.usr == nil {
		t.Fatalf("read through the actor: %v", err)
	}
	release(r)

	r = getRead(readUser, u.ID)
	if ok, err := box.tryRead(r); !ok || err != nil || r.usr == nil || r.usr.ID != u.ID {
		t.Fatalf("idle shard: ok %v err %v usr %v", ok, err, r.usr)
	}

	// A message sent and not yet applied (as a command queued behind
	// others): the read must not skip it.
	box.sent.Add(1)
	r = getRead(readUser, u.ID)
	if ok, _ := box.tryRead(r); ok {
		t.Fatal("read the shard directly with a message not yet applied")
	}
	box.sent.Add(^uint64(0))

	// While the actor runs a message, the shard is not read directly.
	inside := make(chan bool, 1)
	if !f.users.exec(0, func(*storage.UserShard) {
		ok, _ := f.users.boxes[0].tryRead(getRead(readUser, u.ID))
		inside <- ok
	}) || <-inside {
		t.Fatal("read the shard directly while its actor ran a message")
	}
}

// A read that finds its shard busy queues behind the commands sent before
// it and sees their effect.
func TestReadOfBusyShardSeesQueuedCommand(t *testing.T) {
	f := newFixture(t, 1)
	release := make(chan struct{})
	started := make(chan struct{})
	f.users.send(0, &shardMsg{run: func(*storage.UserShard) { close(started); <-release }, recovered: func() {}})
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
	f.users.send(0, &shardMsg{run: func(*storage.UserShard) { close(started); <-release }, recovered: func() {}})
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
	box := f.users.boxes[0]
	box.mu.Lock()
	saved := box.shard
	box.shard = nil // every lookup panics
	box.mu.Unlock()

	// Direct (idle shard), then through the actor (a message not yet
	// applied makes the reader queue).
	if _, err := f.users.Get(u.ID, deadline()); !errors.Is(err, errReadPanicked) {
		t.Fatalf("direct read: %v, want internal", err)
	}
	box.sent.Add(1)
	if _, err := f.users.Get(u.ID, deadline()); !errors.Is(err, errReadPanicked) {
		t.Fatalf("actor read: %v, want internal", err)
	}
	box.sent.Add(^uint64(0))

	box.mu.Lock()
	box.shard = saved
	box.mu.Unlock()
	if got, err := f.users.Get(u.ID, deadline()); err != nil || got.ID != u.ID {
		t.Fatalf("after the panics: %v", err)
	}
	var buf bytes.Buffer
	f.set.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), "troupe_actor_panics_total 2") {
		t.Fatalf("panics not counted:\n%s", buf.String())
	}
}

// Stopped shards (replaced by a restore) are not read directly: a read
// goes to the stopped actor and gives up at its deadline, as before. (Not
// sent here: a dead letter starts protoactor's throttle goroutine, which
// outlives the test.)
func TestNoDirectReadAfterStop(t *testing.T) {
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	defer sys.Shutdown()
	users := NewUsers(sys, 1)
	it := &storage.BatchItem{ID: storage.MakeUserID(storage.StampAt(1_700_000_000_000), 0),
		User: storage.NewUser{Name: "Ada", Email: "ada@example.com", Role: storage.RoleUser}}
	wait(t, users.Create(it, 1000))
	users.Stop()
	if ok, _ := users.boxes[0].tryRead(getRead(readUser, it.ID)); ok {
		t.Fatal("read a stopped shard directly")
	}
}
