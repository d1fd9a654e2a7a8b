package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/storage"
)

// Tracing of requests (see package tracing). With tracing on, handle
// starts a server span for a request that carries a traceparent (the
// SDK then follows the caller's decision) and for the sampled share of
// the others, named for its route template ("POST /v1/docs"), and keeps
// its context in the request's user values; handlers pass it on
// (traceCtx) to the node, which hangs the commit, apply and read barrier
// spans below it. A request not sampled gets no span at all; when it is
// forwarded, a not-sampled traceparent goes with it, so the leader does
// not start a trace of its half. Off (s.tracer nil), handle makes no
// span and traceCtx is context.Background(): nothing is allocated for
// tracing.

// traceCtxKey is the user value holding a request's trace context.
const traceCtxKey = "troupe.trace"

// traceparentHeader carries the W3C trace context between nodes.
const traceparentHeader = "traceparent"

// peekTraceparent returns the request's traceparent header. It runs for
// every request when tracing is on, and Peek would normalise the name's
// case each time (two thirds of the look-up's instructions): header names
// are normalised once, when the request is parsed, so the name is looked
// up in its normalised form with normalising off for the call.
func peekTraceparent(h *fasthttp.RequestHeader) []byte {
	if h.DisableNormalizing() {
		return h.Peek(traceparentHeader) // names are kept as sent
	}
	v := h.Peek("Traceparent")
	h.EnableNormalizing()
	return v
}

// startRequestSpan starts the server span of a request on route (its
// method and path template), or returns nil for a request that is not
// traced.
func (s *Server) startRequestSpan(ctx *fasthttp.RequestCtx, route string) trace.Span {
	parent := context.Background()
	if len(peekTraceparent(&ctx.Request.Header)) == 0 {
		if !s.traces.SampleNew() {
			return nil // the common case: one header look-up, one random number
		}
	} else if parent = tracing.Propagator.Extract(parent, requestHeaderCarrier{&ctx.Request.Header}); !trace.SpanContextFromContext(parent).IsValid() && !s.traces.SampleNew() {
		return nil
	}
	sctx, span := s.tracer.Start(parent, route, trace.WithSpanKind(trace.SpanKindServer))
	// Kept even when the caller said not sampled: a forwarded request
	// must say so too.
	ctx.SetUserValue(traceCtxKey, sctx)
	return span
}

// endRequestSpan records the outcome of the request on path (its route
// template; "" for a request no route took) and ends its span.
func (s *Server) endRequestSpan(ctx *fasthttp.RequestCtx, span trace.Span, path string) {
	if span.IsRecording() {
		status := ctx.Response.StatusCode()
		span.SetAttributes(
			attribute.String("http.request.method", string(ctx.Method())),
			attribute.String("http.route", path),
			attribute.Int("http.response.status_code", status),
			attribute.String("troupe.node.id", s.nodeID),
		)
		if status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(status))
		}
	}
	span.End()
}

// traceCtx is the request's trace context, for the calls into the node;
// context.Background() when tracing is off.
func (s *Server) traceCtx(ctx *fasthttp.RequestCtx) context.Context {
	if s.tracer == nil {
		return context.Background()
	}
	return requestTraceCtx(ctx)
}

func requestTraceCtx(ctx *fasthttp.RequestCtx) context.Context {
	if c, ok := ctx.UserValue(traceCtxKey).(context.Context); ok {
		return c
	}
	return context.Background()
}

// requestTraceID is the id of the request's trace if it is sampled, or "".
func requestTraceID(ctx *fasthttp.RequestCtx) string {
	return tracing.TraceID(requestTraceCtx(ctx))
}

// reqLog is the logger for a request's log lines: with trace_id when the
// request's trace is sampled.
func (s *Server) reqLog(ctx *fasthttp.RequestCtx) *slog.Logger {
	if s.tracer == nil {
		return s.log
	}
	if id := requestTraceID(ctx); id != "" {
		return s.log.With(slog.String("trace_id", id))
	}
	return s.log
}

