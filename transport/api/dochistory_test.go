package api

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

type historyResp struct {
	Items []struct {
		Version  uint64  `json:"version"`
		Author   *string `json:"author"`
		ClientID string  `json:"client_id"`
		At       *string `json:"at"`
		Inserted int     `json:"inserted"`
		Deleted  int     `json:"deleted"`
	} `json:"items"`
	Next   *uint64 `json:"next"`
	Oldest uint64  `json:"oldest"`
}

type errorResp struct {
	Error struct {
		Code    string         `json:"code"`
		Details map[string]any `json:"details"`
	} `json:"error"`
}

// TestDocTimeTravelOverHTTP: every version of a document reads as it
// was; the history lists who changed what, newest first, in pages; a
// version beyond the document is a bad request naming version; one that
// dropped out of the history bytes is gone, naming the oldest kept.
func TestDocTimeTravelOverHTTP(t *testing.T) {
	ts := startServer(t, secure, func(c *Config) { c.DocumentHistoryBytes = 1 << 20 })
	f := newHistoryFixture(t, ts, "Past", "é")
	adaID, ada, bobID, bob, carol, path := f.adaID, f.ada, f.bobID, f.bob, f.carol, f.path

	texts := []string{"é"}
	seq := map[string]int{}
	submit := func(who map[string]string, client, ops string) {
		t.Helper()
		seq[client]++
		r := ts.do("POST", path+"/ops", fmt.Sprintf(`{"client_id":%q,"seq":%d,"base_version":%d,"ops":%s}`, client, seq[client], len(texts)-1, ops), who, false)
		ts.expect(r, 200, "")
	}
	const N = 70 // past the first checkpoint after version 0
	for i := 1; i <= N; i++ {
		who, client := ada, "ada-tab"
		if i%3 == 0 {
			who, client = bob, "bob-tab"
		}
		s := fmt.Sprintf("%d→", i)
		submit(who, client, fmt.Sprintf(`[{"op":"insert","pos":0,"text":%q}]`, s))
		texts = append(texts, s+texts[len(texts)-1])
	}
	for _, v := range []int{0, 1, 2, 33, 63, 64, 65, N} {
		r := ts.do("GET", fmt.Sprintf("%s?version=%d", path, v), "", bob, true)
		ts.expect(r, 200, "")
		var got docResp
		r.json(t, &got)
		if got.Version != uint64(v) || got.Content == nil || *got.Content != texts[v] || got.Title != "Past" || got.Owner != adaID {
			t.Fatalf("version %d: %s", v, r.body)
		}
	}
	bad := ts.do("GET", fmt.Sprintf("%s?version=%d", path, N+1), "", ada, true)
	ts.expect(bad, 400, "bad_request")
	var e errorResp
	bad.json(t, &e)
	if e.Error.Details["field"] != "version" {
		t.Fatalf("beyond the version: %s", bad.body)
	}
	ts.expect(ts.do("GET", path+"?version=-1", "", ada, false), 400, "bad_request")
	ts.expect(ts.do("GET", path+"?version=0", "", carol, true), 403, "forbidden")
	ts.expect(ts.do("GET", path+"/history", "", carol, true), 403, "forbidden")

	// The history, newest first, in pages of 50.
	var h historyResp
	r := ts.do("GET", path+"/history", "", ada, true)
	ts.expect(r, 200, "")
	r.json(t, &h)
	if len(h.Items) != 50 || h.Next == nil || *h.Next != N-49 || h.Oldest != 0 {
		t.Fatalf("first page: %d items, next %v, oldest %d", len(h.Items), h.Next, h.Oldest)
	}
	all := h.Items
	r = ts.do("GET", fmt.Sprintf("%s/history?before=%d&limit=50", path, *h.Next), "", ada, true)
	ts.expect(r, 200, "")
	h = historyResp{}
	r.json(t, &h)
	if len(h.Items) != N-50 || h.Next != nil {
		t.Fatalf("second page: %d items, next %v", len(h.Items), h.Next)
	}
	all = append(all, h.Items...)
	for i, it := range all {
		v := N - i
		wantAuthor, wantClient := adaID, "ada-tab"
		if v%3 == 0 {
			wantAuthor, wantClient = bobID, "bob-tab"
		}
		at, err := time.Parse(time.RFC3339Nano, deref(it.At))
		if it.Version != uint64(v) || deref(it.Author) != wantAuthor || it.ClientID != wantClient || err != nil || time.Since(at) > time.Minute ||
			it.Inserted != len([]rune(fmt.Sprintf("%d→", v))) || it.Deleted != 0 {
			t.Fatalf("item %d: %+v (at %v)", i, it, err)
		}
	}
	ts.expect(ts.do("GET", path+"/history?before=0", "", ada, false), 400, "bad_request")
	ts.expect(ts.do("GET", path+"/history?limit=0", "", ada, false), 400, "bad_request")

	// Changes of 300 KiB push the old ones (and their checkpoints) out of
	// the 1 MiB history: what is gone says so, naming the oldest kept.
	big := strings.Repeat("z", 300<<10)
	for range 4 {
		submit(ada, "ada-tab", fmt.Sprintf(`[{"op":"insert","pos":0,"text":%q}]`, big))
		texts = append(texts, big+texts[len(texts)-1])
		submit(ada, "ada-tab", fmt.Sprintf(`[{"op":"delete","pos":0,"len":%d}]`, len(big)))
		texts = append(texts, texts[len(texts)-2])
	}
	r = ts.do("GET", path+"?version=1", "", ada, true)
	ts.expect(r, 410, "gone")
	e = errorResp{}
	r.json(t, &e)
	oldest, ok := e.Error.Details["oldest"].(float64)
	if !ok || oldest <= 1 || e.Error.Details["field"] != "version" {
		t.Fatalf("gone: %s", r.body)
	}
	r = ts.do("GET", fmt.Sprintf("%s?version=%d", path, int(oldest)), "", ada, true)
	ts.expect(r, 200, "")
	var got docResp
	r.json(t, &got)
	if *got.Content != texts[int(oldest)] {
		t.Fatalf("the oldest kept version %d reads %d bytes", int(oldest), len(*got.Content))
	}
	r = ts.do("GET", path+"/history?before=2", "", ada, true)
	ts.expect(r, 410, "gone")
	h = historyResp{}
	r = ts.do("GET", path+"/history?limit=1000", "", ada, true)
	ts.expect(r, 200, "")
	r.json(t, &h)
	if len(h.Items) == 0 || h.Items[0].Version != uint64(len(texts)-1) || h.Next != nil || h.Oldest != uint64(oldest) {
		t.Fatalf("history after the drop: %d items, oldest %d", len(h.Items), h.Oldest)
	}
	if it := h.Items[0]; it.Deleted != 300<<10 || it.Inserted != 0 {
		t.Fatalf("the delete counted %+v", it)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestDocRestoreOverHTTP: a restore commits one change by its caller that
// edits only what differs from the version restored, so a submit based
// on the version before it lands where its author meant.
func TestDocRestoreOverHTTP(t *testing.T) {
	ts := startServer(t, secure)
	f := newHistoryFixture(t, ts, "Fox", "The quick brown fox")
	ada, bobID, bob, carol, path := f.ada, f.bobID, f.bob, f.carol, f.path
	ts.expect(ts.do("POST", path+"/ops", `{"client_id":"a","seq":1,"base_version":0,"ops":[{"op":"replace","pos":4,"len":5,"text":"slow"}]}`, ada, true), 200, "")

	var res struct {
		Version  uint64 `json:"version"`
		Restored uint64 `json:"restored"`
	}
	r := ts.do("POST", path+"/restore", `{"version":0}`, bob, true)
	ts.expect(r, 200, "")
	r.json(t, &res)
	if res.Version != 2 || res.Restored != 0 {
		t.Fatalf("restore: %s", r.body)
	}
	// Ada appends at the end of version 1's text; transformed past the
	// restore, it is still at the end.
	ts.expect(ts.do("POST", path+"/ops", `{"client_id":"a","seq":2,"base_version":1,"ops":[{"op":"insert","pos":18,"text":" jumps"}]}`, ada, true), 200, "")
	r = ts.do("GET", path, "", ada, true)
	var d docResp
	r.json(t, &d)
	if *d.Content != "The quick brown fox jumps" || d.Version != 3 {
		t.Fatalf("after the restore: %s", r.body)
	}
	var h historyResp
	r = ts.do("GET", path+"/history?limit=2", "", ada, true)
	ts.expect(r, 200, "")
	r.json(t, &h)
	if it := h.Items[1]; it.Version != 2 || deref(it.Author) != bobID || !strings.HasPrefix(it.ClientID, "restore:") || it.Deleted != 4 || it.Inserted != 5 {
		t.Fatalf("the restore's change: %+v", it)
	}

	// Restoring the text it already has commits nothing.
	r = ts.do("POST", path+"/restore", `{"version":3}`, ada, true)
	ts.expect(r, 200, "")
	r.json(t, &res)
	if res.Version != 3 {
		t.Fatalf("restoring the current text: %s", r.body)
	}
	ts.expect(ts.do("POST", path+"/restore", `{"version":4}`, ada, true), 400, "bad_request")
	ts.expect(ts.do("POST", path+"/restore", `{}`, ada, false), 400, "bad_request")
	ts.expect(ts.do("POST", path+"/restore", `{"version":0}`, carol, true), 403, "forbidden")
}

// historyFixture is a document Ada owns with Bob as its editor, and Carol,
// who may not read it.
type historyFixture struct {
	adaID, bobID    string
	ada, bob, carol map[string]string // their bearer headers
	path            string            // /v1/docs/{id}
}

func newHistoryFixture(t *testing.T, ts *testServer, title, content string) historyFixture {
	t.Helper()
	var f historyFixture
	f.adaID = ts.register("Ada", "ada@example.com", "correct horse")
	f.ada = bearer(ts.login("ada@example.com", "correct horse").AccessToken)
	f.bobID = ts.register("Bob", "bob@example.com", "correct horse")
	f.bob = bearer(ts.login("bob@example.com", "correct horse").AccessToken)
	ts.register("Carol", "carol@example.com", "correct horse")
	f.carol = bearer(ts.login("carol@example.com", "correct horse").AccessToken)
	r := ts.do("POST", "/v1/docs", fmt.Sprintf(`{"title":%q,"content":%q}`, title, content), f.ada, true)
	ts.expect(r, 201, "")
	var d docResp
	r.json(t, &d)
	f.path = "/v1/docs/" + d.ID
	ts.expect(ts.do("PUT", f.path+"/editors/"+f.bobID, "", f.ada, true), 204, "")
	return f
}
