package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

type docResp struct {
	ID            string   `json:"id"`
	Title         string   `json:"title"`
	Content       *string  `json:"content"`
	Version       uint64   `json:"version"`
	Owner         string   `json:"owner"`
	Editors       []string `json:"editors"`
	Collaborators []string `json:"collaborators"`
}

func TestDocsOverHTTP(t *testing.T) {
	ts := startServer(t, secure)
	admin := bearer(ts.login("admin@troupe.local", testAdminPassword).AccessToken)
	adaID := ts.register("Ada", "ada@example.com", "correct horse")
	ada := bearer(ts.login("ada@example.com", "correct horse").AccessToken)
	bobID := ts.register("Bob", "bob@example.com", "correct horse")
	bob := bearer(ts.login("bob@example.com", "correct horse").AccessToken)

	r := ts.do("POST", "/v1/docs", `{"title":" Notes ","content":"hello"}`, ada, true)
	ts.expect(r, 201, "")
	var d docResp
	r.json(t, &d)
	if d.Title != "Notes" || *d.Content != "hello" || d.Version != 0 || d.Owner != adaID || r.header.Get("ETag") != `"0"` {
		t.Fatalf("created: %s %v", r.body, r.header)
	}
	path := "/v1/docs/" + d.ID

	// Bob may not read or edit until he is an editor.
	ts.expect(ts.do("GET", path, "", bob, true), 403, "forbidden")
	sub := func(who map[string]string, client string, seq, base int, ops string) *response {
		return ts.do("POST", path+"/ops", fmt.Sprintf(`{"client_id":%q,"seq":%d,"base_version":%d,"ops":%s}`, client, seq, base, ops), who, false)
	}
	ts.expect(sub(bob, "b", 1, 0, `[{"op":"insert","pos":0,"text":"x"}]`), 403, "forbidden")
	ts.expect(ts.do("PUT", path+"/editors/"+bobID, "", bob, true), 403, "forbidden")
	ts.expect(ts.do("PUT", path+"/editors/"+bobID, "", ada, true), 204, "")

	// Concurrent edits on version 0 converge.
	r = sub(ada, "a", 1, 0, `[{"op":"insert","pos":5,"text":" world"}]`)
	ts.expect(r, 200, "")
	r = sub(bob, "b", 1, 0, `[{"op":"replace","pos":0,"len":1,"text":"J"}]`)
	ts.expect(r, 200, "")
	var res struct {
		Version uint64   `json:"version"`
		Ops     []opJSON `json:"ops"`
	}
	r.json(t, &res)
	if res.Version != 2 {
		t.Fatalf("second submit: %s", r.body)
	}
	// A repeat answers the first result; a lower seq is a conflict.
	r2 := sub(bob, "b", 1, 0, `[{"op":"replace","pos":0,"len":1,"text":"J"}]`)
	if r2.status != 200 || string(r2.body) != string(r.body) {
		t.Fatalf("repeat: %d %s vs %s", r2.status, r2.body, r.body)
	}
	ts.expect(sub(bob, "b", 0, 2, `[{"op":"insert","pos":0,"text":"x"}]`), 409, "conflict")
	ts.expect(sub(bob, "b", 5, 2, `[{"op":"insert","pos":99,"text":"x"}]`), 400, "bad_request")
	ts.expect(sub(bob, "b", 5, 2, `[{"op":"jump","pos":0}]`), 400, "bad_request")
	ts.expect(sub(bob, "b", 5, 2, `[{"op":"insert","pos":0}]`), 400, "bad_request")

	r = ts.do("GET", path, "", bob, true)
	r.json(t, &d)
	if *d.Content != "Jello world" || d.Version != 2 || len(d.Editors) != 1 {
		t.Fatalf("after edits: %s", r.body)
	}
	r = ts.do("GET", path+"/ops?since=0", "", ada, true)
	var ch struct {
		Changes []changeJSON `json:"changes"`
	}
	r.json(t, &ch)
	if len(ch.Changes) != 2 || ch.Changes[0].ClientID != "a" || ch.Changes[1].Version != 2 {
		t.Fatalf("changes: %s", r.body)
	}
	ts.expect(ts.do("GET", path+"/ops?since=9", "", ada, true), 400, "bad_request")

	// Listing shows what each may read; admins see all.
	ts.expect(ts.do("POST", "/v1/docs", `{"title":"Admin's"}`, admin, true), 201, "")
	for who, want := range map[string]int{"ada": 1, "bob": 1, "admin": 2} {
		tok := map[string]map[string]string{"ada": ada, "bob": bob, "admin": admin}[who]
		r := ts.do("GET", "/v1/docs", "", tok, true)
		var list struct {
			Items []docResp `json:"items"`
		}
		r.json(t, &list)
		if len(list.Items) != want || list.Items[0].Content != nil {
			t.Fatalf("%s lists %s", who, r.body)
		}
	}
	ts.expect(ts.do("PATCH", path, `{"title":"Letters"}`, bob, true), 200, "")
	ts.expect(ts.do("DELETE", path, "", bob, true), 403, "forbidden")
	ts.expect(ts.do("DELETE", path, "", ada, true), 204, "")
	ts.expect(ts.do("GET", path, "", ada, true), 404, "not_found")
}

