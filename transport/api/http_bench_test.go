package api

import (
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkHTTP runs requests through the whole HTTP path of a one-node
// cluster, in process and without sockets: the router, the metrics and
// tracing middleware, the guard, the handler, the node (raft-wal with
// fsync for writes) and the actors; not_found is the middleware around a
// trivial handler. Each tracing mode (benchTraceModes)
// gets a server of its own.
func BenchmarkHTTP(b *testing.B) {
	for _, mode := range benchTraceModes() {
		b.Run("tracing="+mode.name, func(b *testing.B) {
			ts := startServer(b, mode.opts(b)...)
			h := ts.srv.http.Handler
			r := ts.create("Bench", "bench@example.com")
			id, _ := r["id"].(string)
			get := func(b *testing.B, uri string, status int) {
				var req fasthttp.Request
				req.Header.SetMethod("GET")
				req.SetRequestURI(uri)
				addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
				b.ReportAllocs()
				cpu0 := processCPU()
				defer reportCPU(b, cpu0)
				b.RunParallel(func(pb *testing.PB) {
					var ctx fasthttp.RequestCtx
					for pb.Next() {
						ctx.Init(&req, addr, nil)
						h(&ctx)
						if ctx.Response.StatusCode() != status {
							b.Errorf("GET %s: %d %s", uri, ctx.Response.StatusCode(), ctx.Response.Body())
							return
						}
					}
				})
			}
			// The middleware alone: routing, metrics, the span, a trivial
			// handler (a 404).
			b.Run("not_found", func(b *testing.B) { get(b, "/no/such/route", 404) })
			b.Run("get_stale", func(b *testing.B) { get(b, "/v1/users/"+id+"?consistency=stale", 200) })
			b.Run("get_linearizable", func(b *testing.B) { get(b, "/v1/users/"+id, 200) })
			var seq atomic.Int64
			b.Run("create", func(b *testing.B) {
				addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
				b.ReportAllocs()
				b.SetParallelism(8) // writers share group commits
				cpu0 := processCPU()
				defer reportCPU(b, cpu0)
				b.RunParallel(func(pb *testing.PB) {
					var req fasthttp.Request
					var ctx fasthttp.RequestCtx
					for pb.Next() {
						req.Reset()
						req.Header.SetMethod("POST")
						req.SetRequestURI("/v1/users")
						req.Header.SetContentType("application/json")
						req.SetBodyString(fmt.Sprintf(`{"name":"U","email":"u%s@example.com"}`, strconv.FormatInt(seq.Add(1), 10)))
						ctx.Init(&req, addr, nil)
						h(&ctx)
						if ctx.Response.StatusCode() != 201 {
							b.Errorf("create: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
							return
						}
					}
				})
			})
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

// reportCPU reports the process's CPU time per operation since cpu0:
// steadier than wall time on a shared machine, where the benchmark waits
// for the processors as well.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
