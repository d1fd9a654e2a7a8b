package actors

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// listAll pages through what user (or an admin) may read, pageSize at a
// time, checking the paging contract on the way: each page holds at most
// pageSize, ids rise across pages, and more is false only on the last.
func listAll(t *testing.T, d *Docs, user string, admin bool, pageSize int) []*storage.Doc {
	t.Helper()
	var all []*storage.Doc
	after := ""
	for {
		page, more, err := d.List(user, admin, after, pageSize, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatalf("list for %q after %q: %v", user, after, err)
		}
		if len(page) > pageSize || (more && len(page) != pageSize) {
			t.Fatalf("list for %q after %q: %d documents, more %v, page size %d", user, after, len(page), more, pageSize)
		}
		for _, doc := range page {
			if doc.ID <= after {
				t.Fatalf("list for %q after %q: %s out of order", user, after, doc.ID)
			}
			after = doc.ID
		}
		all = append(all, page...)
		if !more {
			return all
		}
	}
}

// expectListing compares what the catalog lists for user with what the
// documents themselves say (every document the user may read, by id, as
// Listing shows it).
func expectListing(t *testing.T, d *Docs, user string, admin bool, pageSize int) {
	t.Helper()
	var want []storage.Doc
	for _, doc := range d.Views() {
		if doc.MayRead(user, admin) {
			want = append(want, doc.Listing())
		}
	}
	got := listAll(t, d, user, admin, pageSize)
	if len(got) != len(want) {
		t.Fatalf("user %q (admin %v): listed %s, want %s", user, admin, ids(got), idsOf(want))
	}
	for i := range want {
		g, w := got[i], &want[i]
		if g.ID != w.ID || g.Title != w.Title || g.Owner != w.Owner || !slices.Equal(g.Editors, w.Editors) ||
			g.Version != w.Version || g.CreatedMs != w.CreatedMs || g.UpdatedMs != w.UpdatedMs {
			t.Fatalf("user %q: listed %+v, want %+v", user, *g, *w)
		}
		if g.Text.Size() != 0 {
			t.Fatalf("user %q: the listing of %s holds text", user, g.ID)
		}
	}
}

func ids(docs []*storage.Doc) string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.ID
	}
	return strings.Join(out, ",")
}

func idsOf(docs []storage.Doc) string {
	out := make([]string, len(docs))
	for i := range docs {
		out[i] = docs[i].ID
	}
	return strings.Join(out, ",")
}

func testUserIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = storage.MakeUserID(storage.StampAt(int64(1000+i)), uint16(i%4))
	}
	return out
}

func createDoc(t *testing.T, d *Docs, id, owner, title string) {
	t.Helper()
	if r := waitResult(t, d.Apply(storage.CmdDocCreate, &storage.DocCommand{DocID: id, Caller: owner, Title: title, Content: "text of " + id}, 1000)); r.Err != nil {
		t.Fatalf("create %s: %v", id, r.Err)
	}
	d.Flush()
}

func TestCatalogPaging(t *testing.T) {
	d := newTestDocs(t, time.Hour)
	users := testUserIDs(3)
	for i := range 25 {
		createDoc(t, d, fmt.Sprintf("doc%02d", i), users[i%3], fmt.Sprint("Title ", i))
	}
	deadline := time.Now().Add(5 * time.Second)

	page, more, err := d.List(users[0], false, "", 4, deadline)
	if err != nil || !more || ids(page) != "doc00,doc03,doc06,doc09" {
		t.Fatalf("first page: %s more %v err %v", ids(page), more, err)
	}
	page, more, err = d.List(users[0], false, "doc09", 4, deadline)
	if err != nil || !more || ids(page) != "doc12,doc15,doc18,doc21" {
		t.Fatalf("second page: %s more %v err %v", ids(page), more, err)
	}
	// The last page is full, and there is nothing after it.
	page, more, err = d.List(users[0], false, "doc21", 1, deadline)
	if err != nil || more || ids(page) != "doc24" {
		t.Fatalf("last page: %s more %v err %v", ids(page), more, err)
	}
	// after need not be an id the user may read, or any id at all.
	page, _, _ = d.List(users[0], false, "doc10", 2, deadline)
	if ids(page) != "doc12,doc15" {
		t.Fatalf("after another's id: %s", ids(page))
	}
	page, _, _ = d.List(users[0], false, "doc125", 2, deadline)
	if ids(page) != "doc15,doc18" {
		t.Fatalf("after a missing id: %s", ids(page))
	}
	if page, more, _ = d.List(users[0], false, "zzz", 5, deadline); len(page) != 0 || more {
		t.Fatalf("after the end: %s more %v", ids(page), more)
	}
	// Admins see every document in id order; a user with none sees none.
	page, more, _ = d.List("", true, "doc07", 3, deadline)
	if ids(page) != "doc08,doc09,doc10" || !more {
		t.Fatalf("admin page: %s more %v", ids(page), more)
	}
	if page, more, _ = d.List("stranger", false, "", 50, deadline); len(page) != 0 || more {
		t.Fatalf("stranger: %s more %v", ids(page), more)
	}
	if page, _, _ = d.List("", false, "", 50, deadline); len(page) != 0 {
		t.Fatalf("anonymous non-admin: %s", ids(page))
	}
	for _, size := range []int{1, 3, 50} {
		for _, u := range users {
			expectListing(t, d, u, false, size)
		}
		expectListing(t, d, "", true, size)
	}
	if n := d.Catalog().Entries(); n != 25 {
		t.Fatalf("catalog entries %d, want 25", n)
	}
}

