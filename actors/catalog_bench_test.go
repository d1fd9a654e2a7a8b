package actors

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/storage"
)

// The listing benchmarks: 100k documents owned by 1000 users (100 each,
// spread over the id space), one user's first page of 50, and an admin's.

const (
	benchListed = 100_000
	benchOwners = 1000
	benchPage   = 50
)

// scanList is how listings were served before the catalog: every id
// copied under the directory's lock, sorted, and each document's latest
// state read and filtered — O(all documents) a page. Kept here only to
// measure against.
func scanList(d *Docs, after string, limit int, keep func(*storage.Doc) bool) ([]*storage.Doc, bool) {
	d.mu.Lock()
	ids := make([]string, 0, len(d.entries))
	for id := range d.entries {
		if id > after {
			ids = append(ids, id)
		}
	}
	entries := make(map[string]docEntry, len(ids))
	for _, id := range ids {
		entries[id] = d.entries[id]
	}
	d.mu.Unlock()
	slices.Sort(ids)
	var out []*storage.Doc
	for _, id := range ids {
		doc := entries[id].doc
		if b := entries[id].box; b != nil {
			doc = b.latest.Load()
		}
		if doc == nil || !keep(doc) {
			continue
		}
		if len(out) == limit {
			return out, true
		}
		out = append(out, doc)
	}
	return out, false
}

func benchDocID(i int) string { return fmt.Sprintf("doc%07d", i) }

// benchCatalogDocs fills a Docs with the benchmark's documents and waits
// until its catalog has them all.
func benchCatalogDocs(b *testing.B) (*Docs, []string) {
	b.Helper()
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	d := NewDocs(sys, DocsConfig{IdleAfter: time.Hour})
	b.Cleanup(func() {
		d.Close()
		sys.Shutdown()
	})
	users := testUserIDs(benchOwners)
	for i := range benchListed {
		p := d.Apply(storage.CmdDocCreate, &storage.DocCommand{DocID: benchDocID(i), Caller: users[i%benchOwners], Title: "Document " + benchDocID(i)}, 1000)
		if r := p.Result(); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	d.Flush()
	if _, _, err := d.List("", true, "", 1, time.Now().Add(30*time.Second)); err != nil {
		b.Fatal(err)
	}
	if n := d.Catalog().Entries(); n != benchListed {
		b.Fatalf("catalog holds %d documents", n)
	}
	return d, users
}

// BenchmarkDocsList lists one user's first page, and an admin's, with
// the scan that listings used to be and with the catalog: through its
// mailbox (what GET /v1/docs does) and its page computed in place (what
// reading a published view would cost at best).
func BenchmarkDocsList(b *testing.B) {
	d, users := benchCatalogDocs(b)
	user := users[benchOwners/2]
	state := newCatalogState(&Catalog{})
	for _, doc := range d.Views() {
		state.apply(&catalogNote{id: doc.ID, doc: doc})
	}
	check := func(b *testing.B, page []*storage.Doc, more bool) {
		if len(page) != benchPage || !more {
			b.Fatalf("page of %d, more %v", len(page), more)
		}
	}
	for _, admin := range []bool{false, true} {
		who := "user"
		if admin {
			who = "admin"
		}
		b.Run(who+"/scan", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				page, more := scanList(d, "", benchPage, func(doc *storage.Doc) bool { return doc.MayRead(user, admin) })
				check(b, page, more)
			}
		})
		b.Run(who+"/catalog", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				page, more, err := d.List(user, admin, "", benchPage, time.Now().Add(5*time.Second))
				if err != nil {
					b.Fatal(err)
				}
				check(b, page, more)
			}
		})
		b.Run(who+"/catalog-in-place", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				page, more := state.page(user, admin, "", benchPage)
				check(b, page, more)
			}
		})
	}
}

// BenchmarkCatalogUpdate is what the catalog adds to every document
// command: a submit's note applied in place (the chosen design), the same
// notes sent through the mailbox in batches of benchBatch and applied,
// and what publishing an
// immutable view after each change would cost at the least (a copy-on-
// write clone of the id index and the owner's index with the changed
// entry replaced, without the id map).
func BenchmarkCatalogUpdate(b *testing.B) {
	d, _ := benchCatalogDocs(b)
	views := d.Views()
	state := newCatalogState(&Catalog{})
	for _, doc := range views {
		state.apply(&catalogNote{id: doc.ID, doc: doc})
	}
	b.Run("in-place", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			doc := views[i%len(views)]
			state.apply(&catalogNote{id: doc.ID, doc: doc})
			i += 7919
		}
	})
	b.Run("mailbox", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		var batch []*catalogNote
		for b.Loop() {
			doc := views[i%len(views)]
			batch = append(batch, &catalogNote{id: doc.ID, doc: doc})
			if len(batch) == benchBatch {
				d.catalog.record(batch)
				batch = nil
			}
			i += 7919
		}
		d.catalog.record(batch)
		// Until the catalog has applied them all.
		if _, _, err := d.List("", true, "", 1, time.Now().Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("cow-view", func(b *testing.B) {
		b.ReportAllocs()
		all := state.all.Clone()
		i := 0
		for b.Loop() {
			doc := views[i%len(views)]
			e := &catalogEntry{doc: doc}
			all = all.Clone()
			all.ReplaceOrInsert(e)
			owner := state.byUser[doc.Owner].Clone()
			owner.ReplaceOrInsert(e)
			i += 7919
		}
		_ = all.Len()
	})
}

// benchBatch is the batch size of the benchmarks that flush notes as the
// FSM does at the end of a batch.
const benchBatch = 16

// BenchmarkDocsSubmit applies submits to one document as the FSM does,
// 64 in flight, waiting for each result, and flushes the catalog's notes
// after every submit (batch=1, the FSM's batches at a trickle) or every
// benchBatch: the notes are the catalog's cost on the edit path.
func BenchmarkDocsSubmit(b *testing.B) {
	for _, batch := range []int{1, benchBatch} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) { benchDocsSubmit(b, batch) })
	}
}

func benchDocsSubmit(b *testing.B, batch int) {
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	d := NewDocs(sys, DocsConfig{IdleAfter: time.Hour})
	defer func() {
		d.Close()
		sys.Shutdown()
	}()
	owner := testUserIDs(1)[0]
	if r := d.Apply(storage.CmdDocCreate, &storage.DocCommand{DocID: "d1", Caller: owner, Title: "Bench"}, 1000).Result(); r.Err != nil {
		b.Fatal(r.Err)
	}
	const inFlight = 64
	ring := make([]*Pending, 0, inFlight)
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		if len(ring) == inFlight {
			if r := waitPending(b, ring[0]); r.Err != nil {
				b.Fatal(r.Err)
			}
			ring = ring[1:]
		}
		seq++
		ring = append(ring, d.Apply(storage.CmdDocSubmit, &storage.DocCommand{DocID: "d1", Caller: owner,
			Submit: &storage.DocSubmit{DocID: "d1", ClientID: "c", Seq: seq, Base: seq - 1, Ops: []storage.Op{ins(0, "x")}}}, 1000))
		if seq%uint64(batch) == 0 {
			d.Flush()
		}
	}
	d.Flush()
	for _, p := range ring {
		waitPending(b, p)
	}
}

func waitPending(b *testing.B, p *Pending) storage.Result {
	select {
	case <-p.Done():
		return p.Result()
	case <-time.After(10 * time.Second):
		b.Fatal("no result")
		return storage.Result{}
	}
}
