package api

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-db/troupe/cluster"
	"github.com/troupe-db/troupe/transport/auth"
)

func secure(c *Config) { c.Insecure = false }

type tokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

func (ts *testServer) login(email, password string) tokens {
	ts.t.Helper()
	r := ts.do("POST", "/v1/auth/login", fmt.Sprintf(`{"email":%q,"password":%q}`, email, password), nil, true)
	if r.status != 200 {
		ts.t.Fatalf("login %s: %d %s", email, r.status, r.body)
	}
	var tk tokens
	r.json(ts.t, &tk)
	if tk.TokenType != "Bearer" || tk.ExpiresIn != 900 || tk.AccessToken == "" || !strings.HasPrefix(tk.RefreshToken, "rt.") {
		ts.t.Fatalf("login answer: %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		ts.t.Fatal("tokens may be cached")
	}
	return tk
}

func (ts *testServer) register(name, email, password string) string {
	ts.t.Helper()
	r := ts.do("POST", "/v1/auth/register", fmt.Sprintf(`{"name":%q,"email":%q,"password":%q}`, name, email, password), nil, true)
	if r.status != 201 {
		ts.t.Fatalf("register %s: %d %s", email, r.status, r.body)
	}
	var u map[string]any
	r.json(ts.t, &u)
	if u["role"] != "user" {
		ts.t.Fatalf("registered with role %v", u["role"])
	}
	return u["id"].(string)
}

func (ts *testServer) expect(r *response, status int, code string) {
	ts.t.Helper()
	if r.status != status || (code != "" && r.errorCode(ts.t) != code) {
		ts.t.Fatalf("got %d %s, want %d %s", r.status, r.body, status, code)
	}
}

func TestAuthFlow(t *testing.T) {
	ts := startServer(t, secure)
	// Without a token: 401 with a challenge.
	r := ts.do("GET", "/v1/auth/me", "", nil, true)
	ts.expect(r, 401, "unauthenticated")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no challenge: %v", r.header)
	}
	id := ts.register("Ada", "ada@example.com", "correct horse")
	ts.expect(ts.do("POST", "/v1/auth/register", `{"name":"Ada","email":"ADA@example.com","password":"correct horse"}`, nil, true), 409, "conflict")
	ts.expect(ts.do("POST", "/v1/auth/register", `{"name":"Bob","email":"bob@example.com"}`, nil, false), 400, "bad_request")
	ts.expect(ts.do("POST", "/v1/auth/register", `{"name":"Bob","email":"bob@example.com","password":"x","role":"admin"}`, nil, false), 400, "bad_request")

	// Wrong password and unknown email answer alike.
	wrong := ts.do("POST", "/v1/auth/login", `{"email":"ada@example.com","password":"wrong horse"}`, nil, true)
	unknown := ts.do("POST", "/v1/auth/login", `{"email":"nobody@example.com","password":"wrong horse"}`, nil, true)
	ts.expect(wrong, 401, "unauthenticated")
	ts.expect(unknown, 401, "unauthenticated")
	if string(wrong.body) != string(unknown.body) {
		t.Fatalf("login failures differ: %s vs %s", wrong.body, unknown.body)
	}

	tk := ts.login("Ada@Example.com", "correct horse")
	r = ts.do("GET", "/v1/auth/me", "", bearer(tk.AccessToken), true)
	var me map[string]any
	r.json(t, &me)
	if r.status != 200 || me["id"] != id {
		t.Fatalf("me: %d %s", r.status, r.body)
	}
	// A bad token, or a refresh token in its place, is refused.
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(tk.RefreshToken), true), 401, "unauthenticated")
	ts.expect(ts.do("GET", "/v1/auth/me", "", map[string]string{"Authorization": "Basic YWRhOmhvcnNl"}, true), 401, "unauthenticated")

	// Refresh rotates; a repeat within the grace period gets the same
	// successor; the new access token works.
	body := fmt.Sprintf(`{"refresh_token":%q}`, tk.RefreshToken)
	r = ts.do("POST", "/v1/auth/refresh", body, nil, true)
	var tk2, tk2again tokens
	r.json(t, &tk2)
	if r.status != 200 || tk2.RefreshToken == tk.RefreshToken {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	r = ts.do("POST", "/v1/auth/refresh", body, nil, true)
	r.json(t, &tk2again)
	if r.status != 200 || tk2again.RefreshToken != tk2.RefreshToken {
		t.Fatalf("repeat within grace: %d %s", r.status, r.body)
	}
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(tk2.AccessToken), true), 200, "")

	// Logout of this session: neither its refresh token nor its access
	// tokens work any more; another session's do.
	other := ts.login("ada@example.com", "correct horse")
	ts.expect(ts.do("POST", "/v1/auth/logout", fmt.Sprintf(`{"refresh_token":%q}`, tk2.RefreshToken), bearer(tk2.AccessToken), true), 204, "")
	ts.expect(ts.do("POST", "/v1/auth/refresh", fmt.Sprintf(`{"refresh_token":%q}`, tk2.RefreshToken), nil, true), 401, "unauthenticated")
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(tk2.AccessToken), true), 401, "unauthenticated")
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(other.AccessToken), true), 200, "")

	// Logout everywhere: every access token of the user stops working.
	tk3 := ts.login("ada@example.com", "correct horse")
	ts.expect(ts.do("POST", "/v1/auth/logout", `{"all":true}`, bearer(tk3.AccessToken), true), 204, "")
	for _, a := range []string{tk.AccessToken, tk2.AccessToken, tk3.AccessToken} {
		ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(a), true), 401, "unauthenticated")
	}
	ts.expect(ts.do("POST", "/v1/auth/refresh", fmt.Sprintf(`{"refresh_token":%q}`, tk3.RefreshToken), nil, true), 401, "unauthenticated")
	ts.expect(ts.do("POST", "/v1/auth/refresh", `{"refresh_token":"garbage"}`, nil, true), 401, "unauthenticated")
}

