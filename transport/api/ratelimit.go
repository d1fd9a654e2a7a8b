package api

import (
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// Rate limits (API.md, Rate limits): the node's "default" policy guards
// every /v1 request, keyed by the authenticated user, else the client
// address; named policies are replicated through Raft and serve
// POST /v1/ratelimit/check. Decisions are node-local, made by the bucket
// actors (actors.Limiter).

// Limiter is what the transport needs from the bucket actors.
type Limiter interface {
	Decide(c actors.Check, deadline time.Time) (storage.Decision, error)
	// DecideAll decides checks all or nothing (actors.Limiter.DecideAll).
	DecideAll(checks []actors.Check, out []storage.Decision, deadline time.Time) (bool, error)
}

// policyJSON is a policy as the API shows it: window_ms for gcra and
// sliding_window, window and time_zone for fixed_window, burst for gcra.
type policyJSON struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	Limit     uint32 `json:"limit"`
	WindowMs  int64  `json:"window_ms,omitempty"`
	Window    string `json:"window,omitempty"`
	TimeZone  string `json:"time_zone,omitempty"`
	Burst     uint32 `json:"burst,omitempty"`
	Shadow    bool   `json:"shadow"`
	Scope     string `json:"scope,omitempty"` // "node" (the default policy) or "cluster"
	// Envoy binds the policy to descriptors of Envoy's rate-limit
	// service (transport/envoy).
	Envoy *envoyJSON `json:"envoy,omitempty"`
}

func toPolicyJSON(p *storage.Policy, scope string) policyJSON {
	j := policyJSON{Name: p.Name, Algorithm: p.Algorithm.String(), Limit: p.Limit, WindowMs: p.WindowMs, Shadow: p.Shadow, Scope: scope}
	if p.Algorithm == storage.GCRA {
		j.Burst = p.Burst
	}
	j.Envoy = toEnvoyJSON(p.Envoy)
	if p.Algorithm == storage.FixedWindow {
		j.Window, j.TimeZone = p.Window.String(), p.TimeZone
		if j.TimeZone == "" {
			j.TimeZone = "UTC"
		}
	}
	return j
}

// fromPolicyJSON reads a policy back (the decide route's wire form),
// validated.
func fromPolicyJSON(j *policyJSON) (storage.Policy, *storage.Error) {
	alg, ok := storage.ParseAlgorithm(j.Algorithm)
	if !ok {
		return storage.Policy{}, &storage.Error{Kind: storage.KindBadRequest, Field: "algorithm", Message: "unknown algorithm " + strconv.Quote(j.Algorithm)}
	}
	p := storage.Policy{Name: j.Name, Algorithm: alg, Limit: j.Limit, WindowMs: j.WindowMs, Burst: j.Burst, Shadow: j.Shadow, TimeZone: j.TimeZone}
	if j.Window != "" {
		if p.Window, ok = storage.ParseCalendarUnit(j.Window); !ok {
			return storage.Policy{}, &storage.Error{Kind: storage.KindBadRequest, Field: "window", Message: "unknown window " + strconv.Quote(j.Window)}
		}
	}
	if p.TimeZone == "UTC" {
		p.TimeZone = "" // as stored: see putPolicy
	}
	if j.Envoy != nil {
		r, e := j.Envoy.rule()
		if e != nil {
			return storage.Policy{}, e
		}
		p.Envoy = r
	}
	if e := p.Validate(); e != nil {
		return storage.Policy{}, e
	}
	return p, nil
}

type putPolicyRequest struct {
	Algorithm *string    `json:"algorithm"`
	Limit     *uint32    `json:"limit"`
	WindowMs  *int64     `json:"window_ms"`
	Window    *string    `json:"window"`
	TimeZone  *string    `json:"time_zone"`
	Burst     *uint32    `json:"burst"`
	Shadow    *bool      `json:"shadow"`
	Envoy     *envoyJSON `json:"envoy"`
}

const maxLimitKeyBytes = 512

// limitDefault applies the default policy before h: 429 when the caller
// is over it, and the RateLimit headers on every answer. Requests a
// member forwarded were limited where they arrived.
func (s *Server) limitDefault(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	if s.cfg.RateLimit == nil || s.limiter == nil {
		return h
	}
	p := s.cfg.RateLimit
	policyHeader := rateLimitPolicy(storage.DefaultPolicy, p)
	return func(ctx *fasthttp.RequestCtx) {
		if s.forwardedByPeer(ctx) {
			h(ctx)
			return
		}
		key := s.limitKey(ctx)
		d, err := s.limiter.Decide(actors.Check{Policy: p, Key: key, Cost: 1}, time.Now().Add(time.Second))
		if err != nil {
			// The limiter is shutting down or swamped: fail open, the
			// request's own path has its timeouts.
			h(ctx)
			return
		}
		setLimitHeaders(ctx, policyHeader, d)
		if !d.Allowed {
			e := newError("rate_limited", "too many requests; slow down")
			e.Details = map[string]any{"policy": storage.DefaultPolicy, "retry_after_ms": ceilDiv(d.RetryAfterNs, int64(time.Millisecond))}
			writeError(ctx, e)
			return
		}
		h(ctx)
	}
}

