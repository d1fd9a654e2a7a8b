// Package client is the Go client of troupe's public HTTP API (API.md):
// typed calls for the served routes, Do for any other, and the machinery
// that makes them dependable against a cluster of nodes:
//
//   - One fasthttp.HostClient per node keeps connections alive and reuses
//     them across calls.
//   - Failed attempts are retried with exponential backoff and full
//     jitter: on connection errors, timeouts, 503 and 504 (and 429, after
//     its Retry-After). Other answers, 4xx above all, are returned as they
//     are. Writes carry an Idempotency-Key, the caller's or one generated
//     per call and kept across its attempts, so that a retried write is
//     applied at most once.
//   - Attempts rotate across the nodes, starting from the one that last
//     answered well. Writes go first to the node that the last
//     X-Troupe-Leader header named, if it is one of Config.Nodes (matched
//     by host:port) and has not just failed: any node accepts writes and
//     forwards them, but the leader saves a hop, and after an election a
//     follower's 503 names the new leader.
//   - Each node has a circuit breaker: BreakerThreshold consecutive
//     failures take it out of the rotation for BreakerCooldown, after
//     which one trial request decides whether it comes back. When every
//     breaker is open, the node that failed least recently is tried
//     anyway rather than failing without trying.
//
// # Who owns what
//
// A Client is safe for concurrent use. Its node list and configuration are
// fixed by New. Each HostClient owns its connection pool and is itself
// safe for concurrent use. Each node's breaker state sits behind the
// breaker's own mutex, held for a few assignments and never across I/O or
// while another lock is held (so there is no lock order). The preferred
// and leader node and the token are atomics. Everything about one call
// (its attempt count, idempotency key, last error) belongs to the
// goroutine that made it. When the call's ctx can end, each attempt runs
// on a goroutine of its own, so the caller can walk away from it: that
// goroutine owns the fasthttp request and response, sends a copy of what
// the caller needs over a buffered channel and releases them itself; it
// ends within Timeout. Close waits for calls and these goroutines.
package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

// Client talks to a troupe cluster. Create it with New; Close it when done.
type Client struct {
	cfg   Config
	log   *slog.Logger
	nodes []*node
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time

	preferred atomic.Int32 // index of the node a call tries first
	leader    atomic.Int32 // index of the node X-Troupe-Leader named; -1 none
	token     atomic.Pointer[string]

	mu     sync.RWMutex // orders wg.Add in calls before wg.Wait in Close
	closed bool
	stop   chan struct{} // closed by Close: waiting calls give up
	wg     sync.WaitGroup
}

// node is one server of the cluster as the client sees it.
type node struct {
	idx int
	ep  endpoint
	hc  *fasthttp.HostClient
	br  breaker
}

// New validates cfg and returns a client. It opens no connection: the
// first call does.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, sleep: cfg.Sleep, now: cfg.Now, stop: make(chan struct{})}
	c.cfg.Nodes = append([]string(nil), cfg.Nodes...)
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = c.timerSleep
	}
	dial := cfg.Dial
	if dial == nil {
		dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			// net.Dialer rather than fasthttp's dialer, whose DNS cache
			// starts a process-wide goroutine.
			d := net.Dialer{Timeout: timeout}
			return d.Dial("tcp", addr)
		}
	}
	for i, s := range cfg.Nodes {
		ep, _ := parseNode(s) // Validate parsed it
		c.nodes = append(c.nodes, &node{idx: i, ep: ep, hc: &fasthttp.HostClient{
			Addr:                     ep.addr,
			IsTLS:                    ep.tls,
			TLSConfig:                cfg.TLSConfig,
			Name:                     cfg.UserAgent,
			NoDefaultUserAgentHeader: cfg.UserAgent == "",
			DialTimeout:              dial,
			MaxConns:                 cfg.MaxConnsPerNode,
			MaxConnWaitTimeout:       cfg.Timeout,
			MaxIdleConnDuration:      cfg.IdleConnTimeout,
			MaxResponseBodySize:      cfg.MaxResponseBodySize,
			DisablePathNormalizing:   true, // paths are built and escaped here
			RetryIfErr:               retryStaleConn,
		}})
	}
	c.leader.Store(-1)
	c.SetToken(cfg.Token)
	return c, nil
}

