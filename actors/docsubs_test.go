package actors

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/storage"
)

// TestPresenceIsBounded: a document holds at most MaxPresence present
// clients, other nodes' reports included; subscribers without a client
// id are not counted.
func TestPresenceIsBounded(t *testing.T) {
	d := newTestDocs(t, time.Hour)
	d.SetMaxPresence(2)
	deadline := time.Now().Add(5 * time.Second)
	waitResult(t, d.Apply(storage.CmdDocCreate, &storage.DocCommand{DocID: "d1", Caller: "owner", Title: "T"}, 1000))
	if _, err := d.Subscribe("d1", 0, false, "u1", "c1", deadline); err != nil {
		t.Fatal(err)
	}
	d.RemotePresence("d1", Presence{User: "u9", ClientID: "remote", State: "join"})
	var full *ErrPresenceFull
	waitFor(t, "the remote client to count", func() bool {
		_, err := d.Subscribe("d1", 0, false, "u2", "c2", deadline)
		return errors.As(err, &full) && full.Limit == 2
	})
	if _, err := d.Subscribe("d1", 0, false, "u2", "", deadline); err != nil {
		t.Fatalf("without a client id: %v", err)
	}
	// A further remote report is dropped, and counted.
	before := d.PresenceRefused()
	d.RemotePresence("d1", Presence{User: "u8", ClientID: "remote2", State: "join"})
	waitFor(t, "the report to be dropped", func() bool { return d.PresenceRefused() == before+1 })
	if users := d.Collaborators("d1", deadline); fmt.Sprint(users) != "[u1 u2 u9]" {
		t.Fatalf("collaborators %v", users)
	}
}

// TestRevokeAndNarrowing: removing an editor tells the hooks (only while
// the document has subscribers); Revoke ends a subscription with its
// reason; deleting the document ends the others with ReasonDeleted after
// a reset.
func TestRevokeAndNarrowing(t *testing.T) {
	d := newTestDocs(t, time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	editor := storage.MakeUserID(storage.StampAt(1000), 1)
	waitResult(t, d.Apply(storage.CmdDocCreate, &storage.DocCommand{DocID: "d1", Caller: "owner", Title: "T"}, 1000))
	waitResult(t, d.Apply(storage.CmdDocEditor, &storage.DocCommand{DocID: "d1", Caller: "owner", Editor: editor}, 1000))
	told := make(chan string, 4)
	remove := d.OnReadersNarrowed(func(id string) { told <- id })
	defer remove()
	s1, err := d.Subscribe("d1", 0, false, editor, "", deadline)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := d.Subscribe("d1", 0, false, "owner", "", deadline)
	if err != nil {
		t.Fatal(err)
	}
	// Adding an editor narrows nothing; removing one does.
	other := storage.MakeUserID(storage.StampAt(1001), 1)
	waitResult(t, d.Apply(storage.CmdDocEditor, &storage.DocCommand{DocID: "d1", Caller: "owner", Editor: other}, 1000))
	waitResult(t, d.Apply(storage.CmdDocEditor, &storage.DocCommand{DocID: "d1", Caller: "owner", Editor: editor, Remove: true}, 1000))
	select {
	case id := <-told:
		if id != "d1" || len(told) != 0 {
			t.Fatalf("told of %q (and %d more)", id, len(told))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not told of the removed editor")
	}
	d.Revoke("d1", s1, "access_revoked")
	<-s1.Done()
	if s1.Reason() != "access_revoked" {
		t.Fatalf("reason %q", s1.Reason())
	}
	waitResult(t, d.Apply(storage.CmdDocDelete, &storage.DocCommand{DocID: "d1", Caller: "owner"}, 1000))
	<-s2.Done()
	if ev := <-s2.C; ev.Kind != EventReset || ev.Doc != nil || s2.Reason() != ReasonDeleted {
		t.Fatalf("after delete: %+v, reason %q", ev, s2.Reason())
	}
}

// TestSlowSubscriberResumesWithoutGap: a subscriber that stops reading is
// cut off when its queue is full; what it did get, then a subscription
// after the last version it saw, give every change exactly once.
func TestSlowSubscriberResumesWithoutGap(t *testing.T) {
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	d := NewDocs(sys, DocsConfig{MaxHistory: 4 * SubscriberQueue, IdleAfter: time.Hour})
	t.Cleanup(func() { d.Close(); sys.Shutdown() })
	deadline := time.Now().Add(5 * time.Second)
	waitResult(t, d.Apply(storage.CmdDocCreate, &storage.DocCommand{DocID: "d1", Caller: "owner", Title: "T"}, 1000))
	slow, err := d.Subscribe("d1", 0, true, "u", "", deadline)
	if err != nil {
		t.Fatal(err)
	}
	const n = SubscriberQueue + 100
	for i := range n {
		submit(t, d, "d1", "a", uint64(i+1), uint64(i), ins(0, "x"))
	}
	<-slow.Done()
	var seen []uint64
	for len(slow.C) > 0 {
		if ev := <-slow.C; ev.Kind == EventChange {
			seen = append(seen, ev.Change.Version)
		}
	}
	last := seen[len(seen)-1]
	again, err := d.Subscribe("d1", last, true, "u", "", deadline)
	if err != nil {
		t.Fatal(err)
	}
	for len(seen) < n {
		ev := <-again.C
		if ev.Kind != EventChange {
			t.Fatalf("resumed with %v", ev.Kind)
		}
		seen = append(seen, ev.Change.Version)
	}
	for i, v := range seen {
		if v != uint64(i+1) {
			t.Fatalf("version %d at %d: a gap or a duplicate", v, i)
		}
	}
	d.Unsubscribe("d1", again)
}
