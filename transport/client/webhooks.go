package client

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
)

// Webhooks (admin): the leader POSTs every change of the kinds asked for,
// in order, at least once, signed with the webhook's secret (Standard
// Webhooks); VerifyWebhook checks a delivery on the receiving side.

// Webhook is a webhook with its delivery status.
type Webhook struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	Kinds       []string `json:"kinds"`
	Description string   `json:"description"`
	// Secret ("whsec_…") is given only by CreateWebhook.
	Secret  string `json:"secret,omitempty"`
	Status  string `json:"status"` // active, failing, gap
	Enabled bool   `json:"enabled"`
	// AckedIndex is the log index up to which the receiver acknowledged
	// every change; AckedPosition the same as an event id.
	AckedIndex    uint64  `json:"acked_index"`
	AckedPosition string  `json:"acked_position"`
	Lag           uint64  `json:"lag"`
	LastError     *string `json:"last_error"`
	LastAttemptAt *string `json:"last_attempt_at"`
	FailingSince  *string `json:"failing_since"`
	GapOldest     *uint64 `json:"gap_oldest,omitempty"`
	CreatedAt     string  `json:"created_at"`
}

// NewWebhook is what CreateWebhook sends; Kinds empty means all.
type NewWebhook struct {
	URL         string   `json:"url"`
	Kinds       []string `json:"kinds,omitempty"`
	Description string   `json:"description,omitempty"`
}

// WebhookPatch changes a webhook: nil fields stay. Enabled (only true)
// re-enables a failing or gapped one.
type WebhookPatch struct {
	Enabled     *bool     `json:"enabled,omitempty"`
	URL         *string   `json:"url,omitempty"`
	Kinds       *[]string `json:"kinds,omitempty"`
	Description *string   `json:"description,omitempty"`
}

// WebhookTest is what a test delivery came to.
type WebhookTest struct {
	Delivered  bool    `json:"delivered"`
	Status     *int    `json:"status"`
	Error      *string `json:"error"`
	DurationMs int64   `json:"duration_ms"`
}

func webhookPath(id string) string { return "/v1/webhooks/" + url.PathEscape(id) }

// CreateWebhook registers a webhook (POST /v1/webhooks); the answer holds
// its secret, which no other call shows.
func (c *Client) CreateWebhook(ctx context.Context, w NewWebhook, opts ...CallOption) (Webhook, Meta, error) {
	var out Webhook
	body, err := json.Marshal(w)
	if err != nil {
		return out, Meta{}, fmt.Errorf("troupe: cannot encode the webhook: %w", err)
	}
	meta, err := c.call(ctx, http.MethodPost, "/v1/webhooks", body, &out, nil, opts)
	return out, meta, err
}

// ListWebhooks reads every webhook (GET /v1/webhooks).
func (c *Client) ListWebhooks(ctx context.Context, ro ReadOptions, opts ...CallOption) ([]Webhook, Meta, error) {
	var out struct {
		Items []Webhook `json:"items"`
	}
	q := url.Values{}
	ro.encode(q)
	meta, err := c.call(ctx, http.MethodGet, withQuery("/v1/webhooks", q), nil, &out, nil, opts)
	return out.Items, meta, err
}

// GetWebhook reads one webhook (GET /v1/webhooks/{id}).
func (c *Client) GetWebhook(ctx context.Context, id string, ro ReadOptions, opts ...CallOption) (Webhook, Meta, error) {
	var out Webhook
	q := url.Values{}
	ro.encode(q)
	meta, err := c.call(ctx, http.MethodGet, withQuery(webhookPath(id), q), nil, &out, nil, opts)
	return out, meta, err
}

// PatchWebhook changes or re-enables a webhook (PATCH /v1/webhooks/{id}).
func (c *Client) PatchWebhook(ctx context.Context, id string, p WebhookPatch, opts ...CallOption) (Webhook, Meta, error) {
	var out Webhook
	body, err := json.Marshal(p)
	if err != nil {
		return out, Meta{}, fmt.Errorf("troupe: cannot encode the patch: %w", err)
	}
	meta, err := c.call(ctx, http.MethodPatch, webhookPath(id), body, &out, nil, opts)
	return out, meta, err
}

// DeleteWebhook deletes a webhook (DELETE /v1/webhooks/{id}).
func (c *Client) DeleteWebhook(ctx context.Context, id string, opts ...CallOption) (Meta, error) {
	return c.call(ctx, http.MethodDelete, webhookPath(id), nil, nil, nil, opts)
}

// TestWebhook has the node send one signed test delivery now
// (POST /v1/webhooks/{id}/test).
func (c *Client) TestWebhook(ctx context.Context, id string, opts ...CallOption) (WebhookTest, Meta, error) {
	var out WebhookTest
	meta, err := c.call(ctx, http.MethodPost, webhookPath(id)+"/test", nil, &out, nil, opts)
	return out, meta, err
}

// DefaultWebhookTolerance is how far a delivery's webhook-timestamp may
// be from the receiver's clock (Standard Webhooks' usual five minutes):
// an older delivery replayed by someone who captured it is refused.
const DefaultWebhookTolerance = 5 * time.Minute

// ErrWebhookSignature is wrapped by VerifyWebhook's errors.
var ErrWebhookSignature = errors.New("webhook signature does not verify")

// VerifyWebhook checks a delivery as a receiver gets it: secret is the
// webhook's ("whsec_…"), header and body the request's. It accepts a
// signature of "<webhook-id>.<webhook-timestamp>.<body>" by the secret
// (any of the space-separated ones of webhook-signature) whose timestamp
// is within tolerance of now (0: DefaultWebhookTolerance).
func VerifyWebhook(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return fmt.Errorf("%w: the secret is not \"whsec_\" and base64", ErrWebhookSignature)
	}
	if tolerance <= 0 {
		tolerance = DefaultWebhookTolerance
	}
	id, tsText := header.Get("webhook-id"), header.Get("webhook-timestamp")
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if id == "" || err != nil {
		return fmt.Errorf("%w: webhook-id or webhook-timestamp missing", ErrWebhookSignature)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: webhook-timestamp is %v from now", ErrWebhookSignature, d.Round(time.Second))
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + tsText + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(header.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return ErrWebhookSignature
}
