package api

import (
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkRateLimitHTTP: POST /v1/ratelimit/check through the whole
// HTTP path of a one-node server, in process and without sockets (the
// router, the middleware, the guard, the handler, the bucket actors): a
// single check, and a multi-check of 10 distinct keys (one b.N step is
// one request), over 10k keys of a generous policy, as the bench's
// ratelimit-check and ratelimit-batch send them. cpu-ns/op is the
// process's CPU time per request.
func BenchmarkRateLimitHTTP(b *testing.B) {
	ts := startServer(b)
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/bench", `{"limit":1000000000,"window_ms":1000}`, nil, true), 200, "")
	h := ts.srv.http.Handler
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	const keys = 10_000
	for _, checks := range []int{1, 10} {
		name := "check"
		if checks > 1 {
			name = "multi-check-" + strconv.Itoa(checks)
		}
		b.Run(name, func(b *testing.B) {
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8) // handlers waiting on the actors, as on a busy node
			cpu0 := processCPU()
			defer reportCPU(b, cpu0)
			b.RunParallel(func(pb *testing.PB) {
				var req fasthttp.Request
				var ctx fasthttp.RequestCtx
				var body []byte
				k := int(next.Add(7919))
				for pb.Next() {
					k += 31
					body = body[:0]
					if checks == 1 {
						body = append(body, `{"policy":"bench","key":"k`...)
						body = strconv.AppendInt(body, int64(k%keys), 10)
						body = append(body, `"}`...)
					} else {
						body = append(body, `{"checks":[`...)
						for i := range checks {
							if i > 0 {
								body = append(body, ',')
							}
							body = append(body, `{"policy":"bench","key":"k`...)
							body = strconv.AppendInt(body, int64((k+i)%keys), 10)
							body = append(body, `"}`...)
						}
						body = append(body, "]}"...)
					}
					req.Reset()
					req.Header.SetMethod("POST")
					req.SetRequestURI("/v1/ratelimit/check")
					req.Header.SetContentType("application/json")
					req.SetBodyRaw(body)
					ctx.Init(&req, addr, nil)
					h(&ctx)
					if ctx.Response.StatusCode() != 200 {
						b.Errorf("check: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
						return
					}
				}
			})
		})
	}
}