// retryStaleConn lets fasthttp repeat a request at once, on a new
// connection, when a kept-alive one turned out to be closed by the node
// before it answered. That is not a failure of the node, and every
// request of this client is safe to repeat (reads, or writes with an
// Idempotency-Key). Other errors go back to the retry loop.
func retryStaleConn(_ *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	stale := errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	return false, attempts < 2 && stale
}

// SetToken replaces the bearer token sent from now on ("" sends none),
// e.g. after logging in or refreshing.
func (c *Client) SetToken(token string) { c.token.Store(&token) }

// Close makes calls fail with ErrClosed, waits for those in flight (each
// attempt ends within Timeout) and closes idle connections. It is
// idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	c.mu.Unlock()
	c.wg.Wait()
	for _, n := range c.nodes {
		n.hc.CloseIdleConnections()
	}
	return nil
}

// enter registers a call; false once the client is closed.
func (c *Client) enter() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// NodeStates reports what the client knows about each node, in the
// order of Config.Nodes.
func (c *Client) NodeStates() []NodeState {
	out := make([]NodeState, len(c.nodes))
	pref, lead := int(c.preferred.Load()), int(c.leader.Load())
	for i, n := range c.nodes {
		out[i] = NodeState{Node: n.ep.base, Preferred: i == pref, Leader: i == lead}
		n.br.snapshot(&out[i], c.cfg.BreakerCooldown)
	}
	return out
}

// Meta describes how a call was answered. Calls return it with their
// error too, as far as it is known.
type Meta struct {
	Node     string // base URL of the node that gave the last answer or failure
	Status   int    // HTTP status of the last answer; 0 if none came
	Attempts int    // attempts made, the last included
	// Index is X-Troupe-Index: the Raft log index of a write (also on some
	// rejected writes); 0 when absent. Pass it as ReadOptions.MinIndex to
	// read your writes on any node.
	Index uint64
	// Version is the ETag of a user (or document) answer; 0 when absent.
	Version uint64
	// IdempotencyKey is the key the write was sent with; "" for reads. To
	// settle a write of unknown outcome later, repeat it with this key.
	IdempotencyKey string
}

// CallOption adjusts one call.
type CallOption func(*callOptions)

type callOptions struct {
	key         string
	node        string
	maxAttempts int
	headers     [][2]string
}

// WithIdempotencyKey sends key as the write's Idempotency-Key (1–255
// printable ASCII characters) instead of a generated one. Use it to
// repeat a write across calls, e.g. after OutcomeUnknown.
func WithIdempotencyKey(key string) CallOption { return func(o *callOptions) { o.key = key } }

// OnNode sends every attempt of the call to one node (a value of
// Config.Nodes), even if its breaker is open: for probing a given node
// with Health, Ready or ClusterStatus. Outcomes still feed its breaker.
func OnNode(node string) CallOption { return func(o *callOptions) { o.node = node } }

// WithMaxAttempts overrides Config.MaxAttempts for the call (1: no retry).
func WithMaxAttempts(n int) CallOption { return func(o *callOptions) { o.maxAttempts = n } }

// WithHeader adds a request header to the call.
func WithHeader(name, value string) CallOption {
	return func(o *callOptions) { o.headers = append(o.headers, [2]string{name, value}) }
}

// request is one logical call, the same for all of its attempts.
type request struct {
	method, path string // path with its query
	body         []byte // nil: none
	headers      [][2]string
	key          string // Idempotency-Key; "" for reads
	pin          *node
	maxAttempts  int
}

// reply is what an attempt brings back: a copy, owned by the caller.
type reply struct {
	err        error // transport error; the rest is then unset
	status     int
	body       []byte
	index      uint64
	version    uint64
	retryAfter time.Duration // -1: no Retry-After
	leader     string
}

// Do sends a request to path (with its query, e.g. "/v1/docs?limit=10")
// through the retry and failover machinery, for routes without a typed
// method. body is nil, a []byte or json.RawMessage sent as it is, or a
// value encoded as JSON. On a 2xx answer out (if not nil) receives the
// body: a *[]byte gets it raw, anything else is decoded from JSON. A
// non-2xx answer is returned as *APIError. Methods other than GET, HEAD
// and OPTIONS are writes and carry an Idempotency-Key.
func (c *Client) Do(ctx context.Context, method, path string, body, out any, opts ...CallOption) (Meta, error) {
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case json.RawMessage:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return Meta{}, fmt.Errorf("troupe: %s %s: cannot encode the request body: %w", method, path, err)
		}
	}
	return c.call(ctx, method, path, raw, out, nil, opts)
}

