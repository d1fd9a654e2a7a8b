package api

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/troupe-db/troupe/internal/tracing"
)

type benchTraceMode struct {
	name string
	opts func(testing.TB) []func(*Config)
}

// benchTraceModes are BenchmarkHTTP's tracing modes: off, and on at 1%
// and 100% of new traces, exporting through the batch span processor
// (as a node does) to an exporter that drops the spans.
func benchTraceModes() []benchTraceMode {
	on := func(ratio float64) func(testing.TB) []func(*Config) {
		return func(tb testing.TB) []func(*Config) {
			p := tracing.NewWithProcessor(tracing.Config{SampleRatio: ratio, NodeID: "bench"},
				sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter()))
			tb.Cleanup(func() { _ = p.Shutdown(context.Background()) })
			return []func(*Config){func(c *Config) { c.Tracing = p }}
		}
	}
	off := func(testing.TB) []func(*Config) { return nil }
	return []benchTraceMode{{"off", off}, {"1pct", on(0.01)}, {"100pct", on(1)}}
}