// rateLimitPolicy is the RateLimit-Policy header of a policy: its quota
// and, when it has one, its window in seconds (rounded up): window_ms for
// gcra and sliding_window, the calendar unit's length for fixed_window (a
// month counts 31 days, its longest); a concurrency policy has none.
func rateLimitPolicy(name string, p *storage.Policy) string {
	h := strconv.Quote(name) + `;q=` + strconv.FormatUint(uint64(p.Limit), 10)
	var w int64
	switch p.Algorithm {
	case storage.GCRA, storage.SlidingWindow:
		w = ceilDiv(p.WindowMs, 1000)
	case storage.FixedWindow:
		w = calendarUnitSeconds[p.Window]
	}
	if w > 0 {
		h += `;w=` + strconv.FormatInt(w, 10)
	}
	return h
}

var calendarUnitSeconds = map[storage.CalendarUnit]int64{
	storage.UnitSecond: 1, storage.UnitMinute: 60, storage.UnitHour: 3600, storage.UnitDay: 86400, storage.UnitMonth: 31 * 86400,
}

func setLimitHeaders(ctx *fasthttp.RequestCtx, policyHeader string, d storage.Decision) {
	ctx.Response.Header.Set("RateLimit-Policy", policyHeader)
	ctx.Response.Header.Set("RateLimit", `"default";r=`+strconv.FormatUint(uint64(d.Remaining), 10)+`;t=`+strconv.FormatInt(ceilDiv(d.ResetNs, int64(time.Second)), 10))
	if !d.Allowed {
		ctx.Response.Header.Set("Retry-After", strconv.FormatInt(max(1, ceilDiv(d.RetryAfterNs, int64(time.Second))), 10))
	}
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}

// limitKey is who the default policy counts: the authenticated user,
// else the client address (X-Forwarded-For only from a trusted proxy).
func (s *Server) limitKey(ctx *fasthttp.RequestCtx) string {
	c := callerOf(ctx)
	if c.signedIn() {
		return "user:" + c.uid
	}
	if c.guest() {
		return linkLimitKey(c.link) // a guest is charged to its share link
	}
	return "addr:" + s.clientAddr(ctx)
}

// clientAddr is the request's client address. Behind a trusted proxy
// (--trusted-proxies) it is the last address in X-Forwarded-For that is
// not itself a trusted proxy.
func (s *Server) clientAddr(ctx *fasthttp.RequestCtx) string {
	remote, ok := netip.AddrFromSlice(ctx.RemoteIP())
	if !ok {
		return ctx.RemoteIP().String()
	}
	remote = remote.Unmap()
	if !s.trusted(remote) {
		return remote.String()
	}
	xff := string(ctx.Request.Header.Peek("X-Forwarded-For"))
	hops := strings.Split(xff, ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a.String()
		}
	}
	return remote.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseTrustedProxies reads --trusted-proxies: CIDRs or addresses,
// comma-separated.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, errors.New("trusted proxy " + strconv.Quote(part) + " is not an address or CIDR")
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, errors.New("trusted proxy " + strconv.Quote(part) + " is not an address or CIDR")
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// policy returns the policy called name: the node's default, or a named
// one of the cluster.
func (s *Server) policy(name string) (*storage.Policy, string, bool) {
	if name == storage.DefaultPolicy {
		return s.cfg.RateLimit, "node", s.cfg.RateLimit != nil
	}
	p, ok := s.policies.of(s.node.Policies())[name]
	return p, "cluster", ok
}

// policyCache holds a pointer to each policy of the map it was built
// from, so that a check finds its policy without copying it (a copy per
// check was an allocation per decision). The node replaces the map when
// a policy is put or deleted, never changes it: a map still in use by a
// request keeps its pointers valid, and pointer identity tells when to
// build again.
type policyCache struct {
	cur atomic.Pointer[policyPtrs]
}

type policyPtrs struct {
	src  map[string]storage.Policy
	ptrs map[string]*storage.Policy
}

func (c *policyCache) of(m map[string]storage.Policy) map[string]*storage.Policy {
	if b := c.cur.Load(); b != nil && reflect.ValueOf(b.src).Pointer() == reflect.ValueOf(m).Pointer() {
		return b.ptrs
	}
	ptrs := make(map[string]*storage.Policy, len(m))
	for name, p := range m {
		ptrs[name] = &p
	}
	c.cur.Store(&policyPtrs{src: m, ptrs: ptrs})
	return ptrs
}

