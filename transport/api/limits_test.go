package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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

// TestLabelsRefuseHiddenCharacters: names, emails, titles and policy
// names with invalid UTF-8, control characters or bidirectional
// formatting get 400 naming the field; document text may hold them.
func TestLabelsRefuseHiddenCharacters(t *testing.T) {
	ts := startServer(t)
	user := ts.create("Ada", "ada@example.com")
	id := user["id"].(string)
	r := ts.do("POST", "/v1/docs", `{"title":"Plan"}`, bearer(ts.login("admin@troupe.local", testAdminPassword).AccessToken), true)
	ts.expect(r, 201, "")
	var doc map[string]any
	r.json(t, &doc)
	docPath := "/v1/docs/" + doc["id"].(string)
	admin := bearer(ts.login("admin@troupe.local", testAdminPassword).AccessToken)

	// str is a JSON string holding s byte for byte (json.Marshal would
	// replace invalid UTF-8).
	str := func(s string) string {
		if !utf8.ValidString(s) {
			return `"` + s + `"`
		}
		b, _ := json.Marshal(s)
		return string(b)
	}
	for _, bad := range []string{"Ad\xffa", "Ad\x01a", "Ad\ta", "Ad\u0085a", "Ad\u202ea", "Ad\u202aa", "Ad\u2066a", "Ad\u2069a"} {
		email := strings.Replace("ad@example.com", "d", bad[2:len(bad)-1], 1)
		for _, c := range []struct{ method, path, body, field string }{
			{"POST", "/v1/users", `{"name":` + str(bad) + `,"email":"x@example.com"}`, "name"},
			{"POST", "/v1/users", `{"name":"X","email":` + str(email) + `}`, "email"},
			{"POST", "/v1/auth/register", `{"name":` + str(bad) + `,"email":"x@example.com","password":"correct horse"}`, "name"},
			{"PATCH", "/v1/users/" + id, `{"name":` + str(bad) + `}`, "name"},
			{"PATCH", "/v1/users/" + id, `{"email":` + str(email) + `}`, "email"},
			{"POST", "/v1/users/batch", `{"users":[{"name":` + str(bad) + `,"email":"x@example.com"}]}`, "users[0].name"},
			{"POST", "/v1/docs", `{"title":` + str(bad) + `}`, "title"},
			{"PATCH", docPath, `{"title":` + str(bad) + `}`, "title"},
			{"POST", "/v1/ratelimit/check", `{"policy":` + str(bad) + `,"key":"k"}`, "policy"},
		} {
			r := ts.do(c.method, c.path, c.body, admin, false)
			if c.path == "/v1/users/batch" && utf8.ValidString(bad) { // else the whole body is refused
				if r.status != 200 || !strings.Contains(string(r.body), `"field":"`+c.field+`"`) || !strings.Contains(string(r.body), `"status":400`) {
					t.Errorf("%s %s %q: %d %s", c.method, c.path, bad, r.status, r.body)
				}
				continue
			}
			if r.status != 400 || r.errorCode(t) != "bad_request" || !strings.Contains(string(r.body), `"field":"`+c.field+`"`) {
				t.Errorf("%s %s %q: %d %s", c.method, c.path, bad, r.status, r.body)
			}
		}
	}
	// A policy name is checked in the path too.
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/a%E2%80%AEb", `{"limit":1,"window_ms":1000}`, admin, false), 400, "bad_request")
	// Document text is not a label: bidi characters and controls stay.
	text := "abc\u202edef\tghi\u0085"
	r = ts.do("POST", "/v1/docs", `{"title":"Text","content":`+str(text)+`}`, admin, true)
	ts.expect(r, 201, "")
	if !strings.Contains(string(r.body), `def\tghi`) {
		t.Fatalf("content: %s", r.body)
	}
	// Surrounding white space is still trimmed, not refused.
	if u := ts.create("  Grace \n", "grace@example.com"); u["name"] != "Grace" {
		t.Fatalf("trimmed name: %v", u["name"])
	}
}

func TestInvalidUTF8Field(t *testing.T) {
	for body, want := range map[string]string{
		`{"name":"a` + "\xff" + `"}`:                                       "name",
		`{"users":[{"name":"ok","email":"x"},{"email":"` + "\xc3" + `"}]}`: "users[1].email",
		`{"a":{"b":[1,"x",{"c":"` + "\xff" + `"}]},"d":"ok"}`:              "a.b[2].c",
		`{"a":[[1],[2,"` + "\xfe" + `"]]}`:                                 "a[1][1]",
		`{"k` + "\xff" + `":1}`:                                            "k\ufffd",
		`"` + "\xff" + `"`:                                                 "",
		`{"name":"fine"}`:                                                  "",
		`{"name":` + "\xff":                                                "",
	} {
		if got := invalidUTF8Field([]byte(body)); got != want {
			t.Errorf("%q: %q, want %q", body, got, want)
		}
	}
	if e := decodeJSON([]byte("{\"name\":\"\xff\"}"), &struct{ Name string }{}); e == nil || e.Details["field"] != "name" {
		t.Fatalf("decodeJSON: %+v", e)
	}
}

// FuzzInvalidUTF8Field: any body, never a panic; a field is named only
// for a body that is not valid UTF-8.
func FuzzInvalidUTF8Field(f *testing.F) {
	for _, s := range []string{`{"a":"` + "\xff" + `"}`, `[{"b":["` + "\xc3" + `"]}]`, `{"a":1}`, `{`, `{"a":{"b":` + "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if field := invalidUTF8Field(body); field != "" && utf8.Valid(body) {
			t.Fatalf("%q: field %q for a valid body", body, field)
		}
	})
}

