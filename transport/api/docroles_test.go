package api

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// rolesFixture: Ada owns a document; Bob and Cy are signed in, members of
// nothing yet.
type rolesFixture struct {
	ts                 *testServer
	adaID, bobID, cyID string
	ada, bob, cy       map[string]string
	docID, docPath     string
}

func newRolesFixture(t *testing.T, opts ...func(*Config)) *rolesFixture {
	t.Helper()
	ts := startServer(t, append([]func(*Config){secure, noBackstop}, opts...)...)
	f := &rolesFixture{ts: ts}
	f.adaID = ts.register("Ada", "ada@example.com", "correct horse")
	f.bobID = ts.register("Bob", "bob@example.com", "correct horse")
	f.cyID = ts.register("Cy", "cy@example.com", "correct horse")
	f.ada = bearer(ts.login("ada@example.com", "correct horse").AccessToken)
	f.bob = bearer(ts.login("bob@example.com", "correct horse").AccessToken)
	f.cy = bearer(ts.login("cy@example.com", "correct horse").AccessToken)
	f.docID = f.newDoc(t, "Shared")
	f.docPath = "/v1/docs/" + f.docID
	return f
}

func (f *rolesFixture) newDoc(t *testing.T, title string) string {
	t.Helper()
	r := f.ts.do("POST", "/v1/docs", `{"title":"`+title+`","content":"abc"}`, f.ada, true)
	f.ts.expect(r, 201, "")
	var d docResp
	r.json(t, &d)
	return d.ID
}

func (f *rolesFixture) submit(path string, who map[string]string, client string, seq, base int) *response {
	return f.ts.do("POST", path+"/ops", fmt.Sprintf(`{"client_id":%q,"seq":%d,"base_version":%d,"ops":[{"op":"insert","pos":0,"text":"x"}]}`, client, seq, base), who, true)
}

type linkResp struct {
	ID        string  `json:"id"`
	Token     *string `json:"token"`
	Role      string  `json:"role"`
	ExpiresAt *string `json:"expires_at"`
	CreatedBy string  `json:"created_by"`
}

// link creates a share link of path's document as Ada.
func (f *rolesFixture) link(t *testing.T, path, body string) linkResp {
	t.Helper()
	r := f.ts.do("POST", path+"/links", body, f.ada, true)
	f.ts.expect(r, 201, "")
	var l linkResp
	r.json(t, &l)
	if l.Token == nil || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(*l.Token) || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(l.ID) {
		t.Fatalf("link %s", r.body)
	}
	return l
}

func share(token string) map[string]string { return map[string]string{shareHeader: token} }

// otherFirstDigit is token with its first hex digit changed, never to
// itself (a fixed replacement digit is the same one time in 16).
func otherFirstDigit(token string) string {
	d := byte('0')
	if token[0] == d {
		d = '1'
	}
	return string(d) + token[1:]
}

type memberResp struct {
	User string `json:"user"`
	Role string `json:"role"`
}

