package actors

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/storage"
)

// The memory an idle document costs a node's actors and storage beyond
// its text: the directory's map slot, the document, its rope and the
// catalog's entry and slots (make bench measures the whole node, log cache and
// change feed included: docs/BENCHMARKS.md, "Memory per idle
// document"). Documents are created as the FSM creates them (Apply,
// then Flush at the end of a batch), each with its own 1 KiB text as a
// decoded command would carry, and never opened.

const (
	idleDocText  = 1024
	idleDocCount = 10_000
)

// idleDocContent returns a text of idleDocText bytes of its own (a string
// allocated for it, as the command decoder allocates one).
func idleDocContent(i int) string {
	var b strings.Builder
	b.Grow(idleDocText)
	x := uint64(i)*0x9e3779b97f4a7c15 | 1
	for b.Len() < idleDocText {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b.WriteByte(byte('a' + x%26))
	}
	return b.String()
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// idleDocBytes creates n documents on fresh actors, waits until the
// catalog lists them, and returns the live heap they added per document
// beyond their texts.
func idleDocBytes(tb testing.TB, n int) float64 {
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	d := NewDocs(sys, DocsConfig{})
	defer func() {
		d.Close()
		sys.Shutdown()
	}()
	before := liveHeap()
	contents := make([]string, n)
	for i := range contents {
		contents[i] = idleDocContent(i)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = storage.MakeDocID(storage.StampAt(1_700_000_000_000) + uint64(i))
	}
	for i := range n {
		c := &storage.DocCommand{DocID: ids[i], Caller: fmt.Sprintf("user%07d", i%1000), Title: "Bench " + ids[i][:6], Content: contents[i]}
		if r := d.Apply(storage.CmdDocCreate, c, 1_700_000_000_000); r.Result().Err != nil {
			tb.Fatal(r.Result().Err)
		}
		if i%64 == 63 {
			d.Flush() // the FSM flushes once a batch
		}
	}
	d.Flush()
	// The catalog has applied every note once it lists them all.
	docs, _, err := d.List("", true, "", n, time.Now().Add(10*time.Second))
	if err != nil || len(docs) != n {
		tb.Fatalf("listed %d documents of %d: %v", len(docs), n, err)
	}
	// docs, contents and ids are dead from here (the documents hold
	// their texts and ids now): the collector does not count them.
	after := liveHeap()
	runtime.KeepAlive(d)
	return float64(int64(after)-int64(before))/float64(n) - idleDocText
}

// BenchmarkIdleDocMemory reports B/doc: the live heap an idle document
// with 1 KiB of text costs beyond the text (target ≤ 500 B).
func BenchmarkIdleDocMemory(b *testing.B) {
	var per float64
	for b.Loop() {
		per = idleDocBytes(b, idleDocCount)
	}
	b.ReportMetric(per, "B/doc")
}

// The text is held once: an idle document costs less than a second copy
// of its text would.
func TestIdleDocHoldsTextOnce(t *testing.T) {
	per := idleDocBytes(t, idleDocCount)
	t.Logf("%.0f B per idle document beyond its %d B text", per, idleDocText)
	if per >= idleDocText {
		t.Fatalf("%.0f B per document beyond its text: the text is held twice", per)
	}
}