// sseEvent is one parsed server-sent event.
type sseEvent struct{ id, name, data string }

func readSSE(t *testing.T, sc *bufio.Scanner) sseEvent {
	t.Helper()
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" {
				return ev
			}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
	t.Fatalf("stream ended: %v", sc.Err())
	return ev
}

func TestDocEventsResume(t *testing.T) {
	ts := startServer(t, secure, func(c *Config) { c.StreamKeepAlive = 50 * time.Millisecond })
	ts.register("Ada", "ada@example.com", "correct horse")
	tk := ts.login("ada@example.com", "correct horse")
	ada := bearer(tk.AccessToken)
	r := ts.do("POST", "/v1/docs", `{"title":"Live"}`, ada, true)
	var d docResp
	r.json(t, &d)
	path := "/v1/docs/" + d.ID
	for i := range 3 {
		ts.expect(ts.do("POST", path+"/ops", fmt.Sprintf(`{"client_id":"a","seq":%d,"base_version":%d,"ops":[{"op":"insert","pos":0,"text":"%d"}]}`, i+1, i, i), ada, true), 200, "")
	}
	open := func(query string, header map[string]string) (*bufio.Scanner, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.base+path+"/events"+query, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("events: %d %v", resp.StatusCode, resp.Header)
		}
		return bufio.NewScanner(resp.Body), func() { cancel(); resp.Body.Close() }
	}
	// The token in the query (browsers' EventSource), resuming after 1.
	sc, closeA := open("?access_token="+tk.AccessToken+"&client_id=tab1", map[string]string{"Last-Event-ID": "1"})
	defer closeA()
	for _, want := range []string{"2", "3"} {
		if ev := readSSE(t, sc); ev.name != "change" || ev.id != want {
			t.Fatalf("replay: %+v, want change %s", ev, want)
		}
	}
	// Live: a new change arrives, once.
	ts.expect(ts.do("POST", path+"/ops", `{"client_id":"a","seq":4,"base_version":3,"ops":[{"op":"insert","pos":0,"text":"L"}]}`, ada, true), 200, "")
	if ev := readSSE(t, sc); ev.name != "change" || ev.id != "4" || !strings.Contains(ev.data, `"text":"L"`) {
		t.Fatalf("live: %+v", ev)
	}
	// A second tab joins: the first sees its presence; the document
	// lists both as collaborators.
	sc2, closeB := open("?client_id=tab2", ada)
	if ev := readSSE(t, sc); ev.name != "presence" || !strings.Contains(ev.data, `"client_id":"tab2"`) || !strings.Contains(ev.data, `"state":"join"`) {
		t.Fatalf("presence: %+v", ev)
	}
	r = ts.do("GET", path, "", ada, true)
	r.json(t, &d)
	if len(d.Collaborators) != 1 {
		t.Fatalf("collaborators: %s", r.body)
	}
	closeB()
	_ = sc2
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := readSSE(t, sc)
		if ev.name == "presence" && strings.Contains(ev.data, `"state":"leave"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no leave event")
		}
	}
	// Without a token, no stream; a bad Last-Event-ID is refused.
	if r := ts.do("GET", path+"/events", "", nil, false); r.status != 401 {
		t.Fatalf("anonymous events: %d", r.status)
	}
	if r := ts.do("GET", path+"/events", "", map[string]string{"Authorization": ada["Authorization"], "Last-Event-ID": "x"}, false); r.status != 400 {
		t.Fatalf("bad Last-Event-ID: %d", r.status)
	}
}
