package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// TestConnectionLimit: the connection over --max-connections is answered
// 503 with the limit and closed; a closed connection gives its place back.
func TestConnectionLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxConnections = 2 })
	http.DefaultClient.CloseIdleConnections()
	waitFor(t, "the test's own connections to close", func() bool { return ts.srv.conns.open.Load() == 0 })
	addr := strings.TrimPrefix(ts.base, "http://")
	get := func() (net.Conn, string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return c, err.Error()
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return c, err.Error()
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return c, resp.Status + " " + string(b)
	}
	a, ra := get()
	b, rb := get()
	if !strings.HasPrefix(ra, "200") || !strings.HasPrefix(rb, "200") {
		t.Fatalf("within the limit: %s / %s", ra, rb)
	}
	c, rc := get()
	c.Close()
	if !strings.HasPrefix(rc, "503") || !strings.Contains(rc, `"code":"unavailable"`) || !strings.Contains(rc, `"limit":2`) {
		t.Fatalf("over the limit: %s", rc)
	}
	a.Close()
	defer b.Close()
	waitFor(t, "a place to be given back", func() bool { return ts.srv.conns.open.Load() < 2 })
	d, rd := get()
	d.Close()
	if !strings.HasPrefix(rd, "200") {
		t.Fatalf("after one closed: %s", rd)
	}
	if ts.srv.conns.refused.Get() != 1 {
		t.Fatalf("refusals counted: %d", ts.srv.conns.refused.Get())
	}
}

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, 10*time.Second, what, cond, func() string { return "" })
}

// waitForWithin polls cond until it holds, for at most d; state says
// what was seen instead.
func waitForWithin(t *testing.T, d time.Duration, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s %s", what, state())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// usage is what a process holds.
type usage struct {
	goroutines, fds int
	heap            uint64
}

func measure(t *testing.T) usage {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return usage{goroutines: runtime.NumGoroutine(), fds: len(fds), heap: m.HeapAlloc}
}

// TestThousandStreamsLeaveNothing: opening and closing 1000 streams (half
// SSE, half WebSocket, all open at once) gives goroutines, file
// descriptors and heap back.
func TestThousandStreamsLeaveNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1000 streams")
	}
	ts := startServer(t, secure, func(c *Config) {
		c.MaxStreamsPerUser = 1000
		c.StreamKeepAlive = 100 * time.Millisecond // closed SSE clients are noticed at the next write
	})
	ts.register("Ada", "ada@example.com", "correct horse")
	tk := ts.login("ada@example.com", "correct horse")
	r := ts.do("POST", "/v1/docs", `{"title":"Busy"}`, bearer(tk.AccessToken), true)
	var d docResp
	r.json(t, &d)
	path := "/v1/docs/" + d.ID
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	docs := ts.node.Docs()

	type closer func()
	open := func(i int) (closer, error) {
		if i%2 == 0 {
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.base+path+"/events", nil)
			req.Header.Set("Authorization", "Bearer "+tk.AccessToken)
			resp, err := client.Do(req)
			if err != nil {
				cancel()
				return nil, err
			}
			return func() { cancel(); resp.Body.Close() }, nil
		}
		h := http.Header{"Authorization": {"Bearer " + tk.AccessToken}}
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.base, "http")+path+"/ws", h)
		if err != nil {
			return nil, err
		}
		return func() { c.Close() }, nil
	}
	cycle := func(n int) {
		closers := make([]closer, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		sem := make(chan struct{}, 32)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c, err := open(i)
				if err != nil {
					errs <- err
					return
				}
				closers[i] = c
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		waitForWithin(t, time.Minute, "every stream to be subscribed", func() bool {
			return docs.Subscribers() == int64(n) && ts.srv.streams.Len() == n
		}, func() string {
			return fmt.Sprintf("subscribers %d, streams %d", docs.Subscribers(), ts.srv.streams.Len())
		})
		for _, c := range closers {
			c()
		}
		waitForWithin(t, time.Minute, "every stream to end", func() bool {
			return docs.Subscribers() == 0 && ts.srv.streams.Len() == 0
		}, func() string {
			return fmt.Sprintf("subscribers %d, streams %d", docs.Subscribers(), ts.srv.streams.Len())
		})
	}
	cycle(20) // warm up: pools, buffers, lazily started goroutines
	client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	base := measure(t)
	cycle(1000)
	client.CloseIdleConnections()
	const slackGoroutines, slackFDs, slackHeap = 10, 10, 4 << 20
	deadline := time.Now().Add(30 * time.Second) // fasthttp's idle workers stop after 10 s
	for {
		now := measure(t)
		if now.goroutines <= base.goroutines+slackGoroutines && now.fds <= base.fds+slackFDs && now.heap <= base.heap+slackHeap {
			t.Logf("baseline %+v, after 1000 streams %+v", base, now)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back to the baseline: %+v, baseline %+v", now, base)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
