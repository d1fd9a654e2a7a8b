package api

import (
	"hash/fnv"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/peer"
)

// Global rate limits (--rate-limit-mode=global): each key is owned by one
// node, chosen by rendezvous hashing over the current members, and every
// node sends its decisions on that key to the owner (batched, one hop),
// so a key's limit holds across the cluster. When the owner cannot be
// reached in time, the node decides alone with its share of the policy
// (limit and burst divided by the number of members): fail open, bounded
// — while an owner is unreachable or ownership moves, a key may get up to
// one extra burst over the cluster. Ownership moves by itself when the
// membership changes (only the keys of the nodes that came or went move).

// decidePath is the owner's route for decisions sent by other nodes.
const decidePath = "/internal/v1/ratelimit/decide"

const (
	maxDecideBatch    = 512
	decideInFlight    = 4
	remoteDecideWait  = 500 * time.Millisecond // then the local share decides
	membersRefreshAge = time.Second
)

// memberView returns the current members with an HTTP address (cached
// for membersRefreshAge: raft's configuration is read through its main
// loop).
func (s *Server) memberView() *ownerSet {
	if o := s.members.Load(); o != nil && time.Since(o.at) < membersRefreshAge {
		return o
	}
	s.membersMu.Lock()
	defer s.membersMu.Unlock()
	if o := s.members.Load(); o != nil && time.Since(o.at) < membersRefreshAge {
		return o
	}
	st := s.node.Status(s.cfg.AdvertiseHTTP)
	o := &ownerSet{at: time.Now(), self: -1}
	for _, m := range st.Members {
		if m.HTTPAddr == "" {
			continue
		}
		if m.ID == st.NodeID {
			o.self = len(o.ids)
		}
		o.ids = append(o.ids, m.ID)
		o.addrs = append(o.addrs, m.HTTPAddr)
	}
	s.members.Store(o)
	return o
}

// fromMember reports whether addr is the host of another member's HTTP
// address (given as an IP).
func (s *Server) fromMember(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	o := s.memberView()
	for i, a := range o.addrs {
		if i == o.self {
			continue
		}
		host, _, err := net.SplitHostPort(a)
		if ip := net.ParseIP(host); err == nil && ip != nil && ip.Equal(ta.IP) {
			return true
		}
	}
	return false
}

// ownerSet is a view of the members that may own keys.
type ownerSet struct {
	at    time.Time
	ids   []string
	addrs []string // HTTP addresses, by index of ids
	self  int      // index of this node, -1 if absent
}

// owner returns the index of the member that owns (policy, key).
func (o *ownerSet) owner(policy, key string) int {
	best, bestScore := -1, uint64(0)
	for i, id := range o.ids {
		h := fnv.New64a()
		_, _ = h.Write([]byte(id))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(policy))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(key))
		if score := mix64(h.Sum64()); best < 0 || score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// mix64 spreads FNV's output (its high bits vary little for similar
// inputs); the finaliser of MurmurHash3.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// globalLimiter routes each decision to the key's owner.
type globalLimiter struct {
	s       *Server
	local   Limiter
	members func() *ownerSet
	b       peer.Batcher[*decideItem]

	remote, fallbacks *metrics.Counter
}

type decideItem struct {
	check actors.Check
	reply chan decideReply // cap 1
}

type decideReply struct {
	d   storage.Decision
	err error
}

func newGlobalLimiter(s *Server, local Limiter, set *metrics.Set) *globalLimiter {
	g := &globalLimiter{
		s: s, local: local,
		remote:    set.NewCounter(`troupe_ratelimit_remote_decisions_total`),
		fallbacks: set.NewCounter(`troupe_ratelimit_fallback_decisions_total`),
	}
	g.members = s.memberView
	g.b = peer.Batcher[*decideItem]{
		MaxItems: maxDecideBatch, MaxBytes: 1 << 20, InFlight: decideInFlight,
		Size: func(it *decideItem) int { return len(it.check.Key) + 64 },
		Send: g.send,
	}
	return g
}

func (g *globalLimiter) close() { g.b.Close() }

// Decide implements Limiter.
func (g *globalLimiter) Decide(c actors.Check, deadline time.Time) (storage.Decision, error) {
	o := g.members()
	owner := o.owner(c.Policy.Name, c.Key)
	if owner < 0 || owner == o.self {
		return g.local.Decide(c, deadline)
	}
	g.remote.Inc()
	wait := time.Now().Add(remoteDecideWait)
	if deadline.Before(wait) {
		wait = deadline
	}
	if queue, ok := g.b.Queue(o.addrs[owner]); ok {
		it := &decideItem{check: c, reply: make(chan decideReply, 1)}
		t := time.NewTimer(time.Until(wait))
		defer t.Stop()
		select {
		case queue <- it:
			select {
			case r := <-it.reply:
				if r.err == nil {
					return r.d, nil
				}
			case <-t.C:
			}
		case <-t.C:
		}
	}
	// The owner is unreachable: this node's share of the policy.
	g.fallbacks.Inc()
	return g.local.Decide(localShare(c, len(o.ids)), deadline)
}

