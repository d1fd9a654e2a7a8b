package actors

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// Writers and readers together: one goroutine applies commands as the FSM
// does (renames, email moves across shards, creates, deletes), and readers
// on other goroutines read the same users all the while, from views and
// through the actors. Under -race this shows that no reader touches what
// the actors write; and every read sees every change acknowledged before
// it started — what a linearizable read needs, since its read barrier
// waits for the commands before it to be sent — and never goes back.
func TestReadersAndWritersTogether(t *testing.T) {
	const users, readers = 16, 3
	steps := 400
	if testing.Short() {
		steps = 100
	}
	f := newFixture(t, 4)
	ids := make([]string, users)
	emails := make([]string, users) // fixed for the even users
	acked := make([]atomic.Uint64, users)
	for i := range ids {
		emails[i] = fmt.Sprintf("u%d@example.com", i)
		ids[i] = f.create(fmt.Sprint("U", i), emails[i], storage.RoleUser).ID
		acked[i].Store(1)
	}
	var stop atomic.Bool
	var direct, queued atomic.Int64
	var wg sync.WaitGroup
	for g := range readers {
		wg.Go(func() {
			seen := make([]uint64, users)
			check := func(i int) bool {
				want := acked[i].Load()
				r := getRead(readUser, ids[i])
				if err := f.users.ask(f.users.homeShard(ids[i]), r, deadline()); err != nil {
					t.Errorf("reader %d: get %d: %v", g, i, err)
					return false
				}
				if r.direct {
					direct.Add(1)
				} else {
					queued.Add(1)
				}
				usr := r.usr
				release(r)
				switch {
				case usr == nil:
					t.Errorf("reader %d: user %d not found", g, i)
				case usr.Version < want:
					t.Errorf("reader %d: user %d at version %d after version %d was acknowledged", g, i, usr.Version, want)
				case usr.Version < seen[i]:
					t.Errorf("reader %d: user %d went back from version %d to %d", g, i, seen[i], usr.Version)
				case usr.Name != fmt.Sprint("V", usr.Version) && usr.Version > 1:
					t.Errorf("reader %d: user %d at version %d is named %q", g, i, usr.Version, usr.Name)
				default:
					seen[i] = usr.Version
					return true
				}
				return false
			}
			for k := 0; !stop.Load(); k++ {
				i := (k*7 + g) % users
				if !check(i) {
					return
				}
				if i%2 == 0 {
					if got, err := f.users.FindEmail(emails[i], deadline()); err != nil || got == nil || got.ID != ids[i] {
						t.Errorf("reader %d: email of user %d: %v %v", g, i, got, err)
						return
					}
				}
			}
		})
	}

	// The writer: renames of every user, email moves of the odd ones
	// (applied step by step across shards), and a create and delete of
	// others, each acknowledged before the next.
	for k := range steps {
		i := k % users
		cur, err := f.users.Get(ids[i], deadline())
		if err != nil {
			t.Fatal(err)
		}
		pt := &storage.UserPatch{ID: ids[i], Fields: storage.PatchName, Name: fmt.Sprint("V", cur.Version+1)}
		if i%2 == 1 && k%3 == 0 {
			pt.Fields |= storage.PatchEmail
			pt.Email = fmt.Sprintf("u%d.%d@example.org", i, k)
		}
		r := wait(t, f.users.Patch(pt, int64(2000+k)))
		if r.Err != nil || r.User.Version != cur.Version+1 {
			t.Fatalf("step %d: patch: %+v %v", k, r.User, r.Err)
		}
		acked[i].Store(r.User.Version)
		if k%10 == 0 {
			extra := f.create("Extra", fmt.Sprintf("extra%d@example.com", k), storage.RoleUser)
			if r := wait(t, f.users.Delete(extra.ID)); r.Err != nil {
				t.Fatalf("step %d: delete: %v", k, r.Err)
			}
		}
	}
	// Once the writes stop, the shards' views catch up and serve reads.
	pollFor(t, "a read from a view", func() bool {
		for i := range ids {
			r := getRead(readUser, ids[i])
			if err := f.users.ask(f.users.homeShard(ids[i]), r, deadline()); err == nil && r.direct {
				direct.Add(1)
				release(r)
				return true
			}
		}
		return false
	})
	stop.Store(true)
	wg.Wait()
	t.Logf("reads from views %d, through the actors %d", direct.Load(), queued.Load())
}

// A read queued while a command runs waits for it, and sees it; the view
// published after it has it too.
func TestQueuedReadSeesRunningCommand(t *testing.T) {
	f := newFixture(t, 1)
	u := f.create("Ada", "ada@example.com", storage.RoleUser)
	if _, err := f.users.Get(u.ID, deadline()); err != nil {
		t.Fatal(err)
	}
	waitView(t, f.users, 0)
	started, release := make(chan struct{}), make(chan struct{})
	p := NewPending()
	go f.users.send(0, &shardMsg{
		run: func(s *storage.UserShard) {
			close(started)
			<-release
			cur, _ := s.Get(u.ID)
			next := *cur
			next.Name, next.Version = "Renamed", cur.Version+1
			s.Put(&next)
			p.resolve(storage.Result{User: &next})
		},
		recovered: func() { p.resolve(internalResult()) },
	})
	<-started
	got := make(chan *storage.User, 1)
	errc := make(chan error, 1)
	go func() {
		usr, err := f.users.Get(u.ID, deadline())
		got <- usr
		errc <- err
	}()
	select {
	case <-got:
		t.Fatal("a read answered while the command before it still ran")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if usr, err := <-got, <-errc; err != nil || usr.Name != "Renamed" {
		t.Fatalf("read after the command: %+v %v", usr, err)
	}
	wait(t, p)
	if v := waitView(t, f.users, 0); v.count != f.users.links[0].sent.Load() {
		t.Fatal("view behind")
	} else if usr, _ := v.shard.Get(u.ID); usr.Name != "Renamed" {
		t.Fatalf("the view published after the command: %q", usr.Name)
	}
	if _, err := f.users.Get("nope", deadline()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
}

// pollFor checks cond every millisecond until it holds, failing the test
// after five seconds.
func pollFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A Pending's result reaches every waiter, whether it waits before the
// result is known (a channel is made and closed) or after (the shared
// closed channel).
func TestPendingWaitersBeforeAndAfter(t *testing.T) {
	for range 200 {
		p := NewPending()
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				<-p.Done()
				if p.Result().Err == nil || p.Result().Err.Message != "x" {
					t.Error("a waiter saw no result")
				}
			})
		}
		p.resolve(storage.Result{Err: &storage.Error{Kind: storage.KindInternal, Message: "x"}})
		<-p.Done()
		wg.Wait()
	}
	if p := Resolved(storage.Result{}); p.Done() != *closedDone {
		t.Fatal("a Pending resolved before anyone waited made a channel")
	}
}
