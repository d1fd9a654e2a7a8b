package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// Decisions on named keys (API.md, Rate limits): POST /v1/ratelimit/check
// (one check, or a multi-check decided all or nothing), POST
// /v1/ratelimit/release (a concurrency lease given back), and
// GET/DELETE /v1/ratelimit/policies/{name}/keys/{key} (a key's state
// without spending; a reset).

// maxMultiCheck bounds the checks of one multi-check.
const maxMultiCheck = 100

type checkRequest struct {
	Policy  *string `json:"policy"`
	Key     *string `json:"key"`
	Cost    *uint32 `json:"cost"`
	LeaseMs *int64  `json:"lease_ms"`
	// Checks makes a multi-check (then the fields above are absent).
	Checks *[]checkItem `json:"checks"`
}

type checkItem struct {
	Policy  *string `json:"policy"`
	Key     *string `json:"key"`
	Cost    *uint32 `json:"cost"`
	LeaseMs *int64  `json:"lease_ms"`
}

type checkResponse struct {
	Allowed      bool   `json:"allowed"`
	Limit        uint32 `json:"limit"`
	Remaining    uint32 `json:"remaining"`
	ResetMs      int64  `json:"reset_ms"`
	RetryAfterMs int64  `json:"retry_after_ms"`
	LeaseID      string `json:"lease_id,omitempty"`
}

type multiCheckResponse struct {
	Allowed bool            `json:"allowed"`
	Results []checkResponse `json:"results"`
}

type releaseRequest struct {
	Policy  *string `json:"policy"`
	Key     *string `json:"key"`
	LeaseID *string `json:"lease_id"`
}

type releaseResponse struct {
	Released  bool   `json:"released"`
	Remaining uint32 `json:"remaining"`
	ResetMs   int64  `json:"reset_ms"`
}

type keyStateResponse struct {
	Policy    string `json:"policy"`
	Key       string `json:"key"`
	Algorithm string `json:"algorithm"`
	Limit     uint32 `json:"limit"`
	Remaining uint32 `json:"remaining"`
	ResetMs   int64  `json:"reset_ms"`
	Leases    uint32 `json:"leases"`
}

func toCheckResponse(d *storage.Decision) checkResponse {
	r := checkResponse{
		Allowed: d.Allowed, Limit: d.Limit, Remaining: d.Remaining,
		ResetMs:      ceilDiv(d.ResetNs, int64(time.Millisecond)),
		RetryAfterMs: ceilDiv(d.RetryAfterNs, int64(time.Millisecond)),
	}
	if d.LeaseID != 0 {
		r.LeaseID = formatLeaseID(d.LeaseID)
	}
	return r
}