// call runs a request and decodes a 2xx answer into out.
func (c *Client) call(ctx context.Context, method, path string, body []byte, out any, headers [][2]string, opts []CallOption) (Meta, error) {
	if !strings.HasPrefix(path, "/") {
		return Meta{}, fmt.Errorf("troupe: %s %q: the path must start with /", method, path)
	}
	var o callOptions
	for _, f := range opts {
		f(&o)
	}
	rq := &request{method: method, path: path, body: body, headers: append(headers, o.headers...), maxAttempts: c.cfg.MaxAttempts}
	if o.maxAttempts > 0 {
		rq.maxAttempts = o.maxAttempts
	}
	if o.node != "" {
		ep, err := parseNode(o.node)
		for _, n := range c.nodes {
			if err == nil && n.ep.base == ep.base {
				rq.pin = n
			}
		}
		if rq.pin == nil {
			return Meta{}, fmt.Errorf("troupe: %s %s: %q is not one of the client's nodes", method, path, o.node)
		}
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		rq.key = o.key
		if rq.key == "" {
			rq.key = "tc-" + rand.Text()
		}
	}
	respBody, meta, err := c.run(ctx, rq)
	if err != nil {
		return meta, err
	}
	switch dst := out.(type) {
	case nil:
	case *[]byte:
		*dst = respBody
	default:
		if len(respBody) == 0 {
			break
		}
		if err := json.Unmarshal(respBody, out); err != nil {
			return meta, fmt.Errorf("troupe: %s %s: cannot decode the answer of %s: %w", method, path, meta.Node, err)
		}
	}
	return meta, nil
}

// run makes the attempts of one request until one settles it. It returns
// the body of a 2xx answer, or the error: the last *APIError as it is, a
// transport error wrapped with where it happened, or the ctx error
// wrapping the last failure too.
func (c *Client) run(ctx context.Context, rq *request) ([]byte, Meta, error) {
	meta := Meta{IdempotencyKey: rq.key}
	if limit := c.cfg.MaxRequestBodySize; limit > 0 && len(rq.body) > limit {
		return nil, meta, fmt.Errorf("troupe: %s %s: %w (%d bytes, limit %d)", rq.method, rq.path, ErrBodyTooLarge, len(rq.body), limit)
	}
	if !c.enter() {
		return nil, meta, ErrClosed
	}
	defer c.wg.Done()
	if err := ctx.Err(); err != nil {
		return nil, meta, fmt.Errorf("troupe: %s %s: %w", rq.method, rq.path, err)
	}
	nd, tk := c.pick(rq, nil)
	var lastErr error
	for {
		meta.Attempts++
		meta.Node = nd.ep.base
		rp, err := c.attempt(ctx, nd, rq)
		if err != nil { // the caller's ctx ended, or Close
			nd.br.abandoned(tk)
			return nil, meta, c.gaveUp(rq, err, lastErr)
		}
		meta.Status, meta.Index, meta.Version = rp.status, rp.index, rp.version
		c.noteLeader(rp.leader)
		retry, err := c.settle(nd, tk, rp)
		if err == nil {
			return rp.body, meta, nil
		}
		lastErr = err
		if !retry || meta.Attempts >= rq.maxAttempts {
			return nil, meta, c.finalError(rq, meta, err)
		}
		next, ntk := c.pick(rq, nd)
		wait := c.backoff(meta.Attempts)
		if rp.retryAfter > wait && (rp.status == http.StatusTooManyRequests || next == nd) {
			// A rate limit may be cluster-wide; a 503's Retry-After
			// speaks for the node that sent it.
			wait = rp.retryAfter
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) <= wait {
			next.br.abandoned(ntk)
			return nil, meta, c.finalError(rq, meta, err)
		}
		c.log.Debug("troupe client: retrying", slog.String("method", rq.method), slog.String("path", rq.path),
			slog.String("node", nd.ep.base), slog.Int("attempt", meta.Attempts), slog.String("next", next.ep.base),
			slog.Duration("wait", wait), slog.Any("error", err))
		if err := c.sleep(ctx, wait); err != nil {
			next.br.abandoned(ntk)
			return nil, meta, c.gaveUp(rq, err, lastErr)
		}
		nd, tk = next, ntk
	}
}

