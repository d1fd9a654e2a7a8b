package cluster

import (
	"strconv"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/storage"
)

// BenchmarkFSMApplyKeyed applies keyed user creates through the FSM, in
// batches of 64 as raft hands them over, with the idempotency window
// pre-filled to 1k and to 1M keys and command time moving on so that one
// key expires, on average, for each one added: the window stays at its
// size and turns over as it runs. One op is one command; the two sizes
// should cost the same per command.
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
			for done := 0; done < b.N; {
				b.StopTimer()
				n := min(chunk*batch, b.N-done)
				logs := keyed(n)
				b.StartTimer()
				for i := 0; i < n; i += batch {
					bf.wait(b, bf.fsm.ApplyBatch(logs[i:min(i+batch, n)]))
				}
				done += n
			}
			b.StopTimer()
			if size := bf.fsm.idem.size(); size < bc.kept*9/10 || size > bc.kept*11/10+batch {
				b.Fatalf("the window holds %d keys, not about %d", size, bc.kept)
			}
		})
	}
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
