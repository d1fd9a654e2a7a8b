package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ratelimit-grpc: Envoy's rate-limit service (envoy.service.ratelimit.v3,
// the node's --grpc-addr), called as Envoy calls it: each worker is one
// stream in flight (a unary ShouldRateLimit call, the next sent when the
// previous answered), with one descriptor {client: kN} of the domain
// "bench" per request, N one of 10k keys. Workers share a gRPC
// connection per streamsPerConn of them, as Envoy's worker threads each
// keep one HTTP/2 connection to the service and multiplex their calls
// on it.
//
// Goroutines: each worker's loop owns its request; the connections are
// shared (grpc.ClientConn is safe for concurrent calls) and closed by
// grpcTargets.close once every worker has returned.

const (
	// benchDomain is the Envoy domain of the bench policy's rule.
	benchDomain = "bench"
	// benchEnvoyPolicy is the policy ratelimit-grpc's descriptors match.
	benchEnvoyPolicy = "bench-envoy"
	// streamsPerConn is how many workers share a gRPC connection: 64
	// streams on two connections, as an Envoy on a machine of two cores
	// (its --concurrency defaults to the cores) keeps one connection
	// per worker thread. Fewer connections carry more frames per read
	// and write: the floor's socket calls per call, both ends together,
	// were 0.59–0.62 with 4 connections, 0.36–0.40 with 2 and 0.26–0.33
	// with 1 (BenchmarkGRPCFloor; docs/BENCHMARKS-notes.md).
	streamsPerConn = 32
)

// grpcTargets are the connections of a ratelimit-grpc run.
type grpcTargets struct {
	once    sync.Once
	err     error
	conns   []*grpc.ClientConn
	clients []rlsv3.RateLimitServiceClient
	// h2 are the lean client's connections (unless GRPCClient is
	// GRPCClientGo), and
	// requests its requests, framed, one per key.
	h2       []*h2Conn
	requests [][]byte
}

// staticMethod is the call option the generated client adds to each call
// (a slice built per call there).
var staticMethod = []grpc.CallOption{grpc.StaticMethod()}

// shouldRateLimit calls ShouldRateLimit on conn as the generated client
// does, but answers into resp, which the codec resets first: the load
// generator shares the cores with the node, so its own allocations per
// call count against both.
func shouldRateLimit(ctx context.Context, conn *grpc.ClientConn, req *rlsv3.RateLimitRequest, resp *rlsv3.RateLimitResponse) error {
	return conn.Invoke(ctx, rlsv3.RateLimitService_ShouldRateLimit_FullMethodName, req, resp, staticMethod...)
}

// dial opens the connections the workers of r share, once.
func (g *grpcTargets) dial(r *Runner) error {
	g.once.Do(func() {
		n := (r.cfg.Connections + streamsPerConn - 1) / streamsPerConn
		for range n {
			c, err := grpc.NewClient(r.cfg.GRPCAddr, grpcDialOptions()...)
			if err != nil {
				g.err = fmt.Errorf("cannot open a gRPC connection to %s: %w", r.cfg.GRPCAddr, err)
				return
			}
			g.conns = append(g.conns, c)
			g.clients = append(g.clients, rlsv3.NewRateLimitServiceClient(c))
			if r.cfg.GRPCClient == GRPCClientGo {
				continue
			}
			var md [][2]string
			if r.cfg.Token != "" {
				md = append(md, [2]string{"authorization", "Bearer " + r.cfg.Token})
			}
			h, err := dialH2(r.cfg.GRPCAddr, "/"+rlsv3.RateLimitService_ShouldRateLimit_FullMethodName[1:], md, r.cfg.Timeout)
			if err != nil {
				g.err = fmt.Errorf("cannot open an HTTP/2 connection to %s: %w", r.cfg.GRPCAddr, err)
				return
			}
			g.h2 = append(g.h2, h)
		}
		if r.cfg.GRPCClient != GRPCClientGo {
			g.requests = make([][]byte, benchPolicyKeys)
			for i := range g.requests {
				if g.requests[i], g.err = grpcFrame(grpcRequest("k" + strconv.Itoa(i))); g.err != nil {
					return
				}
			}
		}
	})
	return g.err
}

// grpcDialOptions are the client's gRPC settings: static flow-control
// windows, as Envoy's HTTP/2 client keeps (large, and no
// bandwidth-estimate pings).
func grpcDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1 << 20), grpc.WithInitialConnWindowSize(1 << 20)}
}

func (g *grpcTargets) close() {
	for _, c := range g.conns {
		_ = c.Close()
	}
	for _, c := range g.h2 {
		c.close()
	}
}

// outgoing is the context of every call: the bearer token, if the run
// has one.
func (r *Runner) outgoing() context.Context {
	ctx := context.Background()
	if r.cfg.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+r.cfg.Token)
	}
	return ctx
}

