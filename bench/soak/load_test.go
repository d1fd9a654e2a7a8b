package main

import (
	"testing"

	"github.com/troupe-db/troupe/bench"
)

// Each acknowledgement of a user is final over the ones before it, and
// ops count per document up to the highest version.
func TestAcksRecord(t *testing.T) {
	a := newAcks()
	a.record(bench.Ack{User: "kept"})
	a.record(bench.Ack{User: "gone"})
	a.record(bench.Ack{User: "gone", Deleting: true})
	a.record(bench.Ack{User: "gone", Deleted: true})
	a.record(bench.Ack{User: "open"})
	a.record(bench.Ack{User: "open", Deleting: true})
	// A late or repeated report does not undo a later fate.
	a.record(bench.Ack{User: "gone", Deleting: true})
	a.record(bench.Ack{User: "gone"})
	a.record(bench.Ack{Doc: "d", Version: 3})
	a.record(bench.Ack{Doc: "d", Version: 2})
	a.record(bench.Ack{Doc: "e", Version: 1})
	want := map[string]fate{"kept": created, "gone": deleted, "open": deleting}
	if len(a.users) != len(want) {
		t.Fatalf("users %v", a.users)
	}
	for id, f := range want {
		if a.users[id] != f {
			t.Errorf("%s: fate %d, want %d", id, a.users[id], f)
		}
	}
	if d := a.docs["d"]; d == nil || d.top != 3 || d.n != 2 {
		t.Fatalf("doc d: %+v", d)
	}
	if e := a.docs["e"]; e == nil || e.top != 1 || e.n != 1 {
		t.Fatalf("doc e: %+v", e)
	}
}
