package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/troupe-db/troupe/cluster"
)

// watchEvent is a change event as a test reads it.
type watchEvent struct {
	ID   string
	Data struct {
		Index   uint64          `json:"index"`
		N       uint32          `json:"n"`
		Kind    string          `json:"kind"`
		Op      string          `json:"op"`
		ID      string          `json:"id"`
		Version *uint64         `json:"version"`
		At      string          `json:"at"`
		Data    json.RawMessage `json:"data"`
	}
}

func (e watchEvent) String() string {
	return fmt.Sprintf("%s %s %s %s", e.ID, e.Data.Kind, e.Data.Op, e.Data.ID)
}

// tryWatch opens GET /v1/watch?query with token and a Last-Event-ID
// (if not empty); a refusal returns nil, its status and body.
func tryWatch(t *testing.T, ts *testServer, query, token, lastEventID string) (*sseStream, int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.base+"/v1/watch?"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, b.String()
	}
	s := &sseStream{sc: bufio.NewScanner(resp.Body), cancel: func() { cancel(); resp.Body.Close() }}
	t.Cleanup(s.cancel)
	return s, 200, ""
}

func openWatchSSE(t *testing.T, ts *testServer, query, token, lastEventID string) *sseStream {
	t.Helper()
	s, status, body := tryWatch(t, ts, query, token, lastEventID)
	if s == nil {
		t.Fatalf("watch?%s: %d %s", query, status, body)
	}
	return s
}

// nextChange reads the next change event (a "closed" event fails).
func nextChange(t *testing.T, s *sseStream) watchEvent {
	t.Helper()
	ev := readSSE(t, s.sc)
	if ev.name != "change" {
		t.Fatalf("event %s %s, want a change", ev.name, ev.data)
	}
	var w watchEvent
	w.ID = ev.id
	if err := json.Unmarshal([]byte(ev.data), &w.Data); err != nil {
		t.Fatalf("change %q: %v", ev.data, err)
	}
	if want := fmt.Sprintf("%d-%d", w.Data.Index, w.Data.N); w.ID != want {
		t.Fatalf("event id %q for a change at %s", w.ID, want)
	}
	return w
}

// expectChanges reads len(want) changes, each "kind op id" (id "" is any).
func expectChanges(t *testing.T, s *sseStream, want ...string) []watchEvent {
	t.Helper()
	var got []watchEvent
	for _, w := range want {
		ev := nextChange(t, s)
		got = append(got, ev)
		parts := strings.Fields(w)
		if ev.Data.Kind != parts[0] || ev.Data.Op != parts[1] || len(parts) > 2 && ev.Data.ID != parts[2] {
			t.Fatalf("change %s, want %s", ev, w)
		}
	}
	return got
}

