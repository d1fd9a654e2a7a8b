package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func TestSpecLoadsAndValidates(t *testing.T) {
	if len(Spec()) == 0 {
		t.Fatal("Spec() is empty")
	}
	doc, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	want := map[string][]string{
		"/v1/users":       {"GET", "POST"},
		"/v1/users/count": {"GET"},
		"/v1/users/batch": {"POST"},
		"/v1/users/{id}":  {"DELETE", "GET", "PATCH"},
		"/v1/cluster":     {"GET"},
		"/healthz":        {"GET"},
		"/readyz":         {"GET"},
		"/metrics":        {"GET"},
	}
	for path, methods := range want {
		item := doc.Paths.Value(path)
		if item == nil {
			t.Errorf("missing path %s", path)
			continue
		}
		for _, m := range methods {
			op := item.GetOperation(m)
			if op == nil {
				t.Errorf("missing %s %s", m, path)
				continue
			}
			if strings.HasPrefix(path, "/v1/") {
				for _, code := range []int{400, 401, 403, 429, 500, 503} {
					if op.Responses.Status(code) == nil {
						t.Errorf("%s %s does not document %d", m, path, code)
					}
				}
			}
			if op.Responses.Default() != nil {
				t.Errorf("%s %s has a default response: every status must be listed", m, path)
			}
		}
	}
	// Request bodies reject unknown fields; no schema ever exposes a hash.
	for path, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			if op.RequestBody != nil {
				for _, mt := range op.RequestBody.Value.Content {
					checkClosed(t, m+" "+path+" request", mt.Schema.Value, map[*openapi3.Schema]bool{})
				}
			}
			for code, r := range op.Responses.Map() {
				for _, mt := range r.Value.Content {
					checkNoSecret(t, m+" "+path+" "+code, mt.Schema.Value, map[*openapi3.Schema]bool{})
				}
			}
		}
	}
}

func checkClosed(t *testing.T, where string, s *openapi3.Schema, seen map[*openapi3.Schema]bool) {
	t.Helper()
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	if s.Type.Is("object") && (s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has) {
		t.Errorf("%s: object schema allows unknown fields", where)
	}
	for name, p := range s.Properties {
		checkClosed(t, where+"."+name, p.Value, seen)
	}
	if s.Items != nil {
		checkClosed(t, where+"[]", s.Items.Value, seen)
	}
}

func checkNoSecret(t *testing.T, where string, s *openapi3.Schema, seen map[*openapi3.Schema]bool) {
	t.Helper()
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	for name, p := range s.Properties {
		if strings.Contains(name, "password") {
			t.Errorf("%s: response schema has property %q", where, name)
		}
		checkNoSecret(t, where+"."+name, p.Value, seen)
	}
	if s.Items != nil {
		checkNoSecret(t, where+"[]", s.Items.Value, seen)
	}
	for _, l := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
		for _, r := range l {
			checkNoSecret(t, where, r.Value, seen)
		}
	}
}

const userJSON = `{"id":"u1","name":"Ada","email":"ada@example.com","role":"user","version":3,` +
	`"created_at":"2025-01-02T03:04:05.678Z","updated_at":"2025-01-02T03:04:06.000Z"}`

