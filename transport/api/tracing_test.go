package api

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/storage"
)

// traced turns tracing on for a test server, every span going to rec.
func traced(rec *tracetest.SpanRecorder, ratio float64, node string) func(*Config) {
	return func(c *Config) {
		c.Tracing = tracing.NewWithProcessor(tracing.Config{SampleRatio: ratio, NodeID: node}, rec)
	}
}

// spansOf waits until the spans named in want have ended (in any of
// recs) and returns every ended span.
func spansOf(t *testing.T, want []string, recs ...*tracetest.SpanRecorder) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var all []sdktrace.ReadOnlySpan
		for _, r := range recs {
			all = append(all, r.Ended()...)
		}
		missing := ""
		for _, name := range want {
			if findSpan(all, name) == nil {
				missing = name
				break
			}
		}
		if missing == "" {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("no span %q among %s", missing, spanNames(all))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func findSpan(spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func spanNames(spans []sdktrace.ReadOnlySpan) string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name())
	}
	return strings.Join(names, ", ")
}

func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// checkChain checks that names form a chain of parents and children in
// one trace, the first the root's child or the root.
func checkChain(t *testing.T, spans []sdktrace.ReadOnlySpan, names ...string) {
	t.Helper()
	var prev sdktrace.ReadOnlySpan
	for _, name := range names {
		s := findSpan(spans, name)
		if prev != nil {
			if s.Parent().SpanID() != prev.SpanContext().SpanID() || s.SpanContext().TraceID() != prev.SpanContext().TraceID() {
				t.Fatalf("%q is not a child of %q", name, prev.Name())
			}
		}
		prev = s
	}
}

func TestTracedWriteThroughAFollower(t *testing.T) {
	recL, recF := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	leader := startServer(t, traced(recL, 1, "leader"))
	f := startFollower(t, leader, traced(recF, 1, "follower"))

	// Forwarded as HTTP (a leader-only route): one trace over both nodes.
	if r := f.do("PUT", "/v1/ratelimit/policies/p1", `{"limit":10,"window_ms":1000}`, nil, true); r.status != 200 && r.status != 201 {
		t.Fatalf("put policy: %d %s", r.status, r.body)
	}
	route := "PUT /v1/ratelimit/policies/{name}"
	spans := spansOf(t, []string{route, "forward to leader", "wait for commit", "raft apply", "actor policy_put"}, recL, recF)
	if findSpan(recF.Ended(), "forward to leader") == nil || findSpan(recL.Ended(), "wait for commit") == nil {
		t.Fatalf("follower spans %s; leader spans %s", spanNames(recF.Ended()), spanNames(recL.Ended()))
	}
	followerRoot, leaderRoot := findSpan(recF.Ended(), route), findSpan(recL.Ended(), route)
	if followerRoot.Parent().IsValid() {
		t.Fatal("the follower's request span must be the root")
	}
	checkChain(t, spans, "forward to leader", route)
	if leaderRoot.Parent().SpanID() != findSpan(spans, "forward to leader").SpanContext().SpanID() {
		t.Fatal("the leader's request span must be a child of the follower's forward")
	}
	checkChain(t, recL.Ended(), route, "wait for commit", "raft apply", "actor policy_put")
	if attrOf(leaderRoot, "troupe.node.id") != "leader" || attrOf(followerRoot, "troupe.node.id") != "follower" ||
		attrOf(followerRoot, "http.route") != "/v1/ratelimit/policies/{name}" || attrOf(followerRoot, "http.response.status_code") == "" {
		t.Fatalf("request span attributes: %v", followerRoot.Attributes())
	}
	commit := findSpan(spans, "wait for commit")
	if attrOf(commit, "raft.index") == "" || attrOf(commit, "raft.index") == "0" || attrOf(commit, "troupe.group.commands") == "" {
		t.Fatalf("commit span attributes: %v", commit.Attributes())
	}
	if attrOf(findSpan(spans, "raft apply"), "raft.index") != attrOf(commit, "raft.index") {
		t.Fatal("the apply span names another index than the commit")
	}

	// Forwarded as a command (a create, in a batch of commands).
	recL.Reset()
	recF.Reset()
	if r := f.do("POST", "/v1/users", `{"name":"Tia","email":"tia@example.com"}`, nil, true); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	spans = spansOf(t, []string{"POST /v1/users", "forward command to leader", "POST /internal/v1/commands", "actor user_create"}, recL, recF)
	checkChain(t, spans, "POST /v1/users", "forward command to leader", "POST /internal/v1/commands", "wait for commit", "raft apply", "actor user_create")
}

