package main

import (
	"bytes"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// startFailing serves creates that fail one time in fail (500), else 201.
func startFailing(t *testing.T, fail int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if n.Add(1)%fail == 0 {
			ctx.SetStatusCode(fasthttp.StatusInternalServerError)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusCreated)
		ctx.SetBodyString(`{"id":"0000000000000000"}`)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

// A run with more than 1% of its requests failed exits 2 (its figures are
// not the node's), unless --allow-errors; one with fewer exits 0.
func TestBenchExitsOnErrors(t *testing.T) {
	for _, tc := range []struct {
		fail  int64
		extra []string
		want  int
	}{
		{fail: 10, want: 2},
		{fail: 10, extra: []string{"--allow-errors"}, want: 0},
		{fail: 1000, want: 0},
	} {
		args := append([]string{"--addr", startFailing(t, tc.fail), "--scenario", "users-create", "--connections", "2",
			"--requests", "3000", "--duration", "1m", "--warmup", "0s"}, tc.extra...)
		var stdout, stderr bytes.Buffer
		if code := benchCmd(args, &stdout, &stderr); code != tc.want {
			t.Fatalf("1 in %d failing, %v: exit %d, want %d\n%s%s", tc.fail, tc.extra, code, tc.want, stdout.String(), stderr.String())
		}
		if tc.want == 2 && !strings.Contains(stderr.String(), "--allow-errors") {
			t.Fatalf("no hint: %s", stderr.String())
		}
	}
}

// The rate-limit scenarios' flags are checked before anything runs.
func TestBenchRateLimitFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "ratelimit-grpc"}, "--grpc-addr"},
		{[]string{"--scenario", "ratelimit-batch", "--checks", "0"}, "1..100"},
		{[]string{"--scenario", "ratelimit-batch", "--checks", "101"}, "1..100"},
	} {
		var stdout, stderr bytes.Buffer
		if code := benchCmd(append([]string{"--addr", "http://127.0.0.1:1", "--duration", "1s"}, tc.args...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Fatalf("%v: exit %d, %s", tc.args, code, stderr.String())
		}
	}
}