// settle judges an attempt's reply: it feeds the node's breaker, notes a
// node that answered well, and says whether the call is done (nil error)
// or may be retried.
func (c *Client) settle(nd *node, tk ticket, rp reply) (retry bool, err error) {
	switch {
	case rp.err != nil:
		if errors.Is(rp.err, fasthttp.ErrNoFreeConns) {
			// Every connection to the node is busy on this side: not the
			// node's fault.
			nd.br.abandoned(tk)
			return true, fmt.Errorf("%s: %w", nd.ep.base, rp.err)
		}
		c.failed(nd, tk, rp.err.Error())
		return true, fmt.Errorf("%s: %w", nd.ep.base, rp.err)
	case rp.status >= 500:
		e := parseAPIError(rp.status, rp.body, nd.ep.base, max(rp.retryAfter, 0))
		c.failed(nd, tk, strconv.Itoa(rp.status)+" "+e.Code+": "+e.Message)
		return rp.status == http.StatusServiceUnavailable || rp.status == http.StatusGatewayTimeout, e
	}
	if nd.br.succeeded(tk) {
		c.log.Info("troupe client: node answers again; breaker closed", slog.String("node", nd.ep.base))
	}
	c.preferred.Store(int32(nd.idx))
	if rp.status < 300 {
		return false, nil
	}
	e := parseAPIError(rp.status, rp.body, nd.ep.base, max(rp.retryAfter, 0))
	return rp.status == http.StatusTooManyRequests && rp.retryAfter <= c.cfg.MaxRetryAfter, e
}

// failed records a node's failure and forgets it as leader.
func (c *Client) failed(nd *node, tk ticket, reason string) {
	c.leader.CompareAndSwap(int32(nd.idx), -1)
	if nd.br.failed(tk, c.now(), c.cfg.BreakerThreshold, reason) {
		c.log.Info("troupe client: node failing; breaker open", slog.String("node", nd.ep.base),
			slog.Duration("cooldown", c.cfg.BreakerCooldown), slog.String("error", reason))
	}
}

// finalError is what a call that stopped trying returns.
func (c *Client) finalError(rq *request, meta Meta, err error) error {
	if _, ok := asAPIError(err); ok {
		return err
	}
	return fmt.Errorf("troupe: %s %s: %d attempt(s) failed, the last: %w", rq.method, rq.path, meta.Attempts, err)
}

// gaveUp is the error of a call whose ctx ended or whose client closed.
func (c *Client) gaveUp(rq *request, why, last error) error {
	if last == nil {
		return fmt.Errorf("troupe: %s %s: %w", rq.method, rq.path, why)
	}
	return fmt.Errorf("troupe: %s %s: %w (last failure: %w)", rq.method, rq.path, why, last)
}

// pick chooses the node of the next attempt (prev is the node of the
// last one, nil for the first): for a write the leader, if one is known
// and prev is not it; else for the first attempt the preferred node, and
// after that the node following prev. Nodes whose breaker refuses are
// skipped; if all refuse, the one that failed least recently is tried
// anyway.
func (c *Client) pick(rq *request, prev *node) (*node, ticket) {
	now := c.now()
	if rq.pin != nil {
		if tk, ok := rq.pin.br.allow(now, c.cfg.BreakerCooldown); ok {
			return rq.pin, tk
		}
		return rq.pin, forced
	}
	n := len(c.nodes)
	var start int
	leader := int(c.leader.Load())
	switch {
	case rq.key != "" && leader >= 0 && (prev == nil || prev.idx != leader):
		start = leader
	case prev != nil:
		start = prev.idx + 1
	default:
		start = int(c.preferred.Load())
	}
	for i := range n {
		nd := c.nodes[(start+i)%n]
		if tk, ok := nd.br.allow(now, c.cfg.BreakerCooldown); ok {
			return nd, tk
		}
	}
	// In rotation order, so that a tie goes to the node after prev.
	var best *node
	var bestAt time.Time
	for i := range n {
		nd := c.nodes[(start+i)%n]
		if at := nd.br.failedAt(); best == nil || at.Before(bestAt) {
			best, bestAt = nd, at
		}
	}
	return best, forced
}

