package tracing

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestOffWithoutEndpoint(t *testing.T) {
	p, err := New(context.Background(), Config{SampleRatio: 1}, env(nil))
	if err != nil || p != nil {
		t.Fatalf("no endpoint: %v, %v", p, err)
	}
	if p.Tracer() != nil || p.Shutdown(context.Background()) != nil {
		t.Fatal("a nil provider must be off")
	}
	if (Config{Endpoint: "http://127.0.0.1:1"}).Enabled(env(map[string]string{"OTEL_SDK_DISABLED": "true"})) {
		t.Fatal("OTEL_SDK_DISABLED must turn tracing off")
	}
	if !(Config{}).Enabled(env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})) {
		t.Fatal("OTEL_EXPORTER_OTLP_ENDPOINT must turn tracing on")
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{SampleRatio: 1.01}, {SampleRatio: -1}, {SampleRatio: 1, Endpoint: "127.0.0.1:4318"}, {SampleRatio: 1, Endpoint: "ftp://x"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := (Config{SampleRatio: 0}).Validate(); err != nil {
		t.Fatal(err)
	}
	u, err := endpointURL("http://127.0.0.1:4318")
	if err != nil || u != "http://127.0.0.1:4318/v1/traces" {
		t.Fatalf("base URL: %q %v", u, err)
	}
	if u, _ := endpointURL("https://otel.example/custom/path"); u != "https://otel.example/custom/path" {
		t.Fatalf("full URL: %q", u)
	}
}

func TestChildOnlyBelowARecordingSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p := NewWithProcessor(Config{SampleRatio: 1, NodeID: "n1"}, rec)
	defer func() { _ = p.Shutdown(context.Background()) }()

	ctx, span := Child(context.Background(), "orphan")
	if span.IsRecording() || ctx != context.Background() {
		t.Fatal("a child without a parent must not be made")
	}
	root, rs := p.Tracer().Start(context.Background(), "root")
	if TraceID(root) == "" || !Recording(root) {
		t.Fatal("a sampled root has a trace id")
	}
	_, child := Child(root, "child")
	child.End()
	rs.End()
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != "child" || spans[0].Parent().SpanID() != rs.SpanContext().SpanID() {
		t.Fatalf("spans: %v", spans)
	}
	if got := spans[1].Resource().String(); !strings.Contains(got, "service.instance.id=n1") {
		t.Fatalf("resource %s", got)
	}
}

func TestSamplingFollowsTheParent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p := NewWithProcessor(Config{SampleRatio: 0}, rec) // keeps no new trace
	defer func() { _ = p.Shutdown(context.Background()) }()
	for range 1000 {
		if p.SampleNew() {
			t.Fatal("ratio 0 sampled a new trace")
		}
	}
	half := NewWithProcessor(Config{SampleRatio: 0.5}, rec)
	kept := 0
	for range 10000 {
		if half.SampleNew() {
			kept++
		}
	}
	if kept < 4000 || kept > 6000 {
		t.Fatalf("ratio 0.5 kept %d of 10000", kept)
	}
	// A small ratio, as operators set it (σ ≈ 31 of 100 000 draws).
	pct := NewWithProcessor(Config{SampleRatio: 0.01}, rec)
	kept = 0
	for range 100_000 {
		if pct.SampleNew() {
			kept++
		}
	}
	if kept < 700 || kept > 1300 {
		t.Fatalf("ratio 0.01 kept %d of 100000", kept)
	}
	var off *Provider
	if off.SampleNew() || !NewWithProcessor(Config{SampleRatio: 1}, rec).SampleNew() {
		t.Fatal("off samples nothing, ratio 1 everything")
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	parent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	ctx, s := p.Tracer().Start(parent, "followed")
	if !s.IsRecording() || TraceID(ctx) != tid.String() {
		t.Fatal("a sampled parent must be followed")
	}
	s.End()
	var _ sdktrace.SpanProcessor = rec
}

func TestNotSampledParent(t *testing.T) {
	h := NotSampledParent()
	ctx := Propagator.Extract(context.Background(), propagationMap{"traceparent": h})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.IsSampled() || !sc.IsRemote() {
		t.Fatalf("%s: %+v", h, sc)
	}
	if NotSampledParent() == h {
		t.Fatal("the ids must be fresh")
	}
}

type propagationMap map[string]string

func (m propagationMap) Get(k string) string { return m[k] }
func (m propagationMap) Set(k, v string)     { m[k] = v }
func (m propagationMap) Keys() []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func TestErrorLogIsThrottled(t *testing.T) {
	var buf strings.Builder
	now := time.Unix(1000, 0)
	e := &ErrorLog{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Every: time.Minute, Now: func() time.Time { return now }}
	e.Handle(errors.New("connection refused"))
	for range 5 {
		now = now.Add(5 * time.Second)
		e.Handle(errors.New("connection refused"))
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines within a minute: %s", n, buf.String())
	}
	now = now.Add(time.Minute)
	e.Handle(errors.New("connection refused"))
	if !strings.Contains(buf.String(), "repeated=5") || strings.Count(buf.String(), "\n") != 2 {
		t.Fatalf("after a minute: %s", buf.String())
	}
}
