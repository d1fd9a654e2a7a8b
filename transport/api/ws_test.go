package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

type wsMsg struct {
	Type     string          `json:"type"`
	Seq      uint64          `json:"seq"`
	Version  uint64          `json:"version"`
	ClientID string          `json:"client_id"`
	State    string          `json:"state"`
	Pos      *int            `json:"pos"`
	Anchor   *int            `json:"anchor"`
	Ops      []opJSON        `json:"ops"`
	Error    json.RawMessage `json:"error"`
	Doc      *docResp        `json:"doc"`
}

func dialWS(t *testing.T, ts *testServer, path, query string, token string) *websocket.Conn {
	t.Helper()
	url := "ws" + strings.TrimPrefix(ts.base, "http") + path + "/ws?" + query
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(url, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (%d)", url, err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// next reads messages until one of type typ (skipping others).
func next(t *testing.T, c *websocket.Conn, typ string) wsMsg {
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
		if m.Type == "error" {
			t.Fatalf("error while waiting for %s: %s", typ, m.Error)
		}
	}
}

// TestWebSocketEditing: two clients, one through a follower, edit one
// document concurrently; both are acknowledged, both see each other's
// changes and cursors, and the text converges.
func TestWebSocketEditing(t *testing.T) {
	leader := startServer(t, secure, func(c *Config) { c.StreamKeepAlive = 50 * time.Millisecond })
	follower := startFollower(t, leader, secure, func(c *Config) { c.StreamKeepAlive = 50 * time.Millisecond })
	leader.register("Ada", "ada@example.com", "correct horse")
	tk := leader.login("ada@example.com", "correct horse")
	r := leader.do("POST", "/v1/docs", `{"title":"Pad","content":"ab"}`, bearer(tk.AccessToken), true)
	var d docResp
	r.json(t, &d)
	path := "/v1/docs/" + d.ID

	a := dialWS(t, leader, path, "client_id=A&last_event_id=0", tk.AccessToken)
	// The browser form: the token in the query.
	b := dialWS(t, follower, path, "client_id=B&last_event_id=0&access_token="+tk.AccessToken, "")
	if m := next(t, a, "presence"); m.ClientID != "B" || m.State != "join" {
		t.Fatalf("presence: %+v", m)
	}
	// Both write against version 0.
	if err := a.WriteJSON(map[string]any{"type": "op", "seq": 1, "base_version": 0, "ops": []map[string]any{{"op": "insert", "pos": 2, "text": "C"}}}); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteJSON(map[string]any{"type": "op", "seq": 1, "base_version": 0, "ops": []map[string]any{{"op": "insert", "pos": 0, "text": "Z"}}}); err != nil {
		t.Fatal(err)
	}
	// Each gets its ack and sees both changes, in version order (a
	// change may come before or after the ack).
	var acks []wsMsg
	for _, c := range []*websocket.Conn{a, b} {
		var versions []uint64
		var ack *wsMsg
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for ack == nil || len(versions) < 2 {
			var m wsMsg
			if err := c.ReadJSON(&m); err != nil {
				t.Fatal(err)
			}
			switch m.Type {
			case "ack":
				ack = &m
			case "change":
				versions = append(versions, m.Version)
			case "error":
				t.Fatalf("error: %s", m.Error)
			}
		}
		if fmt.Sprint(versions) != "[1 2]" || ack.Seq != 1 {
			t.Fatalf("changes %v, ack %+v", versions, ack)
		}
		acks = append(acks, *ack)
	}
	ackA, ackB := acks[0], acks[1]
	if ackA.Version+ackB.Version != 3 {
		t.Fatalf("acks: %+v %+v", ackA, ackB)
	}
	r = leader.do("GET", path, "", bearer(tk.AccessToken), true)
	r.json(t, &d)
	if *d.Content != "ZabC" {
		t.Fatalf("text %q", *d.Content)
	}
	// A cursor reaches the other client.
	if err := b.WriteJSON(map[string]any{"type": "cursor", "pos": 3}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, a, "presence"); m.State != "cursor" || m.Pos == nil || *m.Pos != 3 || m.Anchor != nil || m.ClientID != "B" {
		t.Fatalf("cursor: %+v", m)
	}
	// A selection: its anchor travels with the cursor; without one, or
	// with the anchor at the cursor, nothing is selected.
	for _, c := range []struct{ pos, anchor, want int }{{1, 3, 3}, {2, 2, -1}, {4, 0, 0}} {
		if err := b.WriteJSON(map[string]any{"type": "cursor", "pos": c.pos, "anchor": c.anchor}); err != nil {
			t.Fatal(err)
		}
		m := next(t, a, "presence")
		if m.Pos == nil || *m.Pos != c.pos || (c.want < 0) != (m.Anchor == nil) || (m.Anchor != nil && *m.Anchor != c.want) {
			t.Fatalf("selection %+v: %+v (anchor %v)", c, m, m.Anchor)
		}
	}
	// A cursor without a position, or before the text, is an error, not
	// silence.
	for _, bad := range []map[string]any{{"type": "cursor", "pos": -1}, {"type": "cursor"}, {"type": "cursor", "pos": 1, "anchor": -1}} {
		if err := b.WriteJSON(bad); err != nil {
			t.Fatal(err)
		}
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			var m wsMsg
			if err := b.ReadJSON(&m); err != nil {
				t.Fatalf("%v: %v", bad, err)
			}
			if m.Type == "error" {
				if !strings.Contains(string(m.Error), `"field":"pos"`) && !strings.Contains(string(m.Error), `"field":"anchor"`) {
					t.Fatalf("%v: %s", bad, m.Error)
				}
				break
			}
		}
	}
	// A refused op answers an error for its seq; a repeat answers the
	// first ack.
	if err := a.WriteJSON(map[string]any{"type": "op", "seq": 2, "base_version": 2, "ops": []map[string]any{{"op": "delete", "pos": 40, "len": 1}}}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, a, "error"); m.Seq != 2 || !strings.Contains(string(m.Error), "bad_request") {
		t.Fatalf("refused op: %+v %s", m, m.Error)
	}
	if err := b.WriteJSON(map[string]any{"type": "op", "seq": 1, "base_version": 0, "ops": []map[string]any{{"op": "insert", "pos": 0, "text": "Z"}}}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, b, "ack"); m.Version != ackB.Version {
		t.Fatalf("repeat: %+v, first %+v", m, ackB)
	}
	// A fresh token of the same user is taken over the socket.
	fresh := leader.login("ada@example.com", "correct horse")
	if err := a.WriteJSON(map[string]any{"type": "auth", "access_token": fresh.AccessToken}); err != nil {
		t.Fatal(err)
	}
	next(t, a, "auth_ok")
	if err := a.WriteJSON(map[string]any{"type": "op", "seq": 3, "base_version": 2, "ops": []map[string]any{{"op": "insert", "pos": 0, "text": "Q"}}}); err != nil {
		t.Fatal(err)
	}
	next(t, a, "ack")
	// B leaves: A sees it.
	b.Close()
	if m := next(t, a, "presence"); m.State != "leave" || m.ClientID != "B" {
		t.Fatalf("leave: %+v", m)
	}
	// Logout everywhere: the open socket is told why and closed.
	leader.expect(leader.do("POST", "/v1/auth/logout", `{"all":true}`, bearer(fresh.AccessToken), true), 204, "")
	expectWSClosed(t, a, "access_revoked")
	// Without a token, no WebSocket.
	url := "ws" + strings.TrimPrefix(leader.base, "http") + path + "/ws"
	if _, resp, err := websocket.DefaultDialer.Dial(url, nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("anonymous: %v %v", err, resp)
	}
}