func jsonHeader(kv ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

type exchange struct {
	name         string
	method, path string
	query        string
	reqHeader    http.Header
	reqBody      string
	status       int
	respHeader   http.Header
	respBody     string
	responseOnly bool
}

func (e exchange) validate(v *Validator) error {
	f := v.ValidateResponse
	if e.responseOnly {
		f = v.ValidateResponseOnly
	}
	return f(e.method, e.path, e.query, e.reqHeader, []byte(e.reqBody), e.status, e.respHeader, []byte(e.respBody))
}

func TestValidatorAccepts(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	bearer := http.Header{"Authorization": {"Bearer x"}}
	cases := []exchange{
		{name: "get user", method: "GET", path: "/v1/users/u1", query: "consistency=stale&min_index=7",
			reqHeader: bearer, status: 200, respHeader: jsonHeader("ETag", `"3"`, "X-Troupe-Leader", "n1"), respBody: userJSON},
		{name: "get user json charset", method: "GET", path: "/v1/users/u1?consistency=linearizable",
			status: 200, respHeader: http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Etag": {`"3"`}}, respBody: userJSON},
		{name: "not found", method: "GET", path: "/v1/users/nope", status: 404, respHeader: jsonHeader(),
			respBody: `{"error":{"code":"not_found","message":"no user nope"}}`},
		{name: "create", method: "POST", path: "/v1/users", reqHeader: jsonHeader("Idempotency-Key", "k1"),
			reqBody: `{"name":"Ada","email":"ada@example.com","password":"correct horse","role":"user"}`,
			status:  201, respHeader: jsonHeader("Location", "/v1/users/u1", "X-Troupe-Index", "42"), respBody: userJSON},
		{name: "create conflict with details", method: "POST", path: "/v1/users",
			reqBody: `{"name":"Ada","email":"ada@example.com"}`, status: 409, respHeader: jsonHeader("X-Troupe-Index", "43"),
			respBody: `{"error":{"code":"conflict","message":"email taken","details":{"field":"email"}}}`},
		{name: "bad request without content-type on request", method: "POST", path: "/v1/users",
			reqBody: `{"name":"Ada","email":"ada@example.com"}`, status: 400, respHeader: jsonHeader(),
			respBody: `{"error":{"code":"bad_request","message":"bad"}}`},
		{name: "unknown field, response only", method: "POST", path: "/v1/users", reqHeader: jsonHeader(),
			reqBody: `{"name":"Ada","email":"a@b.c","password_hash":"x"}`, responseOnly: true,
			status: 400, respHeader: jsonHeader(), respBody: `{"error":{"code":"bad_request","message":"unknown field password_hash"}}`},
		{name: "outcome unknown", method: "POST", path: "/v1/users", reqBody: `{"name":"Ada","email":"a@b.c"}`,
			status: 503, respHeader: jsonHeader(), respBody: `{"error":{"code":"unavailable","message":"outcome unknown","details":{"outcome":"unknown"}}}`},
		{name: "rate limited", method: "GET", path: "/v1/users/count", status: 429,
			respHeader: jsonHeader("Retry-After", "1", "RateLimit-Policy", `"default";q=100;w=1`, "RateLimit", `"default";r=0;t=1`),
			respBody:   `{"error":{"code":"rate_limited","message":"slow down"}}`},
		{name: "list", method: "GET", path: "/v1/users", query: "limit=2&after=abc&q=ad", status: 200, respHeader: jsonHeader("X-Troupe-Index", "7"),
			respBody: `{"items":[` + userJSON + `],"next":"c2"}`},
		{name: "list last page", method: "GET", path: "/v1/users", status: 200, respHeader: jsonHeader("X-Troupe-Index", "7"),
			respBody: `{"items":[],"next":null}`},
		{name: "count", method: "GET", path: "/v1/users/count", status: 200, respHeader: jsonHeader("X-Troupe-Index", "7"), respBody: `{"count":1}`},
		{name: "batch", method: "POST", path: "/v1/users/batch", reqHeader: jsonHeader(),
			reqBody: `{"users":[{"name":"Ada","email":"ada@example.com","password_hash":"$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"},{"name":"","email":"bad"}]}`,
			status:  200, respHeader: jsonHeader("X-Troupe-Index", "44"),
			respBody: `{"results":[{"status":201,"user":` + userJSON + `},{"status":400,"error":{"code":"bad_request","message":"name must not be empty","details":{"field":"users[1].name"}}}]}`},
		{name: "patch", method: "PATCH", path: "/v1/users/u1", reqHeader: jsonHeader("If-Match", `"3"`),
			reqBody: `{"name":"Ada L","password":"new password","current_password":"correct horse"}`,
			status:  200, respHeader: jsonHeader("ETag", `"4"`, "X-Troupe-Index", "45"), respBody: strings.Replace(userJSON, `"version":3`, `"version":4`, 1)},
		{name: "patch precondition", method: "PATCH", path: "/v1/users/u1", reqHeader: jsonHeader("If-Match", `"2"`),
			reqBody: `{"role":"admin"}`, status: 412, respHeader: jsonHeader(),
			respBody: `{"error":{"code":"precondition_failed","message":"version is 3"}}`},
		{name: "delete", method: "DELETE", path: "/v1/users/u1", status: 204, respHeader: http.Header{"X-Troupe-Index": {"46"}}},
		{name: "cluster", method: "GET", path: "/v1/cluster", status: 200, respHeader: jsonHeader("X-Troupe-Index", "7"),
			respBody: `{"node_id":"n1","leader":{"id":"n1","http_addr":"127.0.0.1:8080","raft_addr":"127.0.0.1:7080"},"term":2,"commit_index":10,"applied_index":10,` +
				`"members":[{"id":"n1","http_addr":"127.0.0.1:8080","raft_addr":"127.0.0.1:7080","voter":true,"state":"leader"}],"state_hash":"abc"}`},
		{name: "cluster no leader", method: "GET", path: "/v1/cluster", status: 200, respHeader: jsonHeader("X-Troupe-Index", "7"),
			respBody: `{"node_id":"n2","leader":null,"term":0,"commit_index":0,"applied_index":0,"members":[]}`},
		{name: "watch gone", method: "GET", path: "/v1/watch", query: "kinds=users,docs&from=3", status: 410, respHeader: jsonHeader(),
			respBody: `{"error":{"code":"gone","message":"no longer kept","details":{"oldest":9}}}`},
		{name: "healthz", method: "GET", path: "/healthz", status: 200, respHeader: jsonHeader(), respBody: `{"status":"ok"}`},
		{name: "ready", method: "GET", path: "/readyz", status: 200, respHeader: jsonHeader(), respBody: `{"status":"ready"}`},
		{name: "not ready", method: "GET", path: "/readyz", status: 503, respHeader: jsonHeader(),
			respBody: `{"error":{"code":"unavailable","message":"no leader known"}}`},
		{name: "metrics", method: "GET", path: "/metrics", status: 200,
			respHeader: http.Header{"Content-Type": {"text/plain; version=0.0.4; charset=utf-8"}}, respBody: "troupe_up 1\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if err := c.validate(v); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidatorRejects(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	getUser := func(status int, h http.Header, body string) exchange {
		return exchange{method: "GET", path: "/v1/users/u1", status: status, respHeader: h, respBody: body}
	}
	withETag := jsonHeader("ETag", `"3"`)
	cases := []struct {
		exchange
		wantErr string
	}{
		{getUser(200, withETag, strings.Replace(userJSON, `}`, `,"password_hash":"$argon2id$x"}`, 1)), "password_hash"},
		{getUser(404, jsonHeader(), `{"error":{"code":"no_such_thing","message":"x"}}`), "/error/code"},
		{getUser(404, jsonHeader(), `{"error":{"code":"conflict","message":"x"}}`), "/error/code"},
		{getUser(404, jsonHeader(), `{"error":{"code":"not_found"}}`), "message"},
		{getUser(404, jsonHeader(), `{"error":{"code":"not_found","message":"x"},"extra":1}`), "extra"},
		{getUser(418, jsonHeader(), `{"error":{"code":"internal","message":"teapot"}}`), "status"},
		{getUser(304, http.Header{}, ``), "status"},
		{getUser(200, jsonHeader(), userJSON), "ETag"},
		{getUser(200, withETag, ``), "decode"},
		{getUser(200, http.Header{"Etag": {`"3"`}, "Content-Type": {"text/html"}}, userJSON), "Content-Type"},
		{getUser(200, withETag, strings.Replace(userJSON, `"role":"user"`, `"role":"root"`, 1)), "role"},
		{getUser(200, withETag, strings.Replace(userJSON, `"version":3`, `"version":0`, 1)), "version"},
		{getUser(200, withETag, strings.Replace(userJSON, `05.678Z`, `05Z`, 1)), "created_at"},
		{exchange: exchange{method: "GET", path: "/v1/users", status: 200, respHeader: jsonHeader("X-Troupe-Index", "7"), respBody: `{"next":null}`}, wantErr: "items"},
		{exchange: exchange{method: "GET", path: "/v1/users", status: 200, respHeader: jsonHeader("X-Troupe-Index", "7"), respBody: `{"items":[]}`}, wantErr: "next"},
		{exchange: exchange{method: "GET", path: "/v1/users", query: "limit=5000", status: 200, respHeader: jsonHeader("X-Troupe-Index", "7"),
			respBody: `{"items":[],"next":null}`}, wantErr: "limit"},
		{exchange: exchange{method: "GET", path: "/v1/users/count", query: "consistency=eventual", status: 200, respHeader: jsonHeader("X-Troupe-Index", "7"),
			respBody: `{"count":1}`}, wantErr: "consistency"},
		{exchange: exchange{method: "POST", path: "/v1/users", reqBody: `{"name":"A","email":"a@b.c","admin":true}`,
			status: 400, respHeader: jsonHeader(), respBody: `{"error":{"code":"bad_request","message":"x"}}`}, wantErr: "admin"},
		{exchange: exchange{method: "POST", path: "/v1/users", reqBody: `{"name":"A","email":"a@b.c"}`,
			status: 201, respHeader: jsonHeader("Location", "/v1/users/u1"), respBody: userJSON}, wantErr: "X-Troupe-Index"},
		{exchange: exchange{method: "DELETE", path: "/v1/users/u1", status: 204,
			respHeader: jsonHeader("X-Troupe-Index", "9"), respBody: `{}`}, wantErr: "body"},
		{exchange: exchange{method: "POST", path: "/v1/users/batch", reqBody: `{"users":[{"name":"A","email":"a@b.c"}]}`,
			status: 200, respHeader: jsonHeader("X-Troupe-Index", "9"), respBody: `{"results":[{"status":500,"error":{"code":"internal","message":"x"}}]}`}, wantErr: "results"},
		{exchange: exchange{method: "GET", path: "/v1/cluster", status: 200, respHeader: jsonHeader("X-Troupe-Index", "7"),
			respBody: `{"node_id":"n1","leader":null,"term":1,"commit_index":1,"members":[]}`}, wantErr: "applied_index"},
		{exchange: exchange{method: "GET", path: "/v1/nothing", status: 404, respHeader: jsonHeader(),
			respBody: `{"error":{"code":"not_found","message":"x"}}`}, wantErr: "no such operation"},
		{exchange: exchange{method: "PUT", path: "/v1/users/u1", status: 200, respHeader: withETag, respBody: userJSON}, wantErr: "no such operation"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path+" "+c.wantErr, func(t *testing.T) {
			t.Parallel()
			err := c.validate(v)
			if err == nil {
				t.Fatalf("accepted %d %s", c.status, c.respBody)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error does not mention %q: %v", c.wantErr, err)
			}
		})
	}
}
