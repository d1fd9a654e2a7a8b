package cluster

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/storage"
)

// A restart with many idle documents is the two halves benchmarked here:
// reading the snapshot that holds them (FSM.Restore), and replaying the
// log that created them (FSM.ApplyBatch, 64 entries at a time as raft
// hands a replay over). Each op is the whole of it for restartDocs
// documents of 1 KiB; ns/doc divides it, cpu-ns/doc divides the
// process's CPU time over the same (steadier than the wall clock on a
// shared machine). go test -cpuprofile shows where a restart's time goes.

const restartDocs = 100_000

// docCreates returns n encoded creates of documents with 1 KiB texts of
// their own, owned by one user.
func (bf *benchFSM) docCreates(n int) []*raft.Log {
	owner := storage.MakeUserID(bf.stamp, 0)
	logs := make([]*raft.Log, n)
	var text strings.Builder
	for i := range logs {
		bf.stamp++
		text.Reset()
		for text.Len() < 1024 {
			text.WriteString(strconv.Itoa(i))
			text.WriteByte(' ')
		}
		id := storage.MakeDocID(bf.stamp)
		logs[i] = bf.log(&storage.Command{Kind: storage.CmdDocCreate, Stamp: bf.stamp,
			Doc: &storage.DocCommand{DocID: id, Caller: owner, Title: "Doc " + id[:6], Content: text.String()[:1024]}})
	}
	return logs
}

// bufSink is a snapshot sink writing to memory.
type bufSink struct{ bytes.Buffer }

func (s *bufSink) ID() string    { return "bench" }
func (s *bufSink) Cancel() error { return nil }
func (s *bufSink) Close() error  { return nil }

func BenchmarkRestartDocs(b *testing.B) {
	src := newBenchFSM(b)
	logs := src.docCreates(restartDocs)
	replay := func(b *testing.B, bf *benchFSM) {
		for i := 0; i < len(logs); i += 64 {
			bf.wait(b, bf.fsm.ApplyBatch(logs[i:min(i+64, len(logs))]))
		}
		bf.fsm.Docs().Flush()
	}
	b.Run("replay", func(b *testing.B) {
		var cpu time.Duration
		for b.Loop() {
			b.StopTimer()
			bf := newBenchFSM(b)
			b.StartTimer()
			start := processCPU()
			replay(b, bf)
			cpu += processCPU() - start
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*restartDocs), "ns/doc")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*restartDocs), "cpu-ns/doc")
	})
	b.Run("snapshot-read", func(b *testing.B) {
		if total, _ := src.fsm.Docs().Counts(); total == 0 {
			replay(b, src)
		}
		snap, err := src.fsm.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		var sink bufSink
		if err := snap.Persist(&sink); err != nil {
			b.Fatal(err)
		}
		data := sink.Bytes()
		b.ReportMetric(float64(len(data))/restartDocs, "snapB/doc")
		var cpu time.Duration
		for b.Loop() {
			b.StopTimer()
			bf := newBenchFSM(b)
			b.StartTimer()
			start := processCPU()
			if err := bf.fsm.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				b.Fatal(err)
			}
			if total, _ := bf.fsm.Docs().Counts(); total != restartDocs {
				b.Fatalf("restored %d documents of %d", total, restartDocs)
			}
			cpu += processCPU() - start
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*restartDocs), "ns/doc")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*restartDocs), "cpu-ns/doc")
	})
}
