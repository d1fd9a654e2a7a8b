package api

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestUsersCRUD(t *testing.T) {
	ts := startServer(t)
	r := ts.do("POST", "/v1/users", `{"name":"  Ada Lovelace ","email":"Ada@Example.com","password":"correct horse","role":"admin"}`, nil, true)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var u map[string]any
	r.json(t, &u)
	id := u["id"].(string)
	if u["name"] != "Ada Lovelace" || u["email"] != "Ada@Example.com" || u["role"] != "admin" || u["version"] != 1.0 {
		t.Fatalf("created user: %v", u)
	}
	if _, leaked := u["password"]; leaked || bytes.Contains(r.body, []byte("argon2")) {
		t.Fatalf("password leaked: %s", r.body)
	}
	if r.header.Get("Location") != "/v1/users/"+id || r.header.Get("X-Troupe-Index") == "" {
		t.Fatalf("headers: %v", r.header)
	}

	r = ts.do("GET", "/v1/users/"+id, "", nil, true)
	if r.status != 200 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("get: %d %v %s", r.status, r.header, r.body)
	}
	r = ts.do("GET", "/v1/users/"+id+"?consistency=stale", "", nil, true)
	if r.status != 200 {
		t.Fatalf("stale get: %d", r.status)
	}

	// Case-insensitive uniqueness.
	r = ts.do("POST", "/v1/users", `{"name":"Other","email":"ada@EXAMPLE.com"}`, nil, true)
	if r.status != 409 || r.errorCode(t) != "conflict" {
		t.Fatalf("duplicate: %d %s", r.status, r.body)
	}

	r = ts.do("PATCH", "/v1/users/"+id, `{"name":"Ada King"}`, map[string]string{"If-Match": `"1"`}, true)
	if r.status != 200 || r.header.Get("ETag") != `"2"` {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	r = ts.do("PATCH", "/v1/users/"+id, `{"name":"Stale"}`, map[string]string{"If-Match": `"1"`}, true)
	if r.status != 412 || r.errorCode(t) != "precondition_failed" {
		t.Fatalf("stale If-Match: %d %s", r.status, r.body)
	}
	// An email change moves the index entry between shards; the old
	// address becomes free and the new one taken.
	r = ts.do("PATCH", "/v1/users/"+id, `{"email":"countess@example.org"}`, nil, true)
	if r.status != 200 {
		t.Fatalf("email change: %d %s", r.status, r.body)
	}
	ts.create("New Ada", "ada@example.com")
	r = ts.do("POST", "/v1/users", `{"name":"X","email":"COUNTESS@example.org"}`, nil, true)
	if r.status != 409 {
		t.Fatalf("new email not indexed: %d %s", r.status, r.body)
	}

	r = ts.do("DELETE", "/v1/users/"+id, "", nil, true)
	if r.status != 204 || r.header.Get("X-Troupe-Index") == "" {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	r = ts.do("GET", "/v1/users/"+id, "", nil, true)
	if r.status != 404 || r.errorCode(t) != "not_found" {
		t.Fatalf("deleted get: %d %s", r.status, r.body)
	}
	r = ts.do("DELETE", "/v1/users/"+id, "", nil, true)
	if r.status != 404 {
		t.Fatalf("second delete: %d", r.status)
	}
	ts.create("Reuse", "countess@example.org") // the deleted user's email is free again
}

func TestLastAdminIsProtected(t *testing.T) {
	ts := startServer(t)
	var list struct {
		Items []map[string]any `json:"items"`
	}
	ts.do("GET", "/v1/users?q=admin@troupe", "", nil, true).json(t, &list)
	if len(list.Items) != 1 {
		t.Fatalf("admin not found: %v", list)
	}
	admin := list.Items[0]["id"].(string)
	r := ts.do("DELETE", "/v1/users/"+admin, "", nil, true)
	if r.status != 409 || r.errorCode(t) != "conflict" {
		t.Fatalf("delete last admin: %d %s", r.status, r.body)
	}
	r = ts.do("PATCH", "/v1/users/"+admin, `{"role":"user"}`, nil, true)
	if r.status != 409 {
		t.Fatalf("demote last admin: %d %s", r.status, r.body)
	}
	second := ts.create("Second", "second@example.com")["id"].(string)
	if r := ts.do("PATCH", "/v1/users/"+second, `{"role":"admin"}`, nil, true); r.status != 200 {
		t.Fatalf("promote: %d %s", r.status, r.body)
	}
	if r := ts.do("PATCH", "/v1/users/"+admin, `{"role":"user"}`, nil, true); r.status != 200 {
		t.Fatalf("demote with another admin: %d %s", r.status, r.body)
	}
	if r := ts.do("DELETE", "/v1/users/"+second, "", nil, true); r.status != 409 {
		t.Fatalf("delete the new last admin: %d %s", r.status, r.body)
	}
}

func TestListSearchCount(t *testing.T) {
	ts := startServer(t)
	ids := map[string]bool{}
	for i := range 57 {
		name := fmt.Sprintf("User %02d", i)
		if i%10 == 0 {
			name = fmt.Sprintf("Grace %02d", i)
		}
		ids[ts.create(name, fmt.Sprintf("u%02d@example.com", i))["id"].(string)] = true
	}
	var seen []string
	next := ""
	for pages := 0; ; pages++ {
		path := "/v1/users?limit=10"
		if next != "" {
			path += "&after=" + next
		}
		var page struct {
			Items []map[string]any `json:"items"`
			Next  *string          `json:"next"`
		}
		r := ts.do("GET", path, "", nil, true)
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		r.json(t, &page)
		for _, it := range page.Items {
			seen = append(seen, it["id"].(string))
		}
		if page.Next == nil {
			break
		}
		next = *page.Next
		if pages == 1 {
			// A write between pages does not disturb the cursor.
			ts.create("Late", "late@example.com")
		}
	}
	for i := 1; i < len(seen); i++ {
		if seen[i-1] >= seen[i] {
			t.Fatalf("not in id order at %d", i)
		}
	}
	for id := range ids {
		if !contains(seen, id) {
			t.Fatalf("user %s missing from the list", id)
		}
	}
	if len(seen) != 59 { // 57 + admin + late
		t.Fatalf("listed %d users", len(seen))
	}
	var found struct {
		Items []map[string]any `json:"items"`
	}
	ts.do("GET", "/v1/users?q=GRACE", "", nil, true).json(t, &found)
	if len(found.Items) != 6 {
		t.Fatalf("search found %d", len(found.Items))
	}
	ts.do("GET", "/v1/users?q=u05@EXAMPLE", "", nil, true).json(t, &found)
	if len(found.Items) != 1 {
		t.Fatalf("email search found %d", len(found.Items))
	}
	var c struct{ Count int }
	ts.do("GET", "/v1/users/count", "", nil, true).json(t, &c)
	if c.Count != 59 {
		t.Fatalf("count %d", c.Count)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestBatch(t *testing.T) {
	ts := startServer(t)
	body := `{"users":[
		{"name":"A","email":"a@example.com"},
		{"name":"B","email":"not an email"},
		{"name":"C","email":"c@example.com","password":"long enough"},
		{"name":"D","email":"A@example.com"},
		{"name":"E","email":"e@example.com","password_hash":"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"},
		{"name":"F","email":"f@example.com","password":"short"}
	]}`
	r := ts.do("POST", "/v1/users/batch", body, nil, true)
	if r.status != 200 || r.header.Get("X-Troupe-Index") == "" {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	var out struct {
		Results []struct {
			Status int
			User   map[string]any
			Error  struct{ Code string }
		}
	}
	r.json(t, &out)
	want := []int{201, 400, 201, 409, 201, 400}
	for i, w := range want {
		if out.Results[i].Status != w {
			t.Fatalf("item %d: %d, want %d (%s)", i, out.Results[i].Status, w, r.body)
		}
	}
	var c struct{ Count int }
	ts.do("GET", "/v1/users/count", "", nil, true).json(t, &c)
	if c.Count != 4 {
		t.Fatalf("count %d", c.Count)
	}
	for _, bad := range []string{`{"users":[]}`, `{}`, `{"users":[{"name":"x","email":"x@example.com","extra":1}]}`} {
		if r := ts.do("POST", "/v1/users/batch", bad, nil, false); r.status != 400 {
			t.Fatalf("%s: %d", bad, r.status)
		}
	}
	many := make([]string, 1001)
	for i := range many {
		many[i] = `{"name":"n","email":"n@example.com"}`
	}
	if r := ts.do("POST", "/v1/users/batch", `{"users":[`+strings.Join(many, ",")+`]}`, nil, false); r.status != 400 {
		t.Fatalf("1001 items: %d", r.status)
	}
}

func TestIdempotencyKey(t *testing.T) {
	ts := startServer(t)
	h := map[string]string{"Idempotency-Key": "create-grace-1"}
	body := `{"name":"Grace","email":"grace@example.com"}`
	first := ts.do("POST", "/v1/users", body, h, true)
	again := ts.do("POST", "/v1/users", body, h, true)
	if first.status != 201 || again.status != 201 || !bytes.Equal(first.body, again.body) {
		t.Fatalf("repeat: %d %s / %d %s", first.status, first.body, again.status, again.body)
	}
	other := ts.do("POST", "/v1/users", `{"name":"Other","email":"other@example.com"}`, h, true)
	if other.status != 409 || other.errorCode(t) != "conflict" {
		t.Fatalf("key reuse with another body: %d %s", other.status, other.body)
	}
	var c struct{ Count int }
	ts.do("GET", "/v1/users/count", "", nil, true).json(t, &c)
	if c.Count != 2 {
		t.Fatalf("count %d, want admin + Grace", c.Count)
	}
	if r := ts.do("POST", "/v1/users", body, map[string]string{"Idempotency-Key": "has space"}, false); r.status != 400 {
		t.Fatalf("bad key: %d", r.status)
	}
}

func TestBatchAllInvalidProposesNothing(t *testing.T) {
	ts := startServer(t)
	r := ts.do("POST", "/v1/users/batch", `{"users":[{"name":"","email":"a@example.com"},{"name":"B","email":"nope"}]}`, nil, true)
	if r.status != 200 || r.header.Get("X-Troupe-Index") != "" {
		t.Fatalf("all invalid: %d %v %s", r.status, r.header, r.body)
	}
	var out struct{ Results []struct{ Status int } }
	r.json(t, &out)
	if len(out.Results) != 2 || out.Results[0].Status != 400 || out.Results[1].Status != 400 {
		t.Fatalf("results: %s", r.body)
	}
}
