package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/troupe-db/troupe/transport/auth"
)

// An hour between keep-alives: the backstop re-check never runs in these
// tests, so a stream that ends was ended by the revocation events.
func noBackstop(c *Config) { c.StreamKeepAlive = time.Hour }

// sseStream is an open SSE stream of a test.
type sseStream struct {
	sc     *bufio.Scanner
	cancel func()
}

// openSSE opens a document's event stream with a bearer token.
func openSSE(t *testing.T, ts *testServer, docPath, query, token string) *sseStream {
	t.Helper()
	s, status := trySSE(t, ts, docPath, query, token)
	if s == nil {
		t.Fatalf("events: %d", status)
	}
	return s
}

// trySSE opens a stream, or returns nil and the status of the refusal.
func trySSE(t *testing.T, ts *testServer, docPath, query, token string) (*sseStream, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.base+docPath+"/events?"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode
	}
	s := &sseStream{sc: bufio.NewScanner(resp.Body), cancel: func() { cancel(); resp.Body.Close() }}
	t.Cleanup(s.cancel)
	return s, 200
}

// expectSSEClosed reads events until "closed", which must give reason;
// the stream must then end. It returns the names of the events before.
func expectSSEClosed(t *testing.T, s *sseStream, reason string) []string {
	t.Helper()
	var before []string
	for {
		ev := readSSE(t, s.sc)
		if ev.name != "closed" {
			before = append(before, ev.name)
			continue
		}
		if ev.data != `{"reason":"`+reason+`"}` {
			t.Fatalf("closed: %s, want reason %s", ev.data, reason)
		}
		break
	}
	for s.sc.Scan() {
		if line := s.sc.Text(); line != "" {
			t.Fatalf("after closed: %q", line)
		}
	}
	return before
}

// revocationFixture: Ada owns a document Bob edits; an admin is signed in.
type revocationFixture struct {
	ts                   *testServer
	adaID, bobID         string
	ada, bob, admin      tokens
	docPath              string
	adaAuth, adminBearer map[string]string
}

func newRevocationFixture(t *testing.T, opts ...func(*Config)) *revocationFixture {
	ts := startServer(t, append([]func(*Config){secure, noBackstop}, opts...)...)
	f := &revocationFixture{ts: ts}
	f.adaID = ts.register("Ada", "ada@example.com", "correct horse")
	f.bobID = ts.register("Bob", "bob@example.com", "battery staple")
	f.ada = ts.login("ada@example.com", "correct horse")
	f.bob = ts.login("bob@example.com", "battery staple")
	f.admin = ts.login("admin@troupe.local", testAdminPassword)
	f.adaAuth, f.adminBearer = bearer(f.ada.AccessToken), bearer(f.admin.AccessToken)
	r := ts.do("POST", "/v1/docs", `{"title":"Shared","content":"abc"}`, f.adaAuth, true)
	var d docResp
	r.json(t, &d)
	f.docPath = "/v1/docs/" + d.ID
	ts.expect(ts.do("PUT", f.docPath+"/editors/"+f.bobID, "", f.adaAuth, true), 204, "")
	return f
}

// bothStreams opens an SSE stream and a WebSocket with token.
func (f *revocationFixture) bothStreams(t *testing.T, token string) (*sseStream, *websocket.Conn) {
	s := openSSE(t, f.ts, f.docPath, "client_id=s", token)
	c := dialWS(t, f.ts, f.docPath, "client_id=w", token)
	if ev := readSSE(t, s.sc); ev.name != "presence" {
		t.Fatalf("first event %+v", ev)
	}
	return s, c
}

// expectBothClosed checks both streams end for reason, and logs how long
// after start they did.
func expectBothClosed(t *testing.T, s *sseStream, c *websocket.Conn, reason string, start time.Time) {
	t.Helper()
	expectSSEClosed(t, s, reason)
	expectWSClosed(t, c, reason)
	t.Logf("%s: both streams closed %v after the change", reason, time.Since(start))
}

func TestStreamsEndWhenAnEditorIsRemoved(t *testing.T) {
	f := newRevocationFixture(t)
	s, c := f.bothStreams(t, f.bob.AccessToken)
	// A second server on the node (a follower's front end) is told too.
	follower := startFollower(t, f.ts, secure, noBackstop)
	atFollower := openSSE(t, follower, f.docPath, "", f.bob.AccessToken)
	// The owner's own stream is not touched.
	own := openSSE(t, f.ts, f.docPath, "", f.ada.AccessToken)
	start := time.Now()
	f.ts.expect(f.ts.do("DELETE", f.docPath+"/editors/"+f.bobID, "", f.adaAuth, true), 204, "")
	expectBothClosed(t, s, c, "access_revoked", start)
	expectSSEClosed(t, atFollower, "access_revoked")
	f.ts.expect(f.ts.do("POST", f.docPath+"/ops", `{"client_id":"a","seq":1,"base_version":0,"ops":[{"op":"insert","pos":0,"text":"x"}]}`, f.adaAuth, true), 200, "")
	for {
		if ev := readSSE(t, own.sc); ev.name == "change" {
			break
		}
	}
}

