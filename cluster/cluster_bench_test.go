package cluster

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// Benchmarks of the write and read paths. Every benchmark stops its node
// and actors: TestMain checks for leaked goroutines.

const benchFSMShards = 64 // the default cluster parameter

// benchFSM is an initialised FSM and the next log index and stamp to use.
type benchFSM struct {
	fsm   *FSM
	index uint64
	stamp uint64
	n     int // users created so far
}

func newBenchFSM(b *testing.B) *benchFSM {
	b.Helper()
	logger := slog.New(slog.DiscardHandler)
	set := metrics.NewSet()
	sys := actors.NewSystem(logger, set)
	f := NewFSM(sys, logger, set, func(err error) { b.Errorf("fatal: %v", err) })
	b.Cleanup(func() {
		f.Close()
		sys.Shutdown()
	})
	bf := &benchFSM{fsm: f, stamp: storage.StampAt(time.Now().UnixMilli())}
	email := "admin@troupe.local"
	init := bf.log(&storage.Command{Kind: storage.CmdInit, Stamp: bf.stamp, Init: &storage.InitParams{
		ClusterID: "bench", UserShards: benchFSMShards, IdempotencyRetention: 600_000,
		Admin: storage.BatchItem{ID: storage.MakeUserID(bf.stamp, storage.ShardOf(email, benchFSMShards)),
			User: storage.NewUser{Name: "Admin", Email: email, Role: storage.RoleAdmin}},
	}})
	bf.wait(b, f.ApplyBatch([]*raft.Log{init}))
	return bf
}

func (bf *benchFSM) log(c *storage.Command) *raft.Log {
	bf.index++
	return &raft.Log{Index: bf.index, Term: 1, Type: raft.LogCommand, Data: storage.EncodeCommand(make([]byte, 0, 128), c)}
}

// creates returns n encoded create commands of new users.
func (bf *benchFSM) creates(n int, requestIDs bool) []*raft.Log {
	logs := make([]*raft.Log, n)
	for i := range logs {
		bf.stamp++
		bf.n++
		email := "user" + strconv.Itoa(bf.n) + "@example.com"
		c := &storage.Command{Kind: storage.CmdUserCreate, Stamp: bf.stamp,
			Create: &storage.BatchItem{ID: storage.MakeUserID(bf.stamp, storage.ShardOf(email, benchFSMShards)),
				User: storage.NewUser{Name: "User " + strconv.Itoa(bf.n), Email: email, Role: storage.RoleUser}}}
		if requestIDs {
			c.RequestID, c.Fingerprint = "req-"+strconv.Itoa(bf.n), uint64(bf.n)
		}
		logs[i] = bf.log(c)
	}
	return logs
}

func (bf *benchFSM) wait(b *testing.B, resp []any) {
	for _, r := range resp {
		p := r.(*actors.Pending)
		<-p.Done()
		if res := p.Result(); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkFSMApplyBatch64 applies batches of 64 pre-encoded creates, as
// raft hands them over, and waits until the actors have applied them all.
// ns/op is per batch; ns/cmd per command.
func BenchmarkFSMApplyBatch64(b *testing.B) {
	const batch, chunk = 64, 128 // commands are encoded chunk batches at a time, off the clock
	for _, bc := range []struct {
		name       string
		requestIDs bool
	}{{"plain", false}, {"request_id", true}} {
		b.Run(bc.name, func(b *testing.B) {
			bf := newBenchFSM(b)
			b.ReportAllocs()
			b.ResetTimer()
			var cpu time.Duration // on the clock only: the encoding is not
			for done := 0; done < b.N; {
				b.StopTimer()
				k := min(chunk, b.N-done)
				logs := bf.creates(k*batch, bc.requestIDs)
				b.StartTimer()
				start := processCPU()
				for i := range k {
					bf.wait(b, bf.fsm.ApplyBatch(logs[i*batch:(i+1)*batch]))
				}
				cpu += processCPU() - start
				done += k
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/cmd")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*batch), "cpu-ns/cmd")
		})
	}
}

// BenchmarkNode runs a real one-node cluster (raft-wal in b.TempDir(),
// fsync per raft batch) shared by its sub-benchmarks.
func BenchmarkNode(b *testing.B) {
	dir := b.TempDir()
	n, stop := testNode(b, filepath.Join(dir, "node"))
	defer stop()
	var seq atomic.Int64

	// The disk's floor: one 100-byte append and fsync, one at a time.
	b.Run("fsync", func(b *testing.B) {
		f, err := os.Create(filepath.Join(dir, "fsync"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 100)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsyncs/s")
	})

	create := func(b *testing.B) {
		i := seq.Add(1)
		email := "user" + strconv.FormatInt(i, 10) + "@example.com"
		stamp := n.Stamps(1)
		res, _, err := n.Propose(context.Background(), &storage.Command{Kind: storage.CmdUserCreate, Stamp: stamp,
			Create: &storage.BatchItem{ID: storage.MakeUserID(stamp, n.Users().HomeShardFor(email)),
				User: storage.NewUser{Name: "User", Email: email, Role: storage.RoleUser}}},
			time.Now().Add(10*time.Second))
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err != nil {
			b.Error(err)
		}
	}
	for _, c := range []int{1, 16, 64} {
		b.Run("Propose/c"+strconv.Itoa(c), func(b *testing.B) {
			b.ReportAllocs()
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			for range c {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						create(b)
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}

	// Linearizable read barrier: read index (commit index + one leadership
	// check shared by the waiting reads) and wait for the FSM to apply it.
	for _, p := range []int{1, 32} {
		b.Run("ReadBarrier/p"+strconv.Itoa(p), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(p) // p × GOMAXPROCS goroutines
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := n.ReadBarrier(context.Background(), replica.Linearizable, 0, time.Now().Add(5*time.Second)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
