package api

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestCountRequests runs TROUPE_COUNT_N requests of one kind
// (TROUPE_COUNT_CASE: not_found, get_stale, get_linearizable,
// ratelimit_check: one check, ratelimit_multi: a multi-check of 10
// keys, as the bench's rate-limit scenarios send them) through the
// whole HTTP path of a one-node cluster in process, one after another, and
// nothing else. It is a harness for counting instructions under
// callgrind, not a check: without TROUPE_COUNT_N it skips. The
// instructions per request are the difference between two runs of
// different N, divided by the difference in N (the node's start-up
// cancels out). With TROUPE_COUNT_AUTH=1 authentication is on and the
// reads are a signed-in user's of its own record, with its access token.
// See docs/BENCHMARKS-notes.md.
func TestCountRequests(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("TROUPE_COUNT_N"))
	if err != nil {
		t.Skip("a harness for instruction counts, not a check: set TROUPE_COUNT_N to run it")
	}
	opts, authLine := countOpts(t), ""
	if os.Getenv("TROUPE_COUNT_AUTH") == "1" {
		opts = append(opts, secure)
	}
	ts := startServer(t, opts...)
	h := ts.srv.http.Handler
	var id string
	if os.Getenv("TROUPE_COUNT_AUTH") == "1" {
		id = ts.register("Bench", "bench@example.com", "correct horse")
		authLine = "Authorization: Bearer " + ts.login("bench@example.com", "correct horse").AccessToken + "\r\n"
	} else {
		id, _ = ts.create("Bench", "bench@example.com")["id"].(string)
	}
	method, uri, status, body := "GET", "/no/such/route", 404, ""
	switch os.Getenv("TROUPE_COUNT_CASE") {
	case "get_stale":
		uri, status = "/v1/users/"+id+"?consistency=stale", 200
	case "get_linearizable":
		uri, status = "/v1/users/"+id, 200
	case "ratelimit_check", "ratelimit_multi":
		var admin map[string]string // the policy is an admin's to put
		if authLine != "" {
			admin = bearer(ts.login("admin@troupe.local", testAdminPassword).AccessToken)
		}
		ts.expect(ts.do("PUT", "/v1/ratelimit/policies/bench", `{"limit":1000000000,"window_ms":1000}`, admin, true), 200, "")
		kp := "k" // a signed-in user checks its own keys only
		if authLine != "" {
			kp = "user:" + id + ":k"
		}
		method, uri, status, body = "POST", "/v1/ratelimit/check", 200, `{"policy":"bench","key":"`+kp+`4711"}`
		if os.Getenv("TROUPE_COUNT_CASE") == "ratelimit_multi" {
			var b strings.Builder
			b.WriteString(`{"checks":[`)
			for i := range 10 {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"policy":"bench","key":"%s%d"}`, kp, 4711+i)
			}
			b.WriteString("]}")
			body = b.String()
		}
	}
	// The request as a client sends it, parsed from its bytes each time
	// and its response written out, as the server does (less the socket
	// calls) — or, with TROUPE_COUNT_WIRE=0, handed over parsed: the
	// handling alone.
	head := method + " " + uri + " HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: bench/1.0\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip\r\n" + authLine
	if body != "" {
		head += "Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	raw := []byte(head + "\r\n" + body)
	wire := os.Getenv("TROUPE_COUNT_WIRE") != "0"
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	// One thread: callgrind counts from countLoop's entry on the thread
	// that entered it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := countLoop(h, raw, wire, addr, n, status); err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
}

// countLoop is the measured part: callgrind's --toggle-collect names it.
//
//go:noinline
func countLoop(h fasthttp.RequestHandler, raw []byte, wire bool, addr net.Addr, n, status int) error {
	var ctx fasthttp.RequestCtx
	var parsed fasthttp.Request
	if err := parsed.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
		return err
	}
	ctx.Init(&parsed, addr, nil)
	src := bytes.NewReader(raw)
	br := bufio.NewReader(src)
	bw := bufio.NewWriter(io.Discard)
	for range n {
		if wire {
			src.Reset(raw)
			br.Reset(src)
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.ResetUserValues()
			if err := ctx.Request.Read(br); err != nil {
				return err
			}
		} else {
			ctx.Init(&parsed, addr, nil)
		}
		h(&ctx)
		if ctx.Response.StatusCode() != status {
			return fmt.Errorf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if wire {
			if err := ctx.Response.Write(bw); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// countOpts is the tracing mode TROUPE_COUNT_TRACE names: "off" (the
// default) or one of benchTraceModes'.
func countOpts(tb testing.TB) []func(*Config) {
	for _, m := range benchTraceModes() {
		if m.name == os.Getenv("TROUPE_COUNT_TRACE") {
			return m.opts(tb)
		}
	}
	return nil
}
