package bench

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The lean client against real grpc-go servers on 127.0.0.1: the answers
// it reads are the ones grpc-go's own client reads.

const shouldRateLimitPath = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

// testRLS is a rate-limit service whose answers a test decides.
type testRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	answer func(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error)
}

func (s *testRLS) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return s.answer(ctx, req)
}

// serveRLS serves srv on 127.0.0.1 until the test ends.
func serveRLS(t *testing.T, srv rlsv3.RateLimitServiceServer) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(g, srv)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return ln.Addr().String(), g.Stop
}

func mustFrame(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := grpcFrame(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestH2CallsFloor: 64 callers on two connections, each answered with the
// floor's OK and the key it asked about, as grpc-go's client would read.
func TestH2CallsFloor(t *testing.T) {
	addr, _ := serveRLS(t, &testRLS{answer: func(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		key := req.GetDescriptors()[0].GetEntries()[0].GetValue()
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK,
			RawBody: []byte(key), Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OK, LimitRemaining: 7}}}, nil
	}})
	conns := make([]*h2Conn, 2)
	for i := range conns {
		c, err := dialH2(addr, shouldRateLimitPath, nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		conns[i] = c
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 64 {
		wg.Go(func() {
			call := newH2Call()
			for i := range 200 {
				key := string(rune('a'+w%26)) + string(rune('a'+i%26))
				answer, err := conns[w%2].call(call, mustFrame(t, grpcRequest(key)), 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				var resp rlsv3.RateLimitResponse
				if err := proto.Unmarshal(answer, &resp); err != nil {
					errs <- err
					return
				}
				code, err := overallCode(answer)
				if err != nil || code != int32(rlsv3.RateLimitResponse_OK) || string(resp.GetRawBody()) != key || resp.GetStatuses()[0].GetLimitRemaining() != 7 {
					errs <- errors.New("answer for " + key + " read wrong: " + resp.String())
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestH2Metadata: the metadata given at dial is sent on every call (the
// first call adds it to the server's table, later ones index it), and a
// refusal comes back as its grpc-status.
func TestH2Metadata(t *testing.T) {
	addr, _ := serveRLS(t, &testRLS{answer: func(ctx context.Context, _ *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer good" {
			return nil, status.Errorf(codes.Unauthenticated, "no token: %q", got)
		}
		if _, ok := ctx.Deadline(); !ok {
			return nil, status.Error(codes.InvalidArgument, "no deadline")
		}
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}, nil
	}})
	good, err := dialH2(addr, shouldRateLimitPath, [][2]string{{"authorization", "Bearer good"}}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer good.close()
	call := newH2Call()
	for range 3 {
		answer, err := good.call(call, mustFrame(t, grpcRequest("k")), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code, err := overallCode(answer); err != nil || code != int32(rlsv3.RateLimitResponse_OVER_LIMIT) {
			t.Fatalf("overall code %d, %v; want OVER_LIMIT", code, err)
		}
	}
	bad, err := dialH2(addr, shouldRateLimitPath, [][2]string{{"authorization", "Bearer bad"}}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.close()
	_, err = bad.call(call, mustFrame(t, grpcRequest("k")), 5*time.Second)
	var st *h2Status
	if !errors.As(err, &st) || st.code != "16" {
		t.Fatalf("err %v; want grpc-status 16 (UNAUTHENTICATED)", err)
	}
}

// TestH2Timeout: a call not answered in time is reset and reported as a
// timeout; the connection carries the next call.
func TestH2Timeout(t *testing.T) {
	release := make(chan struct{})
	addr, _ := serveRLS(t, &testRLS{answer: func(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		if req.GetDescriptors()[0].GetEntries()[0].GetValue() == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
	}})
	defer close(release)
	c, err := dialH2(addr, shouldRateLimitPath, nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	call := newH2Call()
	if _, err := c.call(call, mustFrame(t, grpcRequest("slow")), 50*time.Millisecond); !errors.Is(err, errH2Timeout) {
		t.Fatalf("err %v; want a timeout", err)
	}
	answer, err := c.call(call, mustFrame(t, grpcRequest("fast")), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := overallCode(answer); code != int32(rlsv3.RateLimitResponse_OK) {
		t.Fatalf("overall code %d after a timeout", code)
	}
}

// TestH2ServerGone: calls in flight when the server stops fail, and so
// do later ones, without waiting for their timeout.
func TestH2ServerGone(t *testing.T) {
	entered := make(chan struct{}, 1)
	addr, stop := serveRLS(t, &testRLS{answer: func(ctx context.Context, _ *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	c, err := dialH2(addr, shouldRateLimitPath, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	done := make(chan error, 1)
	go func() {
		_, err := c.call(newH2Call(), mustFrame(t, grpcRequest("k")), time.Minute)
		done <- err
	}()
	<-entered
	stop()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, errH2Timeout) {
			t.Fatalf("err %v; want the connection's failure", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a call in flight still waits after its server stopped")
	}
	if _, err := c.call(newH2Call(), mustFrame(t, grpcRequest("k")), time.Minute); err == nil {
		t.Fatal("a call on a failed connection succeeded")
	}
}

// TestHeaderBlocks: the later block is all indexes into what the first
// added, both decode to the same fields, and without room in the table
// every block is the same literals.
func TestHeaderBlocks(t *testing.T) {
	md := [][2]string{{"authorization", "Bearer t"}}
	first, later := headerBlocks("127.0.0.1:1", shouldRateLimitPath, md, 1500*time.Millisecond, 4096)
	if len(later) >= len(first) || len(later) > 16 {
		t.Fatalf("later block %d bytes, first %d: want a few indexes", len(later), len(first))
	}
	dec := hpack.NewDecoder(4096, nil)
	a, err := dec.DecodeFull(first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dec.DecodeFull(later)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 8 || len(a) != len(b) {
		t.Fatalf("decoded %d and %d fields", len(a), len(b))
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Value != b[i].Value {
			t.Fatalf("field %d: %v then %v", i, a[i], b[i])
		}
	}
	if a[6].Name != "grpc-timeout" || a[6].Value != "1500m" || a[7].Value != "Bearer t" {
		t.Fatalf("fields %v", a)
	}
	// No table: the first block sets its size to 0, every block then
	// decodes on its own (a fresh decoder each).
	first, later = headerBlocks("127.0.0.1:1", shouldRateLimitPath, md, time.Second, 0)
	for _, block := range [][]byte{first, later, later} {
		fields, err := hpack.NewDecoder(0, nil).DecodeFull(block)
		if err != nil || len(fields) != 8 || fields[7].Value != "Bearer t" {
			t.Fatalf("a block without the table decodes to %v, %v", fields, err)
		}
	}
}

// FuzzOverallCode: overallCode reads what proto.Unmarshal reads, and
// never panics on other bytes.
func FuzzOverallCode(f *testing.F) {
	for _, m := range []*rlsv3.RateLimitResponse{
		{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{LimitRemaining: 3}}},
		{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, RawBody: []byte("x")},
		{},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x08, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		code, err := overallCode(b)
		var m rlsv3.RateLimitResponse
		if proto.Unmarshal(b, &m) == nil {
			if err != nil {
				t.Fatalf("proto reads %v, overallCode fails: %v", m.GetOverallCode(), err)
			}
			if code != int32(m.GetOverallCode()) {
				t.Fatalf("overallCode %d, proto %d", code, m.GetOverallCode())
			}
		}
	})
}