func (s *Server) putPolicy(ctx *fasthttp.RequestCtx) {
	var req putPolicyRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	name, _ := ctx.UserValue("name").(string)
	if e := storage.CheckLabel("name", name); e != nil {
		writeError(ctx, e)
		return
	}
	p, e := req.policy(name)
	if e != nil {
		writeError(ctx, e)
		return
	}
	cmd := &storage.Command{Kind: storage.CmdPolicyPut, Stamp: s.node.Stamps(1), RequestID: w.key, Fingerprint: w.fp, Policy: &p}
	if _, ok := s.propose(ctx, cmd, s.deadline()); !ok {
		return
	}
	writeJSON(ctx, http.StatusOK, toPolicyJSON(&p, "cluster"))
}

// policy reads a put's body into a validated policy. Its errors name
// the field.
func (req *putPolicyRequest) policy(name string) (storage.Policy, error) {
	p := storage.Policy{Name: name}
	if req.Algorithm != nil {
		alg, ok := storage.ParseAlgorithm(*req.Algorithm)
		if !ok || *req.Algorithm == "" {
			return p, badRequest("algorithm must be one of gcra (the default), sliding_window, fixed_window, concurrency", "algorithm")
		}
		p.Algorithm = alg
	}
	if req.Limit == nil {
		return p, badRequest("limit is required", "limit")
	}
	p.Limit = *req.Limit
	switch {
	case req.WindowMs != nil:
		if p.Algorithm == storage.FixedWindow || p.Algorithm == storage.Concurrency {
			// Even 0: the field does not belong to these algorithms.
			p.WindowMs = max(*req.WindowMs, 1)
		} else {
			p.WindowMs = *req.WindowMs
		}
	case p.Algorithm == storage.GCRA || p.Algorithm == storage.SlidingWindow:
		return p, badRequest("window_ms is required for "+p.Algorithm.String()+" policies, from 1 to "+strconv.Itoa(storage.MaxWindowMs)+" (24 h)", "window_ms")
	}
	if req.Window != nil {
		u, ok := storage.ParseCalendarUnit(*req.Window)
		if !ok {
			return p, badRequest("window must be one of second, minute, hour, day, month", "window")
		}
		p.Window = u
	}
	if req.TimeZone != nil {
		p.TimeZone = *req.TimeZone
		if p.TimeZone == "" {
			return p, badRequest("time_zone must be an IANA time zone name such as Europe/Paris (omit it for UTC)", "time_zone")
		}
		if p.Algorithm == storage.FixedWindow && p.TimeZone == "UTC" {
			p.TimeZone = "" // stored as the default, so every node keys the windows alike
		}
	}
	if req.Burst != nil {
		if *req.Burst == 0 {
			return p, badRequest("burst must be from 1 to "+strconv.Itoa(storage.MaxPolicyLimit)+" (omit it for the default, limit)", "burst")
		}
		p.Burst = *req.Burst
	}
	if req.Shadow != nil {
		p.Shadow = *req.Shadow
	}
	if req.Envoy != nil {
		r, e := req.Envoy.rule()
		if e != nil {
			return p, e
		}
		p.Envoy = r
	}
	if name == storage.DefaultPolicy {
		return p, badRequest("the default policy is set per node with --rate-limit, not through the API", "name")
	}
	if e := p.Validate(); e != nil {
		return p, e
	}
	return p, nil
}

func (s *Server) deletePolicy(ctx *fasthttp.RequestCtx) {
	w, ok := s.startWrite(ctx, nil)
	if !ok {
		return
	}
	name, _ := ctx.UserValue("name").(string)
	if name == storage.DefaultPolicy {
		writeError(ctx, badRequest("the default policy is set per node with --rate-limit, not through the API", "name"))
		return
	}
	cmd := &storage.Command{Kind: storage.CmdPolicyDelete, Stamp: s.node.Stamps(1), RequestID: w.key, Fingerprint: w.fp, Policy: &storage.Policy{Name: name}}
	if _, ok := s.propose(ctx, cmd, s.deadline()); !ok {
		return
	}
	ctx.SetStatusCode(http.StatusNoContent)
}

func (s *Server) listPolicies(ctx *fasthttp.RequestCtx) {
	deadline := s.deadline()
	if !s.listGate(ctx, deadline) {
		return
	}
	items := []policyJSON{}
	if s.cfg.RateLimit != nil {
		items = append(items, toPolicyJSON(s.cfg.RateLimit, "node"))
	}
	var named []policyJSON
	for _, p := range s.node.Policies() {
		named = append(named, toPolicyJSON(&p, "cluster"))
	}
	slices.SortFunc(named, func(a, b policyJSON) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(ctx, http.StatusOK, map[string][]policyJSON{"items": append(items, named...)})
}
