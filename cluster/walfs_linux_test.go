package cluster

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"
)

// The zeroer never writes where the log has: after appends of random
// sizes racing it, every byte reads back as the log wrote it, and the
// space past the log's end reads as zeros.
func TestSegmentFileZeroingKeepsTheLog(t *testing.T) {
	dir := t.TempDir()
	const size = 8 << 20
	wf, err := segmentFS{fs.New()}.Create(dir, "seg.wal", size)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var want []byte
	for len(want) < 6<<20 {
		p := make([]byte, 1+rng.IntN(64<<10))
		for i := range p {
			p[i] = byte(1 + rng.IntN(255)) // never zero, so a stray zero shows
		}
		if _, err := wf.WriteAt(p, int64(len(want))); err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
		if rng.IntN(8) == 0 {
			if err := wf.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := wf.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := wf.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "seg.wal"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != size {
		t.Fatalf("file is %d bytes, want %d", len(got), size)
	}
	if !bytes.Equal(got[:len(want)], want) {
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("byte %d is %d, the log wrote %d", i, got[i], want[i])
			}
		}
	}
	if bytes.ContainsFunc(got[len(want):], func(r rune) bool { return r != 0 }) {
		t.Fatal("space past the log's end is not zero")
	}
}

func TestZeroRange(t *testing.T) {
	const size = 64 << 20
	for _, c := range []struct{ zeroed, end, from, to int64 }{
		{0, 0, 0, zeroChunk},                                   // a new file
		{zeroAhead - 10, 0, zeroAhead - 10, zeroAhead},         // the window's last bytes
		{zeroAhead, 0, zeroAhead, zeroAhead},                   // written: nothing more
		{zeroAhead, 3 << 20, zeroAhead, zeroAhead + zeroChunk}, // the log moved on
		{1 << 20, 5 << 20, 5 << 20, 5<<20 + zeroChunk},         // the log outran the zeroer
		{size - 5, size - 100, size - 5, size},                 // never past the file
	} {
		if from, to := zeroRange(c.zeroed, c.end, size); from != c.from || to != c.to {
			t.Errorf("zeroRange(%d, %d) = %d..%d, want %d..%d", c.zeroed, c.end, from, to, c.from, c.to)
		}
	}
}

// The zeroer keeps a window ahead of the log, not the whole file: a
// quiet node's new segment costs a few MiB of writes, not its size, and
// the window moves with the log. (Where a chunk ends is TestZeroRange's.)
func TestSegmentFileZeroesOnlyAhead(t *testing.T) {
	dir := t.TempDir()
	wf, err := segmentFS{fs.New()}.Create(dir, "seg.wal", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	sf := wf.(*segmentFile)
	zeroed := func() int64 {
		sf.mu.Lock()
		defer sf.mu.Unlock()
		return sf.zeroed
	}
	// reach waits until the zeroer has got exactly to want, failing if it
	// goes past it.
	reach := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			switch z := zeroed(); {
			case z > want:
				t.Fatalf("zeroed up to %d, past the window's end %d", z, want)
			case z == want:
				return
			case time.Now().After(deadline):
				t.Fatalf("zeroed up to %d, never reached %d", z, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// A new file: the window ahead of an empty log.
	reach(zeroAhead)
	// The log moves on past half the window: the window follows.
	end := int64(3 << 20)
	if _, err := wf.WriteAt(make([]byte, end), 0); err != nil {
		t.Fatal(err)
	}
	reach(end + zeroAhead)
	if err := wf.Close(); err != nil { // waits for the zeroer
		t.Fatal(err)
	}
	if z := sf.zeroed; z != end+zeroAhead {
		t.Fatalf("zeroed up to %d after close, want %d", z, end+zeroAhead)
	}
}

// writeSynced writes p at off and syncs it.
func writeSynced(t *testing.T, wf types.WritableFile, p string, off int64) {
	t.Helper()
	if _, err := wf.WriteAt([]byte(p), off); err != nil {
		t.Fatal(err)
	}
	if err := wf.Sync(); err != nil {
		t.Fatal(err)
	}
}

// A reopened segment is written and synced in place, without a zeroer.
func TestSegmentFileReopen(t *testing.T) {
	dir := t.TempDir()
	vfs := segmentFS{fs.New()}
	wf, err := vfs.Create(dir, "seg.wal", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	writeSynced(t, wf, "one", 0)
	if err := wf.Close(); err != nil {
		t.Fatal(err)
	}
	wf, err = vfs.OpenWriter(dir, "seg.wal")
	if err != nil {
		t.Fatal(err)
	}
	writeSynced(t, wf, "two", 3)
	buf := make([]byte, 7)
	if _, err := wf.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "onetwo\x00" {
		t.Fatalf("read %q", buf)
	}
	if err := wf.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := vfs.Create(dir, "seg.wal", 1<<20); err == nil {
		t.Fatal("Create over an existing segment succeeded")
	}
}
