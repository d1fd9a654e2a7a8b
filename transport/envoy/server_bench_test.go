package envoy

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/metadata"

	"github.com/troupe-db/troupe/storage"
)

// BenchmarkShouldRateLimit: decisions per second through a real gRPC
// server on 127.0.0.1, one descriptor per request, many keys, callers on
// one connection (HTTP/2 streams), with the token check of a service.
func BenchmarkShouldRateLimit(b *testing.B) {
	for _, descs := range []int{1, 3} {
		b.Run("descriptors="+strconv.Itoa(descs), func(b *testing.B) {
			f := serve(b, Config{}, storage.Policy{Name: "per-ip", Limit: 1_000_000, WindowMs: 1000, Envoy: rule("edge", "remote_address")},
				storage.Policy{Name: "per-route", Limit: 1_000_000, WindowMs: 1000, Envoy: rule("edge", "route")},
				storage.Policy{Name: "per-user", Limit: 1_000_000, WindowMs: 1000, Envoy: rule("edge", "user")})
			keys := []string{"remote_address", "route", "user"}
			var seq atomic.Uint64
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, io0 := processCPU(), readWriteCalls()
			b.RunParallel(func(pb *testing.PB) {
				ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer svc")
				for pb.Next() {
					n := seq.Add(1)
					req := &rlsv3.RateLimitRequest{Domain: "edge"}
					for d := range descs {
						req.Descriptors = append(req.Descriptors, &ratelimitv3.RateLimitDescriptor{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{
							{Key: keys[d], Value: strconv.FormatUint(n%10_000, 10)},
						}})
					}
					resp, err := f.client.ShouldRateLimit(ctx, req)
					if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
						b.Errorf("%v %v", resp, err)
						return
					}
				}
			})
			// Client and server together: both run in this process.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			// Reads and writes on sockets, both sides: not skewed by
			// other processes, unlike the times.
			if io1 := readWriteCalls(); io0 >= 0 && io1 >= 0 {
				b.ReportMetric(float64(io1-io0)/float64(b.N), "rw-syscalls/op")
			}
			b.ReportMetric(float64(b.N*descs)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// processCPU is the process's CPU time so far (user and system): on a
// shared machine steadier than wall time, which waits for the cores.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readWriteCalls is the process's count of read and write system calls
// so far (syscr + syscw of /proc/self/io), or -1.
func readWriteCalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			x, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			n += x
		}
	}
	return n
}
