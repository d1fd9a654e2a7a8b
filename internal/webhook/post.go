package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// The HTTP client of deliveries is net/http's: deliveries are few (one
// request in flight per webhook) so fasthttp's speed buys nothing, while
// net/http gives a per-request context (cancelled when leadership is
// lost), a dialer whose Control hook sees the resolved address (the SSRF
// guard at dial time), and CheckRedirect to refuse redirects.

// maxResponseBody bounds what is read of a receiver's answer (kept for
// last_error).
const maxResponseBody = 4 << 10

// newHTTPClient is the client of deliveries: no proxy, no redirects, no
// connection to a forbidden address unless allowPrivate.
func newHTTPClient(allowPrivate bool, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = dialControl
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Outcome is what one delivery came to: the receiver's status (0 when
// none came) and, unless it was 2xx, why it failed.
type Outcome struct {
	Status int
	Err    error
}

// OK reports whether the receiver acknowledged.
func (o Outcome) OK() bool { return o.Err == nil }

// post sends one signed delivery.
func post(ctx context.Context, c *http.Client, url string, secret []byte, id string, ts time.Time, body []byte) Outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Outcome{Err: err}
	}
	sec := ts.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "troupe-webhook/1")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(sec, 10))
	req.Header.Set("webhook-signature", Sign(secret, id, sec, body))
	resp, err := c.Do(req)
	if err != nil {
		return Outcome{Err: err}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	// Drain a little more so the connection may be reused; never much.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return Outcome{Status: resp.StatusCode}
	}
	e := fmt.Sprintf("the receiver answered %s", resp.Status)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e += " (redirects are not followed)"
	}
	if len(msg) > 0 {
		e += ": " + string(bytes.TrimSpace(msg))
	}
	return Outcome{Status: resp.StatusCode, Err: errors.New(e)}
}
