package api

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

type namedResp struct {
	Version uint64  `json:"version"`
	Name    string  `json:"name"`
	Author  string  `json:"author"`
	At      *string `json:"at"`
}

type namedListResp struct {
	Items []namedResp `json:"items"`
}

// TestNamedVersionsOverHTTP: members who may edit name versions (the
// current one or one still kept), everyone who may read lists them, and a
// named version reads and restores after the rolling history has dropped
// it, until its name is deleted.
func TestNamedVersionsOverHTTP(t *testing.T) {
	f := newRolesFixture(t, func(c *Config) {
		c.DocumentHistoryBytes = 1 << 20
		c.MaxNamedVersionsPerDocument = 2
	})
	ts, path := f.ts, f.docPath
	ts.expect(ts.do("PUT", path+"/members/"+f.bobID, `{"role":"editor"}`, f.ada, true), 204, "")
	ts.expect(ts.do("PUT", path+"/members/"+f.cyID, `{"role":"viewer"}`, f.ada, true), 204, "")
	viewLink := f.link(t, path, `{"role":"viewer"}`)
	editLink := f.link(t, path, `{"role":"editor"}`)
	ts.expect(f.submit(path, f.ada, "a", 1, 0), 200, "") // "xabc"
	ts.expect(f.submit(path, f.ada, "a", 2, 1), 200, "") // "xxabc"

	name := func(who map[string]string, body string) *response {
		return ts.do("POST", path+"/versions", body, who, true)
	}
	r := name(f.bob, `{"name":"  second draft "}`)
	ts.expect(r, 201, "")
	var nv namedResp
	r.json(t, &nv)
	at, err := time.Parse(time.RFC3339Nano, deref(nv.At))
	if nv.Version != 2 || nv.Name != "second draft" || nv.Author != f.bobID || err != nil || time.Since(at) > time.Minute {
		t.Fatalf("named: %s", r.body)
	}
	if loc := r.header.Get("Location"); loc != path+"/versions/2" {
		t.Fatalf("Location %q", loc)
	}
	r = name(f.ada, `{"name":"original","version":0}`)
	ts.expect(r, 201, "")
	ts.expect(name(f.ada, `{"name":"again","version":0}`), 409, "conflict")

	// Viewers, guests of either link and strangers may not name or delete.
	for _, who := range []map[string]string{f.cy, share(*viewLink.Token), share(*editLink.Token)} {
		ts.expect(name(who, `{"name":"mine"}`), 403, "forbidden")
		ts.expect(ts.do("DELETE", path+"/versions/2", "", who, true), 403, "forbidden")
	}
	ts.register("Dee", "dee@example.com", "correct horse")
	dee := bearer(ts.login("dee@example.com", "correct horse").AccessToken)
	ts.expect(name(dee, `{"name":"mine"}`), 403, "forbidden")
	ts.expect(ts.do("GET", path+"/versions", "", dee, true), 403, "forbidden")

	// Bad input.
	ts.expect(ts.do("POST", path+"/versions", `{}`, f.ada, false), 400, "bad_request")
	ts.expect(name(f.ada, `{"name":" "}`), 400, "bad_request")
	ts.expect(name(f.ada, fmt.Sprintf(`{"name":%q}`, strings.Repeat("n", 101))), 400, "bad_request")
	ts.expect(name(f.ada, `{"name":"x","version":9}`), 400, "bad_request")
	ts.expect(ts.do("DELETE", path+"/versions/x", "", f.ada, true), 400, "bad_request")
	ts.expect(ts.do("DELETE", path+"/versions/1", "", f.ada, true), 404, "not_found")

	// Anyone who may read lists them, newest version first.
	for _, who := range []map[string]string{f.cy, share(*viewLink.Token), f.ada} {
		var l namedListResp
		r := ts.do("GET", path+"/versions", "", who, true)
		ts.expect(r, 200, "")
		r.json(t, &l)
		if len(l.Items) != 2 || l.Items[0].Version != 2 || l.Items[1].Version != 0 || l.Items[1].Name != "original" || l.Items[1].Author != f.adaID {
			t.Fatalf("list: %s", r.body)
		}
	}
	// The document's bound: 2.
	r = name(f.ada, `{"name":"third","version":1}`)
	ts.expect(r, 403, "quota_exceeded")
	var e errorResp
	r.json(t, &e)
	if e.Error.Details["field"] != "named_versions" || e.Error.Details["limit"] != float64(2) {
		t.Fatalf("quota: %s", r.body)
	}

	// Changes of 300 KiB push versions 0 to 2 out of the 1 MiB history:
	// the named ones still read, the others are gone.
	big := strings.Repeat("z", 300<<10)
	seq, v := 2, 2
	for range 4 {
		seq, v = seq+1, v+1
		ts.expect(ts.do("POST", path+"/ops", fmt.Sprintf(`{"client_id":"a","seq":%d,"base_version":%d,"ops":[{"op":"insert","pos":0,"text":%q}]}`, seq, v-1, big), f.ada, false), 200, "")
		seq, v = seq+1, v+1
		ts.expect(ts.do("POST", path+"/ops", fmt.Sprintf(`{"client_id":"a","seq":%d,"base_version":%d,"ops":[{"op":"delete","pos":0,"len":%d}]}`, seq, v-1, len(big)), f.ada, false), 200, "")
	}
	ts.expect(ts.do("GET", path+"?version=1", "", f.ada, true), 410, "gone")
	for ver, want := range map[int]string{0: "abc", 2: "xxabc"} {
		r := ts.do("GET", fmt.Sprintf("%s?version=%d", path, ver), "", share(*viewLink.Token), true)
		ts.expect(r, 200, "")
		var d docResp
		r.json(t, &d)
		if d.Version != uint64(ver) || deref(d.Content) != want {
			t.Fatalf("version %d: %s", ver, r.body)
		}
	}
	// Naming a version no longer kept: gone, naming the oldest kept.
	ts.expect(ts.do("DELETE", path+"/versions/2", "", f.bob, true), 204, "")
	r = name(f.ada, `{"name":"late","version":1}`)
	ts.expect(r, 410, "gone")
	e = errorResp{}
	r.json(t, &e)
	if oldest, ok := e.Error.Details["oldest"].(float64); !ok || oldest <= 2 || e.Error.Details["field"] != "version" {
		t.Fatalf("gone: %s", r.body)
	}
	ts.expect(ts.do("GET", path+"?version=2", "", f.ada, true), 410, "gone")

	// Restore the named version 0: the text is its text again.
	r = ts.do("POST", path+"/restore", `{"version":0}`, f.bob, true)
	ts.expect(r, 200, "")
	var d docResp
	ts.do("GET", path, "", f.cy, true).json(t, &d)
	if deref(d.Content) != "abc" || d.Version != uint64(v+1) {
		t.Fatalf("restored: %q at %d", deref(d.Content), d.Version)
	}
	ts.expect(ts.do("DELETE", path+"/versions/0", "", f.ada, true), 204, "")
	ts.expect(ts.do("GET", path+"?version=0", "", f.ada, true), 410, "gone")
	var l namedListResp
	ts.do("GET", path+"/versions", "", f.ada, true).json(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("left: %+v", l.Items)
	}
}

