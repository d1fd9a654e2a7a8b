package systemtest

import (
	"context"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

// TestEnvoyRateLimitService runs a node with --grpc-addr and asks it as
// Envoy does: a policy declaring an Envoy rule decides the descriptors
// it matches, and its decisions show in the metrics.
func TestEnvoyRateLimitService(t *testing.T) {
	t.Parallel()
	cfg := newNodeConfig(t, "n1")
	grpcAddr := clustertest.FreeAddr(t)
	cfg.ExtraArgs = append(cfg.ExtraArgs, "--grpc-addr", grpcAddr)
	n := startNode(t, cfg)
	expectStatus(t, n.do(t, "PUT", "/v1/ratelimit/policies/per-ip", map[string]any{
		"limit": 2, "window_ms": 3_600_000,
		"envoy": map[string]any{"domain": "edge", "descriptors": []map[string]string{{"key": "remote_address"}}},
	}, nil), 200)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := rlsv3.NewRateLimitServiceClient(conn)
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "198.51.100.9"}}},
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "unlimited", Value: "x"}}},
	}}
	var codes []rlsv3.RateLimitResponse_Code
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := client.ShouldRateLimit(ctx, req)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Statuses[1].CurrentLimit != nil || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OK {
			t.Fatalf("the unmatched descriptor: %v", resp.Statuses[1])
		}
		codes = append(codes, resp.OverallCode)
	}
	want := []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("codes %v, want %v", codes, want)
		}
	}
	eventually(t, "the decisions in the metrics", 10*time.Second, func() bool {
		body := string(n.do(t, "GET", "/metrics", nil, nil).Body)
		return strings.Contains(body, `troupe_ratelimit_decisions_total{policy="per-ip",decision="allowed"} 2`) &&
			strings.Contains(body, `troupe_ratelimit_decisions_total{policy="per-ip",decision="denied"} 1`)
	})
}
