package actors

import (
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// TestDocRolesAndLinks: a viewer member reads, lists and subscribes to a
// document but its submits are refused; a guest's submit through an
// editor link is authored by the link; losing a reader (a member removed,
// a link revoked) tells the narrowing hooks, a role change that keeps
// the right to read does not; members and links survive Views and
// Restore.
func TestDocRolesAndLinks(t *testing.T) {
	d := newTestDocs(t, time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	owner := storage.MakeUserID(storage.StampAt(1000), 1)
	viewer := storage.MakeUserID(storage.StampAt(1001), 1)
	editor := storage.MakeUserID(storage.StampAt(1002), 1)
	apply := func(kind storage.CommandKind, c *storage.DocCommand) storage.Result {
		t.Helper()
		c.DocID = "d1"
		return waitResult(t, d.Apply(kind, c, 1000))
	}
	mustApply := func(kind storage.CommandKind, c *storage.DocCommand) {
		t.Helper()
		if r := apply(kind, c); r.Err != nil {
			t.Fatalf("%v: %v", kind, r.Err)
		}
	}
	mustApply(storage.CmdDocCreate, &storage.DocCommand{Caller: owner, Title: "T", Content: "hello"})
	mustApply(storage.CmdDocMember, &storage.DocCommand{Caller: owner, Editor: viewer, Role: storage.DocViewer})
	mustApply(storage.CmdDocMember, &storage.DocCommand{Caller: owner, Editor: editor, Role: storage.DocEditor})
	const link = "0123456789abcdef"
	mustApply(storage.CmdDocLink, &storage.DocCommand{Caller: owner, LinkID: link, LinkHash: storage.ShareTokenHash("d1", "tok"), Role: storage.DocEditor})
	d.Flush()

	sub := func(by string, seq uint64, c storage.DocCommand) storage.Result {
		c.Submit = &storage.DocSubmit{DocID: "d1", ClientID: by, Seq: seq, Base: 0, Ops: []storage.Op{ins(0, by)}}
		return apply(storage.CmdDocSubmit, &c)
	}
	if r := sub("v", 1, storage.DocCommand{Caller: viewer}); r.Err == nil || r.Err.Kind != storage.KindForbidden {
		t.Fatalf("a viewer's submit: %+v", r)
	}
	if r := sub("g", 1, storage.DocCommand{Link: link}); r.Err != nil {
		t.Fatalf("an editor link's submit: %v", r.Err)
	}
	doc, err := d.Get("d1", deadline)
	if err != nil {
		t.Fatal(err)
	}
	if h := doc.History(); len(h) != 1 || h[0].Author != storage.GuestAuthor(link) || doc.Text.String() != "ghello" {
		t.Fatalf("history %+v, text %q", h, doc.Text.String())
	}
	if !doc.MayRead(viewer, false) {
		t.Fatal("the viewer may not read")
	}
	page, _, err := d.List(viewer, false, "", 10, deadline)
	if err != nil || len(page) != 1 || page[0].ID != "d1" || len(page[0].Viewers) != 1 {
		t.Fatalf("the viewer's listing: %v %+v", err, page)
	}

	told := make(chan string, 8)
	defer d.OnReadersNarrowed(func(id string) { told <- id })()
	if _, err := d.Subscribe("d1", 0, false, viewer, "", deadline); err != nil {
		t.Fatal(err)
	}
	expectTold := func(what string, want bool) {
		t.Helper()
		// The hook runs in the actor before the command's result is
		// resolved: told now or never.
		select {
		case <-told:
			if !want {
				t.Fatalf("%s: told", what)
			}
		default:
			if want {
				t.Fatalf("%s: not told", what)
			}
		}
	}
	mustApply(storage.CmdDocMember, &storage.DocCommand{Caller: owner, Editor: editor, Role: storage.DocViewer})
	expectTold("an editor made viewer", false)
	sub("g", 2, storage.DocCommand{Link: link})
	expectTold("a submit", false)
	mustApply(storage.CmdDocLink, &storage.DocCommand{Caller: owner, LinkID: link, Remove: true})
	expectTold("a link revoked", true)
	if r := sub("g", 3, storage.DocCommand{Link: link}); r.Err == nil || r.Err.Kind != storage.KindForbidden {
		t.Fatalf("a revoked link's submit: %+v", r)
	}
	mustApply(storage.CmdDocMember, &storage.DocCommand{Caller: owner, Editor: viewer, Remove: true})
	expectTold("a viewer removed", true)

	// Views and Restore keep members and links.
	mustApply(storage.CmdDocLink, &storage.DocCommand{Caller: owner, LinkID: "00000000000000aa", Role: storage.DocViewer, ExpiresInS: 60})
	views := d.Views()
	d.Restore(views)
	back, err := d.Get("d1", deadline)
	if err != nil {
		t.Fatal(err)
	}
	if back.RoleOf(editor) != storage.DocViewer || back.Link("00000000000000aa") == nil || back.Link("00000000000000aa").ExpiresMs != 61_000 {
		t.Fatalf("restored members %+v links %+v", back.Members(), back.Links())
	}
}
