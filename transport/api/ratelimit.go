package api

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
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
}

type policyJSON struct {
	Name     string `json:"name"`
	Limit    uint32 `json:"limit"`
	WindowMs int64  `json:"window_ms"`
	Burst    uint32 `json:"burst"`
	Shadow   bool   `json:"shadow"`
	Scope    string `json:"scope"` // "node" (default) or "cluster"
}

func toPolicyJSON(p *storage.Policy, scope string) policyJSON {
	return policyJSON{Name: p.Name, Limit: p.Limit, WindowMs: p.WindowMs, Burst: p.Burst, Shadow: p.Shadow, Scope: scope}
}

type putPolicyRequest struct {
	Limit    *uint32 `json:"limit"`
	WindowMs *int64  `json:"window_ms"`
	Burst    *uint32 `json:"burst"`
	Shadow   *bool   `json:"shadow"`
}

type checkRequest struct {
	Policy *string `json:"policy"`
	Key    *string `json:"key"`
	Cost   *uint32 `json:"cost"`
}

type checkResponse struct {
	Allowed      bool   `json:"allowed"`
	Limit        uint32 `json:"limit"`
	Remaining    uint32 `json:"remaining"`
	ResetMs      int64  `json:"reset_ms"`
	RetryAfterMs int64  `json:"retry_after_ms"`
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
	policyHeader := `"default";q=` + strconv.FormatUint(uint64(p.Limit), 10) + `;w=` + strconv.FormatInt(ceilDiv(p.WindowMs, 1000), 10)
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
	if c := callerOf(ctx); c.user != nil {
		return "user:" + c.user.ID
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
	p, ok := s.node.Policies()[name]
	return &p, "cluster", ok
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
	if req.Limit == nil || req.WindowMs == nil {
		writeError(ctx, badRequest("limit and window_ms are required", ""))
		return
	}
	p := storage.Policy{Name: name, Limit: *req.Limit, WindowMs: *req.WindowMs}
	if req.Burst != nil {
		if *req.Burst == 0 {
			writeError(ctx, badRequest("burst must be from 1 to "+strconv.Itoa(storage.MaxPolicyLimit)+" (omit it for the default, limit)", "burst"))
			return
		}
		p.Burst = *req.Burst
	}
	if req.Shadow != nil {
		p.Shadow = *req.Shadow
	}
	if name == storage.DefaultPolicy {
		writeError(ctx, badRequest("the default policy is set per node with --rate-limit, not through the API", "name"))
		return
	}
	if e := p.Validate(); e != nil {
		writeError(ctx, e)
		return
	}
	cmd := &storage.Command{Kind: storage.CmdPolicyPut, Stamp: s.node.Stamps(1), RequestID: w.key, Fingerprint: w.fp, Policy: &p}
	if _, ok := s.propose(ctx, cmd, s.deadline()); !ok {
		return
	}
	writeJSON(ctx, http.StatusOK, toPolicyJSON(&p, "cluster"))
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
	if !s.readGate(ctx, deadline) {
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

// mayCheck says whether a caller may spend a key of a policy: an admin
// any key; anyone the keys of its own namespace, "user:<id>" and
// "user:<id>:..." (the first is its bucket of the default policy); a
// service any key of the named policies, never another user's default
// bucket. Checked before the policy is looked up, so a refusal does not
// tell which policies exist.
func mayCheck(c *caller, policy, key string) *apiError {
	if c.admin {
		return nil
	}
	if c.user == nil {
		return newError("forbidden", "only users may check rate limits")
	}
	own := "user:" + c.user.ID
	if key == own || strings.HasPrefix(key, own+":") {
		return nil
	}
	if c.user.Role == storage.RoleService {
		if policy != storage.DefaultPolicy {
			return nil
		}
		return newError("forbidden", "only admins may check the default policy's keys of others; a service checks the named policies")
	}
	return newError("forbidden", "a user may check only its own keys: "+strconv.Quote(own)+" or keys starting with "+strconv.Quote(own+":"))
}

// check answers "may key spend cost under policy?" (node-local decision).
func (s *Server) check(ctx *fasthttp.RequestCtx) {
	var req checkRequest
	if e := decodeJSON(ctx.PostBody(), &req); e != nil {
		writeError(ctx, e)
		return
	}
	if req.Policy == nil || req.Key == nil {
		writeError(ctx, badRequest("policy and key are required", ""))
		return
	}
	if e := storage.CheckLabel("policy", *req.Policy); e != nil {
		writeError(ctx, e)
		return
	}
	if *req.Key == "" || len(*req.Key) > maxLimitKeyBytes {
		writeError(ctx, badRequest("key must be 1 to 512 bytes", "key"))
		return
	}
	if e := mayCheck(callerOf(ctx), *req.Policy, *req.Key); e != nil {
		writeError(ctx, e)
		return
	}
	cost := uint32(1)
	if req.Cost != nil {
		cost = *req.Cost
	}
	p, _, ok := s.policy(*req.Policy)
	if !ok {
		writeError(ctx, newError("not_found", "no policy named "+strconv.Quote(*req.Policy)))
		return
	}
	if cost < 1 || cost > p.Burst {
		writeError(ctx, badRequest("cost must be from 1 to the policy's burst ("+strconv.FormatUint(uint64(p.Burst), 10)+")", "cost"))
		return
	}
	if s.limiter == nil {
		writeError(ctx, newError("unavailable", "this node has no rate limiter"))
		return
	}
	d, err := s.limiter.Decide(actors.Check{Policy: p, Key: *req.Key, Cost: cost}, s.deadline())
	if err != nil {
		writeError(ctx, newError("unavailable", "the rate limiter did not answer in time"))
		return
	}
	writeJSON(ctx, http.StatusOK, checkResponse{
		Allowed: d.Allowed, Limit: d.Limit, Remaining: d.Remaining,
		ResetMs:      ceilDiv(d.ResetNs, int64(time.Millisecond)),
		RetryAfterMs: ceilDiv(d.RetryAfterNs, int64(time.Millisecond)),
	})
}