func TestDocMembersOverHTTP(t *testing.T) {
	f := newRolesFixture(t, func(c *Config) { c.MaxMembersPerDocument = 2 })
	ts, path := f.ts, f.docPath
	ts.expect(ts.do("PUT", path+"/members/"+f.bobID, `{"role":"viewer"}`, f.ada, true), 204, "")
	members := func() ([]string, []memberResp) {
		var d struct {
			Editors []string     `json:"editors"`
			Members []memberResp `json:"members"`
		}
		r := ts.do("GET", path, "", f.ada, true)
		ts.expect(r, 200, "")
		r.json(t, &d)
		return d.Editors, d.Members
	}
	if ed, ms := members(); len(ed) != 0 || len(ms) != 1 || ms[0] != (memberResp{f.bobID, "viewer"}) {
		t.Fatalf("editors %v members %+v", ed, ms)
	}
	// A viewer reads, lists and streams, but may not change the document.
	ts.expect(ts.do("GET", path, "", f.bob, true), 200, "")
	ts.expect(ts.do("GET", path+"/ops?since=0", "", f.bob, true), 200, "")
	ts.expect(ts.do("GET", path+"/history", "", f.bob, true), 200, "")
	var list struct {
		Items []docResp `json:"items"`
	}
	ts.do("GET", "/v1/docs", "", f.bob, true).json(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != f.docID {
		t.Fatalf("the viewer's listing: %+v", list.Items)
	}
	ts.expect(f.submit(path, f.bob, "b", 1, 0), 403, "forbidden")
	ts.expect(ts.do("PATCH", path, `{"title":"Mine"}`, f.bob, true), 403, "forbidden")
	ts.expect(ts.do("PUT", path+"/members/"+f.cyID, `{"role":"viewer"}`, f.bob, true), 403, "forbidden")
	ts.expect(ts.do("POST", path+"/restore", `{"version":0}`, f.bob, true), 403, "forbidden")

	// Over the WebSocket too: the viewer's socket streams, its op is refused.
	c := dialWS(t, ts, path, "client_id=bob", strings.TrimPrefix(f.bob["Authorization"], "Bearer "))
	if err := c.WriteJSON(map[string]any{"type": "op", "seq": 1, "base_version": 0, "ops": []map[string]any{{"op": "insert", "pos": 0, "text": "x"}}}); err != nil {
		t.Fatal(err)
	}
	if m := nextAny(t, c, "error"); !strings.Contains(string(m.Error), `"forbidden"`) || m.Seq != 1 {
		t.Fatalf("viewer's op over the socket: %+v %s", m, m.Error)
	}

	// The editors route makes Bob an editor: both lists say so.
	ts.expect(ts.do("PUT", path+"/editors/"+f.bobID, "", f.ada, true), 204, "")
	if ed, ms := members(); len(ed) != 1 || ed[0] != f.bobID || len(ms) != 1 || ms[0].Role != "editor" {
		t.Fatalf("editors %v members %+v", ed, ms)
	}
	ts.expect(f.submit(path, f.bob, "b", 1, 0), 200, "")

	// Bad input, and the members cap.
	r := ts.do("PUT", path+"/members/"+f.cyID, `{"role":"owner"}`, f.ada, false)
	ts.expect(r, 400, "bad_request")
	if !strings.Contains(string(r.body), `"field":"role"`) {
		t.Fatalf("bad role: %s", r.body)
	}
	ts.expect(ts.do("PUT", path+"/members/"+f.cyID, `{}`, f.ada, false), 400, "bad_request")
	ts.expect(ts.do("PUT", path+"/members/nobody", `{"role":"viewer"}`, f.ada, true), 404, "not_found")
	ts.expect(ts.do("PUT", path+"/members/"+f.cyID, `{"role":"viewer"}`, f.ada, true), 204, "")
	r = ts.do("PUT", path+"/members/"+f.adaID+"x", `{"role":"viewer"}`, f.ada, true)
	ts.expect(r, 404, "not_found")
	third := storage.MakeUserID(storage.StampAt(1), 0) // any well-formed id may be a member
	r = ts.do("PUT", path+"/members/"+third, `{"role":"viewer"}`, f.ada, true)
	ts.expect(r, 403, "quota_exceeded")
	if !strings.Contains(string(r.body), `"limit":2`) || !strings.Contains(string(r.body), `"field":"members"`) {
		t.Fatalf("members cap: %s", r.body)
	}
	if metricValue(t, ts, `troupe_doc_limit_refusals_total{limit="members_per_document"}`) != 1 {
		t.Fatal("the members cap's refusal is not counted")
	}
	// A role change is not a new member; removal makes room.
	ts.expect(ts.do("PUT", path+"/members/"+f.cyID, `{"role":"editor"}`, f.ada, true), 204, "")
	ts.expect(ts.do("DELETE", path+"/members/"+f.bobID, "", f.ada, true), 204, "")
	ts.expect(ts.do("GET", path, "", f.bob, true), 403, "forbidden")
	ts.expect(ts.do("DELETE", path+"/editors/"+f.cyID, "", f.ada, true), 204, "")
	if ed, ms := members(); len(ed) != 0 || len(ms) != 0 {
		t.Fatalf("editors %v members %+v", ed, ms)
	}
}

// nextAny reads messages until one of type typ, errors included.
func nextAny(t *testing.T, c interface {
	SetReadDeadline(time.Time) error
	ReadJSON(any) error
}, typ string) wsMsg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var m wsMsg
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
	}
}

