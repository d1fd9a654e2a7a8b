//go:build unix

package cluster

import (
	"os"
	"runtime"
	"runtime/debug"
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
// should cost the same per command. kept=1k,ballast=1M holds a second
// window of 1M keys that apply never touches: the cost of a large heap
// (GC, caches) apart from the window's own work. cpu-ns/op is the process's CPU time
// per command over the timed parts (see processCPU). The GC runs at
// troupe serve's target (400%) unless TROUPE_BENCH_GOGC says otherwise.
func BenchmarkFSMApplyKeyed(b *testing.B) {
	const batch, chunk = 64, 64 // commands are encoded chunk batches at a time, off the clock
	// The GC target troupe serve sets (cmd/troupe/serve.go); TROUPE_BENCH_GOGC
	// overrides it, e.g. 100 for Go's default.
	gogc := 400
	if v, err := strconv.Atoi(os.Getenv("TROUPE_BENCH_GOGC")); err == nil {
		gogc = v
	}
	defer debug.SetGCPercent(debug.SetGCPercent(gogc))
	for _, bc := range []struct {
		name    string
		kept    int
		ballast int
	}{{"kept=1k", 1_000, 0}, {"kept=1M", 1_000_000, 0}, {"kept=1k,ballast=1M", 1_000, 1_000_000}} {
		b.Run(bc.name, func(b *testing.B) {
			// ballast: a window of its own, as large, held beside the
			// FSM's and never used: what the heap's size costs apart from
			// the work on the window.
			ballast := newIdempotencyWindow()
			for i := range bc.ballast {
				ballast.add("ballast-"+strconv.Itoa(i), 0, int64(i), nil, storage.Result{})
			}
			defer runtime.KeepAlive(ballast)
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
// 36-byte keys and a small user record as result: in all (B/key, the
// window's copies of key and encoded result included) and beyond those
// (B/key-beyond-stored).
func BenchmarkIdempotencyWindowMemory(b *testing.B) {
	// One measurement, whatever b.N: each is a million keys.
	per := bytesPerKey(b, 1_000_000, 36)
	for b.Loop() {
	}
	b.ReportMetric(per, "B/key")
	b.ReportMetric(per-storedBytes(36), "B/key-beyond-stored")
}

// BenchmarkIdempotencyWindow is the window alone, as apply uses it for a
// keyed command: expire what fell out of the retention, look the key up,
// add it. Each op expires one key and adds one.
func BenchmarkIdempotencyWindow(b *testing.B) {
	for _, kept := range []int{1_000, 1_000_000} {
		b.Run("kept="+strconv.Itoa(kept/1000)+"k", func(b *testing.B) {
			w := newIdempotencyWindow()
			for i := range kept {
				w.add("fill-"+strconv.Itoa(i), 0, int64(i), nil, storage.Result{})
			}
			keys := make([]string, b.N)
			for i := range keys {
				keys[i] = "key-" + strconv.Itoa(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			c0 := processCPU()
			for i, k := range keys {
				now := int64(kept + i)
				w.expire(now - int64(kept) + 1)
				if _, ok := w.get(k); ok {
					b.Fatal("a new key is known")
				}
				w.add(k, 0, now, nil, storage.Result{})
			}
			b.ReportMetric(float64((processCPU()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
