package actors

import (
	"strings"
	"testing"

	"github.com/troupe-db/troupe/storage"
)

// The owner's named-version bytes follow namings, deletes of names and
// of documents, and a restore, in log order; the bound a naming carries
// is checked against them over all the owner's documents.
func TestDocsNamedBytes(t *testing.T) {
	d := newTestDocs(t, 0)
	apply := func(kind storage.CommandKind, c *storage.DocCommand) storage.Result {
		t.Helper()
		return waitResult(t, d.Apply(kind, c, 1000))
	}
	text := strings.Repeat("n", 100)
	for _, id := range []string{"a1", "a2", "a3"} {
		if r := apply(storage.CmdDocCreate, &storage.DocCommand{DocID: id, Caller: "alice", Title: "T", Content: text}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if r := apply(storage.CmdDocCreate, &storage.DocCommand{DocID: "b1", Caller: "bob", Title: "T", Content: text}); r.Err != nil {
		t.Fatal(r.Err)
	}
	name := func(id, caller string) storage.Result {
		return apply(storage.CmdDocVersion, &storage.DocCommand{DocID: id, Caller: caller, VersionName: "v", Current: true, MaxNamedBytes: 250})
	}
	// 101 bytes each: two fit in 250, a third does not, whichever document.
	for _, id := range []string{"a1", "a2"} {
		if r := name(id, "alice"); r.Err != nil || r.Doc.Named(0) == nil {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if got := d.NamedBytes("alice"); got != 202 {
		t.Fatalf("alice holds %d", got)
	}
	if r := name("a3", "alice"); r.Err == nil || r.Err.Kind != storage.KindQuotaExceeded || r.Err.Field != "named_version_bytes" {
		t.Fatalf("third: %+v", r.Err)
	}
	// Bob's room is his own; a viewer may not name.
	if r := name("b1", "bob"); r.Err != nil || d.NamedBytes("bob") != 101 {
		t.Fatalf("bob: %+v, %d", r.Err, d.NamedBytes("bob"))
	}
	if r := name("a3", "bob"); r.Err == nil || r.Err.Kind != storage.KindForbidden {
		t.Fatalf("a stranger names: %+v", r.Err)
	}
	// Deleting a name frees its bytes; so does deleting a document.
	if r := apply(storage.CmdDocVersion, &storage.DocCommand{DocID: "a1", Caller: "alice", Version: 0, Remove: true}); r.Err != nil || d.NamedBytes("alice") != 101 {
		t.Fatalf("delete a name: %+v, %d", r.Err, d.NamedBytes("alice"))
	}
	if r := apply(storage.CmdDocDelete, &storage.DocCommand{DocID: "a2", Caller: "alice"}); r.Err != nil || d.NamedBytes("alice") != 0 {
		t.Fatalf("delete a document: %+v, %d", r.Err, d.NamedBytes("alice"))
	}
	if r := name("a3", "alice"); r.Err != nil || d.NamedBytes("alice") != 101 {
		t.Fatalf("after the deletes: %+v, %d", r.Err, d.NamedBytes("alice"))
	}
	// A restore counts them again from the documents.
	views := d.Views()
	d.Restore(nil)
	if d.NamedBytes("alice")+d.NamedBytes("bob") != 0 {
		t.Fatal("counts survive a restore to nothing")
	}
	d.Restore(views)
	if d.NamedBytes("alice") != 101 || d.NamedBytes("bob") != 101 {
		t.Fatalf("after restore: alice %d, bob %d", d.NamedBytes("alice"), d.NamedBytes("bob"))
	}
}
