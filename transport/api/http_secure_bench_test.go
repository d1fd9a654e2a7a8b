package api

import (
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// secureBenchUsers is how many users BenchmarkAuthSecure signs in: each
// parallel goroutine sends the token of its own, as each connection of
// the secure load test does.
const secureBenchUsers = 16

// benchSignIn creates n admins (so that every route, creates included,
// is open to them) and returns their ids and access tokens.
func benchSignIn(b *testing.B, ts *testServer, n int) (ids, tokens []string) {
	b.Helper()
	root := bearer(ts.login("admin@troupe.local", testAdminPassword).AccessToken)
	for i := range n {
		email := fmt.Sprintf("bench%d@example.com", i)
		r := ts.do("POST", "/v1/users", fmt.Sprintf(`{"name":"B","email":%q,"role":"admin","password":"correct horse"}`, email), root, false)
		if r.status != 201 {
			b.Fatalf("create %s: %d %s", email, r.status, r.body)
		}
		var u map[string]any
		r.json(b, &u)
		ids = append(ids, u["id"].(string))
		tokens = append(tokens, ts.login(email, "correct horse").AccessToken)
	}
	return ids, tokens
}

// BenchmarkAuthSecure runs authenticated requests through a one-node
// cluster with authentication on, in process and without sockets, each
// parallel goroutine signed in as its own user: token is the token check
// alone (verifyCaller: the JWT, the revoked set, the user's token state),
// get_linearizable and get_stale a user reading its own record over the
// whole HTTP path, create an admin creating users.
func BenchmarkAuthSecure(b *testing.B) {
	ts := startServer(b, secure)
	h := ts.srv.http.Handler
	ids, toks := benchSignIn(b, ts, secureBenchUsers)
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	// each hands every parallel goroutine a user of its own (round robin).
	each := func(b *testing.B, body func(pb *testing.PB, i int)) {
		var next atomic.Int64
		b.ReportAllocs()
		cpu0 := processCPU()
		defer reportCPU(b, cpu0)
		b.RunParallel(func(pb *testing.PB) {
			body(pb, int(next.Add(1)-1)%len(toks))
		})
	}
	b.Run("token", func(b *testing.B) {
		each(b, func(pb *testing.PB, i int) {
			for pb.Next() {
				c, e := ts.srv.verifyCaller(toks[i])
				if e != nil || !c.is(ids[i]) {
					b.Errorf("verify: %v", e)
					return
				}
			}
		})
	})
	get := func(query string) func(b *testing.B) {
		return func(b *testing.B) {
			each(b, func(pb *testing.PB, i int) {
				var req fasthttp.Request
				req.Header.SetMethod("GET")
				req.SetRequestURI("/v1/users/" + ids[i] + query)
				req.Header.Set("Authorization", "Bearer "+toks[i])
				var ctx fasthttp.RequestCtx
				for pb.Next() {
					ctx.Init(&req, addr, nil)
					h(&ctx)
					if ctx.Response.StatusCode() != 200 {
						b.Errorf("get: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
						return
					}
				}
			})
		}
	}
	b.Run("get_stale", get("?consistency=stale"))
	b.Run("get_linearizable", get(""))
	var seq atomic.Int64
	b.Run("create", func(b *testing.B) {
		b.SetParallelism(8) // writers share group commits
		each(b, func(pb *testing.PB, i int) {
			var req fasthttp.Request
			var ctx fasthttp.RequestCtx
			for pb.Next() {
				req.Reset()
				req.Header.SetMethod("POST")
				req.SetRequestURI("/v1/users")
				req.Header.SetContentType("application/json")
				req.Header.Set("Authorization", "Bearer "+toks[i])
				req.SetBodyString(`{"name":"U","email":"u` + strconv.FormatInt(seq.Add(1), 10) + `@example.com"}`)
				ctx.Init(&req, addr, nil)
				h(&ctx)
				if ctx.Response.StatusCode() != 201 {
					b.Errorf("create: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
					return
				}
			}
		})
	})
}
