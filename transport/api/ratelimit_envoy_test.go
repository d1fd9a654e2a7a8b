package api

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/troupe-db/troupe/transport/envoy"
)

// A policy's envoy field is taken by PUT, shown in answers, and checked
// field by field.
func TestPolicyEnvoyField(t *testing.T) {
	ts := startServer(t, secure)
	admin := ts.adminToken()
	body := `{"limit":2,"window_ms":60000,"envoy":{"domain":"edge","descriptors":[{"key":"remote_address"},{"key":"path","value":"/login"}]}}`
	r := ts.do("PUT", "/v1/ratelimit/policies/login-edge", body, admin, true)
	ts.expect(r, 200, "")
	want := `"envoy":{"domain":"edge","descriptors":[{"key":"remote_address"},{"key":"path","value":"/login"}]}`
	if !strings.Contains(string(r.body), want) {
		t.Fatalf("put answered %s", r.body)
	}
	r = ts.do("GET", "/v1/ratelimit/policies", "", admin, true)
	ts.expect(r, 200, "")
	if !strings.Contains(string(r.body), want) {
		t.Fatalf("list answered %s", r.body)
	}
	p := ts.node.Policies()["login-edge"]
	if p.Envoy == nil || p.Envoy.Domain != "edge" || len(p.Envoy.Descriptors) != 2 || p.Envoy.Descriptors[1].Value != "/login" {
		t.Fatalf("replicated: %+v", p.Envoy)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"limit":1,"window_ms":1000,"envoy":{"descriptors":[{"key":"k"}]}}`, "envoy.domain"},
		{`{"limit":1,"window_ms":1000,"envoy":{"domain":"d"}}`, "envoy.descriptors"},
		{`{"limit":1,"window_ms":1000,"envoy":{"domain":"d","descriptors":[]}}`, "envoy.descriptors"},
		{`{"limit":1,"window_ms":1000,"envoy":{"domain":"d","descriptors":[{"value":"v"}]}}`, "envoy.descriptors"},
		{`{"limit":1,"window_ms":1000,"envoy":{"domain":"d","descriptors":[{"key":"k","value":""}]}}`, "envoy.descriptors"},
		{`{"limit":1,"window_ms":1000,"envoy":{"domain":"","descriptors":[{"key":"k"}]}}`, "envoy.domain"},
		{`{"algorithm":"concurrency","limit":1,"envoy":{"domain":"d","descriptors":[{"key":"k"}]}}`, "envoy"},
	} {
		r := ts.do("PUT", "/v1/ratelimit/policies/bad", tc.body, admin, false)
		ts.expect(r, 400, "bad_request")
		if !strings.Contains(string(r.body), `"field":"`+tc.field+`"`) {
			t.Errorf("%s: %s", tc.body, r.body)
		}
	}
	if _, ok := ts.node.Policies()["bad"]; ok {
		t.Fatal("a bad policy was stored")
	}
}

// Envoy's rate-limit service decides with this server's limiter and
// admits the callers this server's tokens name: services and admins.
func TestEnvoyServiceThroughServer(t *testing.T) {
	ts := startServer(t, secure)
	admin := ts.adminToken()
	svc := ts.serviceToken()
	ts.register("Ada", "ada@example.com", "correct horse")
	user := bearer(ts.login("ada@example.com", "correct horse").AccessToken)
	ts.expect(ts.do("PUT", "/v1/ratelimit/policies/per-ip",
		`{"limit":1,"window_ms":60000,"envoy":{"domain":"edge","descriptors":[{"key":"remote_address"}]}}`, admin, true), 200, "")

	client := startEnvoy(t, ts)
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "192.0.2.7"}}},
	}}
	call := func(authz map[string]string) (*rlsv3.RateLimitResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if a := authz["Authorization"]; a != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
		}
		return client.ShouldRateLimit(ctx, req)
	}
	if _, err := call(nil); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	if _, err := call(map[string]string{"Authorization": "Bearer not-a-token"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a bad token: %v", err)
	}
	if _, err := call(user); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a user's token: %v", err)
	}
	resp, err := call(svc)
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].CurrentLimit.GetName() != "per-ip" {
		t.Fatalf("a service: %v %v", resp, err)
	}
	resp, err = call(admin)
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("an admin, over the limit: %v %v", resp, err)
	}
	// The key is the descriptor's value: the HTTP API sees it spent.
	r := ts.do("GET", "/v1/ratelimit/policies/per-ip/keys/192.0.2.7", "", admin, true)
	ts.expect(r, 200, "")
	if !strings.Contains(string(r.body), `"remaining":0`) {
		t.Fatalf("peek: %s", r.body)
	}
}

// startEnvoy serves Envoy's rate-limit service for ts on 127.0.0.1, as
// cmd/troupe wires it, and returns a client built from Envoy's protos.
func startEnvoy(t *testing.T, ts *testServer) rlsv3.RateLimitServiceClient {
	t.Helper()
	lim := ts.srv.RateLimiter()
	if lim == nil {
		t.Fatal("no limiter")
	}
	rls := envoy.New(envoy.Config{}, ts.node, lim, ts.srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- rls.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rls.Stop(ctx)
		if err := <-served; err != nil {
			t.Errorf("the rate-limit service ended with %v", err)
		}
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return rlsv3.NewRateLimitServiceClient(conn)
}

// In global mode Envoy may ask any node: a descriptor's key is decided
// by its owner, so its limit holds across the nodes.
func TestEnvoyServiceGlobalMode(t *testing.T) {
	a, b, _ := twoOwners(t)
	for _, ts := range []*testServer{a, b} {
		ts.expect(ts.do("PUT", "/v1/ratelimit/policies/edge-ip",
			`{"limit":3,"window_ms":60000,"envoy":{"domain":"edge","descriptors":[{"key":"remote_address"}]}}`, ts.adminToken(), true), 200, "")
	}
	clients := []rlsv3.RateLimitServiceClient{startEnvoy(t, a), startEnvoy(t, b)}
	for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"} {
		req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{
			{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: ip}}},
		}}
		ok := 0
		for i := range 8 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := clients[i%2].ShouldRateLimit(ctx, req)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if resp.OverallCode == rlsv3.RateLimitResponse_OK {
				ok++
			}
		}
		if ok != 3 {
			t.Fatalf("%s: %d of 8 allowed through two nodes, want 3", ip, ok)
		}
	}
}
