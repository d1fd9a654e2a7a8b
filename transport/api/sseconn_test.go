package api

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestWatchSSEResponse: a watch stream, written straight to its
// connection, is a well-formed HTTP response: the event stream's
// headers and the ones set before (X-Troupe-Index), a chunked body that
// an HTTP client reads event by event, and a proper end (the last chunk)
// when the stream ends.
func TestWatchSSEResponse(t *testing.T) {
	ts := startServer(t, secure, noBackstop)
	ts.register("Ada", "ada@example.com", "correct horse")
	ada := ts.login("ada@example.com", "correct horse")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.base+"/v1/watch?from=1", nil)
	req.Header.Set("Authorization", "Bearer "+ada.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 200 || h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-cache" ||
		h.Get("X-Accel-Buffering") != "no" || h.Get("X-Troupe-Index") != "1" || resp.TransferEncoding[0] != "chunked" || !resp.Close {
		t.Fatalf("%d %v %v close=%v", resp.StatusCode, h, resp.TransferEncoding, resp.Close)
	}
	s := &sseStream{sc: bufio.NewScanner(resp.Body), cancel: cancel}
	if ev := nextChange(t, s); ev.Data.Kind != "user" || ev.Data.Op != "created" {
		t.Fatalf("first change: %v", ev)
	}
	ts.expect(ts.do("POST", "/v1/auth/logout", `{"all":true}`, bearer(ada.AccessToken), true), 204, "")
	var rest strings.Builder
	for {
		ev := readSSE(t, s.sc)
		if ev.name == "closed" {
			break
		}
	}
	// The body ends with its last chunk: a clean end of file.
	if _, err := io.Copy(&rest, resp.Body); err != nil {
		t.Fatalf("after closed: %v (read %q)", err, rest.String())
	}
}
