package systemtest

// HTTP helpers and the shapes of API.md's bodies. Decoding is strict
// (unknown fields are errors), so a user body that carried a password or a
// hash, or an error body with extra members, fails the test.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// user is API.md's user object, exactly.
type user struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	Role      string `json:"role"`
	Version   int64  `json:"version"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

// errorBody is API.md's error envelope, exactly.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

type userPage struct {
	Items []json.RawMessage `json:"items"`
	Next  *string           `json:"next"`
}

type batchResults struct {
	Results []batchResult `json:"results"`
}

type batchResult struct {
	Status int              `json:"status"`
	User   *json.RawMessage `json:"user,omitempty"`
	Error  *errorDetail     `json:"error,omitempty"`
}

// response is a fully read HTTP response.
type response struct {
	Method, Path string
	Status       int
	Header       http.Header
	Body         []byte
}

func (r response) String() string {
	body := string(r.Body)
	if len(body) > 2048 {
		body = body[:2048] + "…(truncated)"
	}
	return fmt.Sprintf("%s %s → %d %s", r.Method, r.Path, r.Status, body)
}

// send performs one request; body is marshalled as JSON unless it is a
// []byte, which is sent as is. Safe for concurrent use.
func (n *node) send(ctx context.Context, method, path string, body any, header map[string]string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := n.Client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: reading the body: %w", method, path, err)
	}
	return response{Method: method, Path: path, Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// sendRaw sends one request on a new connection and reads the answer while
// the body is still being written, as curl does. A server may answer before
// it has read the whole body (413) and close the connection; net/http's
// client then often reports only the failed write ("broken pipe",
// "connection reset by peer") and loses the answer, so the size limit is
// checked with this.
func (n *node) sendRaw(t testing.TB, method, path string, body []byte) response {
	t.Helper()
	conn, err := net.Dial("tcp", n.cfg.HTTPAddr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	writeErr := make(chan error, 1)
	go func() {
		_, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
			method, path, n.cfg.HTTPAddr, len(body))
		if err == nil {
			_, err = conn.Write(body)
		}
		writeErr <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		conn.Close()
		t.Fatalf("%s %s (%d-byte body): no answer: %v (writing the request: %v)", method, path, len(body), err, <-writeErr)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return response{Method: method, Path: path, Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// do is send for the test goroutine: a transport error fails the test.
func (n *node) do(t testing.TB, method, path string, body any, header map[string]string) response {
	t.Helper()
	r, err := n.send(context.Background(), method, path, body, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// expectStatus fails the test unless r has the given status.
func expectStatus(t testing.TB, r response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("want %d, got %s", status, r)
	}
}

// decodeStrict decodes data into v, rejecting unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

var timestampRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$`)

// parseUser decodes and checks a user body: exactly the documented fields,
// all present and well formed.
func parseUser(data []byte) (user, error) {
	var u user
	if err := decodeStrict(data, &u); err != nil {
		return u, fmt.Errorf("not a user body (%v): %s", err, data)
	}
	var problems []string
	if u.ID == "" {
		problems = append(problems, "empty id")
	}
	if u.Name == "" {
		problems = append(problems, "empty name")
	}
	if u.Email == "" {
		problems = append(problems, "empty email")
	}
	if u.Role != "user" && u.Role != "admin" && u.Role != "service" {
		problems = append(problems, fmt.Sprintf("role %q", u.Role))
	}
	if u.Version < 1 {
		problems = append(problems, fmt.Sprintf("version %d < 1", u.Version))
	}
	if !timestampRE.MatchString(u.CreatedAt) {
		problems = append(problems, fmt.Sprintf("created_at %q is not RFC 3339 UTC with milliseconds", u.CreatedAt))
	}
	if !timestampRE.MatchString(u.UpdatedAt) {
		problems = append(problems, fmt.Sprintf("updated_at %q is not RFC 3339 UTC with milliseconds", u.UpdatedAt))
	}
	if len(problems) > 0 {
		return u, fmt.Errorf("bad user body (%s): %s", strings.Join(problems, "; "), data)
	}
	return u, nil
}

// expectUser checks r is a user body with the given status.
func expectUser(t testing.TB, r response, status int) user {
	t.Helper()
	expectStatus(t, r, status)
	u, err := parseUser(r.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	return u
}

// expectError checks r is an error envelope with the given status and code.
func expectError(t testing.TB, r response, status int, code string) errorDetail {
	t.Helper()
	if r.Status != status {
		t.Fatalf("want %d %s, got %s", status, code, r)
	}
	var e errorBody
	if err := decodeStrict(r.Body, &e); err != nil {
		t.Fatalf("%s: not an error envelope (%v)", r, err)
	}
	if e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("want error code %q with a message, got %s", code, r)
	}
	return e.Error
}

// writeIndex checks and returns the X-Troupe-Index header of a write.
func writeIndex(t testing.TB, r response) uint64 {
	t.Helper()
	h := r.Header.Get("X-Troupe-Index")
	idx, err := strconv.ParseUint(h, 10, 64)
	if err != nil || idx < 1 {
		t.Fatalf("%s %s: X-Troupe-Index %q is not a log index ≥ 1", r.Method, r.Path, h)
	}
	return idx
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return bytes.Equal(ca, cb)
}

// readAllLimited reads and closes a response body, keeping at most max bytes.
func readAllLimited(resp *http.Response, max int64) string {
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, max))
	_, _ = io.Copy(io.Discard, resp.Body)
	return string(data)
}

// userPath is the path of a user; ids are opaque, so they are escaped.
func userPath(id string) string {
	return "/v1/users/" + url.PathEscape(id)
}