// backoff is the wait before retry number retry (1, 2, …): full jitter.
func (c *Client) backoff(retry int) time.Duration {
	ceiling := c.cfg.BackoffBase
	for i := 1; i < retry && ceiling < c.cfg.BackoffMax; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, c.cfg.BackoffMax)
	return time.Duration(mrand.Int64N(int64(ceiling)))
}

// timerSleep is the default Sleep; Close ends it too.
func (c *Client) timerSleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stop:
		return ErrClosed
	}
}

// noteLeader records the node an X-Troupe-Leader header names, if it is
// one of ours by URL or host:port. A bare node id names none: this client
// knows nodes by address only.
func (c *Client) noteLeader(v string) {
	if v == "" {
		return
	}
	ep, err := parseNode(v)
	if err != nil {
		return
	}
	for _, n := range c.nodes {
		if n.ep.addr == ep.addr {
			c.leader.Store(int32(n.idx))
			return
		}
	}
}

// attempt runs one exchange with nd. If ctx can end, the exchange runs on
// its own goroutine and attempt returns as soon as ctx ends or the client
// closes, leaving the exchange to finish (within Timeout) by itself.
func (c *Client) attempt(ctx context.Context, nd *node, rq *request) (reply, error) {
	deadline := time.Now().Add(c.cfg.Timeout)
	byCaller := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, byCaller = d, true
	}
	var rp reply
	if ctx.Done() == nil {
		rp = c.exchange(nd, rq, deadline)
	} else {
		ch := make(chan reply, 1)
		c.wg.Add(1) // the call holds the count above zero: no race with Close's Wait
		go func() {
			defer c.wg.Done()
			ch <- c.exchange(nd, rq, deadline)
		}()
		select {
		case rp = <-ch:
		case <-ctx.Done():
			return reply{}, ctx.Err()
		case <-c.stop:
			return reply{}, ErrClosed
		}
	}
	if byCaller && errors.Is(rp.err, fasthttp.ErrTimeout) {
		// The caller's deadline, not the node, cut the attempt short.
		return reply{}, context.DeadlineExceeded
	}
	return rp, nil
}

// exchange sends one request to nd and copies out the parts of the
// answer the client uses.
func (c *Client) exchange(nd *node, rq *request, deadline time.Time) reply {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(nd.ep.base + rq.path)
	req.Header.SetMethod(rq.method)
	if tok := c.token.Load(); tok != nil && *tok != "" {
		req.Header.Set("Authorization", "Bearer "+*tok)
	}
	if rq.key != "" {
		req.Header.Set("Idempotency-Key", rq.key)
	}
	if rq.body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(rq.body)
	}
	for _, h := range rq.headers {
		req.Header.Set(h[0], h[1])
	}
	if err := nd.hc.DoDeadline(req, resp, deadline); err != nil {
		return reply{err: err, retryAfter: -1}
	}
	rp := reply{status: resp.StatusCode(), retryAfter: -1}
	if b := resp.Body(); len(b) > 0 {
		rp.body = append([]byte(nil), b...)
	}
	h := &resp.Header
	if v := h.Peek("X-Troupe-Index"); len(v) > 0 {
		rp.index, _ = strconv.ParseUint(string(v), 10, 64)
	}
	if v := h.Peek("ETag"); len(v) > 0 {
		rp.version = parseETag(string(v))
	}
	if v := h.Peek("Retry-After"); len(v) > 0 {
		rp.retryAfter = parseRetryAfter(string(v), time.Now())
	}
	if v := h.Peek("X-Troupe-Leader"); len(v) > 0 {
		rp.leader = string(v)
	}
	return rp
}

// parseETag reads `"<version>"` (or W/"<version>"); 0 if it is not one.
func parseETag(v string) uint64 {
	v = strings.Trim(strings.TrimPrefix(strings.TrimSpace(v), "W/"), `"`)
	n, _ := strconv.ParseUint(v, 10, 64)
	return n
}

// parseRetryAfter reads seconds or an HTTP date; -1 if it is neither.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return -1
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return -1
}
