package cluster

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/storage"
)

// listed pages through f's catalog for user (or an admin).
func listed(t *testing.T, f *FSM, user string, admin bool, pageSize int) []*storage.Doc {
	t.Helper()
	var all []*storage.Doc
	after := ""
	for {
		page, more, err := f.Docs().List(user, admin, after, pageSize, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatalf("list for %q: %v", user, err)
		}
		all = append(all, page...)
		if !more {
			return all
		}
		after = page[len(page)-1].ID
	}
}

// sameListings checks that f lists, for an admin and for every user who
// may read a document, what its documents (a capture) say.
func sameListings(t *testing.T, f *FSM, what string) {
	t.Helper()
	// The admin's listing first: it must not need the capture's barrier.
	adminListed := listed(t, f, "", true, 3)
	docs := f.Capture().Docs
	users := map[string]bool{"stranger": true}
	for _, d := range docs {
		for _, u := range d.Readers() {
			users[u] = true
		}
	}
	check := func(user string, admin bool) {
		var want []storage.Doc
		for _, d := range docs {
			if d.MayRead(user, admin) {
				want = append(want, d.Listing())
			}
		}
		got := adminListed
		if !admin {
			got = listed(t, f, user, admin, 3)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %q (admin %v) lists %d documents, its documents say %d", what, user, admin, len(got), len(want))
		}
		for i := range want {
			g, w := got[i], &want[i]
			if g.ID != w.ID || g.Title != w.Title || g.Owner != w.Owner || !slices.Equal(g.Editors, w.Editors) ||
				g.Version != w.Version || g.UpdatedMs != w.UpdatedMs || g.CreatedMs != w.CreatedMs {
				t.Fatalf("%s: %q lists %+v, want %+v", what, user, *g, *w)
			}
		}
	}
	check("", true)
	for u := range users {
		check(u, false)
	}
}

// TestCatalogFollowsTheLog: after a random log (documents among the
// rest), applied in random batches without waiting for any result, the
// catalog lists what the documents hold; so it does in an FSM restored
// from the snapshot, fresh or over another state, and as both go on.
func TestCatalogFollowsTheLog(t *testing.T) {
	g := newLogGen(4242)
	logs := append([]*raft.Log{g.init()}, g.logs(3000)...)
	f1 := newDetFSM(t)
	defer f1.close()
	r := rand.New(rand.NewPCG(1, 2))
	f1.apply(t, logs, r)
	sameListings(t, f1.fsm, "after the log")
	if n := f1.fsm.Docs().Catalog().Entries(); n == 0 {
		t.Fatal("the log created no document")
	}

	snap, _ := f1.stateHash(t)
	f2 := newDetFSM(t)
	defer f2.close()
	other := newLogGen(99)
	f2.apply(t, append([]*raft.Log{other.init()}, other.logs(500)...), r)
	if err := f2.fsm.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	sameListings(t, f2.fsm, "restored over another state")

	more := g.logs(1000)
	f1.apply(t, more, r)
	f2.apply(t, more, r)
	sameListings(t, f1.fsm, "going on")
	sameListings(t, f2.fsm, "going on after the restore")
}

// TestCatalogTitleAfterApply: a listing asked as soon as the FSM has
// applied a title change (what a read barrier waits for) shows it, though
// the document's actor runs the change on its own time.
func TestCatalogTitleAfterApply(t *testing.T) {
	g := newLogGen(7)
	f := newDetFSM(t)
	defer f.close()
	owner := storage.MakeUserID(storage.StampAt(1), 1)
	f.fsm.ApplyBatch([]*raft.Log{g.init(), g.log(&storage.Command{Kind: storage.CmdDocCreate, Stamp: g.stamps(1),
		Doc: &storage.DocCommand{DocID: "doc1", Caller: owner, Title: "Title 0", Content: "text"}})})
	for i := 1; i <= 300; i++ {
		title := fmt.Sprint("Title ", i)
		f.fsm.ApplyBatch([]*raft.Log{g.log(&storage.Command{Kind: storage.CmdDocTitle, Stamp: g.stamps(1),
			Doc: &storage.DocCommand{DocID: "doc1", Caller: owner, Title: title}})})
		for _, admin := range []bool{false, true} {
			page, _, err := f.fsm.Docs().List(owner, admin, "", 10, time.Now().Add(5*time.Second))
			if err != nil || len(page) != 1 || page[0].Title != title {
				t.Fatalf("listing right after title %d was applied (admin %v): %v %+v", i, admin, err, page)
			}
		}
	}
}
