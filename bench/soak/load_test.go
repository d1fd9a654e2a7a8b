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

// A document's letters fit its version when each version moved them one
// letter either way from where it was created.
func TestLettersFit(t *testing.T) {
	for _, c := range []struct {
		n, start int
		v        uint64
		want     bool
	}{
		{0, 0, 0, true}, {5, 0, 5, true}, {4, 0, 5, false}, {6, 0, 5, false},
		{100, 100, 0, true}, {100, 100, 2, true}, {100, 100, 1, false},
		{99, 100, 1, true}, {101, 100, 7, true}, {98, 100, 7, false}, {90, 100, 9, false},
	} {
		if got := lettersFit(c.n, c.start, c.v); got != c.want {
			t.Errorf("lettersFit(%d, %d, %d) = %v", c.n, c.start, c.v, got)
		}
	}
}

// The read-back's letter count needs one writer a document.
func TestMixOneWriterPerDocument(t *testing.T) {
	for _, s := range mix([]string{"127.0.0.1:1"}, "t") {
		if s.Config.Scenario == "docs-ws" && (s.Config.Connections != s.Config.Docs || s.Config.DocLength != docLength) {
			t.Fatalf("docs-ws: %d clients on %d documents of %d letters", s.Config.Connections, s.Config.Docs, s.Config.DocLength)
		}
	}
}
