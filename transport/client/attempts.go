package client

// The attempts of one call: choosing a node, sending, judging the answer,
// waiting before the next. All of it runs on the calling goroutine,
// except exchange, which may run on an attempt goroutine (see the
// package comment).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

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