// TestNumbersOutOfRange: every number a client sends out of its range
// gets 400 with a message naming the range, whether or not it fits the
// field's type.
func TestNumbersOutOfRange(t *testing.T) {
	ts := startServer(t, withDefaultLimit(1000, time.Second))
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/api", `{"limit":5,"window_ms":1000}`, nil, true), 200, "")
	r := ts.do("POST", "/v1/docs", `{"title":"T","content":"abc"}`, bearer(ts.login("admin@troupe.local", testAdminPassword).AccessToken), true)
	ts.expect(r, 201, "")
	var doc map[string]any
	r.json(t, &doc)
	docPath := "/v1/docs/" + doc["id"].(string)
	admin := bearer(ts.login("admin@troupe.local", testAdminPassword).AccessToken)
	for _, c := range []struct {
		method, path, body string
		header             map[string]string
		field, want        string
	}{
		{"GET", "/v1/users?limit=0", "", nil, "limit", "from 1 to 1000"},
		{"GET", "/v1/users?limit=99999999999999999999", "", nil, "limit", "from 1 to 1000"},
		{"GET", "/v1/docs?limit=-1", "", admin, "limit", "from 1 to 1000"},
		{"GET", "/v1/users/count?min_index=-1", "", nil, "min_index", "from 0 to 18446744073709551615"},
		{"GET", "/v1/users/count?min_index=18446744073709551616", "", nil, "min_index", "from 0 to 18446744073709551615"},
		{"GET", docPath + "/ops?since=-1", "", admin, "since", "from 0 to the document's version"},
		{"GET", docPath + "/ops?since=7", "", admin, "since", "from 0 to the document's version, 0"},
		{"GET", docPath + "/events?last_event_id=x", "", admin, "Last-Event-ID", "from 0 to 18446744073709551615"},
		{"PUT", "/v1/ratelimit/policies/p", `{"limit":0,"window_ms":1000}`, nil, "limit", "from 1 to 1000000000"},
		{"PUT", "/v1/ratelimit/policies/p", `{"limit":-1,"window_ms":1000}`, nil, "limit", "from 1 to 1000000000"},
		{"PUT", "/v1/ratelimit/policies/p", `{"limit":1e30,"window_ms":1000}`, nil, "limit", "from 1 to 1000000000"},
		{"PUT", "/v1/ratelimit/policies/p", `{"limit":1,"window_ms":-5}`, nil, "window_ms", "from 1 to 86400000"},
		{"PUT", "/v1/ratelimit/policies/p", `{"limit":1,"window_ms":1e300}`, nil, "window_ms", "from 1 to 86400000"},
		{"PUT", "/v1/ratelimit/policies/p", `{"limit":1,"window_ms":1000,"burst":0}`, nil, "burst", "from 1 to 1000000000"},
		{"PUT", "/v1/ratelimit/policies/p", `{"limit":1,"window_ms":1000,"burst":4294967296}`, nil, "burst", "from 1 to 1000000000"},
		{"POST", "/v1/ratelimit/check", `{"policy":"api","key":"k","cost":0}`, nil, "cost", "from 1 to the policy's burst (5)"},
		{"POST", "/v1/ratelimit/check", `{"policy":"api","key":"k","cost":-1}`, nil, "cost", "from 1 to the policy's burst"},
		{"POST", docPath + "/ops", `{"client_id":"c","seq":-1,"base_version":0,"ops":[]}`, admin, "seq", "from 0 to 18446744073709551615"},
		{"POST", docPath + "/ops", `{"client_id":"c","seq":1,"base_version":-1,"ops":[]}`, admin, "base_version", "from 0 to the document's version"},
		{"POST", docPath + "/ops", `{"client_id":"c","seq":1,"base_version":0,"ops":[{"op":"insert","pos":-1,"text":"x"}]}`, admin, "ops[0].pos", "between 0 and 2147483647"},
		{"POST", docPath + "/ops", `{"client_id":"c","seq":1,"base_version":0,"ops":[{"op":"insert","pos":1e20,"text":"x"}]}`, admin, "pos", "from 0 to 2147483647"},
		{"POST", docPath + "/ops", `{"client_id":"c","seq":1,"base_version":0,"ops":[{"op":"delete","pos":0,"len":0}]}`, admin, "ops[0].len", "between 1 and 2147483647"},
		{"POST", docPath + "/ops", `{"client_id":"c","seq":1,"base_version":0,"ops":[{"op":"delete","pos":0,"len":1.5}]}`, admin, "len", "from 1 to 2147483647"},
	} {
		r := ts.do(c.method, c.path, c.body, c.header, false)
		var e struct {
			Error struct {
				Code    string            `json:"code"`
				Message string            `json:"message"`
				Details map[string]string `json:"details"`
			} `json:"error"`
		}
		_ = json.Unmarshal(r.body, &e)
		if r.status != 400 || e.Error.Code != "bad_request" || !strings.Contains(e.Error.Message, c.want) || !strings.Contains(e.Error.Details["field"], c.field) {
			t.Errorf("%s %s %s: %d %s; want 400 naming %q in field %s", c.method, c.path, c.body, r.status, r.body, c.want, c.field)
		}
	}
}

// TestUnusedConnectionClosedSilently: a connection that sends no request
// within the read timeout is closed without an answer; an answer would
// reach a pooling client as the response to its next request.
func TestUnusedConnectionClosedSilently(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.ReadTimeout = 200 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil || len(got) != 0 {
		t.Fatalf("an unused connection got %q (%v), want it closed without an answer", got, err)
	}
	// A request on a fresh connection is still answered.
	ts.expect(ts.do("GET", "/v1/users/count", "", nil, true), 200, "")
}
