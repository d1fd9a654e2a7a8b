// Package envoy serves Envoy's rate-limit service, v3, over gRPC
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit), so an
// Envoy proxy uses troupe's replicated policies and bucket actors
// without glue. It reaches the rest of the node only through the
// interfaces it declares: the policies (replicated, read locally), the
// limiter (the one the HTTP checks use, local or global mode), and the
// verification of bearer tokens.
//
// Decisions (docs/DESIGN.md, Rate limits, Envoy): the descriptors of one
// request are decided together, all or nothing, with the limiter's
// multi-check — when any descriptor is over its limit, Envoy rejects the
// request, and none of the descriptors spends anything.
package envoy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// Limiter decides checks all or nothing (actors.Limiter.DecideAll; in
// global mode, each key at its owner).
type Limiter interface {
	DecideAll(checks []actors.Check, out []storage.Decision, deadline time.Time) (bool, error)
}

// Policies are the cluster's named rate-limit policies; the map is
// replaced, never changed, when a policy is put or deleted.
type Policies interface {
	Policies() map[string]storage.Policy
}

// Authorizer verifies the bearer token of a caller without a client
// certificate: authorization is the "authorization" metadata ("" when
// none was sent). A nil error admits the caller; forbidden says the
// token was good but its holder may not use the service.
type Authorizer interface {
	AuthorizeRateLimitService(authorization string) (forbidden bool, err error)
}

// Config configures a Server.
type Config struct {
	// TLS, when not nil, is the cluster's mutual-TLS configuration
	// (--tls-cert, --tls-key, --tls-ca): the service is then served over
	// TLS with the node's certificate, and a client certificate signed
	// by the cluster's CA admits its caller without a token. Clients
	// without a certificate may still connect and show a token.
	TLS *tls.Config
	// Timeout bounds one decision (default 5 s).
	Timeout time.Duration
	// Logger; default discards.
	Logger *slog.Logger
}

// MaxDescriptors bounds the descriptors of one request (as a
// multi-check of the HTTP API is bounded).
const MaxDescriptors = 100

// HeadersMetadata is the request metadata that asks for the RateLimit
// headers in the answer (response_headers_to_add): "1", "true" or "on".
const HeadersMetadata = "troupe-ratelimit-headers"

// Server is the rate-limit service.
type Server struct {
	rlsv3.UnimplementedRateLimitServiceServer
	cfg      Config
	policies Policies
	limiter  Limiter
	auth     Authorizer
	grpc     *grpc.Server
	index    indexCache
}

// New returns a service deciding with limiter the descriptors of the
// policies that declare an Envoy rule.
func New(cfg Config, policies Policies, limiter Limiter, auth Authorizer) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, policies: policies, limiter: limiter, auth: auth}
	opts := ServerOptions()
	if cfg.TLS != nil {
		t := cfg.TLS.Clone()
		// Envoy may come with the cluster's certificate or with a token.
		t.ClientAuth = tls.VerifyClientCertIfGiven
		t.MinVersion = max(t.MinVersion, tls.VersionTLS12)
		opts = append(opts, grpc.Creds(credentials.NewTLS(t)))
	}
	s.grpc = grpc.NewServer(opts...)
	rlsv3.RegisterRateLimitServiceServer(s.grpc, s)
	// The service's schema is public (Envoy's protos): reflection lets
	// grpcurl and the like call it without them.
	reflection.Register(s.grpc)
	return s
}

// ServerOptions are the gRPC settings of the service (TLS aside), which
// the bench's floor server uses too:
//   - stream workers: a call runs on one of streamWorkers long-lived
//     goroutines instead of a goroutine of its own, whose stack then
//     grows (copied at each doubling) on every call — 15% of the
//     service's CPU before (docs/BENCHMARKS-notes.md, rate limits). A
//     worker is taken for the whole call, its wait for the request's
//     data included, and a call that finds none free gets a goroutine
//     of its own as before: with 2 × GOMAXPROCS workers, 64 streams
//     in flight still spent 7.6% of the CPU growing such stacks;
//   - static flow-control windows of 1 MiB: the messages are a few
//     dozen bytes, so a window never holds a call back, and the dynamic
//     windows' bandwidth estimate sent a ping, with a window update, for
//     every round trip of data on a busy connection.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(max(streamWorkers, 2*runtime.GOMAXPROCS(0)))),
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
	}
}

// streamWorkers is how many calls run on long-lived goroutines at once
// (at least; 2 × GOMAXPROCS on a larger machine): as many as the calls
// in flight from a few busy Envoys. An idle worker holds only its stack.
const streamWorkers = 64

// flowWindow is the service's HTTP/2 flow-control window, per stream and
// per connection.
const flowWindow = 1 << 20

// Serve answers on ln until Stop.
func (s *Server) Serve(ln net.Listener) error {
	err := s.grpc.Serve(ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Stop lets the calls under way finish until ctx ends, then closes
// every connection.
func (s *Server) Stop(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
}

// authorize admits a caller with a client certificate of the cluster's
// CA, or with an admin's or a service's bearer token.
func (s *Server) authorize(ctx context.Context) error {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
			return nil
		}
	}
	// One key of the metadata, not FromIncomingContext: that copies
	// every key and value on each call.
	var authz string
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 {
		authz = v[0]
	}
	forbidden, err := s.auth.AuthorizeRateLimitService(authz)
	switch {
	case err == nil:
		return nil
	case forbidden:
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return status.Error(codes.Unauthenticated, err.Error()+" (send \"authorization: Bearer <token>\" metadata of an admin or a service, or a client certificate of the cluster's CA)")
}

// wantsHeaders reports whether the request asks for the RateLimit
// headers.
func wantsHeaders(ctx context.Context) bool {
	for _, v := range metadata.ValueFromIncomingContext(ctx, HeadersMetadata) {
		switch v {
		case "1", "true", "on":
			return true
		}
	}
	return false
}
