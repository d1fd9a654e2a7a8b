package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/internal/webhook"
	"github.com/troupe-db/troupe/storage"
)

// Webhooks (API.md, Webhooks): admin routes over the replicated
// registrations. Writes go through Raft like any other; the leader's
// deliverer (internal/webhook) does the deliveries. The secret is drawn
// here, on the node taking the create, carried in the command, and shown
// only in the create's answer.

// WebhookDeliverer is what the routes need from the deliverer: the SSRF
// guard as the node is configured, and a test delivery.
type WebhookDeliverer interface {
	CheckTarget(ctx context.Context, rawURL string) error
	Test(ctx context.Context, w *storage.Webhook) webhook.Outcome
}

// RenderChange is a change's JSON as the watch streams send it (and
// webhook deliveries carry it).
func RenderChange(c *feed.Change) []byte { return renderChange(c) }

// webhookJSON is a webhook as the API shows it (never its secret but in
// the create's answer).
type webhookJSON struct {
	ID            string   `json:"id"`
	URL           string   `json:"url"`
	Kinds         []string `json:"kinds"`
	Description   string   `json:"description"`
	Secret        string   `json:"secret,omitempty"`
	Status        string   `json:"status"`
	Enabled       bool     `json:"enabled"`
	AckedIndex    uint64   `json:"acked_index"`
	AckedPosition string   `json:"acked_position"`
	Lag           uint64   `json:"lag"`
	LastError     *string  `json:"last_error"`
	LastAttemptAt *string  `json:"last_attempt_at"`
	FailingSince  *string  `json:"failing_since"`
	GapOldest     *uint64  `json:"gap_oldest,omitempty"`
	CreatedAt     string   `json:"created_at"`
}

func (s *Server) toWebhookJSON(w *storage.Webhook) webhookJSON {
	j := webhookJSON{ID: w.ID, URL: w.URL, Kinds: feed.Kind(w.Kinds).Names(), Description: w.Description,
		Status: w.Status.String(), Enabled: w.Status == storage.WebhookActive, AckedIndex: w.AckedIndex,
		AckedPosition: feed.Position{Index: w.AckedIndex, N: w.AckedN}.String(), CreatedAt: formatTime(w.CreatedMs)}
	if applied := s.node.AppliedIndex(); applied > w.AckedIndex {
		j.Lag = applied - w.AckedIndex
	}
	if w.LastError != "" {
		j.LastError = &w.LastError
	}
	if w.LastAttemptMs != 0 {
		t := formatTime(w.LastAttemptMs)
		j.LastAttemptAt = &t
	}
	if w.FailingSinceMs != 0 {
		t := formatTime(w.FailingSinceMs)
		j.FailingSince = &t
	}
	if w.Status == storage.WebhookGap {
		g := w.GapOldest
		j.GapOldest = &g
	}
	return j
}

type webhookRequest struct {
	URL         *string   `json:"url"`
	Kinds       *[]string `json:"kinds"`
	Description *string   `json:"description"`
	Enabled     *bool     `json:"enabled"`
}

// kinds reads the kinds list (all when absent).
func (req *webhookRequest) kinds() (uint8, error) {
	if req.Kinds == nil {
		return storage.WebhookKinds, nil
	}
	if len(*req.Kinds) > 8 {
		return 0, badRequest("kinds names each of users, docs, policies, members at most once", "kinds")
	}
	k, err := feed.ParseKinds(strings.Join(*req.Kinds, ","))
	if err != nil {
		return 0, badRequest(err.Error(), "kinds")
	}
	return uint8(k), nil
}

