package envoy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// fakePolicies hands out a policies map, replaced by set.
type fakePolicies struct {
	m atomic.Pointer[map[string]storage.Policy]
}

func (f *fakePolicies) Policies() map[string]storage.Policy { return *f.m.Load() }

func (f *fakePolicies) set(t testing.TB, ps ...storage.Policy) {
	t.Helper()
	m := map[string]storage.Policy{}
	for _, p := range ps {
		if e := p.Validate(); e != nil {
			t.Fatal(e)
		}
		m[p.Name] = p
	}
	f.m.Store(&m)
}

// tokens admits "Bearer svc" and "Bearer admin", forbids "Bearer user",
// and refuses anything else as the API does.
type tokens struct{}

func (tokens) AuthorizeRateLimitService(authz string) (bool, error) {
	switch authz {
	case "Bearer svc", "Bearer admin":
		return false, nil
	case "Bearer user":
		return true, errors.New("only admins and services may call the rate-limit service")
	case "":
		return false, errors.New("this service needs an access token")
	}
	return false, errors.New("the access token is not valid or has expired")
}

type fixture struct {
	pol    *fakePolicies
	set    *metrics.Set
	addr   string
	client rlsv3.RateLimitServiceClient // without TLS
}

// serve starts a real service on 127.0.0.1 with real bucket actors, and
// a client built from the same protos.
func serve(t testing.TB, cfg Config, policies ...storage.Policy) *fixture {
	t.Helper()
	set := metrics.NewSet()
	sys := actors.NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), set)
	lim := actors.NewLimiter(sys, set, actors.LimiterConfig{Actors: 4, Sweep: 10 * time.Millisecond})
	f := &fixture{pol: &fakePolicies{}, set: set}
	f.pol.set(t, policies...)
	s := New(cfg, f.pol, lim, tokens{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		lim.Close()
		sys.Shutdown()
	})
	if cfg.TLS == nil {
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		f.client = rlsv3.NewRateLimitServiceClient(conn)
	}
	return f
}

