package bench

import (
	"context"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/internal/nodetest"
)

// login signs in as email on addr and returns the access token.
func login(t *testing.T, addr, email, password string) string {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + "/v1/auth/login")
	req.Header.SetMethod("POST")
	req.SetBodyString(`{"email":"` + email + `","password":"` + password + `"}`)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("login: %v %d %s", err, resp.StatusCode(), resp.Body())
	}
	tk, err := accessToken(resp.Body())
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// With --sign-in each connection sends the token of a user of its own,
// created and logged in before timing.
func TestSignInGivesEachConnectionItsUser(t *testing.T) {
	addr := startNode(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections = []string{addr}, "users-create", 5
	cfg.Duration, cfg.Warmup, cfg.Requests = 30*time.Second, 0, 100
	cfg.Token, cfg.SignIn = login(t, addr, "admin@troupe.local", nodetest.AdminPassword), true
	r, err := NewRunner(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.ByStatus["201"] < 100 {
		t.Fatalf("%+v", res)
	}
	seen := map[string]bool{}
	for i, w := range r.workers {
		if w.token == "" || w.token == cfg.Token || seen[w.token] {
			t.Fatalf("connection %d has no token of its own", i)
		}
		seen[w.token] = true
		// The token stands for the connection's own user, an admin.
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + addr + "/v1/auth/me")
		req.Header.Set("Authorization", "Bearer "+w.token)
		if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("me: %v %d %s", err, resp.StatusCode(), resp.Body())
		}
		var me struct{ Email, Role string }
		if err := json.Unmarshal(resp.Body(), &me); err != nil {
			t.Fatal(err)
		}
		if me.Email != r.signInEmail(i) || me.Role != "admin" {
			t.Fatalf("connection %d signed in as %+v", i, me)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}

func TestSignInValidation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SignIn = true
	if cfg.Validate() == nil {
		t.Fatal("--sign-in without a token accepted")
	}
	cfg.Token, cfg.Scenario = "t", "docs-ws"
	if cfg.Validate() == nil {
		t.Fatal("--sign-in accepted for a WebSocket scenario")
	}
	cfg.Scenario = "users-get"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// docs-create creates documents holding --doc-bytes of text each.
func TestDocsCreateAgainstNode(t *testing.T) {
	addr := startNode(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections, cfg.DocBytes = []string{addr}, "docs-create", 3, 300
	cfg.Duration, cfg.Warmup, cfg.Requests = 30*time.Second, 0, 60
	r, err := NewRunner(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.ByStatus["201"] < 60 {
		t.Fatalf("%+v", res)
	}
	// Every document the run's owner holds has a text of 300 bytes.
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + "/v1/docs?limit=5")
	req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("list: %v %d %s", err, resp.StatusCode(), resp.Body())
	}
	var page struct{ Items []struct{ ID string } }
	if err := json.Unmarshal(resp.Body(), &page); err != nil || len(page.Items) != 5 {
		t.Fatalf("%v %s", err, resp.Body())
	}
	req.SetRequestURI("http://" + addr + "/v1/docs/" + page.Items[0].ID)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("get: %v %d %s", err, resp.StatusCode(), resp.Body())
	}
	var doc struct{ Content string }
	if err := json.Unmarshal(resp.Body(), &doc); err != nil || len(doc.Content) != 300 {
		t.Fatalf("%v: %d bytes of text", err, len(doc.Content))
	}
	cfg.DocBytes = MaxDocBytes + 1
	if cfg.Validate() == nil {
		t.Fatal("doc-bytes past the maximum accepted")
	}
}

func TestAppendDocText(t *testing.T) {
	a, b := appendDocText(nil, 1, 1024), appendDocText(nil, 2, 1024)
	if len(a) != 1024 || string(a) == string(b) || string(a) != string(appendDocText(nil, 1, 1024)) {
		t.Fatalf("texts %q / %q", a[:32], b[:32])
	}
	for _, c := range a {
		if c != ' ' && (c < 'a' || c > 'z') {
			t.Fatalf("byte %q in a text", c)
		}
	}
}