// TestTokensFollowTheUser: changes to the user end its tokens on every
// request from then on.
func TestTokensFollowTheUser(t *testing.T) {
	ts := startServer(t, secure)
	admin := ts.login("admin@troupe.local", testAdminPassword)
	id := ts.register("Ada", "ada@example.com", "correct horse")
	tk := ts.login("ada@example.com", "correct horse")
	as := bearer(tk.AccessToken)

	// A rename changes nothing for tokens.
	ts.expect(ts.do("PATCH", "/v1/users/"+id, `{"name":"Ada L."}`, as, true), 200, "")
	// Own password: current_password needed and checked.
	ts.expect(ts.do("PATCH", "/v1/users/"+id, `{"password":"new horse battery"}`, as, true), 400, "bad_request")
	ts.expect(ts.do("PATCH", "/v1/users/"+id, `{"password":"new horse battery","current_password":"wrong"}`, as, true), 403, "forbidden")
	// Own role: never.
	ts.expect(ts.do("PATCH", "/v1/users/"+id, `{"role":"admin"}`, as, true), 403, "forbidden")

	// A role change by an admin ends the access tokens; the refresh token
	// still works and gives tokens for the new role.
	ts.expect(ts.do("PATCH", "/v1/users/"+id, `{"role":"admin"}`, bearer(admin.AccessToken), true), 200, "")
	ts.expect(ts.do("GET", "/v1/auth/me", "", as, true), 401, "unauthenticated")
	r := ts.do("POST", "/v1/auth/refresh", fmt.Sprintf(`{"refresh_token":%q}`, tk.RefreshToken), nil, true)
	var promoted tokens
	r.json(t, &promoted)
	ts.expect(r, 200, "")
	ts.expect(ts.do("GET", "/v1/users/count", "", bearer(promoted.AccessToken), true), 200, "")

	// A password change ends every session and token.
	ts.expect(ts.do("PATCH", "/v1/users/"+id, `{"password":"new horse battery","current_password":"correct horse"}`, bearer(promoted.AccessToken), true), 200, "")
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(promoted.AccessToken), true), 401, "unauthenticated")
	ts.expect(ts.do("POST", "/v1/auth/refresh", fmt.Sprintf(`{"refresh_token":%q}`, promoted.RefreshToken), nil, true), 401, "unauthenticated")
	ts.expect(ts.do("POST", "/v1/auth/login", `{"email":"ada@example.com","password":"correct horse"}`, nil, true), 401, "unauthenticated")
	tk = ts.login("ada@example.com", "new horse battery")

	// Deleting the user ends its tokens.
	ts.expect(ts.do("DELETE", "/v1/users/"+id, "", bearer(admin.AccessToken), true), 204, "")
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(tk.AccessToken), true), 401, "unauthenticated")
}