func TestStreamsEndWhenTheDocumentIsDeleted(t *testing.T) {
	f := newRevocationFixture(t)
	s, c := f.bothStreams(t, f.bob.AccessToken)
	start := time.Now()
	f.ts.expect(f.ts.do("DELETE", f.docPath, "", f.adaAuth, true), 204, "")
	// The reset that says so comes first, as before.
	if before := expectSSEClosed(t, s, "document_deleted"); len(before) == 0 || before[len(before)-1] != "reset" {
		t.Fatalf("events before closed: %v", before)
	}
	expectWSClosed(t, c, "document_deleted")
	t.Logf("both streams closed %v after the delete", time.Since(start))
}

func TestStreamsEndWhenTheUserIsDeleted(t *testing.T) {
	f := newRevocationFixture(t)
	s, c := f.bothStreams(t, f.bob.AccessToken)
	start := time.Now()
	f.ts.expect(f.ts.do("DELETE", "/v1/users/"+f.bobID, "", f.adminBearer, true), 204, "")
	expectBothClosed(t, s, c, "access_revoked", start)
}

func TestStreamsEndWhenTheRoleIsLowered(t *testing.T) {
	f := newRevocationFixture(t)
	// Carol reads Ada's document only as an admin.
	carolID := f.ts.register("Carol", "carol@example.com", "hunter two")
	f.ts.expect(f.ts.do("PATCH", "/v1/users/"+carolID, `{"role":"admin"}`, f.adminBearer, true), 200, "")
	carol := f.ts.login("carol@example.com", "hunter two")
	s, c := f.bothStreams(t, carol.AccessToken)
	start := time.Now()
	f.ts.expect(f.ts.do("PATCH", "/v1/users/"+carolID, `{"role":"user"}`, f.adminBearer, true), 200, "")
	expectBothClosed(t, s, c, "access_revoked", start)
}

func TestStreamsEndOnLogoutEverywhere(t *testing.T) {
	f := newRevocationFixture(t)
	s, c := f.bothStreams(t, f.bob.AccessToken)
	start := time.Now()
	f.ts.expect(f.ts.do("POST", "/v1/auth/logout", `{"all":true}`, bearer(f.bob.AccessToken), true), 204, "")
	expectBothClosed(t, s, c, "access_revoked", start)
}

// TestStreamsEndWithTheirSession: logging out of one session, or a
// detected refresh-token reuse, ends the streams of that session's access
// tokens, and only those.
func TestStreamsEndWithTheirSession(t *testing.T) {
	f := newRevocationFixture(t)
	other := f.ts.login("bob@example.com", "battery staple")
	s, c := f.bothStreams(t, f.bob.AccessToken)
	kept := openSSE(t, f.ts, f.docPath, "", other.AccessToken)
	start := time.Now()
	f.ts.expect(f.ts.do("POST", "/v1/auth/logout", fmt.Sprintf(`{"refresh_token":%q}`, f.bob.RefreshToken), bearer(other.AccessToken), true), 204, "")
	expectBothClosed(t, s, c, "access_revoked", start)

	// Reuse detection: a token of the family that is not its current
	// one (a spent or forged token) revokes the family.
	r := f.ts.do("POST", "/v1/auth/refresh", fmt.Sprintf(`{"refresh_token":%q}`, other.RefreshToken), nil, true)
	f.ts.expect(r, 200, "")
	var next tokens
	r.json(t, &next)
	s2, c2 := f.bothStreams(t, next.AccessToken)
	forged := other.RefreshToken[:len(other.RefreshToken)-4] + "AAAA"
	start = time.Now()
	f.ts.expect(f.ts.do("POST", "/v1/auth/refresh", fmt.Sprintf(`{"refresh_token":%q}`, forged), nil, true), 401, "unauthenticated")
	expectBothClosed(t, s2, c2, "access_revoked", start)
	expectSSEClosed(t, kept, "access_revoked")
}

