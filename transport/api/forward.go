package api

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupe-db/troupe/internal/tracing"
)

// Forwarding: a write that reaches a follower is passed, as HTTP, to the
// leader, and the leader's answer is passed back; the client never needs
// to know who leads. The forwarded request always carries an
// Idempotency-Key (the client's, or one made here), so when the outcome
// of an attempt is unknown (a connection broken mid-way, a leader that
// lost its office) trying again cannot apply the write twice. A request
// marked as forwarded is never forwarded again: no loops.

const forwardedHeader = "X-Troupe-Forwarded"

// forwarder keeps one pooled keep-alive client per leader address.
type forwarder struct {
	mu      sync.Mutex
	clients map[string]*fasthttp.HostClient
	timeout time.Duration
	tls     *tls.Config // nil: plain HTTP between nodes
}

func (f *forwarder) client(addr string) *fasthttp.HostClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clients == nil {
		f.clients = map[string]*fasthttp.HostClient{}
	}
	c := f.clients[addr]
	if c == nil {
		c = &fasthttp.HostClient{
			Addr: addr, MaxConns: 1024, ReadTimeout: f.timeout, WriteTimeout: f.timeout,
			MaxIdleConnDuration: 30 * time.Second, NoDefaultUserAgentHeader: true,
			IsTLS: f.tls != nil, TLSConfig: tlsFor(f.tls, addr),
			Dial: func(a string) (net.Conn, error) { return net.DialTimeout("tcp", a, f.timeout) },
		}
		f.clients[addr] = c
	}
	return c
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.clients {
		c.CloseIdleConnections()
	}
}

// leaderOnly runs h on the leader (or on a request already forwarded to
// this node) and forwards it otherwise.
func (s *Server) leaderOnly(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if s.node.IsLeader() || len(ctx.Request.Header.Peek(forwardedHeader)) > 0 {
			h(ctx)
			return
		}
		s.forward(ctx, h)
	}
}

var forwardHeaders = []string{"Content-Type", "If-Match", "Authorization", "X-Troupe-Cluster-Secret", shareHeader}
var backHeaders = []string{"Content-Type", "Location", "ETag", "X-Troupe-Index", "Retry-After"}

// forward passes the request to the leader; h is the local handler, run
// instead if this node becomes the leader while waiting for one.
func (s *Server) forward(ctx *fasthttp.RequestCtx, h fasthttp.RequestHandler) {
	deadline := s.deadline()
	leaderWait := time.Now().Add(s.cfg.LeaderWait)
	key := string(ctx.Request.Header.Peek("Idempotency-Key"))
	if key == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		key = "fwd-" + hex.EncodeToString(b[:])
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	// The forward's span; its traceparent goes with the request, so the
	// leader's spans join this trace.
	tctx, span := tracing.Child(s.traceCtx(ctx), "forward to leader", trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	attempts := 0
	tried := false // an attempt may have reached a leader
	for {
		leader := s.node.LeaderHTTP()
		if leader == "" || leader == s.cfg.AdvertiseHTTP {
			// An election is going on (or this node is just taking
			// office): wait a little for it, never long.
			if time.Now().After(leaderWait) || time.Now().After(deadline) {
				s.forwardFailed(ctx, tried)
				return
			}
			time.Sleep(20 * time.Millisecond)
			if s.node.IsLeader() && !tried {
				h(ctx) // this node won the election meanwhile
				return
			}
			continue
		}
		req.Reset()
		req.Header.SetMethodBytes(ctx.Method())
		req.SetRequestURIBytes(ctx.Request.RequestURI())
		req.Header.SetHost(leader)
		if s.fwd.tls != nil {
			req.URI().SetScheme("https")
		}
		for _, h := range forwardHeaders {
			if v := ctx.Request.Header.Peek(h); len(v) > 0 {
				req.Header.SetBytesV(h, v)
			}
		}
		req.Header.Set("Idempotency-Key", key)
		// The proof tells the leader a member forwarded this (its caller
		// was throttled here); without auth set up, any mark stops loops.
		proof := s.forwardProof()
		if proof == "" {
			proof = "1"
		}
		req.Header.Set(forwardedHeader, proof)
		req.SetBody(ctx.PostBody())
		s.injectTrace(tctx, req)
		resp.Reset()
		err := s.fwd.client(leader).DoDeadline(req, resp, deadline)
		tried = true
		attempts++
		if span.IsRecording() {
			span.SetAttributes(attribute.String("troupe.leader", leader), attribute.Int("troupe.forward.attempts", attempts),
				attribute.Int("http.response.status_code", resp.StatusCode()))
			if err != nil {
				span.AddEvent("attempt failed", trace.WithAttributes(attribute.String("error", err.Error())))
			}
		}
		deposed := resp.StatusCode() == http.StatusServiceUnavailable && s.node.LeaderHTTP() != leader
		if err == nil && !deposed {
			ctx.SetStatusCode(resp.StatusCode())
			for _, h := range backHeaders {
				if v := resp.Header.Peek(h); len(v) > 0 {
					ctx.Response.Header.SetBytesV(h, v)
				}
			}
			ctx.SetBody(resp.Body())
			return
		}
		// The attempt failed or met a deposed leader: with the same key, a
		// retry is safe, for as long as the request may take.
		if err != nil {
			s.reqLog(ctx).Debug("forwarding to the leader failed; retrying", slog.String("leader", leader), slog.Any("err", err))
		}
		if time.Now().After(deadline) {
			s.forwardFailed(ctx, true)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// forwardFailed answers when no leader could take the write in time.
func (s *Server) forwardFailed(ctx *fasthttp.RequestCtx, mayHaveApplied bool) {
	e := newError("unavailable", "no leader could take the write in time; retry")
	if mayHaveApplied {
		e.Message = "the write may or may not have been applied; retry with the same Idempotency-Key"
		e.Details = map[string]any{"outcome": "unknown"}
	}
	writeError(ctx, e)
}

// tlsFor returns cfg for dialing addr: a copy naming addr's host, which
// the peer's certificate must match.
func tlsFor(cfg *tls.Config, addr string) *tls.Config {
	if cfg == nil {
		return nil
	}
	c := cfg.Clone()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		c.ServerName = host
	}
	return c
}