// expectWSClosed reads until the server's {"type":"closed"} message,
// which must give reason, and then the close frame (1008).
func expectWSClosed(t *testing.T, c *websocket.Conn, reason string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var m struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		}
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for closed (%s): %v", reason, err)
		}
		if m.Type != "closed" {
			continue
		}
		if m.Reason != reason {
			t.Fatalf("closed for %q, want %q", m.Reason, reason)
		}
		break
	}
	_, _, err := c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("after closed: %v, want close 1008", err)
	}
}

// TestWebSocketBatchedFrames: changes queued for a subscriber go out
// several to a write, as frames the session builds itself; a client
// library reads every one, in order and intact, whatever its length
// (the three length forms of RFC 6455).
func TestWebSocketBatchedFrames(t *testing.T) {
	ts := startServer(t, secure)
	ts.register("Ada", "ada@example.com", "correct horse")
	tk := ts.login("ada@example.com", "correct horse")
	r := ts.do("POST", "/v1/docs", `{"title":"Pad"}`, bearer(tk.AccessToken), true)
	var d docResp
	r.json(t, &d)
	path := "/v1/docs/" + d.ID
	// Texts whose change messages are under 126 bytes, between 126 and
	// 65535, and over 65535.
	texts := []string{"a", strings.Repeat("b", 300), strings.Repeat("c", 70000)}
	const n = 60
	for i := range n {
		text := texts[i%len(texts)]
		body := fmt.Sprintf(`{"client_id":"w","seq":%d,"base_version":%d,"ops":[{"op":"insert","pos":0,"text":%q}]}`, i+1, i, text)
		ts.expect(ts.do("POST", path+"/ops", body, bearer(tk.AccessToken), true), 200, "")
	}
	// The reader connects after the writes: its replay is queued at
	// once, so the pump sends it in batches.
	c := dialWS(t, ts, path, "last_event_id=0", tk.AccessToken)
	for i := range n {
		m := next(t, c, "change")
		want := texts[i%len(texts)]
		if m.Version != uint64(i+1) || len(m.Ops) != 1 || m.Ops[0].Text == nil || *m.Ops[0].Text != want {
			t.Fatalf("change %d: version %d, %d ops", i+1, m.Version, len(m.Ops))
		}
	}
}