func withToken(tok string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = cancel // ends with the test's deadline; each call is short
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func desc(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func rule(domain string, keys ...string) *storage.EnvoyRule {
	r := &storage.EnvoyRule{Domain: domain}
	for _, k := range keys {
		key, value, _ := strings.Cut(k, "=")
		r.Descriptors = append(r.Descriptors, storage.EnvoyEntry{Key: key, Value: value})
	}
	return r
}

func counter(set *metrics.Set, policy, decision string) uint64 {
	return set.GetOrCreateCounter(`troupe_ratelimit_decisions_total{policy="` + policy + `",decision="` + decision + `"}`).Get()
}

// counted waits until the bucket actors' sweeps (every 10 ms here) have
// counted want decisions of a kind.
func counted(t *testing.T, set *metrics.Set, policy, decision string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := counter(set, policy, decision)
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			t.Fatalf("%s %s decisions counted: %d, want %d", policy, decision, n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShouldRateLimitAllowsThenDenies(t *testing.T) {
	f := serve(t, Config{}, storage.Policy{Name: "per-ip", Limit: 3, WindowMs: 60_000, Envoy: rule("edge", "remote_address")})
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.0.0.1")}}
	for i := range 3 {
		resp, err := f.client.ShouldRateLimit(withToken("svc"), req)
		if err != nil {
			t.Fatal(err)
		}
		st := resp.Statuses[0]
		if resp.OverallCode != rlsv3.RateLimitResponse_OK || st.Code != rlsv3.RateLimitResponse_OK || st.LimitRemaining != uint32(2-i) {
			t.Fatalf("check %d: %v", i, resp)
		}
		l := st.CurrentLimit
		if l.Name != "per-ip" || l.RequestsPerUnit != 3 || l.Unit != rlsv3.RateLimitResponse_RateLimit_MINUTE || l.UnitMultiplier != nil {
			t.Fatalf("limit %v", l)
		}
		if d := st.DurationUntilReset.AsDuration(); d <= 0 || d > time.Minute {
			t.Fatalf("reset %v", d)
		}
		if len(resp.ResponseHeadersToAdd) != 0 {
			t.Fatalf("headers nobody asked for: %v", resp.ResponseHeadersToAdd)
		}
	}
	resp, err := f.client.ShouldRateLimit(withToken("admin"), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("fourth: %v", resp)
	}
	// Another address has its own bucket.
	req.Descriptors[0] = desc("remote_address", "10.0.0.2")
	if resp, err := f.client.ShouldRateLimit(withToken("svc"), req); err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("another key: %v %v", resp, err)
	}
	counted(t, f.set, "per-ip", "allowed", 4)
	counted(t, f.set, "per-ip", "denied", 1)
}

// Several descriptors are decided all or nothing: when one is over its
// limit, the others spend nothing.
func TestShouldRateLimitSeveralDescriptors(t *testing.T) {
	f := serve(t, Config{},
		storage.Policy{Name: "per-user", Limit: 10, WindowMs: 1000, Envoy: rule("api", "user")},
		storage.Policy{Name: "pay", Algorithm: storage.FixedWindow, Limit: 1, Window: storage.UnitHour, Envoy: rule("api", "user", "path=/pay")},
		storage.Policy{Name: "other-domain", Limit: 1, WindowMs: 1000, Envoy: rule("elsewhere", "user")},
	)
	req := &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*ratelimitv3.RateLimitDescriptor{
		desc("user", "ann"), desc("user", "ann", "path", "/pay"),
	}}
	resp, err := f.client.ShouldRateLimit(withToken("svc"), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OK || len(resp.Statuses) != 2 ||
		resp.Statuses[0].LimitRemaining != 9 || resp.Statuses[1].LimitRemaining != 0 ||
		resp.Statuses[1].CurrentLimit.Name != "pay" || resp.Statuses[1].CurrentLimit.Unit != rlsv3.RateLimitResponse_RateLimit_HOUR {
		t.Fatalf("first: %v", resp)
	}
	resp, err = f.client.ShouldRateLimit(withToken("svc"), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT ||
		resp.Statuses[0].Code != rlsv3.RateLimitResponse_OK || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("second: %v", resp)
	}
	// The denied request spent nothing of per-user: 9 were left, 8 now.
	resp, err = f.client.ShouldRateLimit(withToken("svc"), &rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("user", "ann")}})
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].LimitRemaining != 8 {
		t.Fatalf("after a denial: %v %v", resp, err)
	}
	counted(t, f.set, "per-user", "rolled_back", 1)
}

// A descriptor no policy matches is OK with no limit; the others are
// decided as usual.
func TestShouldRateLimitNoMatch(t *testing.T) {
	f := serve(t, Config{}, storage.Policy{Name: "p", Limit: 1, WindowMs: 1000, Envoy: rule("edge", "k=v")})
	for _, req := range []*rlsv3.RateLimitRequest{
		{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", "other")}},
		{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", "v", "extra", "x")}},
		{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("other", "v")}},
		{Domain: "nobody", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", "v")}},
	} {
		for range 2 {
			resp, err := f.client.ShouldRateLimit(withToken("svc"), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OK || resp.Statuses[0].CurrentLimit != nil {
				t.Fatalf("%v: %v", req, resp)
			}
		}
	}
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("nothing", "x"), desc("k", "v")}}
	resp, err := f.client.ShouldRateLimit(withToken("svc"), req)
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].CurrentLimit != nil || resp.Statuses[1].CurrentLimit.GetName() != "p" {
		t.Fatalf("mixed: %v %v", resp, err)
	}
	resp, err = f.client.ShouldRateLimit(withToken("svc"), req)
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[0].Code != rlsv3.RateLimitResponse_OK {
		t.Fatalf("mixed, again: %v %v", resp, err)
	}
}

// A rule that fixes a value wins over one that takes any value; a new
// policies map is seen at once.
func TestShouldRateLimitMostSpecificAndUpdates(t *testing.T) {
	any := storage.Policy{Name: "a-any", Limit: 100, WindowMs: 1000, Envoy: rule("d", "path")}
	login := storage.Policy{Name: "z-login", Limit: 2, WindowMs: 1000, Envoy: rule("d", "path=/login")}
	f := serve(t, Config{}, any, login)
	ask := func(path string) string {
		resp, err := f.client.ShouldRateLimit(withToken("svc"), &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("path", path)}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Statuses[0].CurrentLimit.GetName()
	}
	if got := ask("/login"); got != "z-login" {
		t.Fatalf("/login decided by %q", got)
	}
	if got := ask("/home"); got != "a-any" {
		t.Fatalf("/home decided by %q", got)
	}
	f.pol.set(t, any)
	if got := ask("/login"); got != "a-any" {
		t.Fatalf("after the delete, /login decided by %q", got)
	}
	f.pol.set(t)
	if got := ask("/login"); got != "" {
		t.Fatalf("with no policies, /login decided by %q", got)
	}
}

