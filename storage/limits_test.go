package storage

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Commands of version 1 (before documents carried limits) are still read,
// as having no limit.
func TestDecodeDocCommandVersion1(t *testing.T) {
	for _, tc := range []struct {
		name, hex string
		kind      CommandKind
		want      *DocCommand
	}{
		// What the build of command version 1 encoded: a create and a submit.
		{"create", "010d050002643102753100055469746c6503616263", CmdDocCreate,
			&DocCommand{DocID: "d1", Caller: "u1", Title: "Title", Content: "abc"}},
		{"submit", "010e0600026431027531000263310702010101017a", CmdDocSubmit,
			&DocCommand{DocID: "d1", Caller: "u1", Submit: &DocSubmit{DocID: "d1", ClientID: "c1", Seq: 7, Base: 2, Ops: []Op{{Kind: OpInsert, Pos: 1, Text: "z"}}}}},
	} {
		b, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		c, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.Kind != tc.kind || !reflect.DeepEqual(c.Doc, tc.want) {
			t.Fatalf("%s: %+v", tc.name, c.Doc)
		}
		// Written again, it is version 2 and carries no limit either.
		again, err := DecodeCommand(EncodeCommand(nil, c))
		if err != nil || again.Doc.MaxDocs != 0 || again.Doc.HistoryBytes != 0 {
			t.Fatalf("%s again: %v", tc.name, err)
		}
	}
}

func TestDocTextCap(t *testing.T) {
	big := strings.Repeat("a", MaxDocBytes+1)
	_, _, err := ApplyDoc(CmdDocCreate, &DocCommand{DocID: "d", Caller: "u", Title: "T", Content: big}, nil, 1, 10)
	wantKind(t, err, KindPayloadTooLarge, "create beyond the cap")
	d, _, err := ApplyDoc(CmdDocCreate, &DocCommand{DocID: "d", Caller: "u", Title: "T", Content: big[:MaxDocBytes]}, nil, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	grow := &DocCommand{DocID: "d", Caller: "u", Submit: &DocSubmit{ClientID: "c", Seq: 1, Base: 0, Ops: []Op{{Kind: OpInsert, Pos: 0, Text: "b"}}}}
	_, _, err = ApplyDoc(CmdDocSubmit, grow, d, 2, 10)
	wantKind(t, err, KindPayloadTooLarge, "submit growing past the cap")
	if err.Field != "ops" {
		t.Fatalf("field %q", err.Field)
	}
	// Replacing keeps the size: accepted.
	same := &DocCommand{DocID: "d", Caller: "u", Submit: &DocSubmit{ClientID: "c", Seq: 1, Base: 0, Ops: []Op{{Kind: OpReplace, Pos: 0, Len: 1, Text: "b"}}}}
	if _, _, err := ApplyDoc(CmdDocSubmit, same, d, 2, 10); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(CheckDocSize("content", MaxDocBytes+1), ErrPayloadTooLarge) || CheckDocSize("content", MaxDocBytes) != nil {
		t.Fatal("CheckDocSize")
	}
}

func TestDocQuota(t *testing.T) {
	if CheckDocQuota(5, 0) != nil || CheckDocQuota(4, 5) != nil {
		t.Fatal("refused under the limit")
	}
	err := CheckDocQuota(5, 5)
	wantKind(t, err, KindQuotaExceeded, "at the limit")
	if err.Limit != 5 || !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("%+v", err)
	}
	// The limit survives the result encoding (idempotency window,
	// forwarded results, snapshots).
	for _, r := range []Result{{Err: err}, {Err: &Error{Kind: KindConflict, Message: "m"}}} {
		b := AppendResult(nil, &r)
		got, e := DecodeResult(b)
		if e != nil || *got.Err != *r.Err {
			t.Fatalf("%+v: %v %+v", r.Err, e, got.Err)
		}
	}
	// A limit flag without an error, or a limit of 0, is corrupt.
	for _, b := range [][]byte{{resLimit}, append(AppendResult(nil, &Result{Err: &Error{Kind: KindQuotaExceeded, Message: "m"}})[:0:0], resErr|resLimit, byte(KindQuotaExceeded), 1, 'm', 0, 0)} {
		if _, e := DecodeResult(b); !errors.Is(e, ErrCorrupt) {
			t.Fatalf("% x: %v", b, e)
		}
	}
}

func TestDocHistoryBoundedByBytes(t *testing.T) {
	d := newTestDoc(t, "")
	const limit = 10_000
	chunk := strings.Repeat("x", 1000)
	per := HistoryBytes(&Change{ClientID: "c", Ops: []Op{ins(0, chunk)}})
	for i := range 40 {
		var err *Error
		d, _, err = d.SubmitBounded("c", uint64(i+1), d.Version, []Op{ins(0, chunk)}, 1, 1000, limit)
		if err != nil {
			t.Fatal(err)
		}
		n, b := d.KeptHistory()
		if b > limit || n != min(i+1, limit/per) || b != n*per || cap(d.x().hist)+d.x().histOff > 3*n+4 {
			t.Fatalf("after %d: %d changes, %d bytes, in an array of %d", i+1, n, b, cap(d.x().hist)+d.x().histOff)
		}
	}
	// Older changes dropped out: a client based on them reloads.
	_, _, err := d.SubmitBounded("other", 1, d.Version-uint64(limit/per)-1, []Op{ins(0, "y")}, 1, 1000, limit)
	wantKind(t, err, KindVersionTooOld, "base older than the kept bytes")
	// A change larger than the bound on its own is kept, alone.
	d, _, err = d.SubmitBounded("c", 100, d.Version, []Op{ins(0, strings.Repeat("y", 2*limit))}, 1, 1000, limit)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := d.KeptHistory(); n != 1 || d.OldestBase() != d.Version-1 {
		t.Fatalf("%d kept, oldest base %d at %d", n, d.OldestBase(), d.Version)
	}
	// The count bound still holds with a byte bound, and bytes survive a
	// snapshot round trip.
	d2 := newTestDoc(t, "")
	for i := range 20 {
		d2, _, _ = d2.SubmitBounded("c", uint64(i+1), d2.Version, []Op{ins(0, "ab")}, 1, 5, limit)
	}
	var e encoder
	e.doc(d2)
	dec := decoder{b: e.b}
	back := dec.doc()
	if err := dec.end(); err != nil {
		t.Fatal(err)
	}
	if n, b := back.KeptHistory(); n != 5 || b != 5*HistoryBytes(&Change{ClientID: "c", Ops: []Op{ins(0, "ab")}}) {
		t.Fatalf("decoded: %d changes, %d bytes", n, b)
	}
	var e2 encoder
	e2.doc(back)
	if !bytes.Equal(e.b, e2.b) {
		t.Fatal("re-encoding differs")
	}
}