// TestNamedVersionBytesPerOwner: an owner's named versions, over all its
// documents, hold at most --max-named-version-bytes-per-user; deleting a
// document frees what its named versions held at once.
func TestNamedVersionBytesPerOwner(t *testing.T) {
	f := newRolesFixture(t, func(c *Config) { c.MaxNamedVersionBytesPerUser = 1 << 20 })
	ts := f.ts
	big := strings.Repeat("y", 600<<10)
	doc := func() string {
		r := ts.do("POST", "/v1/docs", fmt.Sprintf(`{"title":"Big","content":%q}`, big), f.ada, false)
		ts.expect(r, 201, "")
		var d docResp
		r.json(t, &d)
		return "/v1/docs/" + d.ID
	}
	one, two := doc(), doc()
	ts.expect(ts.do("POST", one+"/versions", `{"name":"v"}`, f.ada, true), 201, "")
	r := ts.do("POST", two+"/versions", `{"name":"v"}`, f.ada, true)
	ts.expect(r, 403, "quota_exceeded")
	var e errorResp
	r.json(t, &e)
	if e.Error.Details["field"] != "named_version_bytes" || e.Error.Details["limit"] != float64(1<<20) {
		t.Fatalf("quota: %s", r.body)
	}
	// Another owner's room is its own.
	r = ts.do("POST", "/v1/docs", fmt.Sprintf(`{"title":"Bob's","content":%q}`, big), f.bob, false)
	ts.expect(r, 201, "")
	var bobs docResp
	r.json(t, &bobs)
	ts.expect(ts.do("POST", "/v1/docs/"+bobs.ID+"/versions", `{"name":"v"}`, f.bob, true), 201, "")

	ts.expect(ts.do("DELETE", one, "", f.ada, true), 204, "")
	ts.expect(ts.do("POST", two+"/versions", `{"name":"v"}`, f.ada, true), 201, "")
}

// TestDocAccessField: the document's JSON tells each caller its own
// access, as storage.Doc.Access decides it.
func TestDocAccessField(t *testing.T) {
	f := newRolesFixture(t)
	ts, path := f.ts, f.docPath
	ts.expect(ts.do("PUT", path+"/members/"+f.bobID, `{"role":"editor"}`, f.ada, true), 204, "")
	ts.expect(ts.do("PUT", path+"/members/"+f.cyID, `{"role":"viewer"}`, f.ada, true), 204, "")
	viewLink := f.link(t, path, `{"role":"viewer"}`)
	editLink := f.link(t, path, `{"role":"editor"}`)
	cyWithEditLink := map[string]string{"Authorization": f.cy["Authorization"], shareHeader: *editLink.Token}
	for _, tc := range []struct {
		who  map[string]string
		want string
	}{
		{f.ada, "owner"}, {ts.adminToken(), "admin"}, {f.bob, "editor"}, {f.cy, "viewer"},
		{share(*viewLink.Token), "viewer"}, {share(*editLink.Token), "editor"}, {cyWithEditLink, "editor"},
	} {
		for _, q := range []string{"", "?version=0"} {
			var d struct {
				Access string `json:"access"`
			}
			r := ts.do("GET", path+q, "", tc.who, true)
			ts.expect(r, 200, "")
			r.json(t, &d)
			if d.Access != tc.want {
				t.Fatalf("%v%s: access %q, want %q", tc.who, q, d.Access, tc.want)
			}
		}
	}
	// A write's answer tells it too; a listing, shared by many, does not.
	r := ts.do("PATCH", path, `{"title":"Renamed"}`, f.bob, true)
	ts.expect(r, 200, "")
	if !strings.Contains(string(r.body), `"access":"editor"`) {
		t.Fatalf("patch: %s", r.body)
	}
	r = ts.do("GET", "/v1/docs", "", f.ada, true)
	if strings.Contains(string(r.body), `"access"`) {
		t.Fatalf("listing: %s", r.body)
	}
	ts.expect(ts.do("GET", path, "", bearer(""), true), 401, "")
}