// setupEnvoyPolicy puts the bench policy with an Envoy rule (domain
// "bench", descriptor key "client") and waits until the rate-limit
// service decides with it.
func setupEnvoyPolicy(r *Runner) error {
	client := r.client(r.cfg.Addrs[0])
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetHost(r.cfg.Addrs[0])
	r.authorize(req)
	setJSON(req, "PUT", "/v1/ratelimit/policies/"+benchEnvoyPolicy)
	req.SetBodyString(`{"limit":1000000,"window_ms":1000,"envoy":{"domain":"` + benchDomain + `","descriptors":[{"key":"client"}]}}`)
	if err := client.DoTimeout(req, resp, r.cfg.Timeout); err != nil {
		return fmt.Errorf("setup: creating the bench policy: %w", err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("setup: creating the bench policy: %d %s", resp.StatusCode(), resp.Body())
	}
	if err := r.grpc.dial(r); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(r.outgoing(), 5*time.Second)
		out, err := r.grpc.clients[0].ShouldRateLimit(ctx, grpcRequest("setup"))
		cancel()
		// A descriptor no policy matches answers OK with no limit: the
		// policy is known once the answer states its limit.
		if err == nil && len(out.GetStatuses()) == 1 && out.GetStatuses()[0].GetCurrentLimit() != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("setup: the rate-limit service on %s did not decide with the bench policy: %v", r.cfg.GRPCAddr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func grpcRequest(key string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: benchDomain, Descriptors: []*ratelimitv3.RateLimitDescriptor{{
		Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "client", Value: key}},
	}}}
}

// grpcLoop is the ratelimit-grpc worker: one call in flight until stop,
// with the client Config.GRPCClient names.
func grpcLoop(r *Runner, w *worker) {
	if err := r.grpc.dial(r); err != nil {
		w.mu.Lock()
		w.failures["dial"]++
		w.mu.Unlock()
		return
	}
	if r.cfg.GRPCClient != GRPCClientGo {
		h2Loop(r, w)
		return
	}
	conn := r.grpc.conns[w.id/streamsPerConn]
	ctx := r.outgoing()
	req := grpcRequest("")
	resp := &rlsv3.RateLimitResponse{}
	entry := req.Descriptors[0].Entries[0]
	var key []byte
	for !r.stop.Load() {
		start, ok := r.next()
		if !ok {
			return
		}
		key = strconv.AppendInt(append(key[:0], 'k'), int64(w.rng.IntN(benchPolicyKeys)), 10)
		entry.Value = string(key)
		cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		err := shouldRateLimit(cctx, conn, req, resp)
		cancel()
		lat := time.Since(start)
		if !w.grpcAnswered(r, start, lat, status.Code(err), err, resp.GetOverallCode()) {
			return
		}
	}
}

// h2Loop is grpcLoop with the lean client (h2grpc.go): the same calls,
// sent already marshalled.
func h2Loop(r *Runner, w *worker) {
	conn := r.grpc.h2[w.id/streamsPerConn]
	call := newH2Call()
	for !r.stop.Load() {
		start, ok := r.next()
		if !ok {
			return
		}
		answer, err := conn.call(call, r.grpc.requests[w.rng.IntN(benchPolicyKeys)], r.cfg.Timeout)
		lat := time.Since(start)
		code, overall := codes.OK, rlsv3.RateLimitResponse_UNKNOWN
		var st *h2Status
		switch {
		case errors.As(err, &st):
			n, _ := strconv.ParseUint(st.code, 10, 32)
			code = codes.Code(n)
			err = status.Error(code, st.message)
		case errors.Is(err, errH2Timeout):
			err = context.DeadlineExceeded
		case err == nil:
			var v int32
			if v, err = overallCode(answer); err != nil {
				code = codes.Internal
				err = status.Errorf(code, "an answer that is not a RateLimitResponse: %v", err)
			}
			overall = rlsv3.RateLimitResponse_Code(v)
		default:
			code = codes.Unavailable
			err = status.Error(code, err.Error())
		}
		if !w.grpcAnswered(r, start, lat, code, err, overall) {
			return
		}
	}
}

// grpcAnswered records a call's outcome (code and err its gRPC status,
// overall the answer's overall code) and says whether the worker goes
// on: a call refused for want of rights halts the run.
func (w *worker) grpcAnswered(r *Runner, start time.Time, lat time.Duration, code codes.Code, err error, overall rlsv3.RateLimitResponse_Code) bool {
	if code == codes.Unauthenticated || code == codes.PermissionDenied {
		r.refused.CompareAndSwap(nil, &refusal{status: grpcRefusal(code), body: err.Error()})
		r.halt()
		return false
	}
	if !r.counting() {
		return true
	}
	w.mu.Lock()
	w.recordLatency(lat)
	switch {
	case err != nil:
		w.failed(grpcFailure(err))
	case overall != rlsv3.RateLimitResponse_OK:
		w.failed("over_limit")
	default:
		w.acks++
		w.countOK(r, start.Add(lat))
	}
	w.mu.Unlock()
	if n := r.total.Add(1); r.cfg.Requests > 0 && n >= r.cfg.Requests {
		r.halt()
	}
	if err != nil {
		pause(r) // do not spin on a dead target
	}
	return true
}

// grpcRefusal is the HTTP status a refusing gRPC code stands for (as
// RefusedError words it).
func grpcRefusal(c codes.Code) int {
	if c == codes.Unauthenticated {
		return fasthttp.StatusUnauthorized
	}
	return fasthttp.StatusForbidden
}

// grpcFailure names a failed call by its gRPC code.
func grpcFailure(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "grpc_" + status.Code(err).String()
}
