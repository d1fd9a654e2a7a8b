package actors

import (
	"fmt"
	"strings"
	"testing"

	"github.com/troupe-db/troupe/storage"
)

func TestDocsQuota(t *testing.T) {
	d := newTestDocs(t, 0)
	create := func(id, owner string, max uint64) storage.Result {
		return waitResult(t, d.Apply(storage.CmdDocCreate, &storage.DocCommand{DocID: id, Caller: owner, Title: "T", MaxDocs: max}, 1000))
	}
	for i := range 3 {
		if r := create(fmt.Sprint("a", i), "alice", 3); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	r := create("a3", "alice", 3)
	if r.Err == nil || r.Err.Kind != storage.KindQuotaExceeded || r.Err.Limit != 3 {
		t.Fatalf("fourth document: %+v", r.Err)
	}
	if d.Latest("a3") != nil {
		t.Fatal("the refused document exists")
	}
	// Another user is not affected; a command without a limit (version 1)
	// is not limited; a higher limit from another node lets it through.
	if r := create("b0", "bob", 3); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := create("a4", "alice", 0); r.Err != nil {
		t.Fatal(r.Err)
	}
	if d.Owned("alice") != 4 {
		t.Fatalf("alice owns %d", d.Owned("alice"))
	}
	// A delete gives room again.
	for _, id := range []string{"a0", "a1"} {
		if r := waitResult(t, d.Apply(storage.CmdDocDelete, &storage.DocCommand{DocID: id, Caller: "alice"}, 1000)); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if r := create("a5", "alice", 3); r.Err != nil || d.Owned("alice") != 3 {
		t.Fatalf("after deletes: %v, owns %d", r.Err, d.Owned("alice"))
	}
	// A restore counts again from the documents it brings.
	d.Restore(d.Views()[:2])
	if d.Owned("alice")+d.Owned("bob") != 2 {
		t.Fatalf("after restore: alice %d, bob %d", d.Owned("alice"), d.Owned("bob"))
	}
}

func TestDocsHistoryBytes(t *testing.T) {
	d := newTestDocs(t, 0) // MaxHistory 5
	if r := waitResult(t, d.Apply(storage.CmdDocCreate, &storage.DocCommand{DocID: "d", Caller: "owner", Title: "T"}, 1000)); r.Err != nil {
		t.Fatal(r.Err)
	}
	text := strings.Repeat("x", 1000)
	per := storage.HistoryBytes(&storage.Change{ClientID: "c", Ops: []storage.Op{ins(0, text)}})
	for i := range 5 {
		r := waitResult(t, d.Apply(storage.CmdDocSubmit, &storage.DocCommand{DocID: "d", Caller: "owner", HistoryBytes: uint64(2*per + 1),
			Submit: &storage.DocSubmit{DocID: "d", ClientID: "c", Seq: uint64(i + 1), Base: uint64(i), Ops: []storage.Op{ins(0, text)}}}, 1000))
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	doc := d.Latest("d")
	if n, b := doc.KeptHistory(); n != 2 || b != 2*per || doc.OldestBase() != 3 {
		t.Fatalf("kept %d changes, %d bytes, oldest base %d", n, b, doc.OldestBase())
	}
	// Without a byte bound (a version 1 command), the count bound alone.
	r := submit(t, d, "d", "c", 6, 5, ins(0, "y"))
	if n, _ := d.Latest("d").KeptHistory(); r.Err != nil || n != 3 {
		t.Fatalf("%v: kept %d", r.Err, n)
	}
}