// checkWebhookTarget answers whether url may be delivered to (false: it answered).
func (s *Server) checkWebhookTarget(ctx *fasthttp.RequestCtx, url string) bool {
	if e := storage.CheckWebhookURL(url); e != nil {
		writeError(ctx, e)
		return false
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if s.cfg.Webhooks != nil {
		err = s.cfg.Webhooks.CheckTarget(c, url)
	} else {
		err = webhook.CheckTarget(c, url, false, nil)
	}
	if err != nil {
		code := "target_not_allowed"
		if !errors.Is(err, webhook.ErrForbiddenTarget) {
			code = "bad_request"
		}
		e := newError(code, err.Error())
		e.Details = map[string]any{"field": "url"}
		writeError(ctx, e)
		return false
	}
	return true
}

func (s *Server) createWebhook(ctx *fasthttp.RequestCtx) {
	var req webhookRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	if req.Enabled != nil {
		writeError(ctx, badRequest("a new webhook is enabled; enabled is for PATCH", "enabled"))
		return
	}
	c := &storage.WebhookCommand{Action: storage.WebhookCreate}
	if req.URL != nil {
		c.URL = *req.URL
	}
	if req.Description != nil {
		c.Description = *req.Description
		if e := storage.CheckWebhookDescription(c.Description); e != nil {
			writeError(ctx, e)
			return
		}
	}
	var err error
	if c.Kinds, err = req.kinds(); err != nil {
		writeError(ctx, err)
		return
	}
	if !s.checkWebhookTarget(ctx, c.URL) {
		return
	}
	var id [10]byte
	c.Secret = make([]byte, storage.WebhookSecretBytes)
	if _, err := rand.Read(id[:]); err != nil {
		writeError(ctx, err)
		return
	}
	if _, err := rand.Read(c.Secret); err != nil {
		writeError(ctx, err)
		return
	}
	c.ID = "wh_" + hex.EncodeToString(id[:])
	if w.key != "" {
		// A repeat of the request names the webhook the first created.
		sum := sha256.Sum256([]byte(w.key))
		c.ID = "wh_" + hex.EncodeToString(sum[:10])
	}
	cmd := &storage.Command{Kind: storage.CmdWebhook, Stamp: s.node.Stamps(1), RequestID: w.key, Fingerprint: w.fp, Webhook: c}
	if _, ok := s.propose(ctx, cmd, s.deadline()); !ok {
		return
	}
	// A repeated Idempotency-Key answers with the webhook first created
	// (its secret is in the replicated state), unless it was deleted since.
	hook := s.node.Webhook(c.ID)
	if hook == nil {
		writeError(ctx, newError("not_found", "the webhook this Idempotency-Key created has been deleted since"))
		return
	}
	j := s.toWebhookJSON(hook)
	j.Secret = webhook.FormatSecret(hook.Secret)
	ctx.Response.Header.Set("Location", "/v1/webhooks/"+hook.ID)
	writeJSON(ctx, http.StatusCreated, j)
}

func (s *Server) listWebhooks(ctx *fasthttp.RequestCtx) {
	if !s.listGate(ctx, s.deadline()) {
		return
	}
	items := []webhookJSON{}
	for _, w := range s.node.Webhooks() {
		items = append(items, s.toWebhookJSON(w))
	}
	writeJSON(ctx, http.StatusOK, map[string][]webhookJSON{"items": items})
}

// webhookOr404 is the webhook the route names, or nil (it answered).
func (s *Server) webhookOr404(ctx *fasthttp.RequestCtx) *storage.Webhook {
	id, _ := ctx.UserValue("id").(string)
	w := s.node.Webhook(id)
	if w == nil {
		if len(id) > 64 {
			id = id[:64] + "…"
		}
		writeError(ctx, newError("not_found", "no webhook "+strconv.Quote(id)))
	}
	return w
}

func (s *Server) getWebhook(ctx *fasthttp.RequestCtx) {
	if !s.listGate(ctx, s.deadline()) {
		return
	}
	if w := s.webhookOr404(ctx); w != nil {
		writeJSON(ctx, http.StatusOK, s.toWebhookJSON(w))
	}
}

func (s *Server) patchWebhook(ctx *fasthttp.RequestCtx) {
	var req webhookRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	id, _ := ctx.UserValue("id").(string)
	c := &storage.WebhookCommand{Action: storage.WebhookUpdate, ID: id}
	if req.Enabled != nil {
		if !*req.Enabled {
			writeError(ctx, badRequest("enabled can only be set to true (delete a webhook to stop it for good)", "enabled"))
			return
		}
		c.Fields |= storage.WebhookFieldEnable
	}
	if req.URL != nil {
		if !s.checkWebhookTarget(ctx, *req.URL) {
			return
		}
		c.URL, c.Fields = *req.URL, c.Fields|storage.WebhookFieldURL
	}
	if req.Kinds != nil {
		k, err := req.kinds()
		if err != nil {
			writeError(ctx, err)
			return
		}
		c.Kinds, c.Fields = k, c.Fields|storage.WebhookFieldKinds
	}
	if req.Description != nil {
		if e := storage.CheckWebhookDescription(*req.Description); e != nil {
			writeError(ctx, e)
			return
		}
		c.Description, c.Fields = *req.Description, c.Fields|storage.WebhookFieldDescription
	}
	if c.Fields == 0 {
		writeError(ctx, badRequest("give some of url, kinds, description, enabled", ""))
		return
	}
	cmd := &storage.Command{Kind: storage.CmdWebhook, Stamp: s.node.Stamps(1), RequestID: w.key, Fingerprint: w.fp, Webhook: c}
	if _, ok := s.propose(ctx, cmd, s.deadline()); !ok {
		return
	}
	if hook := s.webhookOr404(ctx); hook != nil {
		writeJSON(ctx, http.StatusOK, s.toWebhookJSON(hook))
	}
}

func (s *Server) deleteWebhook(ctx *fasthttp.RequestCtx) {
	w, ok := s.startWrite(ctx, nil)
	if !ok {
		return
	}
	id, _ := ctx.UserValue("id").(string)
	cmd := &storage.Command{Kind: storage.CmdWebhook, Stamp: s.node.Stamps(1), RequestID: w.key, Fingerprint: w.fp,
		Webhook: &storage.WebhookCommand{Action: storage.WebhookDelete, ID: id}}
	if _, ok := s.propose(ctx, cmd, s.deadline()); !ok {
		return
	}
	ctx.SetStatusCode(http.StatusNoContent)
}

// testWebhookJSON is what a test delivery came to.
type testWebhookJSON struct {
	Delivered  bool    `json:"delivered"`
	Status     *int    `json:"status"`
	Error      *string `json:"error"`
	DurationMs int64   `json:"duration_ms"`
}

// testWebhook sends one signed test delivery now, from this node, and
// answers what came of it (200 whatever the receiver said).
func (s *Server) testWebhook(ctx *fasthttp.RequestCtx) {
	if !s.listGate(ctx, s.deadline()) {
		return
	}
	w := s.webhookOr404(ctx)
	if w == nil {
		return
	}
	if s.cfg.Webhooks == nil {
		writeError(ctx, newError("unavailable", "this node does not deliver webhooks"))
		return
	}
	start := time.Now()
	o := s.cfg.Webhooks.Test(context.Background(), w)
	j := testWebhookJSON{Delivered: o.OK(), DurationMs: min(time.Since(start).Milliseconds(), math.MaxInt32)}
	if o.Status != 0 {
		j.Status = &o.Status
	}
	if o.Err != nil {
		e := storage.TruncateWebhookError(o.Err.Error())
		j.Error = &e
	}
	writeJSON(ctx, http.StatusOK, j)
}
