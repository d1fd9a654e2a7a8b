package api

import (
	"errors"
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

// Decide implements Limiter. A peek or a reset needs the owner: when
// it does not answer, the error says so (a local share knows nothing of
// the key). A release the owner does not answer goes to the local share,
// where a lease taken while the owner was unreachable lives.
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
	if c.Peek || c.Reset {
		return storage.Decision{}, errOwnerUnreachable
	}
	// The owner is unreachable: this node's share of the policy.
	g.fallbacks.Inc()
	return g.local.Decide(localShare(c, len(o.ids)), deadline)
}

var errOwnerUnreachable = errors.New("the key's owner did not answer")

// localShare is the check against 1/n of the policy, on buckets of their
// own (the policy name says "share").
func localShare(c actors.Check, n int) actors.Check {
	p := c.Policy.Share(n)
	p.Name += "~share"
	c.Policy = &p
	c.Cost = min(c.Cost, p.Burst)
	return c
}

// DecideAll implements Limiter. Checks whose keys one member owns are
// decided all or nothing by that member, exactly. Checks spread over
// several owners are peeked first (nothing spent): when any would be
// denied, the multi-check is denied having spent nothing; otherwise each
// owner decides its checks all or nothing. A race between the peek and
// the decisions may deny one owner's checks after another's spent: the
// leases those took are given back, the other algorithms' spending stays
// (never more than a key's limit). An owner that does not answer has
// its checks decided on this node's shares.
func (g *globalLimiter) DecideAll(checks []actors.Check, out []storage.Decision, deadline time.Time) (bool, error) {
	o := g.members()
	groups := map[int][]int{}
	for i := range checks {
		owner := o.owner(checks[i].Policy.Name, checks[i].Key)
		if owner < 0 {
			owner = o.self
		}
		groups[owner] = append(groups[owner], i)
	}
	if len(groups) > 1 {
		fits, err := g.peekAll(checks, out, deadline)
		if err != nil || !fits {
			return false, err
		}
	}
	type result struct {
		allowed bool
		err     error
	}
	results := make(chan result, len(groups))
	for owner, idx := range groups {
		go func() {
			ok, err := g.decideGroup(o, owner, checks, idx, out, deadline)
			results <- result{ok, err}
		}()
	}
	allowed := true
	var firstErr error
	for range groups {
		r := <-results
		allowed = allowed && r.allowed
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
	}
	if firstErr != nil || allowed {
		return allowed && firstErr == nil, firstErr
	}
	// Denied by a race: give back what leases the others took.
	for i := range checks {
		if id := out[i].LeaseID; id != 0 {
			_, _ = g.Decide(actors.Check{Policy: checks[i].Policy, Key: checks[i].Key, Release: id}, deadline)
			out[i].LeaseID = 0
		}
	}
	return false, nil
}

// peekAll looks at every key of a multi-check; fits says whether each
// check would pass (the costs of one key added up). When one would not,
// out holds what each check would have answered.
func (g *globalLimiter) peekAll(checks []actors.Check, out []storage.Decision, deadline time.Time) (bool, error) {
	type key struct{ policy, key string }
	want := map[key]uint64{}
	for i := range checks {
		want[key{checks[i].Policy.Name, checks[i].Key}] += uint64(checks[i].Cost)
	}
	peeks := make([]storage.Decision, len(checks))
	errs := make(chan error, len(checks))
	for i := range checks {
		go func() {
			c := checks[i]
			c.Peek = true
			var err error
			peeks[i], err = g.Decide(c, deadline)
			errs <- err
		}()
	}
	var firstErr error
	for range checks {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return false, firstErr
	}
	fits := true
	for i := range checks {
		ok := checks[i].Policy.Shadow || want[key{checks[i].Policy.Name, checks[i].Key}] <= uint64(peeks[i].Remaining)
		fits = fits && ok
		out[i] = storage.Decision{Allowed: ok, Denied: !ok, Limit: peeks[i].Limit, Remaining: peeks[i].Remaining, ResetNs: peeks[i].ResetNs}
	}
	return fits, nil
}

// decideGroup decides the checks at idx, which owner owns, all or
// nothing.
func (g *globalLimiter) decideGroup(o *ownerSet, owner int, checks []actors.Check, idx []int, out []storage.Decision, deadline time.Time) (bool, error) {
	part := make([]actors.Check, len(idx))
	for j, i := range idx {
		part[j] = checks[i]
	}
	res := make([]storage.Decision, len(part))
	var allowed bool
	var err error
	if owner == o.self {
		allowed, err = g.local.DecideAll(part, res, deadline)
	} else {
		g.remote.Inc()
		body := decideRequest{All: true, Checks: make([]decideCheck, len(part))}
		for j := range part {
			body.Checks[j] = toDecideCheck(&part[j])
		}
		var resp decideResponse
		resp, err = g.post(o.addrs[owner], &body, min(remoteDecideWait, time.Until(deadline)))
		if err == nil && len(resp.Decisions) != len(part) {
			err = errOwnerRefused(0)
		}
		if err == nil {
			allowed = resp.Allowed
			for j := range res {
				res[j] = resp.Decisions[j].decision()
			}
		} else {
			g.fallbacks.Inc()
			for j := range part {
				part[j] = localShare(part[j], len(o.ids))
			}
			allowed, err = g.local.DecideAll(part, res, deadline)
		}
	}
	if err != nil {
		return false, err
	}
	for j, i := range idx {
		out[i] = res[j]
	}
	return allowed, nil
}