// shortLivedToken signs a copy of an access token that expires after
// life (its leeway included), for the same user and session.
func shortLivedToken(t *testing.T, ts *testServer, token string, life time.Duration) string {
	t.Helper()
	claims := &auth.Claims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims.IssuedAt = jwt.NewNumericDate(now.Add(-time.Minute))
	claims.NotBefore = claims.IssuedAt
	claims.ExpiresAt = jwt.NewNumericDate(now.Add(life - ts.srv.cfg.TokenLeeway))
	k := ts.node.Auth().Current()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = k.KID
	tok.Header["typ"] = "at+jwt" // RFC 9068
	signed, err := tok.SignedString(k.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestStreamsEndWhenTheTokenExpires: a stream ends when its token
// expires, unless a WebSocket was given a fresh one.
func TestStreamsEndWhenTheTokenExpires(t *testing.T) {
	f := newRevocationFixture(t)
	short := shortLivedToken(t, f.ts, f.bob.AccessToken, 1500*time.Millisecond)
	s, c := f.bothStreams(t, short)
	renewed := dialWS(t, f.ts, f.docPath, "", shortLivedToken(t, f.ts, f.bob.AccessToken, 1500*time.Millisecond))
	if err := renewed.WriteJSON(map[string]any{"type": "auth", "access_token": f.bob.AccessToken}); err != nil {
		t.Fatal(err)
	}
	next(t, renewed, "auth_ok")
	start := time.Now()
	expectBothClosed(t, s, c, "token_expired", start)
	// The renewed socket lives on: it still gets changes.
	f.ts.expect(f.ts.do("POST", f.docPath+"/ops", `{"client_id":"a","seq":1,"base_version":0,"ops":[{"op":"insert","pos":0,"text":"x"}]}`, f.adaAuth, true), 200, "")
	if m := next(t, renewed, "change"); m.Version != 1 {
		t.Fatalf("renewed socket: %+v", m)
	}
}

// TestStreamLimits: --max-streams-per-user answers 429 with the limit,
// --max-streams 503; a closed stream gives its place back.
func TestStreamLimits(t *testing.T) {
	f := newRevocationFixture(t, func(c *Config) {
		c.MaxStreamsPerUser = 2
		c.MaxStreams = 3
		c.StreamKeepAlive = 20 * time.Millisecond // closed clients are noticed at the next write
	})
	ts := f.ts
	first := openSSE(t, ts, f.docPath, "", f.bob.AccessToken)
	_ = dialWS(t, ts, f.docPath, "", f.bob.AccessToken)
	r := ts.do("GET", f.docPath+"/events", "", bearer(f.bob.AccessToken), true)
	ts.expect(r, 429, "rate_limited")
	if !strings.Contains(string(r.body), `"limit":2`) || r.header.Get("Retry-After") == "" {
		t.Fatalf("per-user refusal: %v %s", r.header, r.body)
	}
	_ = openSSE(t, ts, f.docPath, "", f.ada.AccessToken)
	r = ts.do("GET", f.docPath+"/events", "", f.adaAuth, true)
	ts.expect(r, 503, "unavailable")
	if !strings.Contains(string(r.body), `"limit":3`) {
		t.Fatalf("per-node refusal: %s", r.body)
	}
	// Bob closes one: he may open another.
	first.cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, status := trySSE(t, ts, f.docPath, "", f.bob.AccessToken)
		if s != nil {
			break
		}
		if status != 429 && status != 503 || time.Now().After(deadline) {
			t.Fatalf("after closing one: %d", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, m := range []string{`troupe_streams_refused_total{reason="user_limit"}`, `troupe_streams_refused_total{reason="node_limit"}`} {
		if metricValue(t, ts, m) < 1 {
			t.Fatalf("%s not counted", m)
		}
	}
}

// TestPresenceLimit: a document holds at most MaxPresence present
// clients; a stream without a client id is not one.
func TestPresenceLimit(t *testing.T) {
	f := newRevocationFixture(t, func(c *Config) { c.MaxPresence = 1 })
	ts := f.ts
	_ = openSSE(t, ts, f.docPath, "client_id=one", f.bob.AccessToken)
	r := ts.do("GET", f.docPath+"/events?client_id=two", "", f.adaAuth, true)
	ts.expect(r, 429, "rate_limited")
	if !strings.Contains(string(r.body), `"limit":1`) {
		t.Fatalf("presence refusal: %s", r.body)
	}
	_ = openSSE(t, ts, f.docPath, "", f.ada.AccessToken)
	if metricValue(t, ts, `troupe_streams_refused_total{reason="presence_limit"}`) != 1 {
		t.Fatal("presence refusal not counted")
	}
}

// TestWebSocketMessagesAreRateLimited: every message spends the user's
// default bucket, the one its requests spend; over the limit a message is
// refused with its seq and retry_after_ms and not applied, and a socket
// that keeps on past WSOverLimitClose is closed (1008).
func TestWebSocketMessagesAreRateLimited(t *testing.T) {
	// The limiter's clock stands still unless the test moves it.
	f := newRevocationFixture(t, withDefaultLimit(5, time.Second), func(c *Config) { c.WSOverLimitClose = 300 * time.Millisecond })
	ts := f.ts
	ts.clock.advance(time.Hour)                                     // the fixture's requests are forgotten
	c := dialWS(t, ts, f.docPath, "client_id=w", f.bob.AccessToken) // 1 of 5
	// Three cursors and an op pass.
	for i := range 3 {
		if err := c.WriteJSON(map[string]any{"type": "cursor", "pos": i}); err != nil {
			t.Fatal(err)
		}
	}
	op := func(seq int) {
		if err := c.WriteJSON(map[string]any{"type": "op", "seq": seq, "base_version": 0, "ops": []map[string]any{{"op": "insert", "pos": 0, "text": "x"}}}); err != nil {
			t.Fatal(err)
		}
	}
	op(1)
	next(t, c, "ack")
	// The next op is refused, with its seq, and not applied.
	op(2)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var m struct {
			Type  string `json:"type"`
			Seq   *int   `json:"seq"`
			Error struct {
				Code    string `json:"code"`
				Details struct {
					RetryAfterMs *int64 `json:"retry_after_ms"`
				} `json:"details"`
			} `json:"error"`
		}
		if err := c.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		if m.Type == "ack" && m.Seq != nil && *m.Seq == 2 {
			t.Fatal("an op over the limit was applied")
		}
		if m.Type != "error" {
			continue
		}
		if m.Error.Code != "rate_limited" || m.Seq == nil || *m.Seq != 2 || m.Error.Details.RetryAfterMs == nil || *m.Error.Details.RetryAfterMs <= 0 {
			t.Fatalf("refusal: %+v", m)
		}
		break
	}
	// The same bucket as the user's requests.
	ts.expect(ts.do("GET", f.docPath, "", bearer(f.bob.AccessToken), true), 429, "rate_limited")
	var d docResp
	ts.clock.advance(time.Hour)
	r := ts.do("GET", f.docPath, "", f.adaAuth, true)
	r.json(t, &d)
	if d.Version != 1 {
		t.Fatalf("version %d: the refused op was applied", d.Version)
	}
	// Keep sending over the limit: closed after WSOverLimitClose.
	for range 5 { // spend the refilled burst
		op(3)
	}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for time.Since(start) < 5*time.Second {
			if c.WriteJSON(map[string]any{"type": "cursor", "pos": 1}) != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	expectWSClosed(t, c, "rate_limited")
	<-done
	if metricValue(t, ts, `troupe_ws_messages_refused_total{reason="rate_limited"}`) < 2 {
		t.Fatal("refusals not counted")
	}
}

// TestCursorsAreCoalesced: a socket's cursor positions reach the others
// at most every cursorGap, the newest last.
func TestCursorsAreCoalesced(t *testing.T) {
	f := newRevocationFixture(t)
	watcher := dialWS(t, f.ts, f.docPath, "client_id=watcher", f.ada.AccessToken)
	mover := dialWS(t, f.ts, f.docPath, "client_id=mover", f.bob.AccessToken)
	if m := next(t, watcher, "presence"); m.ClientID != "mover" || m.State != "join" {
		t.Fatalf("join: %+v", m)
	}
	const n = 200
	start := time.Now()
	for i := range n {
		if err := mover.WriteJSON(map[string]any{"type": "cursor", "pos": i}); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	for len(got) == 0 || got[len(got)-1] != n-1 {
		m := next(t, watcher, "presence")
		if m.State == "cursor" && m.Pos != nil {
			got = append(got, *m.Pos)
		}
	}
	elapsed := time.Since(start)
	if max := int(elapsed/cursorGap) + 2; len(got) > max {
		t.Fatalf("%d cursors reached the watcher in %v (at most %d expected)", len(got), elapsed, max)
	}
	t.Logf("%d cursor messages sent, %d delivered in %v", n, len(got), elapsed)
}

// TestWebSocketMessageSize: a message over 1 MiB ends the socket and is
// counted.
func TestWebSocketMessageSize(t *testing.T) {
	f := newRevocationFixture(t)
	c := dialWS(t, f.ts, f.docPath, "", f.bob.AccessToken)
	big := `{"type":"cursor","pos":1,"x":"` + strings.Repeat("a", wsMaxMessage) + `"}`
	if err := c.WriteMessage(websocket.TextMessage, []byte(big)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			break
		}
	}
	waitFor(t, "the refusal to be counted", func() bool { return f.ts.srv.wsMetrics.tooLarge.Get() == 1 })
}

func TestStreamsEndOnANewPassword(t *testing.T) {
	f := newRevocationFixture(t)
	s, c := f.bothStreams(t, f.bob.AccessToken)
	start := time.Now()
	f.ts.expect(f.ts.do("PATCH", "/v1/users/"+f.bobID, `{"password":"a brand new one","current_password":"battery staple"}`, bearer(f.bob.AccessToken), true), 200, "")
	expectBothClosed(t, s, c, "access_revoked", start)
}
