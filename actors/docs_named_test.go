package actors

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

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

// BenchmarkDocsNameVersion is the cost of naming a version and deleting
// its name, in log order: the applying goroutine waits for the document's
// actor (as for a delete), which rebuilds the version from a checkpoint
// of a 64 KiB text. Compare with BenchmarkDocsRetitle, which does not wait.
func BenchmarkDocsNameVersion(b *testing.B) {
	d := namedBenchDocs(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c := &storage.DocCommand{DocID: "d", Caller: "alice", VersionName: "v", Version: uint64(i / 2 % 8), Remove: i%2 == 1}
		if p := d.Apply(storage.CmdDocVersion, c, 1000); p.Result().Err != nil {
			b.Fatal(p.Result().Err)
		}
	}
}

// BenchmarkDocsRetitle: a retitle, applied without waiting (but for its
// result at the end), for comparison.
func BenchmarkDocsRetitle(b *testing.B) {
	d := namedBenchDocs(b)
	b.ReportAllocs()
	b.ResetTimer()
	var p *Pending
	for i := range b.N {
		p = d.Apply(storage.CmdDocTitle, &storage.DocCommand{DocID: "d", Caller: "alice", Title: fmt.Sprint("t", i%2)}, 1000)
	}
	<-p.Done()
}

// namedBenchDocs: alice's document "d" of 64 KiB with 8 versions kept.
func namedBenchDocs(b *testing.B) *Docs {
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	d := NewDocs(sys, DocsConfig{MaxHistory: 100})
	b.Cleanup(func() {
		d.Close()
		sys.Shutdown()
	})
	<-d.Apply(storage.CmdDocCreate, &storage.DocCommand{DocID: "d", Caller: "alice", Title: "T", Content: strings.Repeat("x", 64<<10)}, 1000).Done()
	for v := range uint64(8) {
		s := &storage.DocSubmit{DocID: "d", ClientID: "c", Seq: v + 1, Base: v, Ops: []storage.Op{{Kind: storage.OpInsert, Pos: int(v), Text: "y"}}}
		p := d.Apply(storage.CmdDocSubmit, &storage.DocCommand{DocID: "d", Caller: "alice", Submit: s, CheckpointEvery: 4}, 1000)
		if <-p.Done(); p.Result().Err != nil {
			b.Fatal(p.Result().Err)
		}
	}
	return d
}
