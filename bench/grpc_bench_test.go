package bench

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/troupe-db/troupe/transport/envoy"
)

// BenchmarkGRPCFloor: the ratelimit-grpc floor in one process — the
// floor's gRPC rate-limit service on 127.0.0.1 and 64 callers, each one
// call in flight as the scenario's workers are — under variants of the
// client's and the server's gRPC settings. cpu-ns/op is the process's
// CPU time per call, client and server together (both share the two
// cores in a bench run too); rw-syscalls/op the socket reads and writes
// of both ends per call.
func BenchmarkGRPCFloor(b *testing.B) {
	type variant struct {
		name     string
		reuse    bool // the answer reused (shouldRateLimit), not the generated client's call
		perConn  int  // callers per connection
		deadline bool // a deadline on each call, as Envoy sets one
		dial     []grpc.DialOption
		server   []grpc.ServerOption
	}
	base := envoy.ServerOptions()
	with := func(extra ...grpc.ServerOption) []grpc.ServerOption {
		return append(append([]grpc.ServerOption(nil), base...), extra...)
	}
	variants := []variant{
		{name: "as-run", reuse: true, perConn: streamsPerConn, deadline: true},
		{name: "generated-client", perConn: streamsPerConn, deadline: true},
		{name: "conns=1", perConn: 64, deadline: true},
		{name: "conns=2", perConn: 32, deadline: true},
		{name: "conns=4", perConn: 16, deadline: true},
		{name: "conns=16", perConn: 4, deadline: true},
		{name: "conns=64", perConn: 1, deadline: true},
		{name: "no-deadline", perConn: streamsPerConn},
		{name: "no-retry", perConn: streamsPerConn, deadline: true, dial: []grpc.DialOption{grpc.WithDisableRetry()}},
		{name: "buffers=4k", perConn: streamsPerConn, deadline: true,
			dial:   []grpc.DialOption{grpc.WithReadBufferSize(4 << 10), grpc.WithWriteBufferSize(4 << 10)},
			server: with(grpc.ReadBufferSize(4<<10), grpc.WriteBufferSize(4<<10))},
		{name: "no-stream-workers", perConn: streamsPerConn, deadline: true, server: []grpc.ServerOption{grpc.InitialWindowSize(1 << 20), grpc.InitialConnWindowSize(1 << 20)}},
		{name: "dynamic-windows", perConn: streamsPerConn, deadline: true, server: []grpc.ServerOption{base[0]}},
	}
	if only := os.Getenv("TROUPE_GRPC_VARIANTS"); only != "" {
		keep := variants[:0]
		for _, v := range variants {
			if strings.Contains(","+only+",", ","+v.name+",") {
				keep = append(keep, v)
			}
		}
		variants = keep
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			server := v.server
			if server == nil {
				server = base
			}
			f := newFloorRateLimitService(server...)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() { _ = f.Serve(ln); close(done) }()
			defer func() { f.Stop(); <-done }()
			const callers = 64
			conns := make([]*grpc.ClientConn, 0, callers/v.perConn)
			for range (callers + v.perConn - 1) / v.perConn {
				c, err := grpc.NewClient(ln.Addr().String(), append(grpcDialOptions(), v.dial...)...)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				conns = append(conns, c)
			}
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, io0 := processCPU(), readWriteCalls()
			for w := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					conn := conns[w/v.perConn]
					client := rlsv3.NewRateLimitServiceClient(conn)
					req, resp := grpcRequest("k"+strconv.Itoa(w)), &rlsv3.RateLimitResponse{}
					for left.Add(-1) >= 0 {
						ctx, cancel := context.Background(), context.CancelFunc(func() {})
						if v.deadline {
							ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
						}
						var err error
						if v.reuse {
							err = shouldRateLimit(ctx, conn, req, resp)
						} else {
							_, err = client.ShouldRateLimit(ctx, req)
						}
						cancel()
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			if io1 := readWriteCalls(); io0 >= 0 && io1 >= 0 {
				b.ReportMetric(float64(io1-io0)/float64(b.N), "rw-syscalls/op")
			}
		})
	}
}

// processCPU is the process's CPU time so far (user and system).
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
