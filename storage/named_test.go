package storage

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// nameVersion names version v of d as its owner, with no bounds.
func nameVersion(t testing.TB, d *Doc, v uint64, name string) *Doc {
	t.Helper()
	next, delta, err := ApplyNamedVersion(&DocCommand{DocID: d.ID, Caller: d.Owner, VersionName: name, Version: v}, d, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if delta != next.Named(v).Bytes() {
		t.Fatalf("delta %d, named version counts %d", delta, next.Named(v).Bytes())
	}
	return next
}

// typed submits n inserts of "x" at the end of d under rules r.
func typed(t testing.TB, d *Doc, n int, r HistoryRules) *Doc {
	t.Helper()
	for range n {
		var err *Error
		d, _, err = d.SubmitAs("u1", "c", d.Version+1, d.Version, []Op{{Kind: OpInsert, Pos: d.Text.Len(), Text: "x"}}, t0, r)
		if err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// A named version outlives the rolling history: the trim drops its
// changes and checkpoints, and TextAt still answers it.
func TestNamedVersionOutlivesHistory(t *testing.T) {
	r := HistoryRules{MaxChanges: 10, MaxBytes: 4096, CheckpointEvery: 4}
	d := typed(t, newTestDoc(t, "start"), 3, r)
	d = nameVersion(t, d, 2, "two")
	d = nameVersion(t, d, d.Version, "three")
	d = typed(t, d, 200, r)
	if d.OldestVersion() <= 3 {
		t.Fatalf("the history still reaches version %d", d.OldestVersion())
	}
	for v, want := range map[uint64]string{2: "startxx", 3: "startxxx"} {
		got, err := d.TextAt(v)
		if err != nil || got.String() != want {
			t.Fatalf("version %d: %q, %v; want %q", v, got.String(), err, want)
		}
	}
	var gone *GoneError
	if _, err := d.TextAt(1); !errors.As(err, &gone) {
		t.Fatalf("an unnamed old version: %v", err)
	}
	if got := d.NamedBytes(); got != len("startxx")+len("two")+len("startxxx")+len("three") {
		t.Fatalf("named bytes %d", got)
	}
	// The history's own bound did not count them.
	changes, bytes := d.KeptHistory()
	_, cpBytes := d.Checkpoints()
	if changes > 10 || bytes+cpBytes > 4096 {
		t.Fatalf("history %d changes, %d bytes", changes, bytes+cpBytes)
	}
}

func TestNamedVersionRules(t *testing.T) {
	r := HistoryRules{MaxChanges: 5, CheckpointEvery: 2}
	d := typed(t, newTestDoc(t, "ab"), 3, r).WithMember("ed", DocEditor).WithMember("vw", DocViewer)
	d, err := applyLink(&DocCommand{LinkID: "00000000000000ed", Role: DocEditor}, d, t0)
	if err != nil {
		t.Fatal(err)
	}
	name := func(c DocCommand, ownerBytes int) (*Doc, int, *Error) {
		c.DocID = d.ID
		return ApplyNamedVersion(&c, d, t0+7, ownerBytes)
	}
	// Who: the owner, an editor, an admin; not a viewer, not a link.
	for _, c := range []DocCommand{{Caller: "owner"}, {Caller: "ed"}, {Admin: true}} {
		c.VersionName, c.Current = " mine ", true
		next, delta, err := name(c, 0)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		nv := next.Named(d.Version)
		if nv == nil || nv.Name != "mine" || nv.Author != c.Caller || nv.AtMs != t0+7 || nv.Text.String() != "abxxx" || delta != nv.Bytes() {
			t.Fatalf("%+v: %+v, delta %d", c, nv, delta)
		}
		if d.Named(d.Version) != nil {
			t.Fatal("the document changed in place")
		}
	}
	for _, c := range []DocCommand{{Caller: "vw"}, {Caller: "nobody"}, {Link: "00000000000000ed"}, {Caller: "vw", Link: "00000000000000ed"}} {
		c.VersionName, c.Current = "x", true
		if _, _, err := name(c, 0); !errors.Is(err, ErrForbidden) {
			t.Fatalf("%+v: %v", c, err)
		}
		c.Remove, c.Version = true, 1
		if _, _, err := name(c, 0); !errors.Is(err, ErrForbidden) {
			t.Fatalf("remove %+v: %v", c, err)
		}
	}
	// Names: trimmed, 1 to MaxVersionNameRunes characters, no controls.
	for _, bad := range []string{"", "  ", "a\nb", strings.Repeat("é", MaxVersionNameRunes+1), "\xff"} {
		if _, _, err := name(DocCommand{Caller: "owner", VersionName: bad, Current: true}, 0); err == nil || err.Kind != KindBadRequest || err.Field != "name" {
			t.Fatalf("name %q: %v", bad, err)
		}
	}
	if _, _, err := name(DocCommand{Caller: "owner", VersionName: strings.Repeat("é", MaxVersionNameRunes), Current: true}, 0); err != nil {
		t.Fatal(err)
	}
	// Versions: kept ones only, beyond the document is a bad request,
	// a named one conflicts.
	if _, _, err := name(DocCommand{Caller: "owner", VersionName: "x", Version: 9}, 0); err == nil || err.Kind != KindBadRequest {
		t.Fatalf("beyond: %v", err)
	}
	old := typed(t, d, 20, r)
	if _, _, err := ApplyNamedVersion(&DocCommand{Caller: "owner", VersionName: "x", Version: 1}, old, t0, 0); err == nil || err.Kind != KindConflict || err.Field != "version" {
		t.Fatalf("gone: %v", err)
	}
	named := nameVersion(t, d, 1, "one")
	if _, _, err := ApplyNamedVersion(&DocCommand{Caller: "owner", VersionName: "again", Version: 1}, named, t0, 0); err == nil || err.Kind != KindConflict {
		t.Fatalf("twice: %v", err)
	}
	// Remove.
	gone, delta, err := ApplyNamedVersion(&DocCommand{Caller: "ed", Version: 1, Remove: true}, named, t0, 0)
	if err != nil || gone.Named(1) != nil || delta != -named.Named(1).Bytes() || len(gone.NamedVersions()) != 0 {
		t.Fatalf("remove: %v, delta %d", err, delta)
	}
	if _, _, err := ApplyNamedVersion(&DocCommand{Caller: "ed", Version: 2, Remove: true}, named, t0, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove an unnamed version: %v", err)
	}
	if _, _, err := ApplyNamedVersion(&DocCommand{Caller: "ed", Version: 2}, nil, t0, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no document: %v", err)
	}
	// ApplyDoc refuses it: it needs the owner's bytes.
	if _, _, err := ApplyDoc(CmdDocVersion, &DocCommand{Caller: "owner", VersionName: "x", Current: true}, d, t0, 10); err == nil {
		t.Fatal("ApplyDoc named a version")
	}
}

func TestNamedVersionQuotas(t *testing.T) {
	d := typed(t, newTestDoc(t, "0123456789"), 4, HistoryRules{MaxChanges: 10, CheckpointEvery: 2})
	c := DocCommand{Caller: "owner", VersionName: "v", MaxNamed: 2, MaxNamedBytes: 100}
	for v := range uint64(2) {
		c.Version = v
		var err *Error
		if d, _, err = ApplyNamedVersion(&c, d, t0, 0); err != nil {
			t.Fatal(err)
		}
	}
	c.Version = 2
	if _, _, err := ApplyNamedVersion(&c, d, t0, 0); err == nil || err.Kind != KindQuotaExceeded || err.Field != "named_versions" || err.Limit != 2 {
		t.Fatalf("count: %v", err)
	}
	// The owner's bytes, over all its documents: 13 bytes more fit in
	// 100 with 87 held, not with 88.
	c.MaxNamed = 0
	if _, delta, err := ApplyNamedVersion(&c, d, t0, 87); err != nil || delta != 13 {
		t.Fatalf("at the bound: %v, %d", err, delta)
	}
	if _, _, err := ApplyNamedVersion(&c, d, t0, 88); err == nil || err.Kind != KindQuotaExceeded || err.Field != "named_version_bytes" || err.Limit != 100 {
		t.Fatalf("bytes: %v", err)
	}
	// Deleting frees room whatever the bounds.
	c = DocCommand{Caller: "owner", Version: 0, Remove: true}
	if _, _, err := ApplyNamedVersion(&c, d, t0, 1<<30); err != nil {
		t.Fatal(err)
	}
}

// A snapshot writes the text of a named version only when the history
// no longer rebuilds it; read back, every named version answers its text.
func TestNamedVersionEncoding(t *testing.T) {
	r := HistoryRules{MaxChanges: 8, CheckpointEvery: 4}
	big := strings.Repeat("long text ", 100)
	d := typed(t, newTestDoc(t, big), 2, r)
	d = nameVersion(t, d, 1, "old")
	d = typed(t, d, 30, r)
	d = nameVersion(t, d, d.Version-2, "recent")
	d = nameVersion(t, d, d.Version, "now")
	got, err := decodeDoc(encodeDoc(d))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encodeDoc(got), encodeDoc(d)) {
		t.Fatal("re-encoded differently")
	}
	for _, nv := range d.NamedVersions() {
		g := got.Named(nv.Version)
		if g == nil || g.Name != nv.Name || g.Author != nv.Author || g.AtMs != nv.AtMs || g.Text.String() != nv.Text.String() {
			t.Fatalf("version %d: %+v", nv.Version, g)
		}
	}
	// One text of history (the oldest checkpoint), the current text and
	// the old named version's: the two recent ones are not written.
	if n, limit := len(encodeDoc(d)), 3*len(big)+1000; n > limit {
		t.Fatalf("encoded in %d bytes, more than %d", n, limit)
	}
	// Damaged: out of order, a bad name, in the history but not kept.
	for _, mutate := range []func(*Doc){
		func(x *Doc) { x.rest.named[0], x.rest.named[1] = x.rest.named[1], x.rest.named[0] },
		func(x *Doc) { x.rest.named[1].Name = " padded" },
		func(x *Doc) { x.rest.named[2].Version = x.Version + 1 },
	} {
		bad := *d
		bad.own().named = append([]NamedVersion(nil), d.x().named...)
		mutate(&bad)
		if _, err := decodeDoc(encodeDoc(&bad)); err == nil {
			t.Error("decoded")
		}
	}
}

func TestSnapshotNamedVersions(t *testing.T) {
	s := goldenV9(t)
	for i, d := range s.Docs {
		if i%3 == 0 {
			s.Docs[i] = nameVersion(t, d, d.Version, "v")
		}
	}
	got, err := ReadSnapshot(bytes.NewReader(writeSnap(t, s)))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, s)
	if len(got.Docs[0].NamedVersions()) != 1 {
		t.Fatal("named versions lost")
	}
}

// TestReadSnapshotVersion9 reads a snapshot written by the build before
// named versions (testdata/snapshot-v9.bin: goldenV9): its documents have
// none, and keep their members and links.
func TestReadSnapshotVersion9(t *testing.T) {
	b, err := os.ReadFile("testdata/snapshot-v9.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := goldenV9(t)
	sameState(t, got, want)
	links := 0
	for _, d := range got.Docs {
		if len(d.NamedVersions()) != 0 {
			t.Fatalf("%s has named versions", d.ID)
		}
		links += len(d.Links())
	}
	if links == 0 {
		t.Fatal("the golden snapshot has no links")
	}
	again, err := ReadSnapshot(bytes.NewReader(writeSnap(t, got)))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, again, want)
}

// A command of a version before named versions cannot carry one.
func TestDecodeDocVersionOlderCommand(t *testing.T) {
	b := EncodeCommand(nil, &Command{Kind: CmdDocVersion, Stamp: 1, Doc: &DocCommand{DocID: "d", Caller: "u", VersionName: "n", Current: true}})
	b[0] = cmdVersionNamed - 1
	if _, err := DecodeCommand(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%v", err)
	}
}