func TestShareLinksOverHTTP(t *testing.T) {
	f := newRolesFixture(t, func(c *Config) { c.MaxLinksPerDocument = 3 })
	ts, path := f.ts, f.docPath
	view := f.link(t, path, `{"role":"viewer"}`)
	edit := f.link(t, path, `{"role":"editor","expires_in_s":3600}`)
	if view.Role != "viewer" || view.ExpiresAt != nil || view.CreatedBy != f.adaID || edit.ExpiresAt == nil {
		t.Fatalf("links %+v %+v", view, edit)
	}

	// Guests read with either form of the token, with no account.
	ts.expect(ts.do("GET", path+"?share="+*view.Token, "", nil, true), 200, "")
	ts.expect(ts.do("GET", path, "", share(*view.Token), true), 200, "")
	ts.expect(ts.do("GET", path+"/history", "", share(*view.Token), true), 200, "")
	// A viewer link may not write; an editor link may, as its guest.
	ts.expect(f.submit(path, share(*view.Token), "g", 1, 0), 403, "forbidden")
	ts.expect(f.submit(path, share(*edit.Token), "g", 1, 0), 200, "")
	var h struct {
		Items []struct {
			Author string `json:"author"`
		} `json:"items"`
	}
	ts.do("GET", path+"/history", "", f.ada, true).json(t, &h)
	if len(h.Items) != 1 || h.Items[0].Author != "guest:"+edit.ID {
		t.Fatalf("history %+v", h.Items)
	}
	// A guest manages nothing.
	ts.expect(ts.do("POST", path+"/links", `{"role":"editor"}`, share(*edit.Token), true), 403, "forbidden")
	ts.expect(ts.do("GET", path+"/links", "", share(*edit.Token), true), 403, "forbidden")
	ts.expect(ts.do("DELETE", path, "", share(*edit.Token), true), 403, "forbidden")
	ts.expect(ts.do("PUT", path+"/members/"+f.bobID, `{"role":"editor"}`, share(*edit.Token), true), 403, "forbidden")

	// A token is nothing on another document or any other route.
	other := "/v1/docs/" + f.newDoc(t, "Other")
	ts.expect(ts.do("GET", other, "", share(*view.Token), true), 401, "unauthenticated")
	ts.expect(ts.do("GET", other+"?share="+*edit.Token, "", nil, true), 401, "unauthenticated")
	ts.expect(f.submit(other, share(*edit.Token), "g", 1, 0), 401, "unauthenticated")
	ts.expect(ts.do("GET", "/v1/docs", "", share(*view.Token), true), 401, "unauthenticated")
	ts.expect(ts.do("GET", "/v1/auth/me", "", share(*view.Token), true), 401, "unauthenticated")
	ts.expect(ts.do("GET", "/v1/docs/nosuchdoc", "", share(*view.Token), true), 401, "unauthenticated")
	ts.expect(ts.do("GET", path, "", share(otherFirstDigit(*view.Token)), true), 401, "unauthenticated")
	// A signed-in stranger with a link gets the link's role.
	ts.expect(ts.do("GET", path, "", f.bob, true), 403, "forbidden")
	withLink := map[string]string{"Authorization": f.bob["Authorization"], shareHeader: *view.Token}
	ts.expect(ts.do("GET", path, "", withLink, true), 200, "")

	// The owner lists the live links, without tokens.
	var links struct {
		Items []linkResp `json:"items"`
	}
	r := ts.do("GET", path+"/links", "", f.ada, true)
	ts.expect(r, 200, "")
	r.json(t, &links)
	if len(links.Items) != 2 || strings.Contains(string(r.body), "token") {
		t.Fatalf("links %s", r.body)
	}
	ts.expect(ts.do("GET", path+"/links", "", f.bob, true), 403, "forbidden")

	// Bad input, the cap, a repeated create.
	for _, body := range []string{`{}`, `{"role":"owner"}`, `{"role":"viewer","expires_in_s":0}`, `{"role":"viewer","expires_in_s":31622401}`} {
		ts.expect(ts.do("POST", path+"/links", body, f.ada, false), 400, "bad_request")
	}
	key := map[string]string{"Authorization": f.ada["Authorization"], "Idempotency-Key": "link-1"}
	r = ts.do("POST", path+"/links", `{"role":"viewer"}`, key, true)
	ts.expect(r, 201, "")
	var first, again linkResp
	r.json(t, &first)
	r = ts.do("POST", path+"/links", `{"role":"viewer"}`, key, true)
	ts.expect(r, 201, "")
	r.json(t, &again)
	if first.Token == nil || again.ID != first.ID || again.Token != nil {
		t.Fatalf("a repeated create: %+v then %+v", first, again)
	}
	r = ts.do("POST", path+"/links", `{"role":"viewer"}`, f.ada, true)
	ts.expect(r, 403, "quota_exceeded")
	if !strings.Contains(string(r.body), `"field":"links"`) || !strings.Contains(string(r.body), `"limit":3`) {
		t.Fatalf("links cap: %s", r.body)
	}
	if metricValue(t, ts, `troupe_doc_limit_refusals_total{limit="links_per_document"}`) != 1 {
		t.Fatal("the links cap's refusal is not counted")
	}

	// Revoked: the token is refused at once.
	ts.expect(ts.do("DELETE", path+"/links/"+view.ID, "", f.ada, true), 204, "")
	ts.expect(ts.do("GET", path, "", share(*view.Token), true), 401, "unauthenticated")
	ts.expect(ts.do("DELETE", path+"/links/"+view.ID, "", f.ada, true), 404, "not_found")
	ts.expect(ts.do("DELETE", path+"/links/"+edit.ID, "", f.bob, true), 403, "forbidden")
}

