//go:build unix

package cluster

import (
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/storage"
)

// BenchmarkFSMApplyKeyed applies keyed user creates through the FSM, in
// batches of 64 as raft hands them over, with the idempotency window
// pre-filled to 1k and to 1M keys and command time moving on so that one
// key expires, on average, for each one added: the window stays at its
// size and turns over as it runs. One op is one command; the two sizes
// should cost the same per command. cpu-ns/op is the process's CPU time
// per command over the timed parts (see processCPU).
func BenchmarkFSMApplyKeyed(b *testing.B) {
	const batch, chunk = 64, 64 // commands are encoded chunk batches at a time, off the clock
	for _, bc := range []struct {
		name string
		kept int
	}{{"kept=1k", 1_000}, {"kept=1M", 1_000_000}} {
		b.Run(bc.name, func(b *testing.B) {
			bf := newBenchFSM(b)
			retention := int64(bf.fsm.init.IdempotencyRetention)
			step := float64(retention) / float64(bc.kept)
			start := storage.StampMillis(bf.stamp) + 1
			for i := range bc.kept {
				bf.fsm.idem.add("fill-"+strconv.Itoa(i), uint64(i), start+int64(float64(i)*step), nil, storage.Result{})
			}
			k := 0 // commands made so far
			keyed := func(n int) []*raft.Log {
				logs := make([]*raft.Log, n)
				for i := range logs {
					// Unique, increasing stamps at the command time the
					// k-th command should have.
					ms := start + retention + int64(float64(k)*step)
					bf.stamp = max(bf.stamp+1, storage.StampAt(ms))
					bf.n++
					k++
					email := "user" + strconv.Itoa(bf.n) + "@example.com"
					logs[i] = bf.log(&storage.Command{Kind: storage.CmdUserCreate, Stamp: bf.stamp,
						RequestID: "req-" + strconv.Itoa(bf.n), Fingerprint: uint64(bf.n),
						Create: &storage.BatchItem{ID: storage.MakeUserID(bf.stamp, storage.ShardOf(email, benchFSMShards)),
							User: storage.NewUser{Name: "User " + strconv.Itoa(bf.n), Email: email, Role: storage.RoleUser}}})
				}
				return logs
			}
			b.ReportAllocs()
			b.ResetTimer()
			var cpu time.Duration
			for done := 0; done < b.N; {
				b.StopTimer()
				n := min(chunk*batch, b.N-done)
				logs := keyed(n)
				c0 := processCPU()
				b.StartTimer()
				for i := 0; i < n; i += batch {
					bf.wait(b, bf.fsm.ApplyBatch(logs[i:min(i+batch, n)]))
				}
				b.StopTimer()
				cpu += processCPU() - c0
				b.StartTimer()
				done += n
			}
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			if size := bf.fsm.idem.size(); size < bc.kept*9/10 || size > bc.kept*11/10+batch {
				b.Fatalf("the window holds %d keys, not about %d", size, bc.kept)
			}
		})
	}
}

// processCPU is the CPU time this process has used (all its threads, the
// actors' and the garbage collector's included): on a shared machine it
// measures the cost of the work where wall time measures the contention.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdempotencyWindowMemory reports the heap a kept key costs with
// 36-byte keys: in all (B/key, the 64-byte Result value included, the
// key's own bytes not) and beyond the Result (B/key-beyond-result).
func BenchmarkIdempotencyWindowMemory(b *testing.B) {
	var per float64
	for b.Loop() {
		per = bytesPerKey(b, 1_000_000, 36)
	}
	b.ReportMetric(per, "B/key")
	b.ReportMetric(per-64, "B/key-beyond-result")
}