func TestWatchRightsAndResume(t *testing.T) {
	ts := startServer(t, secure, noBackstop)
	adaID := ts.register("Ada", "ada@example.com", "correct horse")
	bobID := ts.register("Bob", "bob@example.com", "battery staple")
	ada := ts.login("ada@example.com", "correct horse")
	bob := ts.login("bob@example.com", "battery staple")
	admin := ts.login("admin@troupe.local", testAdminPassword)

	// Bad requests, and kinds beyond a user's rights.
	for q, want := range map[string]string{
		"kinds=users,bogus": "kinds", "kinds=": "kinds", "kinds=docs,docs": "kinds", "from=-1": "from", "from=1e3": "from",
		"from=18446744073709551616": "from", "last_event_id=1-x": "Last-Event-ID", "last_event_id=1-4294967295": "Last-Event-ID",
	} {
		_, status, body := tryWatch(t, ts, q, ada.AccessToken, "")
		if status != 400 || !strings.Contains(body, `"field":"`+want+`"`) {
			t.Errorf("%s: %d %s", q, status, body)
		}
	}
	for _, q := range []string{"kinds=policies", "kinds=users,members"} {
		if _, status, body := tryWatch(t, ts, q, ada.AccessToken, ""); status != 403 || !strings.Contains(body, "forbidden") {
			t.Errorf("%s as a user: %d %s", q, status, body)
		}
	}
	if _, status, _ := tryWatch(t, ts, "", "", ""); status != 401 {
		t.Errorf("without a token: %d", status)
	}

	// Every listing says where to watch from.
	r := ts.do("GET", "/v1/users", "", bearer(admin.AccessToken), true)
	from := r.header.Get("X-Troupe-Index")
	if from == "" {
		t.Fatal("GET /v1/users answers no X-Troupe-Index")
	}
	for _, path := range []string{"/v1/docs", "/v1/users/count", "/v1/ratelimit/policies", "/v1/cluster"} {
		if r := ts.do("GET", path, "", bearer(admin.AccessToken), true); r.header.Get("X-Troupe-Index") == "" {
			t.Errorf("GET %s answers no X-Troupe-Index", path)
		}
	}

	all := openWatchSSE(t, ts, "from="+from, admin.AccessToken, "")
	adas := openWatchSSE(t, ts, "", ada.AccessToken, "")
	bobs := openWatchSSE(t, ts, "kinds=docs", bob.AccessToken, "")

	r = ts.do("POST", "/v1/docs", `{"title":"Plans","content":"secret text"}`, bearer(ada.AccessToken), true)
	var d docResp
	r.json(t, &d)
	doc := "/v1/docs/" + d.ID
	ts.expect(ts.do("PUT", doc+"/editors/"+bobID, "", bearer(ada.AccessToken), true), 204, "")
	ts.expect(ts.do("PATCH", "/v1/users/"+adaID, `{"name":"Ada L."}`, bearer(ada.AccessToken), true), 200, "")
	ts.expect(ts.do("PATCH", "/v1/users/"+bobID, `{"name":"Bob B."}`, bearer(admin.AccessToken), true), 200, "")
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/api", `{"limit":10,"window_ms":1000}`, bearer(admin.AccessToken), true), 200, "")
	ts.expect(ts.do("DELETE", doc+"/editors/"+bobID, "", bearer(ada.AccessToken), true), 204, "")
	ts.expect(ts.do("PATCH", doc, `{"title":"Secret plans"}`, bearer(ada.AccessToken), true), 200, "")
	ts.expect(ts.do("DELETE", doc, "", bearer(ada.AccessToken), true), 204, "")

	seen := expectChanges(t, all, "doc created "+d.ID, "doc updated "+d.ID, "user updated "+adaID, "user updated "+bobID,
		"policy created api", "doc updated "+d.ID, "doc updated "+d.ID, "doc deleted "+d.ID)
	var created struct {
		Title   string   `json:"title"`
		Content *string  `json:"content"`
		Editors []string `json:"editors"`
	}
	if err := json.Unmarshal(seen[0].Data.Data, &created); err != nil || created.Title != "Plans" || created.Content != nil {
		t.Fatalf("a document change carries %s (%v): its listing, never its text", seen[0].Data.Data, err)
	}
	if strings.Contains(string(seen[2].Data.Data), "hash") || !strings.Contains(string(seen[2].Data.Data), `"name":"Ada L."`) {
		t.Fatalf("a user change carries %s", seen[2].Data.Data)
	}
	// Ada: her documents and herself, not Bob, not the policy.
	expectChanges(t, adas, "doc created", "doc updated", "user updated "+adaID, "doc updated", "doc updated", "doc deleted")
	// Bob: the document while he may read it; the change that takes it
	// away is the last he hears of it. kinds=docs: not himself.
	got := expectChanges(t, bobs, "doc updated "+d.ID, "doc updated "+d.ID)
	if err := json.Unmarshal(got[1].Data.Data, &created); err != nil || len(created.Editors) != 0 {
		t.Fatalf("the change that removed Bob: %s", got[1].Data.Data)
	}
	// Nothing more for Bob: a change of his own (not asked for) and of a
	// document of his own follow, and the next he gets is the latter.
	ts.expect(ts.do("PATCH", "/v1/users/"+bobID, `{"name":"Bob C."}`, bearer(bob.AccessToken), true), 200, "")
	ts.expect(ts.do("POST", "/v1/docs", `{"title":"Bob's"}`, bearer(bob.AccessToken), true), 201, "")
	if ev := nextChange(t, bobs); ev.Data.Op != "created" || ev.Data.ID == d.ID {
		t.Fatalf("Bob then got %s", ev)
	}

	// Resuming after the second change replays the rest, then goes live:
	// no gap, no duplicate.
	again := openWatchSSE(t, ts, "", admin.AccessToken, seen[1].ID)
	for _, want := range seen[2:] {
		if ev := nextChange(t, again); ev.ID != want.ID {
			t.Fatalf("resumed: %s, want %s", ev, want)
		}
	}
	expectChanges(t, again, "user updated "+bobID, "doc created")

	// A logout ends Ada's stream as it ends a document's.
	ts.expect(ts.do("POST", "/v1/auth/logout", `{"all":true}`, bearer(ada.AccessToken), true), 204, "")
	expectSSEClosed(t, adas, "access_revoked")
}