// hits_addend is the cost: the request's, or a descriptor's own.
func TestShouldRateLimitHitsAddend(t *testing.T) {
	f := serve(t, Config{}, storage.Policy{Name: "bytes", Limit: 100, WindowMs: 60_000, Envoy: rule("d", "client")})
	req := &rlsv3.RateLimitRequest{Domain: "d", HitsAddend: 30, Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("client", "c1")}}
	for _, want := range []uint32{70, 40, 10} {
		resp, err := f.client.ShouldRateLimit(withToken("svc"), req)
		if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].LimitRemaining != want {
			t.Fatalf("want %d left: %v %v", want, resp, err)
		}
	}
	resp, err := f.client.ShouldRateLimit(withToken("svc"), req)
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || resp.Statuses[0].LimitRemaining != 10 {
		t.Fatalf("30 more of 10 left: %v %v", resp, err)
	}
	d := desc("client", "c1")
	d.HitsAddend = wrapperspb.UInt64(10)
	req.Descriptors[0] = d
	resp, err = f.client.ShouldRateLimit(withToken("svc"), req)
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("the descriptor's 10: %v %v", resp, err)
	}
	// Above the whole limit: never allowed.
	big := &rlsv3.RateLimitRequest{Domain: "d", HitsAddend: 1000, Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("client", "c2")}}
	if resp, err := f.client.ShouldRateLimit(withToken("svc"), big); err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("above the limit: %v %v", resp, err)
	}
}

func TestShouldRateLimitHeaders(t *testing.T) {
	f := serve(t, Config{},
		storage.Policy{Name: "per-ip", Limit: 2, WindowMs: 10_000, Envoy: rule("edge", "ip")},
		storage.Policy{Name: "daily", Algorithm: storage.FixedWindow, Limit: 50, Window: storage.UnitDay, Envoy: rule("edge", "tenant")},
	)
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("ip", "1.2.3.4"), desc("tenant", "acme")}}
	ctx := metadata.AppendToOutgoingContext(withToken("svc"), HeadersMetadata, "true")
	headers := func() map[string]string {
		resp, err := f.client.ShouldRateLimit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		h := map[string]string{}
		for _, v := range resp.ResponseHeadersToAdd {
			h[v.Key] = v.Value
		}
		return h
	}
	h := headers()
	if h["RateLimit-Policy"] != `"per-ip";q=2;w=10, "daily";q=50;w=86400` || h["RateLimit"] != `"per-ip";r=1;t=5` || h["Retry-After"] != "" {
		t.Fatalf("first: %v", h)
	}
	headers()
	h = headers()
	if !strings.HasPrefix(h["RateLimit"], `"per-ip";r=0;t=`) || h["Retry-After"] == "" || h["Retry-After"] == "0" {
		t.Fatalf("over the limit: %v", h)
	}
}

func TestShouldRateLimitAuth(t *testing.T) {
	f := serve(t, Config{}, storage.Policy{Name: "p", Limit: 1, WindowMs: 1000, Envoy: rule("d", "k")})
	req := &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", "v")}}
	for _, tc := range []struct {
		ctx  context.Context
		code codes.Code
	}{
		{context.Background(), codes.Unauthenticated},
		{withToken("forged"), codes.Unauthenticated},
		{withToken("user"), codes.PermissionDenied},
	} {
		_, err := f.client.ShouldRateLimit(tc.ctx, req)
		if status.Code(err) != tc.code {
			t.Fatalf("want %v: %v", tc.code, err)
		}
	}
	// An allowed call after the refused ones is the first decision.
	if resp, err := f.client.ShouldRateLimit(withToken("svc"), req); err != nil || resp.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("after the refusals: %v %v", resp, err)
	}
	counted(t, f.set, "p", "allowed", 1)
	if n := counter(f.set, "p", "denied"); n != 0 {
		t.Fatalf("refused callers made %d decisions", n)
	}
}

