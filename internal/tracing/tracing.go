// Package tracing sets up a node's OpenTelemetry traces and holds the few
// helpers the rest of troupe uses to make spans.
//
// Tracing is off unless an OTLP endpoint is given (--otlp-endpoint, or
// OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Off,
// a node has no *Provider (nil) and no code path makes a span, a context
// or an allocation for tracing: the HTTP middleware tests a nil tracer
// once per request, and everything below it starts a span only as the
// child of a recording one (Child), found in the context it is given.
//
// Only the HTTP middleware starts root spans; every other layer makes
// children of the span in its context, through the parent span's own
// provider, so cluster and actors need no tracer of their own.
package tracing

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of troupe's spans.
const Scope = "github.com/troupe-db/troupe"

// Config is what a node is told about tracing.
type Config struct {
	// Endpoint is where spans go, OTLP over HTTP: a base URL such as
	// http://127.0.0.1:4318 (the path /v1/traces is added) or a full URL
	// with its path. Empty: the standard OTEL_EXPORTER_OTLP_* variables,
	// and without them tracing is off.
	Endpoint string
	// SampleRatio is the share of new traces kept, 0 to 1. Parent-based:
	// a request whose traceparent says sampled is always traced, one that
	// says not sampled never.
	SampleRatio float64
	// NodeID names the node (resource attribute service.instance.id).
	NodeID string
}

// DefaultSampleRatio is --trace-sample's default: every trace.
const DefaultSampleRatio = 1.0

// Validate checks the configuration, naming the flags.
func (c Config) Validate() error {
	var errs []error
	if c.SampleRatio < 0 || c.SampleRatio > 1 || c.SampleRatio != c.SampleRatio {
		errs = append(errs, fmt.Errorf("--trace-sample=%v: give the share of traces kept, 0 to 1 (e.g. 0.01)", c.SampleRatio))
	}
	if c.Endpoint != "" {
		if _, err := endpointURL(c.Endpoint); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// endpointURL turns --otlp-endpoint into the URL spans are posted to.
func endpointURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("--otlp-endpoint: %q is not an http:// or https:// URL of an OTLP receiver (e.g. http://127.0.0.1:4318)", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// Enabled reports whether c, with the environment getenv reads, turns
// tracing on.
func (c Config) Enabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	return c.Endpoint != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Provider is a node's tracer provider and exporter. A nil *Provider is
// tracing turned off; its methods may be called on nil.
//
// Sampling: the SDK's sampler follows a parent's decision and keeps every
// new root; whether a request without a trace context starts a trace at
// all is decided before, by SampleNew. So a request that is not kept
// costs a random number, not a span the SDK makes and drops.
type Provider struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	nodeID string
	// A new trace is started when a random uint64 is below below, or
	// always if all.
	below uint64
	all   bool
}

// New starts exporting spans as c says, or returns nil when tracing is
// off. The exporter reads the OTEL_EXPORTER_OTLP_* variables itself (an
// explicit Endpoint wins over them); the resource takes
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (service.name defaults
// to troupe).
func New(ctx context.Context, c Config, getenv func(string) string) (*Provider, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled(getenv) {
		return nil, nil
	}
	var opts []otlptracehttp.Option
	if c.Endpoint != "" {
		u, _ := endpointURL(c.Endpoint)
		opts = append(opts, otlptracehttp.WithEndpointURL(u))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot set up the OTLP trace exporter: %w", err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(attribute.String("service.name", "troupe"), attribute.String("service.instance.id", c.NodeID)),
		resource.Environment(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return nil, fmt.Errorf("cannot make the trace resource: %w", err)
	}
	return newProvider(c, sdktrace.NewBatchSpanProcessor(exp), res), nil
}

// NewWithProcessor is New with spans going to sp, always on: for tests
// and benchmarks that look at spans without a receiver.
func NewWithProcessor(c Config, sp sdktrace.SpanProcessor) *Provider {
	return newProvider(c, sp, resource.NewSchemaless(attribute.String("service.name", "troupe"), attribute.String("service.instance.id", c.NodeID)))
}

func newProvider(c Config, sp sdktrace.SpanProcessor, res *resource.Resource) *Provider {
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithSpanProcessor(sp),
		sdktrace.WithResource(res),
	)
	p := &Provider{tp: tp, tracer: tp.Tracer(Scope), nodeID: c.NodeID}
	if x := math.Ldexp(c.SampleRatio, 64); x >= math.Ldexp(1, 64) {
		p.all = true
	} else if x > 0 {
		p.below = uint64(x)
	}
	return p
}

// SampleNew decides whether a request that came without a trace context
// starts a trace: true for the configured share of calls. It is on the
// path of every request when tracing is on: one comparison with a
// runtime random number.
func (p *Provider) SampleNew() bool {
	return p != nil && (p.all || rand.Uint64() < p.below)
}

// NotSampledParent is a traceparent header value for a request this node
// forwards without a trace: fresh ids, flags 00 (not sampled), so that
// the next node follows the decision instead of making its own.
func NotSampledParent() string {
	var b [8 + 16 + 8]byte
	binary.LittleEndian.PutUint64(b[0:], rand.Uint64()|1) // never all zero
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	binary.LittleEndian.PutUint64(b[16:], rand.Uint64()|1)
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:24]) + "-00"
}

// Tracer returns the tracer for root spans, or nil when tracing is off.
// Start a new root only when SampleNew says so.
func (p *Provider) Tracer() trace.Tracer {
	if p == nil {
		return nil
	}
	return p.tracer
}

// NodeID is the node the spans come from.
func (p *Provider) NodeID() string {
	if p == nil {
		return ""
	}
	return p.nodeID
}

// Shutdown exports the spans still queued, until ctx ends, and stops.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	return p.tp.Shutdown(ctx)
}

// Propagator is the W3C trace context (the traceparent header) that
// carries a trace from node to node.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Child starts a span named name as a child of the recording span in ctx.
// Without one (tracing off, or a trace not sampled) it starts nothing and
// returns ctx and that non-recording span, at no cost: callers test
// span.IsRecording() before making attributes, and may always End it.
func Child(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, parent
	}
	return parent.TracerProvider().Tracer(Scope).Start(ctx, name, opts...)
}

// Recording reports whether ctx carries a span being recorded (a sampled
// trace).
func Recording(ctx context.Context) bool { return trace.SpanFromContext(ctx).IsRecording() }

// TraceID is the id of the sampled trace in ctx, or "".
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return ""
	}
	return sc.TraceID().String()
}