// TestCatalogReaders follows one document through every change of who may
// read it: editors added and removed, the owner made an editor, deletion,
// and a restore that gives it another owner.
func TestCatalogReaders(t *testing.T) {
	d := newTestDocs(t, time.Hour)
	u := testUserIDs(3)
	owner, ed1, ed2 := u[0], u[1], u[2]
	createDoc(t, d, "d1", owner, "One")
	createDoc(t, d, "d2", ed1, "Two")
	editor := func(caller, who string, remove bool) {
		t.Helper()
		if r := waitResult(t, d.Apply(storage.CmdDocEditor, &storage.DocCommand{DocID: "d1", Caller: caller, Editor: who, Remove: remove}, 2000)); r.Err != nil {
			t.Fatalf("editor %s remove %v: %v", who, remove, r.Err)
		}
		d.Flush()
	}
	check := func(want map[string]string) {
		t.Helper()
		for _, user := range u {
			if got := ids(listAll(t, d, user, false, 1)); got != want[user] {
				t.Fatalf("%s lists %q, want %q", user, got, want[user])
			}
			expectListing(t, d, user, false, 2)
		}
		expectListing(t, d, "", true, 1)
	}
	check(map[string]string{owner: "d1", ed1: "d2"})
	editor(owner, ed1, false)
	editor(owner, ed2, false)
	check(map[string]string{owner: "d1", ed1: "d1,d2", ed2: "d1"})
	editor(owner, ed1, false) // again: nothing changes
	editor(owner, owner, false)
	check(map[string]string{owner: "d1", ed1: "d1,d2", ed2: "d1"})
	editor(owner, ed1, true)
	check(map[string]string{owner: "d1", ed1: "d2", ed2: "d1"})
	editor(owner, owner, true) // the owner still reads it
	check(map[string]string{owner: "d1", ed1: "d2", ed2: "d1"})

	// A restore replaces everything: d1 now owned by ed2 with ed1 editing,
	// d2 gone, d3 new.
	views := d.Views()
	d1 := views[0].WithEditor(ed1).WithoutEditor(ed2)
	d1.Owner = ed2
	d3, _ := storage.NewDoc("d3", "Three", owner, "", 3000)
	d.Restore([]*storage.Doc{d1, d3})
	check(map[string]string{owner: "d3", ed1: "d1", ed2: "d1"})

	if r := waitResult(t, d.Apply(storage.CmdDocDelete, &storage.DocCommand{DocID: "d1", Caller: ed2}, 4000)); r.Err != nil {
		t.Fatalf("delete: %v", r.Err)
	}
	d.Flush()
	check(map[string]string{owner: "d3"})
	if n := d.Catalog().Entries(); n != 1 {
		t.Fatalf("catalog entries %d, want 1", n)
	}
}