// TestRefreshReuseRevokesFamily: with no grace period, presenting a
// spent refresh token revokes the family, successor included.
func TestRefreshReuseRevokesFamily(t *testing.T) {
	ts := startServerWith(t, func(c *cluster.Config) { c.Sessions.GraceMs = 0 }, secure)
	ts.register("Ada", "ada@example.com", "correct horse")
	tk := ts.login("ada@example.com", "correct horse")
	other := ts.login("ada@example.com", "correct horse") // another device
	spent := fmt.Sprintf(`{"refresh_token":%q}`, tk.RefreshToken)
	r := ts.do("POST", "/v1/auth/refresh", spent, nil, true)
	var next tokens
	r.json(t, &next)
	ts.expect(r, 200, "")
	time.Sleep(5 * time.Millisecond) // command time moves past the zero grace period
	r = ts.do("POST", "/v1/auth/refresh", spent, nil, true)
	ts.expect(r, 401, "unauthenticated")
	if !strings.Contains(string(r.body), "already used") {
		t.Fatalf("reuse not reported: %s", r.body)
	}
	ts.expect(ts.do("POST", "/v1/auth/refresh", fmt.Sprintf(`{"refresh_token":%q}`, next.RefreshToken), nil, true), 401, "unauthenticated")
	// The family's access tokens end with it, the successor's included.
	for _, a := range []string{tk.AccessToken, next.AccessToken} {
		ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(a), true), 401, "unauthenticated")
	}
	// Found revoked after a barrier, the session's tokens are remembered
	// (one entry: they share user, epoch and session): sent again, they
	// are refused without another round trip.
	if got := metricValue(t, ts, `troupe_auth_revoked_tokens_known`); got != 1 {
		t.Fatalf("revoked tokens known: %v, want 1", got)
	}
	for range 3 {
		ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(tk.AccessToken), true), 401, "unauthenticated")
	}
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(other.AccessToken), true), 200, "")
	// The other session is not affected.
	ts.expect(ts.do("POST", "/v1/auth/refresh", fmt.Sprintf(`{"refresh_token":%q}`, other.RefreshToken), nil, true), 200, "")
	if got := metricValue(t, ts, `troupe_auth_refreshes_total{result="reuse_detected"}`); got != 1 {
		t.Fatalf("reuse metric %v", got)
	}
}

