package bench

import (
	"context"
	"net"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/troupe-db/troupe/transport/envoy"
)

// floorBody is the size and shape of a user record as the API returns it.
var floorBody = []byte(`{"id":"06h0l2qie400001i","name":"Bench User 1234","email":"b1a2b3c4-12-1234@bench.example.com","role":"user","version":1,"created_at":"2026-11-23T22:33:52.497Z","updated_at":"2026-11-23T22:33:52.497Z"}`)

// FloorServer is a bare fasthttp server that answers every request at
// once with a fixed user-sized JSON body: 201 for POST /v1/users and
// POST /v1/docs (creates, as the API answers them), 200 otherwise (batches, rate-limit
// checks and reads answer 200 in the API too). A
// scenario against it measures the ceiling of this machine, the client
// and the HTTP stack, with no database behind.
type FloorServer struct{ srv *fasthttp.Server }

// NewFloorServer returns a floor server.
func NewFloorServer() *FloorServer {
	return &FloorServer{srv: &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if ctx.IsPost() && (string(ctx.Path()) == "/v1/users" || string(ctx.Path()) == "/v1/docs") {
				ctx.SetStatusCode(fasthttp.StatusCreated)
			}
			ctx.SetContentType("application/json")
			ctx.SetBody(floorBody)
		},
		Name:                  "troupe-floor",
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
	}}
}

// Serve serves on ln until Shutdown.
func (f *FloorServer) Serve(ln net.Listener) error { return f.srv.Serve(ln) }

// Shutdown stops the server.
func (f *FloorServer) Shutdown() error { return f.srv.Shutdown() }

// FloorRateLimitService is the floor of ratelimit-grpc: a bare gRPC
// server of Envoy's rate-limit service that answers every call at once
// with the answer troupe gives to one descriptor of the bench policy
// (OK, its limit, remaining and time to reset), so that a run against
// it measures the machine, the client and the gRPC stack alone.
type FloorRateLimitService struct {
	rlsv3.UnimplementedRateLimitServiceServer
	srv  *grpc.Server
	resp *rlsv3.RateLimitResponse
}

// NewFloorRateLimitService returns the floor's gRPC server.
func NewFloorRateLimitService() *FloorRateLimitService {
	// The service's own gRPC settings: the floor differs from it by the
	// work behind the answer only.
	return newFloorRateLimitService(envoy.ServerOptions()...)
}

// newFloorRateLimitService returns the floor's gRPC server with opts
// (the benchmarks of gRPC's settings try others).
func newFloorRateLimitService(opts ...grpc.ServerOption) *FloorRateLimitService {
	f := &FloorRateLimitService{
		srv: grpc.NewServer(opts...),
		resp: &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{
			Code:               rlsv3.RateLimitResponse_OK,
			CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{Name: benchEnvoyPolicy, RequestsPerUnit: 1_000_000, Unit: rlsv3.RateLimitResponse_RateLimit_SECOND},
			LimitRemaining:     999_999,
			DurationUntilReset: durationpb.New(time.Microsecond),
		}}},
	}
	rlsv3.RegisterRateLimitServiceServer(f.srv, f)
	return f
}

// ShouldRateLimit answers OK (the same message every time: a message
// is only read while it is marshalled).
func (f *FloorRateLimitService) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return f.resp, nil
}

// Serve serves on ln until Stop.
func (f *FloorRateLimitService) Serve(ln net.Listener) error { return f.srv.Serve(ln) }

// Stop closes every connection.
func (f *FloorRateLimitService) Stop() { f.srv.Stop() }
