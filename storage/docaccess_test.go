package storage

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"testing"
)

// Users of the access tests: ids of the form ParseUserID accepts.
var (
	accOwner  = MakeUserID(StampAt(t0), 0)
	accEditor = MakeUserID(StampAt(t0)+1, 0)
	accViewer = MakeUserID(StampAt(t0)+2, 0)
	accOther  = MakeUserID(StampAt(t0)+3, 0)
)

const (
	linkA = "00000000000000aa"
	linkB = "00000000000000bb"
)

// applyOK applies a document command that must succeed.
func applyOK(t testing.TB, kind CommandKind, c *DocCommand, cur *Doc, nowMs int64) *Doc {
	t.Helper()
	next, _, err := ApplyDoc(kind, c, cur, nowMs, 10)
	if err != nil {
		t.Fatalf("%v %+v: %v", kind, c, err)
	}
	return next
}

// memberDoc is a document of accOwner with an editor, a viewer, an editor
// link (token "tok-a", no expiry) and a viewer link (token "tok-b",
// expiring at t0+60 s).
func memberDoc(t testing.TB) *Doc {
	t.Helper()
	d := applyOK(t, CmdDocCreate, &DocCommand{DocID: "d1", Caller: accOwner, Title: "T", Content: "hello"}, nil, t0)
	d = applyOK(t, CmdDocMember, &DocCommand{DocID: "d1", Caller: accOwner, Editor: accEditor, Role: DocEditor}, d, t0)
	d = applyOK(t, CmdDocMember, &DocCommand{DocID: "d1", Caller: accOwner, Editor: accViewer, Role: DocViewer}, d, t0)
	d = applyOK(t, CmdDocLink, &DocCommand{DocID: "d1", Caller: accOwner, LinkID: linkA, LinkHash: ShareTokenHash("d1", "tok-a"), Role: DocEditor}, d, t0)
	d = applyOK(t, CmdDocLink, &DocCommand{DocID: "d1", Caller: accOwner, LinkID: linkB, LinkHash: ShareTokenHash("d1", "tok-b"), Role: DocViewer, ExpiresInS: 60}, d, t0)
	return d
}

func TestDocAccess(t *testing.T) {
	d := memberDoc(t)
	if got, want := d.Members(), []DocMember{{accEditor, DocEditor}, {accViewer, DocViewer}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("members %+v", got)
	}
	if !reflect.DeepEqual(d.Editors, []string{accEditor}) || !reflect.DeepEqual(d.Viewers, []string{accViewer}) {
		t.Fatalf("editors %v viewers %v", d.Editors, d.Viewers)
	}
	now := t0 + 1000
	for _, tc := range []struct {
		c    DocCaller
		at   int64
		want DocAccess
	}{
		{DocCaller{User: accOwner}, now, AccessManage},
		{DocCaller{Admin: true}, now, AccessManage},
		{DocCaller{User: accOther, Admin: true}, now, AccessManage},
		{DocCaller{User: accEditor}, now, AccessWrite},
		{DocCaller{User: accViewer}, now, AccessRead},
		{DocCaller{User: accOther}, now, AccessNone},
		{DocCaller{}, now, AccessNone},
		{DocCaller{Link: linkA}, now, AccessWrite},
		{DocCaller{Link: linkB}, now, AccessRead},
		{DocCaller{Link: linkB}, t0 + 60_000, AccessNone}, // expired
		{DocCaller{Link: "00000000000000cc"}, now, AccessNone},
		{DocCaller{User: accViewer, Link: linkA}, now, AccessWrite}, // the most of both
		{DocCaller{User: accEditor, Link: linkB}, now, AccessWrite},
		{DocCaller{User: accOther, Link: linkB}, now, AccessRead},
	} {
		if got := d.Access(tc.c, tc.at); got != tc.want {
			t.Errorf("%+v at %d: %d, want %d", tc.c, tc.at-t0, got, tc.want)
		}
	}
	if !d.MayRead(accViewer, false) || d.MayRead(accOther, false) || !d.CanEdit(accEditor) || d.CanEdit(accViewer) {
		t.Fatal("MayRead and CanEdit disagree with Access")
	}
	if got := d.Readers(); !reflect.DeepEqual(got, []string{accOwner, accEditor, accViewer}) {
		t.Fatalf("readers %v", got)
	}
	// A role change moves a member; removal forgets it.
	d2 := d.WithMember(accViewer, DocEditor)
	if d2.RoleOf(accViewer) != DocEditor || len(d2.Viewers) != 0 || d.RoleOf(accViewer) != DocViewer {
		t.Fatalf("promoted: %v %v (old %v)", d2.Editors, d2.Viewers, d.Viewers)
	}
	if d3 := d2.WithMember(accEditor, DocViewer).WithoutMember(accViewer); d3.MemberCount() != 1 || d3.RoleOf(accEditor) != DocViewer {
		t.Fatalf("members %+v", d3.Members())
	}
	if d.WithMember(accEditor, DocEditor) != d || d.WithoutMember(accOther) != d {
		t.Fatal("no change must return the same document")
	}
}

