package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"
)

// The change feed (GET /v1/watch): Watch is an iterator over the changes
// after a log index that survives the loss of the node it reads from.
//
// A watch holds one streaming connection (net/http: fasthttp's client
// does not stream response bodies), made and read by the goroutine that
// ranges over the iterator; a helper goroutine cancels it when the
// client is closed, and ends with it. A watch is not a call: Close does
// not wait for it (a loop body may call Close), but ends its connection.

// FromNow, as Watch's from, starts with the changes after the index the
// first node reached has applied.
const FromNow uint64 = math.MaxUint64

// Change is one change of the feed.
type Change struct {
	Index uint64 `json:"index"` // the log entry
	N     uint32 `json:"n"`     // the change's place among the entry's
	Kind  string `json:"kind"`  // user, doc, policy, member
	Op    string `json:"op"`    // created, updated, deleted
	ID    string `json:"id"`
	// Version is the user's or document's version after the change (nil
	// for policies, members and deleted users).
	Version *uint64 `json:"version"`
	At      string  `json:"at"` // RFC 3339, the command's time
	// Data is the record after the change as GET shows it (a document's
	// listing, without text); empty for a deletion.
	Data json.RawMessage `json:"data"`
}

// EventID is the change's position, "<index>-<n>": resuming after it
// (Last-Event-ID) replays every later change.
func (c Change) EventID() string {
	return strconv.FormatUint(c.Index, 10) + "-" + strconv.FormatUint(uint64(c.N), 10)
}

// ErrWatchEnded is wrapped by the error a watch ends with when the node
// ended the stream for the holder's sake ("closed": access_revoked,
// token_expired) — retrying elsewhere would not help.
var ErrWatchEnded = errors.New("the watch was ended by the server")

// Watch returns the changes after log index from (FromNow: from what the
// node has applied; a listing's X-Troupe-Index is the index to watch
// from after it), of the kinds named (users, docs, policies, members;
// none: all the token may see), in log order. When a node fails — the
// connection drops, it answers 503 — the watch goes on from the last
// change it yielded on the next node, with backoff: no gap and no
// duplicate. It ends with an error (yielded with a zero Change) when ctx
// ends, when every node failed MaxAttempts times in a row without a
// change in between, or at an answer that retrying cannot change: 4xx,
// 410 gone above all (the changes after from are no longer kept: list
// again, and watch from the listing's index; IsGone), or a stream ended
// for its holder (ErrWatchEnded).
func (c *Client) Watch(ctx context.Context, from uint64, kinds ...string) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		w := &watch{c: c, kinds: strings.Join(kinds, ",")}
		if from != FromNow {
			w.last = strconv.FormatUint(from, 10)
		}
		w.run(ctx, yield)
	}
}

// IsGone reports whether err is a 410 gone: what was asked for is no
// longer kept.
func IsGone(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.Status == http.StatusGone
}

type watch struct {
	c     *Client
	kinds string
	last  string // the event id (or index) to resume after; "" from now
	node  int
	hc    *http.Client
}

func (w *watch) run(ctx context.Context, yield func(Change, error) bool) {
	c := w.c
	w.node = int(c.preferred.Load())
	tr := &http.Transport{TLSClientConfig: c.cfg.TLSConfig, ResponseHeaderTimeout: c.cfg.Timeout, MaxIdleConns: 1}
	if c.cfg.Dial != nil {
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return c.cfg.Dial(addr, c.cfg.Timeout) }
	}
	defer tr.CloseIdleConnections()
	w.hc = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	failures := 0
	for {
		progressed, err := w.stream(ctx, yield)
		if err == nil {
			return // the consumer stopped
		}
		if progressed {
			failures = 0
		}
		if ctx.Err() != nil {
			yield(Change{}, ctx.Err())
			return
		}
		if !retryableWatch(err) {
			yield(Change{}, err)
			return
		}
		failures++
		if failures >= c.cfg.MaxAttempts*len(c.nodes) {
			yield(Change{}, fmt.Errorf("troupe: watch: every node failed %d times in a row: %w", c.cfg.MaxAttempts, err))
			return
		}
		c.log.Debug("watch: resuming on another node", "after", w.last, "err", err)
		w.node = (w.node + 1) % len(c.nodes)
		d := c.backoff(failures)
		var ae *APIError
		if errors.As(err, &ae) && ae.RetryAfter > 0 {
			d = min(ae.RetryAfter, c.cfg.MaxRetryAfter)
		}
		if err := c.sleep(ctx, d); err != nil {
			yield(Change{}, err)
			return
		}
	}
}

// retryableWatch: a failure another node (or a later try) may not have.
func retryableWatch(err error) bool {
	if errors.Is(err, ErrWatchEnded) || errors.Is(err, ErrClosed) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusGatewayTimeout || ae.Status == http.StatusTooManyRequests
	}
	return true // the connection: refused, dropped, timed out
}

// stream reads one connection's changes; nil error: the consumer stopped.
func (w *watch) stream(ctx context.Context, yield func(Change, error) bool) (progressed bool, err error) {
	c := w.c
	c.mu.RLock()
	closed := c.closed
	c.mu.RUnlock()
	if closed {
		return false, ErrClosed
	}
	nd := c.nodes[w.node]
	q := url.Values{}
	if w.kinds != "" {
		q.Set("kinds", w.kinds)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-cctx.Done():
		}
	}()
	u := nd.ep.base + "/v1/watch"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if w.last != "" {
		req.Header.Set("Last-Event-ID", w.last)
	}
	if tok := *c.token.Load(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if c.cfg.UserAgent != "" {
		req.Header.Set("User-Agent", c.cfg.UserAgent)
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return false, fmt.Errorf("troupe: watch on %s: %w", nd.ep.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return false, parseAPIError(resp.StatusCode, body, nd.ep.base, parseRetryAfter(resp.Header.Get("Retry-After"), c.now()))
	}
	c.preferred.Store(int32(w.node))
	if w.last == "" {
		// From now: should this connection fail before a change, the next
		// one starts where this one did.
		w.last = resp.Header.Get("X-Troupe-Index")
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 4<<20)
	var id, event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "" {
				continue
			}
			switch event {
			case "change":
				var ch Change
				if err := json.Unmarshal([]byte(data), &ch); err != nil {
					return progressed, fmt.Errorf("troupe: watch on %s: a change that is not JSON: %w", nd.ep.base, err)
				}
				w.last, progressed = id, true
				if !yield(ch, nil) {
					return progressed, nil
				}
			case "closed":
				var cl struct {
					Reason string `json:"reason"`
				}
				_ = json.Unmarshal([]byte(data), &cl)
				if cl.Reason == "gone" {
					return progressed, &APIError{Status: http.StatusGone, Code: "gone", Node: nd.ep.base,
						Message: "the watch fell behind the changes the node keeps; list again and watch from the listing's index"}
				}
				return progressed, fmt.Errorf("troupe: watch on %s: %w: %s", nd.ep.base, ErrWatchEnded, cl.Reason)
			}
			id, event, data = "", "", ""
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
	if err := sc.Err(); err != nil {
		return progressed, fmt.Errorf("troupe: watch on %s: %w", nd.ep.base, err)
	}
	return progressed, fmt.Errorf("troupe: watch on %s: the stream ended", nd.ep.base)
}
