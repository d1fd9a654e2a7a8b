package cluster

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// BenchmarkLogStore is the measurement behind the choice of raft-wal as
// the raft log: appends of batches of 100-byte entries, each batch
// fsynced, as raft's leader loop does for every group commit. raft-boltdb
// v1 is the alternative that builds with raft v1.8 (v2 does not).
// "raft-wal-zeroed" is raft-wal as the node opens it, on segment files
// zeroed ahead of the log and synced with fdatasync (walfs_linux.go).
func BenchmarkLogStore(b *testing.B) {
	stores := map[string]func(dir string) (raft.LogStore, func()){
		"raft-wal": func(dir string) (raft.LogStore, func()) {
			meta := &metadb.BoltMetaDB{}
			w, err := wal.Open(dir, wal.WithMetaStore(meta))
			if err != nil {
				b.Fatal(err)
			}
			return w, func() { w.Close(); meta.Close() }
		},
		"raft-wal-zeroed": func(dir string) (raft.LogStore, func()) {
			meta := &metadb.BoltMetaDB{}
			w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentFiler(segmentFiler(dir)))
			if err != nil {
				b.Fatal(err)
			}
			return w, func() { w.Close(); meta.Close() }
		},
		"raft-boltdb": func(dir string) (raft.LogStore, func()) {
			s, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s, func() { s.Close() }
		},
	}
	for _, name := range []string{"raft-wal", "raft-wal-zeroed", "raft-boltdb"} {
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/batch%d", name, batch), func(b *testing.B) {
				store, closeStore := stores[name](b.TempDir())
				defer closeStore()
				data := make([]byte, 100)
				logs := make([]*raft.Log, batch)
				next := uint64(1)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					for i := range logs {
						logs[i] = &raft.Log{Index: next, Term: 1, Type: raft.LogCommand, Data: data}
						next++
					}
					if err := store.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}
