package transport

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHeadersOverTheLimit: a request whose headers pass the limit gets 431
// in the API's error shape (today's clients send far less), whatever its
// size; one just under the limit is served.
func TestHeadersOverTheLimit(t *testing.T) {
	ts := startServer(t)
	for _, size := range []int{DefaultMaxHeaderBytes + 1, 64 << 10, 200 << 10} {
		r := ts.rawRequest(t, "GET /v1/users/count HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", size)+"\r\n\r\n")
		if r.status != http.StatusRequestHeaderFieldsTooLarge || r.errorCode(t) != "request_header_fields_too_large" {
			t.Fatalf("%d bytes of header: %d %s", size, r.status, r.body)
		}
		if err := ts.validator.ValidateResponseOnly("GET", "/v1/users/count", "", http.Header{}, nil, r.status, r.header, r.body); err != nil {
			t.Fatalf("431 does not match openapi.yaml: %v", err)
		}
	}
	ts.expect(ts.do("GET", "/v1/users/count", "", map[string]string{"X-Big": strings.Repeat("a", DefaultMaxHeaderBytes-512)}, true), 200, "")
}

// rawRequest writes req on a new connection while reading the answer
// (the server answers before it has read all of a request it refuses).
func (ts *testServer) rawRequest(t *testing.T, req string) *response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = io.WriteString(conn, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(fmt.Errorf("reading the answer: %w", err))
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}
}