func TestWatchHistoryGone(t *testing.T) {
	ts := startServerWith(t, func(c *cluster.Config) { c.Watch.MaxChanges = 5 })
	r := ts.do("GET", "/v1/users", "", nil, true)
	before := r.header.Get("X-Troupe-Index")
	for i := range 10 {
		ts.create("U", fmt.Sprintf("u%d@example.com", i))
	}
	// A watch from the newest index waits until the feed holds every
	// change up to it: the history below is then settled.
	now := ts.do("GET", "/v1/users", "", nil, true).header.Get("X-Troupe-Index")
	openWatchSSE(t, ts, "from="+now, "", "").cancel()
	_, status, body := tryWatch(t, ts, "from="+before, "", "")
	if status != 410 || !strings.Contains(body, `"code":"gone"`) || !strings.Contains(body, `"oldest":`) {
		t.Fatalf("from before the history: %d %s", status, body)
	}
	var e struct {
		Error struct {
			Details struct{ Oldest uint64 } `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	s := openWatchSSE(t, ts, fmt.Sprint("from=", e.Error.Details.Oldest), "", "")
	expectChanges(t, s, "user created", "user created", "user created", "user created", "user created")

	// An index this node has not applied: 503 after a wait.
	start := time.Now()
	if _, status, _ := tryWatch(t, ts, "from=1000000", "", ""); status != 503 || time.Since(start) < 2*time.Second {
		t.Fatalf("from the future: %d after %v", status, time.Since(start))
	}
}

func TestWatchWebSocket(t *testing.T) {
	ts := startServer(t)
	url := "ws" + strings.TrimPrefix(ts.base, "http") + "/v1/watch/ws?kinds=users"
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	u := ts.create("Zoe", "zoe@example.com")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m struct {
		Type string `json:"type"`
		Kind string `json:"kind"`
		Op   string `json:"op"`
		ID   string `json:"id"`
	}
	if err := conn.ReadJSON(&m); err != nil || m.Type != "change" || m.Kind != "user" || m.Op != "created" || m.ID != u["id"] {
		t.Fatalf("%+v %v", m, err)
	}
	if err := conn.WriteJSON(map[string]string{"type": "op"}); err != nil {
		t.Fatal(err)
	}
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := conn.ReadJSON(&e); err != nil || e.Type != "error" || e.Error.Code != "bad_request" {
		t.Fatalf("%+v %v", e, err)
	}
}

// TestWatchTextChangesCoalesced: a burst of edits is announced by far
// fewer changes than edits, and its last version comes without any
// further write (the leader's no-op settles it).
func TestWatchTextChangesCoalesced(t *testing.T) {
	ts := startServer(t)
	ts.register("Ada", "ada@example.com", "correct horse")
	ada := ts.login("ada@example.com", "correct horse")
	r := ts.do("POST", "/v1/docs", `{"title":"Burst"}`, bearer(ada.AccessToken), true)
	var d docResp
	r.json(t, &d)
	s := openWatchSSE(t, ts, "kinds=docs", ada.AccessToken, "")
	const edits = 30
	for i := 1; i <= edits; i++ {
		ts.expect(ts.do("POST", "/v1/docs/"+d.ID+"/ops", fmt.Sprintf(`{"client_id":"c","seq":%d,"base_version":%d,"ops":[{"op":"insert","pos":0,"text":"x"}]}`, i, i-1), bearer(ada.AccessToken), true), 200, "")
	}
	changes := 0
	for {
		ev := nextChange(t, s)
		changes++
		if ev.Data.Op != "updated" || ev.Data.Version == nil {
			t.Fatalf("change %s", ev)
		}
		if *ev.Data.Version == edits {
			break
		}
	}
	if changes >= edits {
		t.Fatalf("%d changes for %d edits", changes, edits)
	}
	t.Logf("%d edits announced by %d changes", edits, changes)
}

// TestWatchStreamLimits: watch streams count against the stream limits
// as document streams do.
func TestWatchStreamLimits(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxStreamsPerUser, c.StreamKeepAlive = 1, 50*time.Millisecond })
	first := openWatchSSE(t, ts, "", "", "")
	if _, status, body := tryWatch(t, ts, "", "", ""); status != 429 || !strings.Contains(body, `"limit":1`) {
		t.Fatalf("a second stream: %d %s", status, body)
	}
	first.cancel()
	// Its place comes back once the server has seen it go (a keep-alive
	// that finds the connection closed).
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, status, _ := tryWatch(t, ts, "", "", "")
		if s != nil {
			break
		}
		if status != 429 || time.Now().After(deadline) {
			t.Fatalf("after the first ended: %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchSocketMessagesAreRateLimited: a watch socket's messages spend
// the caller's default bucket, as a document socket's do: over the limit
// they are refused rate_limited, and a socket that keeps on past
// WSOverLimitClose is closed.
func TestWatchSocketMessagesAreRateLimited(t *testing.T) {
	f := newRevocationFixture(t, withDefaultLimit(5, time.Second), func(c *Config) { c.WSOverLimitClose = 300 * time.Millisecond })
	ts := f.ts
	ts.clock.advance(time.Hour) // the fixture's requests are forgotten
	c := dialWS(t, ts, "/v1/watch", "kinds=users", f.bob.AccessToken)
	refused := false
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; !refused; i++ {
		if i == 20 {
			t.Fatal("20 messages and none refused")
		}
		if err := c.WriteJSON(map[string]any{"type": "hello"}); err != nil {
			t.Fatal(err)
		}
		var m struct {
			Type  string `json:"type"`
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := c.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Type == "error" && m.Error.Code == "rate_limited":
			refused = true
		case m.Type != "error" || m.Error.Code != "bad_request":
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
			if c.WriteJSON(map[string]any{"type": "hello"}) != nil {
				return
			}
		}
	}()
	expectWSClosed(t, c, "rate_limited")
	<-done
}