func TestShareTokens(t *testing.T) {
	d := memberDoc(t)
	if l := d.LinkByToken("tok-a"); l == nil || l.ID != linkA || l.Role != DocEditor || l.CreatedBy != accOwner || l.ExpiresMs != 0 {
		t.Fatalf("tok-a: %+v", l)
	}
	if l := d.LinkByToken("tok-b"); l == nil || l.ID != linkB || l.ExpiresMs != t0+60_000 {
		t.Fatalf("tok-b: %+v", l)
	}
	for _, tok := range []string{"", "tok-", "tok-c", "TOK-A"} {
		if l := d.LinkByToken(tok); l != nil {
			t.Errorf("token %q found link %s", tok, l.ID)
		}
	}
	// The same token and link on another document: its hash is bound to
	// the document's id, so a copy of doc A's state under doc B's id
	// does not take A's token.
	other := *d
	other.ID = "d2"
	if other.LinkByToken("tok-a") != nil {
		t.Fatal("a token of d1 opened d2")
	}
	if ShareTokenHash("d1", "x") == ShareTokenHash("d2", "x") || ShareTokenHash("d1", "x") == ShareTokenHash("d1x", "") {
		t.Fatal("hashes collide across documents")
	}
	for _, id := range []string{linkA, "0123456789abcdef"} {
		if !ValidLinkID(id) {
			t.Errorf("%s refused", id)
		}
	}
	for _, id := range []string{"", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdeg"} {
		if ValidLinkID(id) {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestApplyDocRoles(t *testing.T) {
	d := memberDoc(t)
	submit := func(c DocCaller, at int64) (*Doc, *Error) {
		next, _, err := ApplyDoc(CmdDocSubmit, &DocCommand{DocID: "d1", Caller: c.User, Admin: c.Admin, Link: c.Link,
			Submit: &DocSubmit{DocID: "d1", ClientID: fmt.Sprint(c), Seq: 1, Base: d.Version, Ops: []Op{ins(0, "x")}}}, d, at, 10)
		return next, err
	}
	for _, c := range []DocCaller{{User: accViewer}, {User: accOther}, {Link: linkB}, {Link: "00000000000000cc"}, {}} {
		if _, err := submit(c, t0+1); err == nil || err.Kind != KindForbidden {
			t.Errorf("%+v submitted: %v", c, err)
		}
		if _, _, err := ApplyDoc(CmdDocTitle, &DocCommand{DocID: "d1", Caller: c.User, Link: c.Link, Title: "New"}, d, t0+1, 10); err == nil || err.Kind != KindForbidden {
			t.Errorf("%+v retitled: %v", c, err)
		}
	}
	// A guest's change is authored by its link.
	next, err := submit(DocCaller{Link: linkA}, t0+1)
	if err != nil {
		t.Fatal(err)
	}
	if h := next.History(); h[len(h)-1].Author != "guest:"+linkA {
		t.Fatalf("author %q", h[len(h)-1].Author)
	}
	if next, err = submit(DocCaller{User: accEditor, Link: linkA}, t0+1); err != nil || next.History()[len(next.History())-1].Author != accEditor {
		t.Fatalf("a user with a link is the author: %v", err)
	}
	// An expired link may no longer write.
	if _, _, err := ApplyDoc(CmdDocSubmit, &DocCommand{DocID: "d1", Link: linkB,
		Submit: &DocSubmit{DocID: "d1", ClientID: "g", Seq: 1, Base: d.Version, Ops: []Op{ins(0, "x")}}}, d, t0+60_000, 10); err == nil || err.Kind != KindForbidden {
		t.Fatalf("expired link: %v", err)
	}
	// Members and links are managed by the owner and admins only; an
	// editor, a viewer or a link may not.
	for _, c := range []DocCaller{{User: accEditor}, {User: accViewer}, {Link: linkA}} {
		for _, kc := range []struct {
			kind CommandKind
			dc   DocCommand
		}{
			{CmdDocMember, DocCommand{Editor: accOther, Role: DocViewer}},
			{CmdDocMember, DocCommand{Editor: accViewer, Remove: true}},
			{CmdDocLink, DocCommand{LinkID: "00000000000000cc", Role: DocViewer}},
			{CmdDocLink, DocCommand{LinkID: linkA, Remove: true}},
			{CmdDocDelete, DocCommand{}},
		} {
			dc := kc.dc
			dc.DocID, dc.Caller, dc.Link = "d1", c.User, c.Link
			if _, _, err := ApplyDoc(kc.kind, &dc, d, t0+1, 10); err == nil || err.Kind != KindForbidden {
				t.Errorf("%+v %v: %v", c, kc.kind, err)
			}
		}
	}
	admin := DocCommand{DocID: "d1", Admin: true}
	bad := admin
	bad.Editor, bad.Role = accOther, DocRole(3)
	_, _, err = ApplyDoc(CmdDocMember, &bad, d, t0, 10)
	wantKind(t, err, KindBadRequest, "role 3")
	bad.Editor, bad.Role = "not-a-user", DocViewer
	_, _, err = ApplyDoc(CmdDocMember, &bad, d, t0, 10)
	wantKind(t, err, KindNotFound, "a user id that is none")
	rev := admin
	rev.LinkID, rev.Remove = "00000000000000cc", true
	_, _, err = ApplyDoc(CmdDocLink, &rev, d, t0, 10)
	wantKind(t, err, KindNotFound, "revoking an unknown link")
	dup := admin
	dup.LinkID, dup.Role = linkA, DocViewer
	_, _, err = ApplyDoc(CmdDocLink, &dup, d, t0, 10)
	wantKind(t, err, KindConflict, "a link id taken")
	long := admin
	long.LinkID, long.Role, long.ExpiresInS = "00000000000000cc", DocViewer, MaxLinkExpiresInS+1
	_, _, err = ApplyDoc(CmdDocLink, &long, d, t0, 10)
	wantKind(t, err, KindBadRequest, "a lifetime over the maximum")

	// Revoking takes the link away; the old document keeps it.
	rev.LinkID = linkA
	revoked := applyOK(t, CmdDocLink, &rev, d, t0+1)
	if revoked.Link(linkA) != nil || revoked.LinkByToken("tok-a") != nil || d.Link(linkA) == nil {
		t.Fatal("revoked link still there, or the old document lost it")
	}
	// The old editors route: a viewer made editor moves; removing an
	// editor that way leaves viewers alone.
	ed := applyOK(t, CmdDocEditor, &DocCommand{DocID: "d1", Caller: accOwner, Editor: accViewer}, d, t0)
	if ed.RoleOf(accViewer) != DocEditor || len(ed.Viewers) != 0 {
		t.Fatalf("editors %v viewers %v", ed.Editors, ed.Viewers)
	}
	if ed := applyOK(t, CmdDocEditor, &DocCommand{DocID: "d1", Caller: accOwner, Editor: accViewer, Remove: true}, d, t0); ed.RoleOf(accViewer) != DocViewer {
		t.Fatal("removing an editor removed a viewer")
	}
}

func TestDocMemberAndLinkCaps(t *testing.T) {
	d := memberDoc(t) // 2 members, 2 links (one expires at t0+60 s)
	add := &DocCommand{DocID: "d1", Caller: accOwner, Editor: accOther, Role: DocViewer, MaxMembers: 2}
	_, _, err := ApplyDoc(CmdDocMember, add, d, t0, 10)
	wantKind(t, err, KindQuotaExceeded, "a third member of 2")
	if err.Limit != 2 || err.Field != "members" {
		t.Fatalf("%+v", err)
	}
	// A member's role change is not a new member.
	if _, _, err := ApplyDoc(CmdDocMember, &DocCommand{DocID: "d1", Caller: accOwner, Editor: accViewer, Role: DocEditor, MaxMembers: 2}, d, t0, 10); err != nil {
		t.Fatal(err)
	}
	add.MaxMembers = 3
	applyOK(t, CmdDocMember, add, d, t0)

	link := &DocCommand{DocID: "d1", Caller: accOwner, LinkID: "00000000000000cc", Role: DocViewer, MaxLinks: 2}
	_, _, err = ApplyDoc(CmdDocLink, link, d, t0+1, 10)
	wantKind(t, err, KindQuotaExceeded, "a third link of 2")
	if err.Limit != 2 || err.Field != "links" {
		t.Fatalf("%+v", err)
	}
	// Once linkB has expired it holds no room: it is dropped.
	next := applyOK(t, CmdDocLink, link, d, t0+60_000)
	if next.Link(linkB) != nil || next.Link("00000000000000cc") == nil || len(next.Links()) != 2 {
		t.Fatalf("links %+v", next.Links())
	}
}

// A snapshot keeps viewers and links, and reads back the same.
func TestSnapshotDocAccess(t *testing.T) {
	s := richSnapshot(t)
	s.Docs = s.Docs[:5]
	d := memberDoc(t)
	d.ID = "doc-9999" // after richSnapshot's ids
	s.Docs = append(s.Docs, d)
	b := writeSnap(t, s)
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, s)
	g := got.Docs[5]
	if !reflect.DeepEqual(g.Members(), d.Members()) || !reflect.DeepEqual(g.Links(), d.Links()) {
		t.Fatalf("members %+v links %+v", g.Members(), g.Links())
	}
	if !bytes.Equal(writeSnap(t, got), b) {
		t.Fatal("a restored snapshot writes other bytes")
	}
	// Damaged access records are refused, never read as something else.
	for _, mutate := range []func(d *Doc){
		func(d *Doc) { d.Viewers = []string{accViewer, accViewer} },
		func(d *Doc) { d.Viewers = []string{accEditor} },
		func(d *Doc) { d.own().links = []ShareLink{d.Links()[1], d.Links()[0]} },
		func(d *Doc) { d.own().links = []ShareLink{{ID: "short", Role: DocViewer}} },
		func(d *Doc) { d.own().links = []ShareLink{{ID: linkA, Role: 7}} },
	} {
		bad := *d
		mutate(&bad)
		if _, err := decodeDoc(encodeDoc(&bad)); err == nil {
			t.Errorf("%+v %+v decoded", bad.Viewers, bad.Links())
		}
	}
}

// TestReadSnapshotVersion8 reads a snapshot written by the build before
// document roles and share links (testdata/snapshot-v8.bin: richSnapshot
// with its first 40 documents and a policy of each algorithm): every
// editor is a member with role editor, and no document has a link.
func TestReadSnapshotVersion8(t *testing.T) {
	readPoliciesGolden(t, "testdata/snapshot-v8.bin")
	b, err := os.ReadFile("testdata/snapshot-v8.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range got.Docs {
		if len(d.Editors) == 0 || len(d.Viewers) != 0 || len(d.Links()) != 0 {
			t.Fatalf("%s: editors %v viewers %v links %d", d.ID, d.Editors, d.Viewers, len(d.Links()))
		}
		for _, m := range d.Members() {
			if m.Role != DocEditor || d.Access(DocCaller{User: m.User}, t0) != AccessWrite {
				t.Fatalf("%s: member %+v", d.ID, m)
			}
		}
	}
}

// Document commands of version 5 (what that build encoded) read with no
// link, and apply as they did: an editor added is a member with role
// editor.
func TestDecodeDocCommandVersion5(t *testing.T) {
	for _, tc := range []struct {
		hex  string
		want Command
	}{
		{"05110700026431056f776e65720002753200", Command{Kind: CmdDocEditor, Stamp: 7, Doc: &DocCommand{DocID: "d1", Caller: "owner", Editor: "u2"}}},
		{"05110802723100000000000000050264310361646d0102753201", Command{Kind: CmdDocEditor, Stamp: 8, RequestID: "r1", Fingerprint: 5,
			Doc: &DocCommand{DocID: "d1", Caller: "adm", Admin: true, Editor: "u2", Remove: true}}},
		{"050d0900026431056f776e65720001540268690a", Command{Kind: CmdDocCreate, Stamp: 9, Doc: &DocCommand{DocID: "d1", Caller: "owner", Title: "T", Content: "hi", MaxDocs: 10}}},
	} {
		b, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		c, err := DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*c, tc.want) {
			t.Fatalf("got %+v %+v\nwant %+v %+v", c, c.Doc, tc.want, tc.want.Doc)
		}
		// Written again as version 6: the same bytes with an empty link
		// after the caller's admin flag.
		again := EncodeCommand(nil, c)
		back, err := DecodeCommand(again)
		if err != nil || again[0] != CommandVersion || len(again) != len(b)+1 || !reflect.DeepEqual(back, c) {
			t.Fatalf("re-encoded: %x: %v", again, err)
		}
	}
	// An editor added by a version 5 command is a member with role editor.
	d := applyOK(t, CmdDocCreate, &DocCommand{DocID: "d1", Caller: accOwner, Title: "T"}, nil, t0)
	b, _ := hex.DecodeString("05110700026431056f776e65720002753200")
	c, _ := DecodeCommand(b)
	c.Doc.Caller, c.Doc.Editor = accOwner, accEditor
	d = applyOK(t, c.Kind, c.Doc, d, t0)
	if !reflect.DeepEqual(d.Members(), []DocMember{{accEditor, DocEditor}}) {
		t.Fatalf("members %+v", d.Members())
	}
}

// FuzzDecodeDocAccess: a document's viewers and links decode without
// panicking, and what decodes re-encodes stably and answers Access.
func FuzzDecodeDocAccess(f *testing.F) {
	d := memberDoc(f)
	var e encoder
	e.docAccess(d)
	f.Add(e.b)
	f.Add(e.b[:len(e.b)/2])
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 2048 {
			return
		}
		doc := &Doc{ID: "d1", Owner: accOwner, Editors: []string{accEditor}}
		dec := decoder{b: b}
		dec.docAccess(doc)
		if dec.end() != nil {
			return
		}
		var e encoder
		e.docAccess(doc)
		doc2 := &Doc{ID: "d1", Owner: accOwner, Editors: []string{accEditor}}
		dec2 := decoder{b: e.b}
		dec2.docAccess(doc2)
		if err := dec2.end(); err != nil {
			t.Fatalf("re-encoded access does not decode: %v", err)
		}
		var e2 encoder
		e2.docAccess(doc2)
		if !bytes.Equal(e.b, e2.b) {
			t.Fatal("encoding is not stable")
		}
		for _, l := range doc.Links() {
			_ = doc.Access(DocCaller{Link: l.ID}, t0)
		}
		_ = doc.Members()
		_ = doc.LinkByToken("x")
	})
}

