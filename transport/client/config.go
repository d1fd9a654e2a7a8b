package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// Config configures a Client. Start from DefaultConfig and set Nodes.
type Config struct {
	// Nodes are the base URLs of the cluster's nodes, e.g.
	// "http://127.0.0.1:8080" ("127.0.0.1:8080" means the same). Order
	// matters only until the client has learnt which node answers well.
	Nodes []string
	// Token is an optional access token, sent as "Authorization: Bearer".
	// SetToken changes it later.
	Token string
	// UserAgent is sent with every request.
	UserAgent string
	// TLSConfig configures connections to https nodes, e.g. to trust a
	// private CA. Nil: the system's roots.
	TLSConfig *tls.Config

	// Timeout bounds one attempt (connect, send, receive). Keep it above
	// the server's request timeout (10 s by default), so that a slow write
	// ends in the server's 503 "outcome unknown" or 504 rather than in a
	// client-side timeout that says less.
	Timeout time.Duration
	// MaxAttempts is how many attempts one call makes at most, retries
	// and failovers included.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the wait before a retry: "full
	// jitter", a uniformly random wait in [0, min(BackoffMax,
	// BackoffBase·2^(retry-1))).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits out by
	// itself; an answer asking for longer is returned to the caller.
	MaxRetryAfter time.Duration

	// BreakerThreshold consecutive failures (connection error, timeout or
	// 5xx) open a node's circuit breaker; the node is then skipped for
	// BreakerCooldown, after which one trial request may go to it
	// (half-open) and its success closes the breaker again.
	BreakerThreshold int
	BreakerCooldown  time.Duration

	// MaxConnsPerNode bounds the keep-alive connections to one node; a
	// request that finds them all busy waits for one up to Timeout.
	MaxConnsPerNode int
	// IdleConnTimeout closes a connection unused for this long. It should
	// be below the server's idle timeout (120 s by default), so that the
	// client, not the server, closes idle connections.
	IdleConnTimeout time.Duration
	// MaxRequestBodySize refuses, without sending, a request body larger
	// than this (the server's limit is 1 MiB by default and it closes the
	// connection after answering 413). 0 means no limit.
	MaxRequestBodySize int
	// MaxResponseBodySize bounds a response body the client reads.
	MaxResponseBodySize int

	// Logger receives retries and breaker transitions at debug and info
	// level. Nil discards them.
	Logger *slog.Logger

	// Sleep waits d or until ctx ends, returning ctx.Err() then. Tests
	// inject one to observe waits without taking them. Nil: a real timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now tells the time to the circuit breakers. Tests inject a clock to
	// pass a cool-down without waiting. Nil: time.Now.
	Now func() time.Time
	// Dial opens a TCP connection to addr ("host:port") within timeout.
	// Nil: net.Dialer. Tests inject one to count connection attempts.
	Dial func(addr string, timeout time.Duration) (net.Conn, error)
}

// DefaultConfig returns working defaults for every field but Nodes.
func DefaultConfig() Config {
	return Config{
		UserAgent:           "troupe-client",
		Timeout:             15 * time.Second,
		MaxAttempts:         4,
		BackoffBase:         50 * time.Millisecond,
		BackoffMax:          2 * time.Second,
		MaxRetryAfter:       30 * time.Second,
		BreakerThreshold:    3,
		BreakerCooldown:     5 * time.Second,
		MaxConnsPerNode:     512,
		IdleConnTimeout:     30 * time.Second,
		MaxRequestBodySize:  1 << 20,
		MaxResponseBodySize: 64 << 20,
	}
}

// Validate reports every unusable setting at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Nodes) == 0 {
		errs = append(errs, errors.New("no nodes given"))
	}
	seen := map[string]bool{}
	for _, n := range c.Nodes {
		ep, err := parseNode(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[ep.base] {
			errs = append(errs, fmt.Errorf("node %q is listed twice", n))
		}
		seen[ep.base] = true
	}
	if strings.ContainsAny(c.Token, "\r\n") || strings.ContainsFunc(c.Token, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		errs = append(errs, errors.New("token must be printable ASCII"))
	}
	for name, d := range map[string]time.Duration{"timeout": c.Timeout, "backoff base": c.BackoffBase,
		"backoff max": c.BackoffMax, "breaker cool-down": c.BreakerCooldown, "idle connection timeout": c.IdleConnTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %v must be positive", name, d))
		}
	}
	if c.BackoffMax < c.BackoffBase {
		errs = append(errs, fmt.Errorf("backoff max %v is below backoff base %v", c.BackoffMax, c.BackoffBase))
	}
	if c.MaxRetryAfter < 0 {
		errs = append(errs, fmt.Errorf("max retry-after %v must not be negative", c.MaxRetryAfter))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("max attempts %d must be at least 1", c.MaxAttempts))
	}
	if c.BreakerThreshold < 1 {
		errs = append(errs, fmt.Errorf("breaker threshold %d must be at least 1", c.BreakerThreshold))
	}
	if c.MaxConnsPerNode < 1 {
		errs = append(errs, fmt.Errorf("max connections per node %d must be at least 1", c.MaxConnsPerNode))
	}
	if c.MaxRequestBodySize < 0 {
		errs = append(errs, fmt.Errorf("max request body size %d must not be negative", c.MaxRequestBodySize))
	}
	if c.MaxResponseBodySize < 1 {
		errs = append(errs, fmt.Errorf("max response body size %d must be positive", c.MaxResponseBodySize))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid client config: %w", err)
	}
	return nil
}

// endpoint is one node's address in the forms the client needs.
type endpoint struct {
	base string // "http://host:port", no trailing slash: the node's name in Meta and NodeState
	addr string // "host:port" to dial
	tls  bool
}

// parseNode accepts "http://host:port", "https://host[:port]" and a bare
// "host:port" (plain HTTP). A path, query or user info is refused: the
// client builds every path itself.
func parseNode(s string) (endpoint, error) {
	raw := strings.TrimSpace(s)
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return endpoint{}, fmt.Errorf("node %q: %v", s, err)
	}
	var ep endpoint
	switch u.Scheme {
	case "http":
	case "https":
		ep.tls = true
	default:
		return endpoint{}, fmt.Errorf("node %q: scheme must be http or https", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return endpoint{}, fmt.Errorf("node %q: no host", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return endpoint{}, fmt.Errorf("node %q: give only scheme, host and port", s)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if ep.tls {
			port = "443"
		}
	}
	ep.addr = net.JoinHostPort(u.Hostname(), port)
	ep.base = u.Scheme + "://" + ep.addr
	return ep, nil
}
