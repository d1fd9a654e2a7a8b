package storage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
)

// bigDoc is a document whose text and kept history together pass the
// 16 MiB that a frame of version 4 could hold.
func bigDoc(t testing.TB, id string, textBytes, changes, changeBytes int) *Doc {
	t.Helper()
	d, err := NewDoc(id, "Big", MakeUserID(1, 0), strings.Repeat("é", textBytes/2), t0)
	if err != nil {
		t.Fatal(err)
	}
	for v := range uint64(changes) {
		ins := strings.Repeat(string(rune('a'+v%26)), changeBytes)
		d, _, err = d.Submit("client", v+1, v, []Op{{Kind: OpInsert, Pos: 0, Text: ins}, {Kind: OpDelete, Pos: changeBytes, Len: changeBytes}}, t0+int64(v), 1000)
		if err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestSnapshotLargeDocuments(t *testing.T) {
	s := testSnapshot(t, 2, 20)
	s.Docs = []*Doc{
		bigDoc(t, "doc-a", 2<<20, 16, 1<<20), // 2 MiB of text, 16 MiB of history
		bigDoc(t, "doc-b", 1000, 3, 10),
		bigDoc(t, "doc-c", 300<<10, 0, 0),
	}
	// A keyed result holding a whole document (writing it in chunks is
	// TestWriteSnapshotLargeDocumentMemory's).
	s.Meta.Idempotency = append(s.Meta.Idempotency, IdempotencyEntry{RequestID: "r-doc", AtMs: t0, Result: Result{Doc: s.Docs[2]}})
	buf := bytes.NewBuffer(make([]byte, 0, 20<<20))
	if err := WriteSnapshot(buf, s); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if len(b) < maxFrame {
		t.Fatalf("snapshot of %d bytes", len(b))
	}
	_, fs := frames(t, b) // every chunk within the target
	big := 0
	for _, f := range fs {
		if f[0] == frameDocs && len(f) > maxFrame {
			big++
		}
	}
	if big != 1 {
		t.Fatalf("%d document records beyond a version 4 frame, want 1", big)
	}
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// A decoded document's rope is shaped otherwise: compare the keyed
	// result's document by its encoding.
	var g, w encoder
	g.doc(got.Meta.Idempotency[len(got.Meta.Idempotency)-1].Result.Doc)
	w.doc(s.Docs[2])
	if !bytes.Equal(g.b, w.b) {
		t.Fatal("the keyed result's document differs")
	}
	got.Meta.Idempotency[len(got.Meta.Idempotency)-1].Result.Doc = s.Docs[2]
	sameState(t, got, s)
	for i, d := range got.Docs {
		if d.Text.String() != s.Docs[i].Text.String() || d.OldestBase() != s.Docs[i].OldestBase() {
			t.Fatalf("document %s differs", d.ID)
		}
	}
	if again := writeSnap(t, got); !bytes.Equal(again, b) {
		t.Fatal("writing the read snapshot gives other bytes")
	}
	// Through a reader that hands out little at a time, too.
	if got, err = ReadSnapshot(iotestHalfReader{bytes.NewReader(b)}); err != nil {
		t.Fatal(err)
	}
	if again := writeSnap(t, got); !bytes.Equal(again, b) {
		t.Fatal("read through a slow reader, the snapshot differs")
	}
}

// iotestHalfReader reads at most half of what is asked, to cut chunks at
// odd places in the reader's buffer.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) { return h.r.Read(p[:(len(p)+1)/2]) }

// The writer hands a large document on in chunks: what it allocates is
// far below the document's size.
func TestWriteSnapshotLargeDocumentMemory(t *testing.T) {
	d := bigDoc(t, "doc", 8<<20, 16, 1<<20)
	// The document, and a keyed result that holds it.
	s := &Snapshot{Docs: []*Doc{d}, Meta: Meta{Idempotency: []IdempotencyEntry{{RequestID: "r", Result: Result{Doc: d}}}}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := WriteSnapshot(io.Discard, s); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("writing a document of %d MiB twice allocated %d KiB", 8+16, alloc>>10)
	}
}

// readGoldenSnapshot reads testdata/snapshot-v<version>.bin, a snapshot
// an earlier build wrote of richSnapshot with its first 40 documents,
// checks that it holds that state and that written again (in the current
// version) it reads back the same, and returns its bytes and its state.
func readGoldenSnapshot(t *testing.T, version int) ([]byte, *Snapshot) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("testdata/snapshot-v%d.bin", version))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := richSnapshot(t)
	want.Docs = want.Docs[:40]
	sameState(t, got, want)
	again, err := ReadSnapshot(bytes.NewReader(writeSnap(t, got)))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, again, want)
	return b, got
}

// TestReadSnapshotVersion4 reads a snapshot written by the build before
// chunks (testdata/snapshot-v4.bin: richSnapshot with its first 40
// documents).
func TestReadSnapshotVersion4(t *testing.T) {
	b, _ := readGoldenSnapshot(t, 4)
	// Version 4 frames are still bounded and checked.
	for n := len(snapshotMagic) + 1; n < len(b); n += 997 {
		if _, err := ReadSnapshot(bytes.NewReader(b[:n])); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
}

// The same records read the same however they are cut into chunks.
func TestReadSnapshotAnyChunking(t *testing.T) {
	s := richSnapshot(t)
	s.Docs = s.Docs[:60]
	hdr, fs := frames(t, writeSnap(t, s))
	for _, chunk := range []int{1, 7, 1000, 64 << 10, maxSnapChunk} {
		got, err := ReadSnapshot(bytes.NewReader(joinChunked(hdr, chunk, fs...)))
		if err != nil {
			t.Fatalf("chunks of %d: %v", chunk, err)
		}
		sameState(t, got, s)
	}
}

// A chunk header may claim anything; the reader allocates only for the
// bytes that arrive.
func TestRecordReaderClaims(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"claims the most, sends 3 bytes", append(uvarintBytes(maxSnapChunk<<1|1), 1, 2, 3)},
		{"claims more than the most", append(uvarintBytes((maxSnapChunk+1)<<1), 1)},
		{"claims 2^62", uvarintBytes(1 << 62)},
		{"continues, then ends", append(uvarintBytes(2<<1|1), 1, 2)},
		{"empty chunk", []byte{0}},
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	} {
		rr := &recordReader{r: bufio.NewReader(bytes.NewReader(tc.in)), chunked: true}
		_, err := rr.next()
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if c := rr.buf.Cap(); c > 4096 {
			t.Errorf("%s: the reader's buffer grew to %d bytes for %d bytes of input", tc.name, c, len(tc.in))
		}
	}
}

func uvarintBytes(v uint64) []byte { return fmt.Appendf(nil, "%s", appendUvarint(nil, v)) }

func appendUvarint(b []byte, v uint64) []byte {
	e := encoder{b: b}
	e.uvarint(v)
	return e.b
}

// BenchmarkSnapshotLargeDocument writes and reads a snapshot holding one
// document of 8 MiB of text and 16 MiB of history.
func BenchmarkSnapshotLargeDocument(b *testing.B) {
	s := &Snapshot{Docs: []*Doc{bigDoc(b, "doc", 8<<20, 16, 1<<20)}}
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, s); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.Run("write", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if err := WriteSnapshot(io.Discard, s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ReadSnapshot(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