func TestTracedSubmitAndRead(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	ts := startServer(t, secure, traced(rec, 1, "n1"))
	ts.register("Ada", "ada@example.com", "correct horse")
	ada := bearer(ts.login("ada@example.com", "correct horse").AccessToken)
	r := ts.do("POST", "/v1/docs", `{"title":"Notes","content":"hello"}`, ada, true)
	ts.expect(r, 201, "")
	var d docResp
	r.json(t, &d)
	rec.Reset()
	r = ts.do("POST", "/v1/docs/"+d.ID+"/ops", `{"client_id":"a","seq":1,"base_version":0,"ops":[{"op":"insert","pos":5,"text":" world"}]}`, ada, false)
	ts.expect(r, 200, "")
	route := "POST /v1/docs/{id}/ops"
	spans := spansOf(t, []string{route, "doc transform"}, rec)
	checkChain(t, spans, route, "wait for commit", "raft apply", "actor doc_submit", "doc transform")
	tr := findSpan(spans, "doc transform")
	if attrOf(tr, "troupe.doc.version") != "1" || attrOf(tr, "troupe.doc.base_version") != "0" || attrOf(tr, "troupe.doc.id") != d.ID {
		t.Fatalf("transform attributes: %v", tr.Attributes())
	}

	rec.Reset()
	ts.expect(ts.do("GET", "/v1/docs/"+d.ID, "", ada, true), 200, "")
	spans = spansOf(t, []string{"GET /v1/docs/{id}", "read barrier"}, rec)
	checkChain(t, spans, "GET /v1/docs/{id}", "read barrier")
	if attrOf(findSpan(spans, "read barrier"), "troupe.linearizable") != "true" {
		t.Fatal("a default read is linearizable")
	}
}

func TestTraceFollowsTheCallersDecision(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	ts := startServer(t, traced(rec, 0, "n1")) // keeps no trace of its own
	ts.expect(ts.do("GET", "/v1/users?consistency=stale", "", nil, true), 200, "")
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("ratio 0 recorded %d spans", n)
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	sampled := map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"}
	notSampled := map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-00"}
	ts.expect(ts.do("GET", "/v1/users?consistency=stale", "", notSampled, true), 200, "")
	ts.expect(ts.do("GET", "/v1/users?consistency=stale", "", sampled, true), 200, "")
	s := findSpan(spansOf(t, []string{"GET /v1/users"}, rec), "GET /v1/users")
	for _, o := range rec.Ended() {
		if o.Name() == "GET /v1/users" && o != s {
			t.Fatal("a caller's not-sampled decision must be followed")
		}
	}
	if s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("not in the caller's trace: %v", s.SpanContext())
	}
}

// TestForwardKeepsTheFollowersDecision: a write the follower does not
// trace is not traced by the leader either, though the leader keeps
// every new trace: the forward says not sampled.
func TestForwardKeepsTheFollowersDecision(t *testing.T) {
	recL, recF := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	leader := startServer(t, traced(recL, 1, "leader"))
	f := startFollower(t, leader, traced(recF, 0, "follower"))
	if r := f.do("PUT", "/v1/ratelimit/policies/p1", `{"limit":10,"window_ms":1000}`, nil, true); r.status != 200 && r.status != 201 {
		t.Fatalf("put policy: %d %s", r.status, r.body)
	}
	if r := f.do("POST", "/v1/users", `{"name":"Tia","email":"tia@example.com"}`, nil, true); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	// The leader's own request is traced: its recorder works.
	leader.expect(leader.do("GET", "/v1/users?consistency=stale", "", nil, true), 200, "")
	own := findSpan(spansOf(t, []string{"GET /v1/users"}, recL), "GET /v1/users")
	if n := len(recF.Ended()); n != 0 {
		t.Fatalf("the follower traced %d spans at ratio 0", n)
	}
	for _, s := range recL.Ended() {
		if s.SpanContext().TraceID() != own.SpanContext().TraceID() {
			t.Fatalf("the leader traced a forwarded write: %s", s.Name())
		}
	}
}

func TestRateLimitDecisionIsAnEvent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p, _, err := storage.ParseRateLimit(storage.DefaultPolicy, "1/1m")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, traced(rec, 1, "n1"), func(c *Config) { c.RateLimit = &p })
	ts.expect(ts.do("GET", "/v1/users?consistency=stale", "", nil, true), 200, "")
	ts.expect(ts.do("GET", "/v1/users?consistency=stale", "", nil, true), 429, "rate_limited")
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.Ended()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var got []string
	for _, s := range rec.Ended() {
		if s.Name() != "GET /v1/users" {
			continue
		}
		for _, e := range s.Events() {
			if e.Name == "rate limit" {
				for _, a := range e.Attributes {
					if a.Key == "troupe.ratelimit.allowed" {
						got = append(got, a.Value.String())
					}
				}
			}
		}
	}
	if strings.Join(got, ",") != "true,false" {
		t.Fatalf("rate-limit events: %v", got)
	}

	// A named policy's decision, asked for on the check route.
	rec2 := tracetest.NewSpanRecorder()
	ts2 := startServer(t, traced(rec2, 1, "n2"))
	ts2.do("PUT", "/v1/ratelimit/policies/p1", `{"limit":1,"window_ms":60000}`, nil, true)
	for range 2 {
		ts2.expect(ts2.do("POST", "/v1/ratelimit/check", `{"policy":"p1","key":"k"}`, nil, true), 200, "")
	}
	got = nil
	spans := spansOf(t, []string{"POST /v1/ratelimit/check"}, rec2)
	for _, s := range spans {
		for _, e := range s.Events() {
			if e.Name != "rate limit" {
				continue
			}
			for _, a := range e.Attributes {
				if a.Key == "troupe.ratelimit.allowed" || a.Key == "troupe.ratelimit.policy" {
					got = append(got, a.Value.String())
				}
			}
		}
	}
	if strings.Join(got, ",") != "p1,true,p1,false" {
		t.Fatalf("check route events: %v", got)
	}
}