// wire forms of a batch of decisions.
type decideRequest struct {
	Checks []decideCheck `json:"checks"`
	// All: decide the checks all or nothing (a multi-check's checks
	// this owner owns), answering Allowed.
	All bool `json:"all,omitempty"`
}

type decideCheck struct {
	Policy  policyJSON `json:"policy"`
	Key     string     `json:"key"`
	Cost    uint32     `json:"cost"`
	LeaseMs int64      `json:"lease_ms,omitempty"`
	Release uint64     `json:"release,omitempty"`
	Peek    bool       `json:"peek,omitempty"`
	Reset   bool       `json:"reset,omitempty"`
}

func toDecideCheck(c *actors.Check) decideCheck {
	return decideCheck{Policy: toPolicyJSON(c.Policy, ""), Key: c.Key, Cost: c.Cost, LeaseMs: c.LeaseMs, Release: c.Release, Peek: c.Peek, Reset: c.Reset}
}

type decideResponse struct {
	Decisions []decisionJSON `json:"decisions"`
	Allowed   bool           `json:"allowed,omitempty"`
}

type decisionJSON struct {
	Allowed      bool   `json:"allowed"`
	Denied       bool   `json:"denied"`
	Limit        uint32 `json:"limit"`
	Remaining    uint32 `json:"remaining"`
	ResetNs      int64  `json:"reset_ns"`
	RetryAfterNs int64  `json:"retry_after_ns"`
	LeaseID      uint64 `json:"lease_id,omitempty"`
	Released     bool   `json:"released,omitempty"`
	Leases       uint32 `json:"leases,omitempty"`
}

func toDecisionJSON(d *storage.Decision) decisionJSON {
	return decisionJSON{Allowed: d.Allowed, Denied: d.Denied, Limit: d.Limit, Remaining: d.Remaining, ResetNs: d.ResetNs,
		RetryAfterNs: d.RetryAfterNs, LeaseID: d.LeaseID, Released: d.Released, Leases: d.Leases}
}

func (d *decisionJSON) decision() storage.Decision {
	return storage.Decision{Allowed: d.Allowed, Denied: d.Denied, Limit: d.Limit, Remaining: d.Remaining, ResetNs: d.ResetNs,
		RetryAfterNs: d.RetryAfterNs, LeaseID: d.LeaseID, Released: d.Released, Leases: d.Leases}
}

// post asks the owner at addr for a batch of decisions.
func (g *globalLimiter) post(addr string, body *decideRequest, timeout time.Duration) (decideResponse, error) {
	var out decideResponse
	data, err := json.Marshal(body)
	if err != nil {
		return out, err
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	g.s.peerPost(req, addr, decidePath, "application/json", data)
	if err = g.s.fwd.client(addr).DoTimeout(req, resp, timeout); err != nil {
		return out, err
	}
	if resp.StatusCode() != http.StatusOK {
		return out, errOwnerRefused(resp.StatusCode())
	}
	err = json.Unmarshal(resp.Body(), &out)
	return out, err
}

// send asks the owner at addr for a batch of decisions and answers every
// item (with an error when the owner could not answer).
func (g *globalLimiter) send(addr string, batch []*decideItem) {
	body := decideRequest{Checks: make([]decideCheck, len(batch))}
	for i, it := range batch {
		body.Checks[i] = toDecideCheck(&it.check)
	}
	out, err := g.post(addr, &body, remoteDecideWait)
	if err == nil && len(out.Decisions) != len(batch) {
		err = errOwnerRefused(0)
	}
	for i, it := range batch {
		if err != nil {
			it.reply <- decideReply{err: err}
			continue
		}
		it.reply <- decideReply{d: out.Decisions[i].decision()}
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
	checks := make([]actors.Check, len(req.Checks))
	for i := range req.Checks {
		c := &req.Checks[i]
		p, e := fromPolicyJSON(&c.Policy)
		if e != nil || c.Key == "" || len(c.Key) > maxLimitKeyBytes || !c.valid(&p, req.All) {
			writeError(ctx, badRequest("bad check in the batch", "checks"))
			return
		}
		checks[i] = actors.Check{Policy: &p, Key: c.Key, Cost: c.Cost, LeaseMs: c.LeaseMs, Release: c.Release, Peek: c.Peek, Reset: c.Reset}
	}
	out := decideResponse{Decisions: make([]decisionJSON, len(req.Checks))}
	deadline := s.deadline()
	ds := make([]storage.Decision, len(checks))
	if req.All {
		allowed, err := s.localLimiter.DecideAll(checks, ds, deadline)
		if err != nil {
			writeError(ctx, newError("unavailable", "the rate limiter did not answer in time"))
			return
		}
		out.Allowed = allowed
	} else {
		for i := range checks {
			d, err := s.localLimiter.Decide(checks[i], deadline)
			if err != nil {
				writeError(ctx, newError("unavailable", "the rate limiter did not answer in time"))
				return
			}
			ds[i] = d
		}
	}
	for i := range ds {
		out.Decisions[i] = toDecisionJSON(&ds[i])
	}
	writeJSON(ctx, http.StatusOK, out)
}

// valid checks a check of a batch: one of a check (a cost the policy
// takes, a lease for a concurrency policy), a release, a peek or a
// reset; only checks in an all-or-nothing batch.
func (c *decideCheck) valid(p *storage.Policy, all bool) bool {
	switch {
	case c.Peek, c.Reset:
		return !all && c.Release == 0 && (!c.Peek || !c.Reset)
	case c.Release != 0:
		return !all && p.Algorithm == storage.Concurrency
	}
	return c.Cost <= p.Burst && p.ValidateCheck(c.Cost, c.LeaseMs) == nil
}