// injectTrace puts the trace context of tctx in a request to another
// node (traceparent), so the next node's spans join the trace; without
// one, a not-sampled traceparent, so that it starts no trace either.
func (s *Server) injectTrace(tctx context.Context, req *fasthttp.Request) {
	if s.tracer == nil {
		return
	}
	if tctx == nil || !trace.SpanContextFromContext(tctx).IsValid() {
		req.Header.Set(traceparentHeader, tracing.NotSampledParent())
		return
	}
	tracing.Propagator.Inject(tctx, requestHeaderCarrier{&req.Header})
}

// Rate-limit decisions are events on the request's span (a span per
// decision would cost too much on a hot path). They are read from what
// a decision leaves on the response, the default policy's RateLimit
// header and the check route's answer, by wrappers around the limiter's
// handlers, so the limiter's code knows nothing of tracing.

// limitAllowedKey marks a request whose allowed decision was recorded.
const limitAllowedKey = "troupe.limit-traced"

// traceDefaultLimit is limit (the default policy's wrapper) around h,
// recording its decision: allowed when h is reached, right after it;
// refused when limit answered alone.
func (s *Server) traceDefaultLimit(limit func(fasthttp.RequestHandler) fasthttp.RequestHandler, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	if s.tracer == nil || s.cfg.RateLimit == nil || s.limiter == nil {
		return limit(h)
	}
	inner := limit(func(ctx *fasthttp.RequestCtx) {
		if s.defaultLimitEvent(ctx, true) {
			ctx.SetUserValue(limitAllowedKey, true)
		}
		h(ctx)
	})
	return func(ctx *fasthttp.RequestCtx) {
		inner(ctx)
		if ctx.Response.StatusCode() == http.StatusTooManyRequests && ctx.UserValue(limitAllowedKey) == nil {
			s.defaultLimitEvent(ctx, false)
		}
	}
}

// defaultLimitEvent records the default policy's decision, read from
// the RateLimit header ("default";r=REMAINING;t=RESET), if the request
// is traced and was decided on here; it reports whether it did.
func (s *Server) defaultLimitEvent(ctx *fasthttp.RequestCtx, allowed bool) bool {
	span := trace.SpanFromContext(requestTraceCtx(ctx))
	header := ctx.Response.Header.Peek("RateLimit")
	if !span.IsRecording() || len(header) == 0 {
		return false
	}
	remaining := int64(-1)
	for part := range strings.SplitSeq(string(header), ";") {
		if v, ok := strings.CutPrefix(part, "r="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				remaining = n
			}
		}
	}
	rateLimitEvent(span, storage.DefaultPolicy, allowed, remaining)
	return true
}

// traceCheck is the check route's handler h, recording the decision it
// answered.
func (s *Server) traceCheck(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	if s.tracer == nil {
		return h
	}
	return func(ctx *fasthttp.RequestCtx) {
		h(ctx)
		span := trace.SpanFromContext(requestTraceCtx(ctx))
		if !span.IsRecording() || ctx.Response.StatusCode() != http.StatusOK {
			return
		}
		var req struct {
			Policy string `json:"policy"`
		}
		var res checkResponse
		if json.Unmarshal(ctx.PostBody(), &req) != nil || json.Unmarshal(ctx.Response.Body(), &res) != nil {
			return
		}
		rateLimitEvent(span, req.Policy, res.Allowed, int64(res.Remaining))
	}
}

func rateLimitEvent(span trace.Span, policy string, allowed bool, remaining int64) {
	span.AddEvent("rate limit", trace.WithAttributes(
		attribute.String("troupe.ratelimit.policy", policy),
		attribute.Bool("troupe.ratelimit.allowed", allowed),
		attribute.Int64("troupe.ratelimit.remaining", remaining),
	))
}

// requestHeaderCarrier lets the propagator read and write fasthttp
// request headers.
type requestHeaderCarrier struct{ h *fasthttp.RequestHeader }

func (c requestHeaderCarrier) Get(key string) string { return string(c.h.Peek(key)) }
func (c requestHeaderCarrier) Set(key, value string) { c.h.Set(key, value) }
func (c requestHeaderCarrier) Keys() []string {
	var keys []string
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}