// localShare is the check against 1/n of the policy, on buckets of their
// own (the policy name says "share").
func localShare(c actors.Check, n int) actors.Check {
	p := *c.Policy
	n = max(n, 1)
	p.Name += "~share"
	p.Limit = max(1, p.Limit/uint32(n))
	p.Burst = max(1, p.Burst/uint32(n))
	c.Policy = &p
	c.Cost = min(c.Cost, p.Burst)
	return c
}

// wire forms of a batch of decisions.
type decideRequest struct {
	Checks []decideCheck `json:"checks"`
}

type decideCheck struct {
	Policy policyJSON `json:"policy"`
	Key    string     `json:"key"`
	Cost   uint32     `json:"cost"`
}

type decideResponse struct {
	Decisions []decisionJSON `json:"decisions"`
}

type decisionJSON struct {
	Allowed      bool   `json:"allowed"`
	Denied       bool   `json:"denied"`
	Limit        uint32 `json:"limit"`
	Remaining    uint32 `json:"remaining"`
	ResetNs      int64  `json:"reset_ns"`
	RetryAfterNs int64  `json:"retry_after_ns"`
}

// send asks the owner at addr for a batch of decisions and answers every
// item (with an error when the owner could not answer).
func (g *globalLimiter) send(addr string, batch []*decideItem) {
	s := g.s
	body := decideRequest{Checks: make([]decideCheck, len(batch))}
	for i, it := range batch {
		body.Checks[i] = decideCheck{Policy: toPolicyJSON(it.check.Policy, ""), Key: it.check.Key, Cost: it.check.Cost}
	}
	data, err := json.Marshal(body)
	var out decideResponse
	if err == nil {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		s.peerPost(req, addr, decidePath, "application/json", data)
		err = s.fwd.client(addr).DoTimeout(req, resp, remoteDecideWait)
		switch {
		case err != nil:
		case resp.StatusCode() != http.StatusOK:
			err = errOwnerRefused(resp.StatusCode())
		default:
			err = json.Unmarshal(resp.Body(), &out)
			if err == nil && len(out.Decisions) != len(batch) {
				err = errOwnerRefused(0)
			}
		}
	}
	for i, it := range batch {
		if err != nil {
			it.reply <- decideReply{err: err}
			continue
		}
		d := out.Decisions[i]
		it.reply <- decideReply{d: storage.Decision{Allowed: d.Allowed, Denied: d.Denied, Limit: d.Limit, Remaining: d.Remaining, ResetNs: d.ResetNs, RetryAfterNs: d.RetryAfterNs}}
	}
}

type errOwnerRefused int

func (e errOwnerRefused) Error() string {
	return "the key's owner did not answer the decisions (status " + strconv.Itoa(int(e)) + ")"
}

// decide is the owner's route: it decides locally, never passing a
// decision on (members may briefly disagree on who owns a key; one hop
// at most).
func (s *Server) decide(ctx *fasthttp.RequestCtx) {
	if !s.peerProven(ctx) && !s.forwardedByPeer(ctx) {
		writeError(ctx, newError("forbidden", "only members of this cluster may ask for decisions"))
		return
	}
	if s.localLimiter == nil {
		writeError(ctx, newError("unavailable", "this node has no rate limiter"))
		return
	}
	var req decideRequest
	if e := decodeJSON(ctx.PostBody(), &req); e != nil {
		writeError(ctx, e)
		return
	}
	if len(req.Checks) == 0 || len(req.Checks) > maxDecideBatch {
		writeError(ctx, badRequest("checks must hold 1 to 512 items", "checks"))
		return
	}
	out := decideResponse{Decisions: make([]decisionJSON, len(req.Checks))}
	deadline := s.deadline()
	for i, c := range req.Checks {
		p := storage.Policy{Name: c.Policy.Name, Limit: c.Policy.Limit, WindowMs: c.Policy.WindowMs, Burst: c.Policy.Burst, Shadow: c.Policy.Shadow}
		if e := p.Validate(); e != nil || c.Cost < 1 || c.Key == "" || len(c.Key) > maxLimitKeyBytes {
			writeError(ctx, badRequest("bad check in the batch", "checks"))
			return
		}
		d, err := s.localLimiter.Decide(actors.Check{Policy: &p, Key: c.Key, Cost: c.Cost}, deadline)
		if err != nil {
			writeError(ctx, newError("unavailable", "the rate limiter did not answer in time"))
			return
		}
		out.Decisions[i] = decisionJSON{Allowed: d.Allowed, Denied: d.Denied, Limit: d.Limit, Remaining: d.Remaining, ResetNs: d.ResetNs, RetryAfterNs: d.RetryAfterNs}
	}
	writeJSON(ctx, http.StatusOK, out)
}
