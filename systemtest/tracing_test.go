package systemtest

import (
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace receiver on 127.0.0.1: it decodes
// each export request (protobuf, the collector's own messages) and keeps
// every span with the node (service.instance.id) that sent it.
type otlpReceiver struct {
	URL string
	srv *http.Server

	mu    sync.Mutex
	spans []receivedSpan
	bad   []string // requests that did not decode
}

type receivedSpan struct {
	node string
	span *tracepb.Span
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{URL: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.export)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() { _ = r.srv.Close() })
	return r
}

func (r *otlpReceiver) export(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = http.MaxBytesReader(w, req.Body, 16<<20)
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			r.fail(w, "gzip: "+err.Error())
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		r.fail(w, "read: "+err.Error())
		return
	}
	var msg collectortrace.ExportTraceServiceRequest
	if req.Header.Get("Content-Type") != "application/x-protobuf" {
		r.fail(w, "content type "+req.Header.Get("Content-Type"))
		return
	}
	if err := proto.Unmarshal(data, &msg); err != nil {
		r.fail(w, "protobuf: "+err.Error())
		return
	}
	r.mu.Lock()
	for _, rs := range msg.GetResourceSpans() {
		node := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.instance.id" {
				node = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, receivedSpan{node: node, span: s})
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *otlpReceiver) fail(w http.ResponseWriter, why string) {
	r.mu.Lock()
	r.bad = append(r.bad, why)
	r.mu.Unlock()
	http.Error(w, why, http.StatusBadRequest)
}

func (r *otlpReceiver) received() ([]receivedSpan, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedSpan(nil), r.spans...), append([]string(nil), r.bad...)
}

// TestTraceOfAWriteThroughAFollower: a write sent to a follower of a
// three-process cluster exporting to an OTLP receiver yields one trace
// whose spans come from the follower and the leader, each the child of
// the one before: the follower's request, its forward, the leader's
// request, the wait for commit, the raft apply and the actor.
func TestTraceOfAWriteThroughAFollower(t *testing.T) {
	t.Parallel()
	recv := startOTLPReceiver(t)
	nodes := startCluster(t, "--otlp-endpoint", recv.URL, "--trace-sample", "1")
	leaderID := ""
	eventually(t, "a leader", 30*time.Second, func() bool {
		if l := status(t, nodes[0]).Leader; l != nil {
			leaderID = l.ID
		}
		return leaderID != ""
	})
	var follower *node
	for _, n := range nodes {
		if n.cfg.ID != leaderID {
			follower = n
			break
		}
	}
	r := follower.do(t, "PUT", "/v1/ratelimit/policies/traced", map[string]any{"limit": 10, "window_ms": 1000}, nil)
	if r.Status != 200 && r.Status != 201 {
		t.Fatalf("write through a follower: %v", r)
	}

	const route = "PUT /v1/ratelimit/policies/{name}"
	chain := []struct{ node, name string }{
		{follower.cfg.ID, route},
		{follower.cfg.ID, "forward to leader"},
		{leaderID, route},
		{leaderID, "wait for commit"},
		{leaderID, "raft apply"},
		{leaderID, "actor policy_put"},
	}
	var found []receivedSpan
	// Each node exports in batches, every few seconds.
	eventually(t, "the write's spans from both nodes", 30*time.Second, func() bool {
		spans, bad := recv.received()
		if len(bad) > 0 {
			t.Fatalf("the receiver could not decode exports: %v", bad)
		}
		found = found[:0]
		var traceID []byte
		for _, want := range chain {
			var match *receivedSpan
			for i, s := range spans {
				if s.node == want.node && s.span.GetName() == want.name && (traceID == nil || string(s.span.GetTraceId()) == string(traceID)) {
					match = &spans[i]
					break
				}
			}
			if match == nil {
				return false
			}
			traceID = match.span.GetTraceId()
			found = append(found, *match)
		}
		return true
	})
	for i, s := range found {
		if i == 0 {
			if len(s.span.GetParentSpanId()) != 0 {
				t.Errorf("the follower's request span has a parent")
			}
			continue
		}
		parent := found[i-1].span
		if string(s.span.GetParentSpanId()) != string(parent.GetSpanId()) {
			t.Errorf("%s/%q is not a child of %s/%q", s.node, s.span.GetName(), found[i-1].node, parent.GetName())
		}
		if s.span.GetStartTimeUnixNano() < parent.GetStartTimeUnixNano() {
			t.Errorf("%q starts before its parent %q", s.span.GetName(), parent.GetName())
		}
	}
	if kind := found[0].span.GetKind(); kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("request span kind %v", kind)
	}
	if kind := found[1].span.GetKind(); kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("forward span kind %v", kind)
	}
}