func TestServerErrorCarriesTraceID(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	leader := startServer(t)
	// A follower that knows no leader: a write waits LeaderWait, then 503.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(testLogOutput(), nil))
	hcfg := DefaultConfig()
	hcfg.Insecure, hcfg.Argon2, hcfg.LeaderWait = true, cheapArgon, 50*time.Millisecond
	traced(rec, 1, "f")(&hcfg)
	serveForTest(t, ln, hcfg, logger, metrics.NewSet(), &followerNode{Node: leader.node}, leader.node, nil)
	f := &testServer{t: t, base: "http://" + ln.Addr().String(), node: leader.node, validator: leader.validator}
	r := f.do("PUT", "/v1/ratelimit/policies/p1", `{"limit":10,"window_ms":1000}`, nil, true)
	f.expect(r, 503, "unavailable")
	var body struct {
		Error struct {
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	r.json(t, &body)
	id, _ := body.Error.Details["trace_id"].(string)
	s := findSpan(spansOf(t, []string{"PUT /v1/ratelimit/policies/{name}"}, rec), "PUT /v1/ratelimit/policies/{name}")
	if id == "" || id != s.SpanContext().TraceID().String() {
		t.Fatalf("trace_id %q, span's trace %s", id, s.SpanContext().TraceID())
	}
	if attrOf(s, "http.response.status_code") != "503" || s.Status().Code.String() != "Error" {
		t.Fatalf("span of a 503: %v %v", s.Attributes(), s.Status())
	}
}

func TestRequestLogLinesCarryTheTraceID(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	var buf bytes.Buffer
	p := tracing.NewWithProcessor(tracing.Config{SampleRatio: 1}, rec)
	s := &Server{log: slog.New(slog.NewTextHandler(&buf, nil)), traces: p, tracer: p.Tracer()}
	var ctx fasthttp.RequestCtx
	span := s.startRequestSpan(&ctx, "GET /x")
	s.reqLog(&ctx).Info("a request's line")
	span.End()
	if want := "trace_id=" + span.SpanContext().TraceID().String(); !strings.Contains(buf.String(), want) {
		t.Fatalf("log %q lacks %s", buf.String(), want)
	}

	// Off: the server's own logger, and no trace context kept.
	off := &Server{log: s.log}
	var ctx2 fasthttp.RequestCtx
	if off.reqLog(&ctx2) != s.log || off.traceCtx(&ctx2) != context.Background() {
		t.Fatal("tracing off must not touch the request")
	}
}

func TestProbesAreNotTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	ts := startServer(t, traced(rec, 1, "n1"))
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := ts.do("GET", path, "", nil, false); r.status != 200 {
			t.Fatalf("%s: %d", path, r.status)
		}
	}
	ts.expect(ts.do("GET", "/no/such/route", "", nil, false), 404, "not_found")
	spans := spansOf(t, []string{"not found"}, rec)
	if len(spans) != 1 {
		t.Fatalf("probes were traced: %s", spanNames(spans))
	}
}

// TestPeekTraceparent finds the header however its name is cased, and
// leaves the header's normalising as it found it.
func TestPeekTraceparent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, name := range []string{"traceparent", "Traceparent", "TRACEPARENT", "TraceParent"} {
		var req fasthttp.Request
		raw := "GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n" + name + ": " + tp + "\r\n\r\n"
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		if got := string(peekTraceparent(&req.Header)); got != tp {
			t.Fatalf("%s: got %q", name, got)
		}
		req.Header.Set("x-after", "1") // still normalised: found by any case
		if string(req.Header.Peek("X-AFTER")) != "1" {
			t.Fatalf("%s: normalising not restored", name)
		}
	}
	var none fasthttp.Request
	none.Header.Set("Accept", "*/*")
	if v := peekTraceparent(&none.Header); v != nil {
		t.Fatalf("no header: %q", v)
	}
	// A header that keeps names as sent finds the lower-case name, and
	// stays so.
	var raw fasthttp.Request
	raw.Header.DisableNormalizing()
	raw.Header.Set(traceparentHeader, tp)
	if string(peekTraceparent(&raw.Header)) != tp || !raw.Header.DisableNormalizing() {
		t.Fatal("a header without normalising")
	}
}
