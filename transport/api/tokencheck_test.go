package api

import (
	"fmt"
	"testing"

	"github.com/troupe-db/troupe/storage"
)

// The token check reads the user's token state (role, epoch, sessions),
// not the record: these tests hold it to every change that ends a token,
// each made right after the token passed, and to its cost.

// TestTokenCheckRightAfterRevocation: a token that has just passed the
// check is refused by the very next one after each change that ends it
// (logout of its session, logout everywhere, a new password, a new role,
// deletion), and the caller it gave carried the user's id and role.
func TestTokenCheckRightAfterRevocation(t *testing.T) {
	ts := startServer(t, secure)
	admin := bearer(ts.login("admin@troupe.local", testAdminPassword).AccessToken)
	id := ts.register("Ada", "ada@example.com", "correct horse")
	password := "correct horse"
	passes := func(what, token string) {
		t.Helper()
		c, e := ts.srv.verifyCaller(token)
		if e != nil || !c.is(id) || c.role != storage.RoleUser || c.admin || c.sid == "" {
			t.Fatalf("%s: the token should pass as Ada: %+v %v", what, c, e)
		}
	}
	refused := func(what, token string) {
		t.Helper()
		if c, e := ts.srv.verifyCaller(token); e == nil || e.Code != "unauthenticated" {
			t.Fatalf("%s: the token still passes: %+v", what, c)
		}
	}
	changes := []struct {
		name   string
		change func(tk tokens)
	}{
		{"logout of its session", func(tk tokens) {
			ts.expect(ts.do("POST", "/v1/auth/logout", fmt.Sprintf(`{"refresh_token":%q}`, tk.RefreshToken), bearer(tk.AccessToken), true), 204, "")
		}},
		{"logout everywhere", func(tk tokens) {
			ts.expect(ts.do("POST", "/v1/auth/logout", `{"all":true}`, bearer(tk.AccessToken), true), 204, "")
		}},
		{"a new password", func(tk tokens) {
			next := password + "!"
			ts.expect(ts.do("PATCH", "/v1/users/"+id, fmt.Sprintf(`{"password":%q,"current_password":%q}`, next, password), bearer(tk.AccessToken), true), 200, "")
			password = next
		}},
		{"a new role", func(tk tokens) {
			ts.expect(ts.do("PATCH", "/v1/users/"+id, `{"role":"service"}`, admin, true), 200, "")
			ts.expect(ts.do("PATCH", "/v1/users/"+id, `{"role":"user"}`, admin, true), 200, "")
		}},
	}
	for _, ch := range changes {
		tk := ts.login("ada@example.com", password)
		other := ts.login("ada@example.com", password)
		passes(ch.name+", before", tk.AccessToken)
		passes(ch.name+", another session before", other.AccessToken)
		ch.change(tk)
		refused(ch.name, tk.AccessToken)
		if ch.name == "logout of its session" {
			passes(ch.name+", another session after", other.AccessToken)
		} else {
			refused(ch.name+", another session", other.AccessToken)
		}
	}
	tk := ts.login("ada@example.com", password)
	passes("before deletion", tk.AccessToken)
	ts.expect(ts.do("DELETE", "/v1/users/"+id, "", admin, true), 204, "")
	refused("deletion", tk.AccessToken)
}

// TestTokenCheckAllocations: checking a token seen before costs one
// allocation, the caller: no copy of the user's record, of the token or
// of a key for the revoked set.
func TestTokenCheckAllocations(t *testing.T) {
	ts := startServer(t, secure)
	id := ts.register("Ada", "ada@example.com", "correct horse")
	tk := ts.login("ada@example.com", "correct horse").AccessToken
	if c, e := ts.srv.verifyCaller(tk); e != nil || !c.is(id) {
		t.Fatalf("verify: %v", e)
	}
	if n := testing.AllocsPerRun(200, func() {
		if _, e := ts.srv.verifyCaller(tk); e != nil {
			t.Fatal(e)
		}
	}); n > 1 {
		t.Fatalf("%v allocations per token check, want at most 1", n)
	}
}