// formatLeaseID writes a lease id as 16 hex digits.
func formatLeaseID(id uint64) string {
	const hex = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hex[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// parseLeaseID reads 16 hex digits (never all zero: no lease has id 0).
func parseLeaseID(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 16, 64)
	return id, err == nil && id != 0
}

// mayCheck says whether a caller may spend a key of a policy: an admin
// any key; anyone the keys of its own namespace, "user:<id>" and
// "user:<id>:..." (the first is its bucket of the default policy); a
// service any key of the named policies, never another user's default
// bucket. Checked before the policy is looked up, so a refusal does not
// tell which policies exist. Releases and peeks follow the same rule.
func mayCheck(c *caller, policy, key string) *apiError {
	if c.admin {
		return nil
	}
	if !c.signedIn() {
		return newError("forbidden", "only users may check rate limits")
	}
	own := "user:" + c.uid
	if key == own || strings.HasPrefix(key, own+":") {
		return nil
	}
	if c.role == storage.RoleService {
		if policy != storage.DefaultPolicy {
			return nil
		}
		return newError("forbidden", "only admins may check the default policy's keys of others; a service checks the named policies")
	}
	return newError("forbidden", "a user may check only its own keys: "+strconv.Quote(own)+" or keys starting with "+strconv.Quote(own+":"))
}

// mayReset says whether a caller may reset a key: an admin any key, a
// service what it may check.
func mayReset(c *caller, policy, key string) *apiError {
	if c.admin {
		return nil
	}
	if !c.signedIn() || c.role != storage.RoleService {
		return newError("forbidden", "only admins and services may reset a key")
	}
	return mayCheck(c, policy, key)
}

// checkTarget validates the policy and key of a request (field names
// prefixed by at, as "checks[3]."), checks the caller's scope, and looks
// the policy up.
func (s *Server) checkTarget(ctx *fasthttp.RequestCtx, at string, policy, key *string, may func(*caller, string, string) *apiError) (*storage.Policy, *apiError) {
	if policy == nil || key == nil {
		return nil, badRequest(at+"policy and "+at+"key are required", strings.TrimSuffix(at, "."))
	}
	if e := storage.CheckLabel(at+"policy", *policy); e != nil {
		return nil, toAPIError(e)
	}
	if e := checkKey(at, ctx, *policy, *key, may); e != nil {
		return nil, e
	}
	p, _, ok := s.policy(*policy)
	if !ok {
		return nil, newError("not_found", "no policy named "+strconv.Quote(*policy))
	}
	return p, nil
}

// checkKey validates a request's key and checks the caller's scope.
func checkKey(at string, ctx *fasthttp.RequestCtx, policy, key string, may func(*caller, string, string) *apiError) *apiError {
	if key == "" || len(key) > maxLimitKeyBytes {
		return badRequest(at+"key must be 1 to 512 bytes", at+"key")
	}
	return may(callerOf(ctx), policy, key)
}

// checkArgs validates a check's cost and lease against its policy.
func checkArgs(at string, p *storage.Policy, costIn *uint32, leaseIn *int64) (uint32, int64, *apiError) {
	cost, lease := uint32(1), int64(0)
	if costIn != nil {
		cost = *costIn
	}
	if leaseIn != nil {
		lease = *leaseIn
		if lease == 0 {
			lease = -1 // present: ValidateCheck names the range
		}
	}
	if cost < 1 || cost > p.Burst {
		return 0, 0, badRequest(at+"cost must be from 1 to the policy's burst ("+strconv.FormatUint(uint64(p.Burst), 10)+")", at+"cost")
	}
	if e := p.ValidateCheck(cost, lease); e != nil {
		return 0, 0, badRequest(e.Message, at+e.Field)
	}
	return cost, lease, nil
}

// check answers "may key spend cost under policy?", or decides a
// multi-check all or nothing.
func (s *Server) check(ctx *fasthttp.RequestCtx) {
	if body := ctx.PostBody(); bytes.Contains(body, checksField) && s.fastMultiCheck(ctx, body) {
		return
	}
	var req checkRequest
	if e := decodeJSON(ctx.PostBody(), &req); e != nil {
		writeError(ctx, e)
		return
	}
	if req.Checks != nil {
		if req.Policy != nil || req.Key != nil || req.Cost != nil || req.LeaseMs != nil {
			writeError(ctx, badRequest("a multi-check gives its checks only, each with its policy and key", "checks"))
			return
		}
		items := *req.Checks
		s.multiCheck(ctx, len(items), func(i int) *checkItem { return &items[i] })
		return
	}
	p, e := s.checkTarget(ctx, "", req.Policy, req.Key, mayCheck)
	if e != nil {
		writeError(ctx, e)
		return
	}
	cost, lease, e := checkArgs("", p, req.Cost, req.LeaseMs)
	if e != nil {
		writeError(ctx, e)
		return
	}
	if s.limiter == nil {
		writeError(ctx, newError("unavailable", "this node has no rate limiter"))
		return
	}
	d, err := s.limiter.Decide(actors.Check{Policy: p, Key: *req.Key, Cost: cost, LeaseMs: lease}, s.deadline())
	if err != nil {
		writeError(ctx, newError("unavailable", "the rate limiter did not answer in time"))
		return
	}
	writeCheck(ctx, &d)
}

// multiCheck decides n (1 to 100) checks, item(i) each, all or nothing:
// when any says no, none of them spends anything (DESIGN.md, Rate
// limits).
func (s *Server) multiCheck(ctx *fasthttp.RequestCtx, n int, item func(i int) *checkItem) {
	if n == 0 || n > maxMultiCheck {
		writeError(ctx, badRequest("checks must hold 1 to "+strconv.Itoa(maxMultiCheck)+" checks", "checks"))
		return
	}
	buf := multiBufs.Get().(*multiBuf)
	checks, out := buf.checks[:n], buf.out[:n]
	var last *storage.Policy // the policy of the check before, found by lastName
	var lastName string
	for i := range n {
		it := item(i)
		// Validated without the item's place in the field names, which
		// only an error needs (a string per check otherwise). A policy
		// named as the check before's was found and its name checked
		// then: only the key and the caller's scope are left to check,
		// in checkTarget's order.
		var p *storage.Policy
		var e *apiError
		if last != nil && it.Policy != nil && it.Key != nil && *it.Policy == lastName {
			p, e = last, checkKey("", ctx, *it.Policy, *it.Key, mayCheck)
		} else {
			p, e = s.checkTarget(ctx, "", it.Policy, it.Key, mayCheck)
			if e == nil {
				lastName = *it.Policy
			}
		}
		last = p
		var cost uint32
		var lease int64
		if e == nil {
			cost, lease, e = checkArgs("", p, it.Cost, it.LeaseMs)
		}
		if e != nil {
			buf.release(i)
			writeError(ctx, s.checkItemError(ctx, i, it, e))
			return
		}
		checks[i] = actors.Check{Policy: p, Key: *it.Key, Cost: cost, LeaseMs: lease}
	}
	if s.limiter == nil {
		buf.release(n)
		writeError(ctx, newError("unavailable", "this node has no rate limiter"))
		return
	}
	allowed, err := s.limiter.DecideAll(checks, out, s.deadline())
	if err != nil {
		// A late part may still write into out: buf is not reused.
		writeError(ctx, newError("unavailable", "the rate limiter did not answer in time"))
		return
	}
	writeMultiCheck(ctx, allowed, out)
	buf.release(n)
}

// multiBuf holds a multi-check's checks and decisions, reused from one
// request to the next (two allocations of up to 100 elements each
// otherwise).
type multiBuf struct {
	checks [maxMultiCheck]actors.Check
	out    [maxMultiCheck]storage.Decision
}

var multiBufs = sync.Pool{New: func() any { return new(multiBuf) }}

// release clears the first n checks (they point at policies and keys)
// and hands b back to the pool.
func (b *multiBuf) release(n int) {
	clear(b.checks[:n])
	multiBufs.Put(b)
}

// checkItemError words the error e of check i of a multi-check again,
// with the check's place in its field names ("checks[3].cost"): the same
// validation, so the same error (e itself if the policies changed
// meanwhile and the check now passes).
func (s *Server) checkItemError(ctx *fasthttp.RequestCtx, i int, it *checkItem, e *apiError) *apiError {
	at := "checks[" + strconv.Itoa(i) + "]."
	p, e2 := s.checkTarget(ctx, at, it.Policy, it.Key, mayCheck)
	if e2 == nil {
		_, _, e2 = checkArgs(at, p, it.Cost, it.LeaseMs)
	}
	if e2 != nil {
		return e2
	}
	return e
}

// release gives a concurrency lease back. Released is false for a lease
// that expired, was released already, or never existed, so a retry is
// safe.
func (s *Server) release(ctx *fasthttp.RequestCtx) {
	var req releaseRequest
	if e := decodeJSON(ctx.PostBody(), &req); e != nil {
		writeError(ctx, e)
		return
	}
	p, e := s.checkTarget(ctx, "", req.Policy, req.Key, mayCheck)
	if e != nil {
		writeError(ctx, e)
		return
	}
	if p.Algorithm != storage.Concurrency {
		writeError(ctx, badRequest("policy "+strconv.Quote(p.Name)+" is a "+p.Algorithm.String()+" policy: only concurrency policies hold leases", "lease_id"))
		return
	}
	if req.LeaseID == nil {
		writeError(ctx, badRequest("lease_id is required", "lease_id"))
		return
	}
	id, ok := parseLeaseID(*req.LeaseID)
	if !ok {
		writeError(ctx, badRequest("lease_id must be the 16 hex digits a check answered", "lease_id"))
		return
	}
	if s.limiter == nil {
		writeError(ctx, newError("unavailable", "this node has no rate limiter"))
		return
	}
	d, err := s.limiter.Decide(actors.Check{Policy: p, Key: *req.Key, Release: id}, s.deadline())
	if err != nil {
		writeError(ctx, newError("unavailable", "the rate limiter did not answer in time"))
		return
	}
	writeJSON(ctx, http.StatusOK, releaseResponse{Released: d.Released, Remaining: d.Remaining, ResetMs: ceilDiv(d.ResetNs, int64(time.Millisecond))})
}

// keyTarget reads the policy and key of a key route.
func (s *Server) keyTarget(ctx *fasthttp.RequestCtx, may func(*caller, string, string) *apiError) (*storage.Policy, string, bool) {
	name, _ := ctx.UserValue("name").(string)
	raw, _ := ctx.UserValue("key").(string)
	// The router hands the rest of the path over as sent: a key's "/"
	// may come as is or as %2F.
	key, err := url.PathUnescape(raw)
	if err != nil {
		writeError(ctx, badRequest("key must be percent-encoded", "key"))
		return nil, "", false
	}
	p, e := s.checkTarget(ctx, "", &name, &key, may)
	if e != nil {
		if f, _ := e.Details["field"].(string); f == "policy" {
			e.Details["field"] = "name"
		}
		writeError(ctx, e)
		return nil, "", false
	}
	if s.limiter == nil {
		writeError(ctx, newError("unavailable", "this node has no rate limiter"))
		return nil, "", false
	}
	return p, key, true
}

// peekKey answers a key's state without spending it.
func (s *Server) peekKey(ctx *fasthttp.RequestCtx) {
	p, key, ok := s.keyTarget(ctx, mayCheck)
	if !ok {
		return
	}
	d, err := s.limiter.Decide(actors.Check{Policy: p, Key: key, Peek: true}, s.deadline())
	if err != nil {
		writeError(ctx, limiterError(err))
		return
	}
	writeJSON(ctx, http.StatusOK, keyStateResponse{
		Policy: p.Name, Key: key, Algorithm: p.Algorithm.String(), Limit: d.Limit, Remaining: d.Remaining,
		ResetMs: ceilDiv(d.ResetNs, int64(time.Millisecond)), Leases: d.Leases,
	})
}

// resetKey forgets a key's state (its count, bucket or leases): the key
// starts afresh.
func (s *Server) resetKey(ctx *fasthttp.RequestCtx) {
	p, key, ok := s.keyTarget(ctx, mayReset)
	if !ok {
		return
	}
	if _, err := s.limiter.Decide(actors.Check{Policy: p, Key: key, Reset: true}, s.deadline()); err != nil {
		writeError(ctx, limiterError(err))
		return
	}
	ctx.SetStatusCode(http.StatusNoContent)
}

// limiterError is the answer when the limiter gave none.
func limiterError(err error) *apiError {
	if errors.Is(err, errOwnerUnreachable) {
		return newError("unavailable", "the node that owns this key did not answer; try again")
	}
	return newError("unavailable", "the rate limiter did not answer in time")
}