// TestWebSocketAckWithItsChange: on the leader, an op's ack goes out in
// the same write as the op's own change (one write per op, not two), in
// either order, and the socket's answers keep the reader's order: an
// error for a later bad message comes after the ack before it.
func TestWebSocketAckWithItsChange(t *testing.T) {
	// A long wait makes the pairing certain however loaded the machine.
	ts := startServer(t, secure, func(c *Config) { c.WSAckWait = time.Minute })
	ts.register("Ada", "ada@example.com", "correct horse")
	tk := ts.login("ada@example.com", "correct horse")
	r := ts.do("POST", "/v1/docs", `{"title":"Pad","content":""}`, bearer(tk.AccessToken), true)
	var d docResp
	r.json(t, &d)
	c := dialWS(t, ts, "/v1/docs/"+d.ID, "client_id=A", tk.AccessToken)
	const ops = 20
	for i := 1; i <= ops; i++ {
		if err := c.WriteJSON(map[string]any{"type": "op", "seq": i, "base_version": i - 1, "ops": []map[string]any{{"op": "insert", "pos": i - 1, "text": "x"}}}); err != nil {
			t.Fatal(err)
		}
		var gotAck, gotChange bool
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for !gotAck || !gotChange {
			var m wsMsg
			if err := c.ReadJSON(&m); err != nil {
				t.Fatal(err)
			}
			switch m.Type {
			case "ack":
				gotAck = m.Seq == uint64(i) && m.Version == uint64(i)
			case "change":
				gotChange = gotChange || m.Version == uint64(i)
			case "error":
				t.Fatalf("op %d: error %s", i, m.Error)
			}
		}
	}
	if got := metricValue(t, ts, `troupe_ws_acks_total{write="with_change"}`); got != ops {
		t.Fatalf("acks written with their change: %v of %d (alone: %v)", got, ops,
			metricValue(t, ts, `troupe_ws_acks_total{write="alone"}`))
	}
	// A refused op (a base version from the future) is answered with its
	// error, and the ack of the next good op still comes.
	if err := c.WriteJSON(map[string]any{"type": "op", "seq": ops + 1, "base_version": 999, "ops": []map[string]any{{"op": "insert", "pos": 0, "text": "y"}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteJSON(map[string]any{"type": "op", "seq": ops + 2, "base_version": ops, "ops": []map[string]any{{"op": "insert", "pos": 0, "text": "z"}}}); err != nil {
		t.Fatal(err)
	}
	var order []string
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(order) < 2 {
		var m wsMsg
		if err := c.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		if m.Type == "ack" || m.Type == "error" {
			order = append(order, fmt.Sprintf("%s %d", m.Type, m.Seq))
		}
	}
	if fmt.Sprint(order) != fmt.Sprintf("[error %d ack %d]", ops+1, ops+2) {
		t.Fatalf("answers %v", order)
	}
}
