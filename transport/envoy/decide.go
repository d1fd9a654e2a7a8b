package envoy

import (
	"context"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// ShouldRateLimit decides a request's descriptors. Each descriptor is
// matched to the policy of the request's domain whose rule matches its
// entries (the most specific one: the most fixed values, then the first
// name); its entries' values form the key; hits_addend (the
// descriptor's, else the request's, 0 meaning 1) is the cost. The
// matched descriptors are decided all or nothing. A descriptor that no
// policy matches is OK with no limit, as Envoy's reference service
// answers; so is one with is_negative_hits (nothing is refunded).
func (s *Server) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	if req.GetDomain() == "" {
		return nil, status.Error(codes.InvalidArgument, "domain must not be empty")
	}
	descs := req.GetDescriptors()
	if len(descs) == 0 || len(descs) > MaxDescriptors {
		return nil, status.Errorf(codes.InvalidArgument, "a request must hold 1 to %d descriptors, it holds %d", MaxDescriptors, len(descs))
	}
	rules := s.index.of(s.policies.Policies())[req.GetDomain()]
	// The statuses in one allocation (the answer is marshalled after
	// this returns); the checks, their decisions and rules reused from
	// call to call: a request has 1 to 100 descriptors, mostly one or
	// two.
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(descs))}
	statuses := make([]rlsv3.RateLimitResponse_DescriptorStatus, len(descs))
	sc := scratches.Get().(*scratch)
	defer sc.release()
	checks, at, matched := sc.checks[:0], sc.at[:0], sc.matched[:0]
	var pairBuf [4]storage.EnvoyPair
	pairs := pairBuf[:0]
	for i, d := range descs {
		st := &statuses[i]
		st.Code = rlsv3.RateLimitResponse_OK
		resp.Statuses[i] = st
		pairs = pairs[:0]
		for _, e := range d.GetEntries() {
			pairs = append(pairs, storage.EnvoyPair{Key: e.GetKey(), Value: e.GetValue()})
		}
		r := match(rules, pairs)
		if r == nil || d.GetIsNegativeHits() {
			continue
		}
		key := storage.EnvoyKey(pairs)
		if key == "" {
			return nil, status.Errorf(codes.InvalidArgument, "descriptor %d: every entry needs a value, and the values together at most %d bytes", i, storage.MaxEnvoyKey)
		}
		cost := uint64(req.GetHitsAddend())
		if h := d.GetHitsAddend(); h != nil {
			cost = h.GetValue()
		}
		checks = append(checks, actors.Check{Policy: r.p, Key: key, Cost: uint32(min(max(cost, 1), math.MaxUint32))})
		at = append(at, int32(i))
		matched = append(matched, r)
	}
	sc.checks, sc.at, sc.matched = checks, at, matched
	if len(checks) == 0 {
		return resp, nil
	}
	if cap(sc.out) < len(checks) {
		sc.out = make([]storage.Decision, len(checks))
	}
	out := sc.out[:len(checks)]
	allowed, err := s.limiter.DecideAll(checks, out, time.Now().Add(s.cfg.Timeout))
	if err != nil {
		// A late part may still write into out: sc is not reused.
		sc.lost = true
		s.cfg.Logger.Debug("rate-limit service: no decision", "domain", req.GetDomain(), "err", err)
		return nil, status.Error(codes.Unavailable, "the rate limiter did not answer in time")
	}
	if !allowed {
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	for j, i := range at {
		d := &out[j]
		st := resp.Statuses[i]
		if !d.Allowed {
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		// Shared by every answer under the policy: a message is only
		// read while it is marshalled.
		st.CurrentLimit = matched[j].limit
		st.LimitRemaining = d.Remaining
		st.DurationUntilReset = durationpb.New(time.Duration(d.ResetNs))
	}
	if wantsHeaders(ctx) {
		resp.ResponseHeadersToAdd = headers(checks, out)
	}
	return resp, nil
}

// scratch is a call's checks, the descriptor of each, their rules and
// decisions, reused from one call to the next.
type scratch struct {
	checks  []actors.Check
	at      []int32
	matched []*domainRule
	out     []storage.Decision
	lost    bool // the limiter gave no answer in time: not reused
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// release clears what points at policies and keys and hands sc back to
// the pool.
func (sc *scratch) release() {
	if sc.lost {
		return
	}
	// The whole arrays: a call refused halfway left checks past len.
	clear(sc.checks[:cap(sc.checks)])
	clear(sc.matched[:cap(sc.matched)])
	sc.checks, sc.at, sc.matched = sc.checks[:0], sc.at[:0], sc.matched[:0]
	scratches.Put(sc)
}

// domainRule is a policy with an Envoy rule, and its limit as Envoy states it.
type domainRule struct {
	p     *storage.Policy
	limit *rlsv3.RateLimitResponse_RateLimit
}

// match returns the rule of rules that matches entries most
// specifically (rules are sorted by name: the first wins a tie).
func match(rules []*domainRule, entries []storage.EnvoyPair) *domainRule {
	var best *domainRule
	bestSpec := -1
	for _, r := range rules {
		if spec, ok := r.p.Envoy.Match(entries); ok && spec > bestSpec {
			best, bestSpec = r, spec
		}
	}
	return best
}

// currentLimit states a policy as Envoy's limit: a fixed window's
// calendar unit as is; a GCRA or sliding window of window_ms as the
// largest of day, hour, minute or second that divides it, with the
// quotient as the unit multiplier (limit per window, exactly); a window
// that is not a whole number of seconds as the sustained rate per
// second, rounded down (at least 1).
func currentLimit(p *storage.Policy) *rlsv3.RateLimitResponse_RateLimit {
	l := &rlsv3.RateLimitResponse_RateLimit{Name: p.Name, RequestsPerUnit: p.Limit}
	if p.Algorithm == storage.FixedWindow {
		l.Unit = calendarUnits[p.Window]
		return l
	}
	for _, u := range windowUnits {
		if p.WindowMs%u.ms == 0 {
			l.Unit = u.unit
			if n := p.WindowMs / u.ms; n > 1 {
				l.UnitMultiplier = wrapperspb.UInt32(uint32(n))
			}
			return l
		}
	}
	l.Unit = rlsv3.RateLimitResponse_RateLimit_SECOND
	l.RequestsPerUnit = uint32(max(1, uint64(p.Limit)*1000/uint64(p.WindowMs)))
	return l
}

var calendarUnits = map[storage.CalendarUnit]rlsv3.RateLimitResponse_RateLimit_Unit{
	storage.UnitSecond: rlsv3.RateLimitResponse_RateLimit_SECOND,
	storage.UnitMinute: rlsv3.RateLimitResponse_RateLimit_MINUTE,
	storage.UnitHour:   rlsv3.RateLimitResponse_RateLimit_HOUR,
	storage.UnitDay:    rlsv3.RateLimitResponse_RateLimit_DAY,
	storage.UnitMonth:  rlsv3.RateLimitResponse_RateLimit_MONTH,
}

var windowUnits = []struct {
	ms   int64
	unit rlsv3.RateLimitResponse_RateLimit_Unit
}{
	{86_400_000, rlsv3.RateLimitResponse_RateLimit_DAY},
	{3_600_000, rlsv3.RateLimitResponse_RateLimit_HOUR},
	{60_000, rlsv3.RateLimitResponse_RateLimit_MINUTE},
	{1000, rlsv3.RateLimitResponse_RateLimit_SECOND},
}

// headers are the RateLimit headers of the HTTP API (API.md, Rate
// limits) for a request's decisions: RateLimit-Policy lists each policy
// that decided, RateLimit tells the most restrictive decision (the
// fewest remaining, then the longest until reset), and Retry-After when
// the request is over a limit.
func headers(checks []actors.Check, out []storage.Decision) []*corev3.HeaderValue {
	var policies []string
	seen := map[string]bool{}
	worst := 0
	var retry int64
	for i := range checks {
		p := checks[i].Policy
		if !seen[p.Name] {
			seen[p.Name] = true
			policies = append(policies, policyHeader(p))
		}
		d, w := &out[i], &out[worst]
		if d.Remaining < w.Remaining || d.Remaining == w.Remaining && d.ResetNs > w.ResetNs {
			worst = i
		}
		if !d.Allowed {
			retry = max(retry, d.RetryAfterNs, 1)
		}
	}
	w := &out[worst]
	h := []*corev3.HeaderValue{
		{Key: "RateLimit-Policy", Value: strings.Join(policies, ", ")},
		{Key: "RateLimit", Value: strconv.Quote(checks[worst].Policy.Name) + ";r=" + strconv.FormatUint(uint64(w.Remaining), 10) + ";t=" + strconv.FormatInt(ceilDiv(w.ResetNs, int64(time.Second)), 10)},
	}
	if retry > 0 {
		h = append(h, &corev3.HeaderValue{Key: "Retry-After", Value: strconv.FormatInt(max(1, ceilDiv(retry, int64(time.Second))), 10)})
	}
	return h
}

// policyHeader is a policy's item of RateLimit-Policy: its quota and
// window in seconds (rounded up; a month counts 31 days).
func policyHeader(p *storage.Policy) string {
	h := strconv.Quote(p.Name) + ";q=" + strconv.FormatUint(uint64(p.Limit), 10)
	var w int64
	switch p.Algorithm {
	case storage.GCRA, storage.SlidingWindow:
		w = ceilDiv(p.WindowMs, 1000)
	case storage.FixedWindow:
		w = map[storage.CalendarUnit]int64{storage.UnitSecond: 1, storage.UnitMinute: 60, storage.UnitHour: 3600, storage.UnitDay: 86400, storage.UnitMonth: 31 * 86400}[p.Window]
	}
	if w > 0 {
		h += ";w=" + strconv.FormatInt(w, 10)
	}
	return h
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}

// indexCache holds the policies with an Envoy rule by domain, built
// again when the policies map is replaced (maps are never changed in
// place; the one it was built from is kept, so its address is not
// reused by another).
type indexCache struct {
	cur atomic.Pointer[builtIndex]
}

type builtIndex struct {
	src map[string]storage.Policy
	idx map[string][]*domainRule
}

func (c *indexCache) of(m map[string]storage.Policy) map[string][]*domainRule {
	if b := c.cur.Load(); b != nil && reflect.ValueOf(b.src).Pointer() == reflect.ValueOf(m).Pointer() {
		return b.idx
	}
	idx := map[string][]*domainRule{}
	for _, p := range m {
		if p.Envoy != nil {
			q := p
			idx[p.Envoy.Domain] = append(idx[p.Envoy.Domain], &domainRule{p: &q, limit: currentLimit(&q)})
		}
	}
	for _, rules := range idx {
		sort.Slice(rules, func(i, j int) bool { return rules[i].p.Name < rules[j].p.Name })
	}
	c.cur.Store(&builtIndex{src: m, idx: idx})
	return idx
}