// A link past its expiry is refused with link_expired, and makes room.
func TestShareLinkExpires(t *testing.T) {
	f := newRolesFixture(t)
	l := f.link(t, f.docPath, `{"role":"viewer","expires_in_s":1}`)
	f.ts.expect(f.ts.do("GET", f.docPath, "", share(*l.Token), true), 200, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := f.ts.do("GET", f.docPath, "", share(*l.Token), true)
		if r.status == 401 {
			f.ts.expect(r, 401, "link_expired")
			if !strings.Contains(string(r.body), `"expires_at":"`+*l.ExpiresAt+`"`) {
				t.Fatalf("expired: %s", r.body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the link still works: %d %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var links struct {
		Items []linkResp `json:"items"`
	}
	f.ts.do("GET", f.docPath+"/links", "", f.ada, true).json(t, &links)
	if len(links.Items) != 0 {
		t.Fatalf("an expired link is listed: %+v", links.Items)
	}
}

// Streams opened with a link: a guest shows as guest-xxxx; its editor
// link submits over a WebSocket (on the leader and through a follower),
// a viewer link's op is refused; revoking the link ends the streams
// opened with it (and only those), an expiring link's stream ends with
// link_expired, a deleted document's with document_deleted.
func TestShareLinkStreams(t *testing.T) {
	f := newRolesFixture(t)
	ts, path := f.ts, f.docPath
	view := f.link(t, path, `{"role":"viewer"}`)
	edit := f.link(t, path, `{"role":"editor"}`)
	follower := startFollower(t, ts, secure, noBackstop)

	own := openSSE(t, ts, path, "client_id=ada", strings.TrimPrefix(f.ada["Authorization"], "Bearer "))
	guestSSE := openSSE(t, ts, path, "client_id=g1&share="+*view.Token, "")
	var p presenceJSON
	for p.ClientID != "g1" {
		ev := readSSE(t, own.sc)
		if ev.name == "presence" {
			_ = json.Unmarshal([]byte(ev.data), &p)
		}
	}
	if p.User != "guest-"+view.ID[:4] {
		t.Fatalf("the guest shows as %q", p.User)
	}
	viewWS := dialWS(t, ts, path, "client_id=g2&share="+*view.Token, "")
	editWS := dialWS(t, follower, path, "client_id=g3&share="+*edit.Token, "")
	op := func(seq, base int) map[string]any {
		return map[string]any{"type": "op", "seq": seq, "base_version": base, "ops": []map[string]any{{"op": "insert", "pos": 0, "text": "x"}}}
	}
	if err := editWS.WriteJSON(op(1, 0)); err != nil {
		t.Fatal(err)
	}
	if m := nextAny(t, editWS, "ack"); m.Seq != 1 || m.Version != 1 {
		t.Fatalf("guest's ack through the follower: %+v", m)
	}
	if err := viewWS.WriteJSON(op(1, 0)); err != nil {
		t.Fatal(err)
	}
	if m := nextAny(t, viewWS, "error"); !strings.Contains(string(m.Error), `"forbidden"`) {
		t.Fatalf("viewer link's op: %s", m.Error)
	}
	// An HTTP submit through the follower, forwarded with the token.
	ts.expect(f.submit(path, share(*edit.Token), "h", 1, 1), 200, "")
	follower.expect(f.submit(path, share(*edit.Token), "h", 2, 2), 200, "")

	start := time.Now()
	ts.expect(ts.do("DELETE", path+"/links/"+view.ID, "", f.ada, true), 204, "")
	expectSSEClosed(t, guestSSE, "access_revoked")
	expectWSClosed(t, viewWS, "access_revoked")
	t.Logf("streams of a revoked link closed %v after the revocation (keep-alive checks off)", time.Since(start))
	// The editor link's socket and the owner's stream go on.
	if err := editWS.WriteJSON(op(2, 3)); err != nil {
		t.Fatal(err)
	}
	if m := nextAny(t, editWS, "ack"); m.Seq != 2 || m.Version != 4 {
		t.Fatalf("after the revocation of another link: %+v", m)
	}

	short := f.link(t, path, `{"role":"viewer","expires_in_s":1}`)
	expiring := openSSE(t, ts, path, "share="+*short.Token, "")
	expectSSEClosed(t, expiring, "link_expired")

	ts.expect(ts.do("DELETE", path, "", f.ada, true), 204, "")
	expectWSClosed(t, editWS, "document_deleted")
}

// A guest is charged to its link's rate-limit key: another link's
// guests and the users are not slowed by it.
func TestGuestsAreRateLimitedByLink(t *testing.T) {
	// The limiter's clock stands still unless the test moves it.
	f := newRolesFixture(t, withDefaultLimit(10, time.Hour))
	ts := f.ts
	a := f.link(t, f.docPath, `{"role":"viewer"}`)
	b := f.link(t, f.docPath, `{"role":"viewer"}`)
	ts.clock.advance(time.Hour)                          // the fixture's requests are forgotten
	c := dialWS(t, ts, f.docPath, "share="+*a.Token, "") // 1 of 10
	for range 9 {
		ts.expect(ts.do("GET", f.docPath, "", share(*a.Token), true), 200, "")
	}
	ts.expect(ts.do("GET", f.docPath+"?share="+*a.Token, "", nil, true), 429, "rate_limited")
	// The guest's socket spends the same bucket.
	if err := c.WriteJSON(map[string]any{"type": "cursor", "pos": 0}); err != nil {
		t.Fatal(err)
	}
	if m := nextAny(t, c, "error"); !strings.Contains(string(m.Error), `"rate_limited"`) {
		t.Fatalf("guest's message: %s", m.Error)
	}
	// Neither another link's guests nor the users pay for it.
	ts.expect(ts.do("GET", f.docPath, "", share(*b.Token), true), 200, "")
	ts.expect(ts.do("GET", f.docPath, "", f.ada, true), 200, "")
}

// Under --insecure a request without a token acts as admin, but one with
// a share token is its link's guest.
func TestShareLinkUnderInsecure(t *testing.T) {
	ts := startServer(t) // --insecure
	ts.register("Ada", "ada@example.com", "correct horse")
	ada := bearer(ts.login("ada@example.com", "correct horse").AccessToken)
	r := ts.do("POST", "/v1/docs", `{"title":"Open","content":"abc"}`, ada, true)
	ts.expect(r, 201, "")
	var d docResp
	r.json(t, &d)
	path := "/v1/docs/" + d.ID
	r = ts.do("POST", path+"/links", `{"role":"viewer"}`, ada, true)
	ts.expect(r, 201, "")
	var l linkResp
	r.json(t, &l)
	sub := `{"client_id":"g","seq":1,"base_version":0,"ops":[{"op":"insert","pos":0,"text":"x"}]}`
	ts.expect(ts.do("POST", path+"/ops", sub, share(*l.Token), true), 403, "forbidden")
	ts.expect(ts.do("DELETE", path, "", share(*l.Token), true), 403, "forbidden")
	ts.expect(ts.do("GET", path, "", share(*l.Token), true), 200, "")
	ts.expect(ts.do("POST", path+"/ops", sub, nil, true), 200, "") // no token: the insecure admin
}
