package storage

import (
	"bytes"
	"reflect"
	"testing"
	"unicode/utf8"
)

// fuzzOps reads an op list from fuzz bytes, four or more bytes an op:
// kind, position and length as signed bytes (so out-of-range and
// negative values come up), and a text of up to 7 raw bytes (so invalid
// UTF-8 and NUL come up).
func fuzzOps(b []byte) ([]Op, []byte) {
	var ops []Op
	for len(b) >= 4 && len(ops) < 16 {
		op := Op{Kind: OpKind(b[0] % 5), Pos: int(int8(b[1])), Len: int(int8(b[2]))}
		n := min(int(b[3]%8), len(b)-4)
		op.Text = string(b[4 : 4+n])
		b = b[4+n:]
		if op.Kind == OpInsert {
			op.Len = 0
		}
		if op.Kind == OpDelete {
			op.Text = ""
		}
		ops = append(ops, op)
		if len(b) > 0 && b[0] == 0xff { // a separator ends the list
			return ops, b[1:]
		}
	}
	return ops, b
}

func fuzzSeedOps(ops ...Op) []byte {
	var b []byte
	for _, op := range ops {
		b = append(b, byte(op.Kind), byte(op.Pos), byte(op.Len), byte(len(op.Text)))
		b = append(b, op.Text...)
	}
	return b
}

// FuzzApplyOps: Apply never panics; it fails with a bad request or gives
// valid UTF-8 of the expected length, and a failure leaves the text as it
// was.
func FuzzApplyOps(f *testing.F) {
	f.Add("hello", fuzzSeedOps(ins(5, " world"), del(0, 1), rep(1, 2, "é")))
	f.Add("", fuzzSeedOps(ins(0, "a\x00"), del(1, 1)))
	f.Add("é€𝄞", fuzzSeedOps(rep(2, 1, "\xff"), ins(4, "x")))
	f.Fuzz(func(t *testing.T, text string, b []byte) {
		if !utf8.ValidString(text) {
			return
		}
		ops, _ := fuzzOps(b)
		x := NewText(text)
		y, err := Apply(x, ops)
		if err != nil {
			if err.Kind != KindBadRequest || y.String() != text {
				t.Fatalf("failure %v changed the text or has the wrong kind", err)
			}
			return
		}
		want := x.Len()
		for _, op := range ops {
			want += utf8.RuneCountInString(op.Text) - op.Len
		}
		s := y.String()
		if !utf8.ValidString(s) || y.Len() != want || utf8.RuneCountInString(s) != want {
			t.Fatalf("result %q: length %d, want %d", s, y.Len(), want)
		}
	})
}

// FuzzTransform: for any text and any two op lists that both apply to
// it, the incoming one transformed against the other applies after it,
// and both orders converge (TP1). Nothing panics on lists that do not
// apply either.
func FuzzTransform(f *testing.F) {
	f.Add("0123456789", append(append(fuzzSeedOps(ins(3, "ab")), 0xff), fuzzSeedOps(rep(1, 4, "XY"))...))
	f.Add("0123456789", append(append(fuzzSeedOps(del(3, 4), ins(0, "q")), 0xff), fuzzSeedOps(rep(4, 2, "XY"), del(0, 3))...))
	f.Fuzz(func(t *testing.T, text string, b []byte) {
		if !utf8.ValidString(text) {
			return
		}
		A, rest := fuzzOps(b)
		B, _ := fuzzOps(rest)
		B2 := Transform(B, A) // must not panic, whatever the lists
		x := NewText(text)
		xa, errA := Apply(x, A)
		xb, errB := Apply(x, B)
		if errA != nil || errB != nil {
			return
		}
		y, err := Apply(xa, B2)
		if err != nil {
			t.Fatalf("T=%q A=%v B=%v: B'=%v does not apply: %v", text, A, B, B2, err)
		}
		aPrime, _ := xf(toPrims(A, false), toPrims(B, true), true)
		z, err := Apply(xb, fromPrims(aPrime))
		if err != nil || z.String() != y.String() {
			t.Fatalf("T=%q A=%v B=%v: diverged: %q vs %q (%v)", text, A, B, y.String(), z.String(), err)
		}
	})
}

// FuzzDecodeDoc: decoding never panics; what decodes re-encodes stably
// and takes a submit like any document.
func FuzzDecodeDoc(f *testing.F) {
	f.Add(encodeDoc(sampleDoc(f)))
	f.Add(encodeDoc(newTestDoc(f, "")))
	f.Add(encodeDoc(checkpointedDoc(f)))
	b := encodeDoc(sampleDoc(f))
	f.Add(b[:len(b)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1024 {
			return
		}
		d, err := decodeDoc(b)
		if err != nil {
			return
		}
		b2 := encodeDoc(d)
		d2, err := decodeDoc(b2)
		if err != nil {
			t.Fatalf("re-encoded document does not decode: %v", err)
		}
		if !bytes.Equal(encodeDoc(d2), b2) {
			t.Fatal("encoding is not stable")
		}
		if _, err := d.ChangesSince(d.OldestBase()); err != nil {
			t.Fatal(err)
		}
		for v := d.OldestVersion(); v <= d.Version; v++ {
			_, _ = d.TextAt(v) // the changes after a checkpoint may not apply: an error, never a panic
		}
		_, _, _ = d.HistoryPage(d.Version+1, 5)
		_, _, _ = d.SubmitAs("u", "fuzz", 1, d.OldestBase(), []Op{ins(0, "x"), del(0, 1)}, 1, HistoryRules{MaxChanges: 3, CheckpointEvery: 2})
	})
}

// FuzzDecodeDocSubmit: the submit payload decodes without panicking and
// round-trips.
func FuzzDecodeDocSubmit(f *testing.F) {
	var e encoder
	e.docSubmit(&DocSubmit{DocID: "d", ClientID: "c", Seq: 3, Base: 9, Ops: []Op{ins(1, "x"), del(0, 2), rep(4, 1, "ü")}})
	f.Add(e.b)
	f.Add(e.b[:len(e.b)-2])
	f.Fuzz(func(t *testing.T, b []byte) {
		d := decoder{b: b}
		s := d.docSubmit()
		if d.end() != nil {
			return
		}
		var e encoder
		e.docSubmit(s)
		d2 := decoder{b: e.b}
		s2 := d2.docSubmit()
		if d2.end() != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip differs: %+v %+v", s, s2)
		}
	})
}