// BenchmarkLinkByToken finds a token among DefaultMaxLinksPerDoc links:
// a hash and that many constant-time comparisons, on every request that
// presents a share token.
func BenchmarkLinkByToken(b *testing.B) {
	d, _ := NewDoc("d1", "T", accOwner, "", t0)
	links := make([]ShareLink, DefaultMaxLinksPerDoc)
	for i := range links {
		links[i] = ShareLink{ID: fmt.Sprintf("%016x", i), Hash: ShareTokenHash("d1", fmt.Sprint("token-", i)), Role: DocViewer}
	}
	d = d.withLinks(links)
	token := fmt.Sprint("token-", len(links)/2)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if d.LinkByToken(token) == nil {
			b.Fatal("not found")
		}
	}
}

// BenchmarkDocAccess is the rule every document request and stream
// check asks: a member among 1000, and a link among 100.
func BenchmarkDocAccess(b *testing.B) {
	d, _ := NewDoc("d1", "T", accOwner, "", t0)
	for i := range DefaultMaxMembersPerDoc {
		d = d.WithMember(MakeUserID(uint64(i), 1), DocRole(1+i%2))
	}
	links := make([]ShareLink, DefaultMaxLinksPerDoc)
	for i := range links {
		links[i] = ShareLink{ID: fmt.Sprintf("%016x", i), Role: DocViewer}
	}
	d = d.withLinks(links)
	user, link := DocCaller{User: MakeUserID(501, 1)}, DocCaller{Link: fmt.Sprintf("%016x", 50)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c := user
		if i%2 == 1 {
			c = link
		}
		if d.Access(c, t0) == AccessNone {
			b.Fatal("no access")
		}
	}
}