func TestShouldRateLimitBadRequests(t *testing.T) {
	f := serve(t, Config{}, storage.Policy{Name: "p", Limit: 1, WindowMs: 1000, Envoy: rule("d", "k")})
	many := make([]*ratelimitv3.RateLimitDescriptor, MaxDescriptors+1)
	for i := range many {
		many[i] = desc("k", "v")
	}
	for _, req := range []*rlsv3.RateLimitRequest{
		{Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", "v")}},
		{Domain: "d"},
		{Domain: "d", Descriptors: many},
		{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", "")}},
		{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", strings.Repeat("v", 600))}},
	} {
		if _, err := f.client.ShouldRateLimit(withToken("svc"), req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%v: %v", req, err)
		}
	}
}

func TestCurrentLimitUnits(t *testing.T) {
	for _, tc := range []struct {
		p    storage.Policy
		n    uint32
		unit rlsv3.RateLimitResponse_RateLimit_Unit
		mult uint32
	}{
		{storage.Policy{Limit: 100, WindowMs: 1000}, 100, rlsv3.RateLimitResponse_RateLimit_SECOND, 0},
		{storage.Policy{Limit: 100, WindowMs: 90_000}, 100, rlsv3.RateLimitResponse_RateLimit_SECOND, 90},
		{storage.Policy{Limit: 5, WindowMs: 120_000}, 5, rlsv3.RateLimitResponse_RateLimit_MINUTE, 2},
		{storage.Policy{Algorithm: storage.SlidingWindow, Limit: 7, WindowMs: 3_600_000}, 7, rlsv3.RateLimitResponse_RateLimit_HOUR, 0},
		{storage.Policy{Limit: 9, WindowMs: 86_400_000}, 9, rlsv3.RateLimitResponse_RateLimit_DAY, 0},
		{storage.Policy{Limit: 10, WindowMs: 500}, 20, rlsv3.RateLimitResponse_RateLimit_SECOND, 0},
		{storage.Policy{Limit: 1, WindowMs: 1500}, 1, rlsv3.RateLimitResponse_RateLimit_SECOND, 0},
		{storage.Policy{Algorithm: storage.FixedWindow, Limit: 3, Window: storage.UnitMonth}, 3, rlsv3.RateLimitResponse_RateLimit_MONTH, 0},
	} {
		l := currentLimit(&tc.p)
		if l.RequestsPerUnit != tc.n || l.Unit != tc.unit || l.GetUnitMultiplier().GetValue() != tc.mult {
			t.Errorf("%+v: %v", tc.p, l)
		}
	}
}

// Two descriptors on the same bucket spend it twice, together.
func TestShouldRateLimitSameBucketTwice(t *testing.T) {
	f := serve(t, Config{}, storage.Policy{Name: "p", Limit: 3, WindowMs: 60_000, Envoy: rule("d", "k")})
	req := &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", "v"), desc("k", "v")}}
	resp, err := f.client.ShouldRateLimit(withToken("svc"), req)
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[1].LimitRemaining != 1 {
		t.Fatalf("first: %v %v", resp, err)
	}
	// One left: the pair is denied whole, and the one stays.
	resp, err = f.client.ShouldRateLimit(withToken("svc"), req)
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("second: %v %v", resp, err)
	}
	resp, err = f.client.ShouldRateLimit(withToken("svc"), &rlsv3.RateLimitRequest{Domain: "d", Descriptors: req.Descriptors[:1]})
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("the one left: %v %v", resp, err)
	}
}

// A shadow policy never makes Envoy refuse: over its limit it answers OK
// and counts what it would have denied.
func TestShouldRateLimitShadow(t *testing.T) {
	f := serve(t, Config{}, storage.Policy{Name: "trial", Algorithm: storage.SlidingWindow, Limit: 1, WindowMs: 60_000, Shadow: true, Envoy: rule("d", "k")})
	req := &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", "v")}}
	for range 3 {
		resp, err := f.client.ShouldRateLimit(withToken("svc"), req)
		if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("%v %v", resp, err)
		}
	}
	counted(t, f.set, "trial", "shadow_denied", 2)
}