// TestCatalogOwnerChange moves a document to another owner by a note, as
// a command that changed the owner would, and checks both users' indexes.
func TestCatalogOwnerChange(t *testing.T) {
	s := newCatalogState(&Catalog{})
	a, _ := storage.NewDoc("d1", "One", "alice", "some text", 1)
	s.apply(&catalogNote{id: "d1", doc: a.WithEditor("carol")})
	b := *a.WithEditor("carol")
	b.Owner = "bob"
	s.apply(&catalogNote{id: "d1", doc: &b})
	for user, want := range map[string]string{"alice": "", "bob": "d1", "carol": "d1"} {
		page, _ := s.page(user, false, "", 10)
		if ids(page) != want {
			t.Fatalf("%s lists %q, want %q", user, ids(page), want)
		}
	}
	if _, ok := s.byUser["alice"]; ok {
		t.Fatal("alice's empty index is kept")
	}
	if page, _ := s.page("bob", false, "", 10); page[0].Owner != "bob" || page[0].Text.Size() != 0 {
		t.Fatalf("bob's page: %+v", page[0])
	}
}

// TestCatalogRandomCommands applies random document commands by random
// callers (many refused) without waiting for their results, and checks
// every user's listing, paged, against the documents' own states.
func TestCatalogRandomCommands(t *testing.T) {
	d := newTestDocs(t, 20*time.Millisecond) // documents passivate and wake meanwhile
	users := testUserIDs(6)
	rng := rand.New(rand.NewPCG(7, 11))
	var docIDs []string
	var pendings []*Pending
	kinds := make([]storage.CommandKind, 0, 1500)
	apply := func(kind storage.CommandKind, c *storage.DocCommand, now int64) {
		pendings = append(pendings, d.Apply(kind, c, now))
		kinds = append(kinds, kind)
	}
	now := int64(1000)
	for step := range 1500 {
		now += int64(rng.IntN(3))
		caller := users[rng.IntN(len(users))]
		var id string
		if len(docIDs) > 0 {
			id = docIDs[rng.IntN(len(docIDs))]
		}
		admin := rng.IntN(20) == 0
		switch k := rng.IntN(10); {
		case k < 2 || id == "":
			id = fmt.Sprintf("doc%04d", rng.IntN(400))
			docIDs = append(docIDs, id)
			apply(storage.CmdDocCreate, &storage.DocCommand{DocID: id, Caller: caller, Title: "T" + id}, now)
		case k < 4:
			apply(storage.CmdDocTitle, &storage.DocCommand{DocID: id, Caller: caller, Admin: admin, Title: fmt.Sprint("Title ", step)}, now)
		case k < 7:
			apply(storage.CmdDocEditor, &storage.DocCommand{DocID: id, Caller: caller, Admin: admin, Editor: users[rng.IntN(len(users))], Remove: rng.IntN(2) == 0}, now)
		case k < 9:
			var base uint64
			if doc := d.Latest(id); doc != nil {
				base = doc.Version // or older: the actor may not have caught up
			}
			apply(storage.CmdDocSubmit, &storage.DocCommand{DocID: id, Caller: caller, Admin: admin,
				Submit: &storage.DocSubmit{DocID: id, ClientID: "c", Seq: uint64(step), Base: base, Ops: []storage.Op{ins(0, "x")}}}, now)
		default:
			apply(storage.CmdDocDelete, &storage.DocCommand{DocID: id, Caller: caller, Admin: admin}, now)
		}
		// Batches of random size, as the FSM's.
		if rng.IntN(8) == 0 || step%300 == 299 {
			d.Flush()
		}
		if step%300 == 299 {
			for _, u := range users {
				expectListing(t, d, u, false, 1+rng.IntN(7))
			}
			expectListing(t, d, "", true, 1+rng.IntN(50))
		}
	}
	// Each kind of command succeeded often enough to matter.
	ok := map[storage.CommandKind]int{}
	for i, p := range pendings {
		if waitResult(t, p).Err == nil {
			ok[kinds[i]]++
		}
	}
	for _, k := range []storage.CommandKind{storage.CmdDocCreate, storage.CmdDocTitle, storage.CmdDocEditor, storage.CmdDocSubmit, storage.CmdDocDelete} {
		if ok[k] < 20 {
			t.Fatalf("only %d commands of kind %v succeeded: %v", ok[k], k, ok)
		}
	}
	t.Logf("commands that succeeded, by kind: %v", ok)
	if total, _ := d.Counts(); int64(total) != d.Catalog().Entries() {
		t.Fatalf("catalog entries %d, documents %d", d.Catalog().Entries(), total)
	}
}

