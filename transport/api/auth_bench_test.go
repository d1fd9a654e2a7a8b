package api

import (
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkHTTPSecureDefault is what the secure default costs a request:
// a linearizable read by id and a durable create through the whole HTTP
// path, in process, on a node with authentication off and no rate limit
// (insecure, as `troupe serve --insecure --rate-limit off`), and on one
// with authentication on, every request carrying a bearer token that is
// verified (signature, times, the user's token epoch and session), and
// the default policy deciding every request at a limit it never reaches
// (secure, as make bench's secure rows). cpu-ns/op, the process's CPU
// time per request, is the figure to compare: wall time on a shared
// machine includes waiting for a processor.
func BenchmarkHTTPSecureDefault(b *testing.B) {
	modes := []struct {
		name string
		opts []func(*Config)
	}{
		{"insecure", nil},
		{"secure", []func(*Config){secure, withDefaultLimit(1_000_000_000, time.Second)}},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			ts := startServer(b, mode.opts...)
			auth, header := "", map[string]string(nil)
			if mode.name == "secure" {
				auth = "Bearer " + ts.login("admin@troupe.local", testAdminPassword).AccessToken
				header = map[string]string{"Authorization": auth}
			}
			r := ts.do("POST", "/v1/users", `{"name":"Bench","email":"bench@example.com"}`, header, true)
			var u struct{ ID string }
			if r.status != 201 {
				b.Fatalf("create: %d %s", r.status, r.body)
			}
			r.json(b, &u)
			id := u.ID
			h := ts.srv.http.Handler
			addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
			run := func(b *testing.B, fill func(req *fasthttp.Request), status int) {
				b.ReportAllocs()
				cpu0 := processCPU()
				defer reportCPU(b, cpu0)
				b.RunParallel(func(pb *testing.PB) {
					var req fasthttp.Request
					var ctx fasthttp.RequestCtx
					for pb.Next() {
						req.Reset()
						fill(&req)
						if auth != "" {
							req.Header.Set("Authorization", auth)
						}
						ctx.Init(&req, addr, nil)
						h(&ctx)
						if ctx.Response.StatusCode() != status {
							b.Errorf("%s %s: %d %s", req.Header.Method(), req.RequestURI(), ctx.Response.StatusCode(), ctx.Response.Body())
							return
						}
					}
				})
			}
			b.Run("get_linearizable", func(b *testing.B) {
				run(b, func(req *fasthttp.Request) {
					req.Header.SetMethod("GET")
					req.SetRequestURI("/v1/users/" + id)
				}, 200)
			})
			var seq atomic.Int64
			b.Run("create", func(b *testing.B) {
				b.SetParallelism(8) // writers share group commits
				run(b, func(req *fasthttp.Request) {
					req.Header.SetMethod("POST")
					req.SetRequestURI("/v1/users")
					req.Header.SetContentType("application/json")
					req.SetBodyString(`{"name":"U","email":"u` + strconv.FormatInt(seq.Add(1), 10) + `@example.com"}`)
				}, 201)
			})
		})
	}
}