func metricValue(t *testing.T, ts *testServer, name string) float64 {
	t.Helper()
	r := ts.do("GET", "/metrics", "", nil, true)
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// TestRoleMatrix calls every route as nobody, as a user and as an admin.
func TestRoleMatrix(t *testing.T) {
	ts := startServer(t, secure)
	admin := ts.login("admin@troupe.local", testAdminPassword)
	self := ts.register("Ada", "ada@example.com", "correct horse")
	other := ts.register("Bob", "bob@example.com", "correct horse")
	user := ts.login("ada@example.com", "correct horse")
	const (
		open   = iota // anyone
		signed        // any user; 401 without a token
		selfOK        // the user itself or an admin; 403 for others
		admins        // admins only
	)
	routes := []struct {
		method, path, body string
		level              int
	}{
		{"GET", "/healthz", "", open},
		{"GET", "/readyz", "", open},
		{"GET", "/metrics", "", open},
		{"GET", "/v1/auth/me", "", signed},
		{"POST", "/v1/auth/keys/rotate", "", admins},
		{"GET", "/v1/cluster", "", admins},
		{"GET", "/v1/cluster/hash", "", admins},
		{"POST", "/v1/cluster/snapshot", "", admins},
		{"GET", "/v1/cluster/backup", "", admins},
		{"DELETE", "/v1/cluster/members/nobody", "", admins},
		{"POST", "/v1/users", `{"name":"C","email":"c@example.com"}`, admins},
		{"GET", "/v1/users", "", admins},
		{"GET", "/v1/users/count", "", admins},
		{"POST", "/v1/users/batch", `{"users":[{"name":"D","email":"d@example.com"}]}`, admins},
		{"GET", "/v1/users/" + self, "", selfOK},
		{"PATCH", "/v1/users/" + self, `{"name":"Ada"}`, selfOK},
		{"GET", "/v1/users/" + other, "", admins},
		{"PATCH", "/v1/users/" + other, `{"name":"Bobby"}`, admins},
		{"DELETE", "/v1/users/" + other, "", admins},
	}
	for _, rt := range routes {
		name := rt.method + " " + rt.path
		// Nobody.
		r := ts.do(rt.method, rt.path, rt.body, nil, false)
		if rt.level == open && (r.status == 401 || r.status == 403) {
			t.Errorf("%s as nobody: %d", name, r.status)
		}
		if rt.level != open && (r.status != 401 || r.errorCode(t) != "unauthenticated") {
			t.Errorf("%s as nobody: %d %s, want 401", name, r.status, r.body)
		}
		// A user.
		r = ts.do(rt.method, rt.path, rt.body, bearer(user.AccessToken), false)
		if rt.level == admins && (r.status != 403 || r.errorCode(t) != "forbidden") {
			t.Errorf("%s as a user: %d %s, want 403", name, r.status, r.body)
		}
		if rt.level != admins && (r.status == 401 || r.status == 403) {
			t.Errorf("%s as a user: %d %s", name, r.status, r.body)
		}
	}
	// Admins may do everything (the deletes last).
	for _, rt := range routes {
		r := ts.do(rt.method, rt.path, rt.body, bearer(admin.AccessToken), false)
		if r.status == 401 || r.status == 403 || r.status >= 500 {
			t.Errorf("%s as admin: %d %s", rt.method+" "+rt.path, r.status, r.body)
		}
	}
	// A user deletes itself.
	ts.expect(ts.do("DELETE", "/v1/users/"+self, "", bearer(user.AccessToken), true), 204, "")
}

func TestLoginThrottle(t *testing.T) {
	ts := startServer(t, secure)
	var mu sync.Mutex
	now := time.Now()
	ts.srv.loginThrottle = auth.NewThrottle(ts.srv.cfg.LoginFailuresPerMinute, 100_000, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ts.register("Ada", "ada@example.com", "correct horse")
	bad := `{"email":"ada@example.com","password":"wrong horse"}`
	for i := range 10 {
		ts.expect(ts.do("POST", "/v1/auth/login", bad, nil, true), 401, "unauthenticated")
		_ = i
	}
	// The 11th attempt within the minute is refused before any check,
	// even with the right password.
	r := ts.do("POST", "/v1/auth/login", `{"email":"ada@example.com","password":"correct horse"}`, nil, true)
	ts.expect(r, 429, "rate_limited")
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// One failure's allowance comes back every 6 s.
	advance(6 * time.Second)
	ts.login("ada@example.com", "correct horse")
	if got := metricValue(t, ts, `troupe_auth_logins_total{result="throttled"}`); got != 1 {
		t.Fatalf("throttled metric %v", got)
	}
}

// TestLoginThrottleBehindProxy: behind a trusted proxy each client
// address has its own failures; X-Forwarded-For from anyone else is
// ignored.
func TestLoginThrottleBehindProxy(t *testing.T) {
	proxies, err := ParseTrustedProxies("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, trusted := range []bool{true, false} {
		opts := []func(*Config){secure}
		if trusted {
			opts = append(opts, func(c *Config) { c.TrustedProxies = proxies })
		}
		ts := startServer(t, opts...)
		from := func(addr string) map[string]string { return map[string]string{"X-Forwarded-For": addr} }
		fail := func(i int, hdr map[string]string) *response {
			// A new email each time: only the address is counted.
			return ts.do("POST", "/v1/auth/login", fmt.Sprintf(`{"email":"nobody%d@example.com","password":"wrong horse"}`, i), hdr, true)
		}
		for i := range 10 {
			ts.expect(fail(i, from("203.0.113.1")), 401, "unauthenticated")
		}
		ts.expect(fail(10, from("203.0.113.1")), 429, "rate_limited")
		if trusted {
			ts.expect(fail(11, from("203.0.113.2")), 401, "unauthenticated")
		} else {
			// The header is not believed: one address, the proxy's.
			ts.expect(fail(11, from("203.0.113.2")), 429, "rate_limited")
		}
	}
}

func TestKeyRotationKeepsOldTokens(t *testing.T) {
	ts := startServer(t, secure)
	admin := ts.login("admin@troupe.local", testAdminPassword)
	before := ts.node.Auth().Current().KID
	r := ts.do("POST", "/v1/auth/keys/rotate", "", bearer(admin.AccessToken), true)
	ts.expect(r, 200, "")
	var out struct {
		KID string `json:"kid"`
	}
	r.json(t, &out)
	if out.KID == before || ts.node.Auth().Current().KID != out.KID {
		t.Fatalf("rotation: %s → %s", before, out.KID)
	}
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(admin.AccessToken), true), 200, "")
	fresh := ts.login("admin@troupe.local", testAdminPassword)
	ts.expect(ts.do("GET", "/v1/auth/me", "", bearer(fresh.AccessToken), true), 200, "")
}

// TestInsecureMode: no token acts as admin; a token acts as its user.
func TestInsecureMode(t *testing.T) {
	ts := startServer(t)
	ts.expect(ts.do("GET", "/v1/users/count", "", nil, true), 200, "")
	ts.expect(ts.do("GET", "/v1/auth/me", "", nil, true), 401, "unauthenticated")
	id := ts.register("Ada", "ada@example.com", "correct horse")
	tk := ts.login("ada@example.com", "correct horse")
	r := ts.do("GET", "/v1/auth/me", "", bearer(tk.AccessToken), true)
	if r.status != 200 || !strings.Contains(string(r.body), id) {
		t.Fatalf("me with a token: %d %s", r.status, r.body)
	}
	ts.expect(ts.do("GET", "/v1/users/count", "", bearer(tk.AccessToken), true), 403, "forbidden")
}
