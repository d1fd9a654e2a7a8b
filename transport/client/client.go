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
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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