// TestCatalogWaitsForTheDocument: a listing asked after a title change was
// handed to its document (as after a read barrier) shows the new title,
// even when the document's actor has not run the change yet; past its
// deadline it is ErrTimeout.
func TestCatalogWaitsForTheDocument(t *testing.T) {
	d := newTestDocs(t, time.Hour)
	owner := testUserIDs(1)[0]
	createDoc(t, d, "d1", owner, "Old")
	// Hold the document's actor.
	release := make(chan struct{})
	held := make(chan struct{})
	d.send("d1", &docMsg{run: func(*docBox) { close(held); <-release }})
	<-held
	p := d.Apply(storage.CmdDocTitle, &storage.DocCommand{DocID: "d1", Caller: owner, Title: "New"}, 2000)
	d.Flush()

	if _, _, err := d.List(owner, false, "", 10, time.Now().Add(30*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("list while the change waits: %v, want ErrTimeout", err)
	}
	type answer struct {
		docs []*storage.Doc
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		docs, _, err := d.List(owner, false, "", 10, time.Now().Add(5*time.Second))
		got <- answer{docs, err}
	}()
	select {
	case a := <-got:
		t.Fatalf("listed before the change ran: %v %v", ids(a.docs), a.err)
	case <-p.Done():
		t.Fatal("the change ran while its actor was held")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	a := <-got
	if a.err != nil || len(a.docs) != 1 || a.docs[0].Title != "New" {
		t.Fatalf("listing after the change: %v %+v", a.err, a.docs)
	}
}

// TestCatalogKeepsNoOldText: the catalog holds the document state the
// newest note carried, the directory's own (no copy), so it keeps no
// text the directory does not: a change replaces it. A page answers
// listings, without the text or the history.
func TestCatalogKeepsNoOldText(t *testing.T) {
	s := newCatalogState(&Catalog{})
	doc, _ := storage.NewDoc("d1", "One", "alice", strings.Repeat("x", 1000), 1)
	s.apply(&catalogNote{id: "d1", doc: doc})
	if s.byID["d1"].doc != doc {
		t.Fatal("the catalog holds a copy of the document")
	}
	next, _, err := doc.Submit("c", 1, 0, []storage.Op{{Kind: storage.OpInsert, Pos: 0, Text: "y"}}, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	s.apply(&catalogNote{id: "d1", doc: next})
	if s.byID["d1"].doc != next {
		t.Fatal("the catalog kept the older state, and its text")
	}
	docs, more := s.page("alice", false, "", 10)
	if len(docs) != 1 || more {
		t.Fatalf("page: %d documents, more %v", len(docs), more)
	}
	l := docs[0]
	if l.Text.Size() != 0 || l.OldestBase() != l.Version || len(l.History()) != 0 {
		t.Fatalf("the page holds the text or history: %+v", l)
	}
	if l.ID != "d1" || l.Title != "One" || l.Owner != "alice" || l.CreatedMs != 1 || l.Version != 1 || !l.MayRead("alice", false) || l.MayRead("bob", false) {
		t.Fatalf("the listing lost a field: %+v", l)
	}
}

// TestCatalogCloseEndsWaits: a listing waiting on a document's actor ends
// when the catalog closes, rather than hold the node's shutdown.
func TestCatalogCloseEndsWaits(t *testing.T) {
	d := newTestDocs(t, time.Hour)
	owner := testUserIDs(1)[0]
	createDoc(t, d, "d1", owner, "Old")
	release := make(chan struct{})
	defer close(release)
	held := make(chan struct{})
	d.send("d1", &docMsg{run: func(*docBox) { close(held); <-release }})
	<-held
	d.Apply(storage.CmdDocTitle, &storage.DocCommand{DocID: "d1", Caller: owner, Title: "New"}, 2000)
	d.Flush()
	got := make(chan error, 1)
	go func() {
		_, _, err := d.List(owner, false, "", 10, time.Now().Add(time.Minute))
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("listed while the change waits: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	start := time.Now()
	d.Catalog().Close()
	select {
	case err := <-got:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("list after close: %v, want ErrTimeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the listing still waits after the catalog closed")
	}
	t.Logf("the listing ended %v after close", time.Since(start))
}
