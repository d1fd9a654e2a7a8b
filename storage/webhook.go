package storage

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Webhooks: the replicated registrations the leader delivers the change
// feed to (internal/webhook). A registration's definition, its secret and
// its acknowledged position are state like any other: they come through
// the log (CmdWebhook, CmdWebhookProgress) and live in the snapshot, so a
// new leader resumes from the last position the old one acknowledged.

// The versions that introduced webhooks: every version-gated branch of
// the decoders is written against these constants, so a renumbering at
// merge time is a one-line change.
const (
	cmdVersionWebhooks  = 8
	snapVersionWebhooks = 11
)

// Bounds of what a client controls in a webhook.
const (
	MaxWebhooks           = 100  // registrations per cluster (quota_exceeded beyond)
	MaxWebhookURL         = 2048 // bytes
	MaxWebhookDescription = 500  // bytes
	// MaxWebhookError bounds the last error kept (a receiver's answer is
	// cut to it).
	MaxWebhookError = 512
	// WebhookSecretBytes is the length of a secret (before base64).
	WebhookSecretBytes = 32
	// WebhookKinds is every kind of change a webhook may ask for (the
	// change feed's bits: users, docs, policies, members).
	WebhookKinds = 0x0f
)

// WebhookStatus says whether a webhook is delivered to.
type WebhookStatus uint8

// Statuses. Values are part of the log and snapshot formats.
const (
	// WebhookActive: delivered to.
	WebhookActive WebhookStatus = 0
	// WebhookFailing: every delivery failed for a day; not delivered to
	// until re-enabled (it then resumes from its acknowledged position).
	WebhookFailing WebhookStatus = 1
	// WebhookGap: the changes after its acknowledged position are no
	// longer kept by the leader (GapOldest is the oldest it keeps); not
	// delivered to until re-enabled, which resumes from the re-enabling
	// entry on.
	WebhookGap    WebhookStatus = 2
	lastWebhookSt               = WebhookGap
)

func (s WebhookStatus) String() string {
	switch s {
	case WebhookActive:
		return "active"
	case WebhookFailing:
		return "failing"
	case WebhookGap:
		return "gap"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Webhook is one registration with its delivery progress.
type Webhook struct {
	ID          string
	URL         string
	Kinds       uint8 // bits of the change feed's kinds
	Description string
	Secret      []byte
	CreatedMs   int64
	// Gen counts the updates: a progress report made for an older
	// generation moves the position on but changes no status.
	Gen    uint64
	Status WebhookStatus
	// Acked is the position acknowledged by the receiver: every change
	// up to it was delivered (AckedN = MaxUint32: every change of entry
	// AckedIndex).
	AckedIndex uint64
	AckedN     uint32
	// FailingSinceMs is the first failed attempt of the current run of
	// failures (0: the last attempt succeeded).
	FailingSinceMs int64
	LastAttemptMs  int64
	LastError      string
	// GapOldest is, with WebhookGap, the oldest index the leader could
	// deliver after.
	GapOldest uint64
}

// WebhookAction is what a CmdWebhook does.
type WebhookAction uint8

// Actions.
const (
	WebhookCreate WebhookAction = 1
	WebhookUpdate WebhookAction = 2
	WebhookDelete WebhookAction = 3
)

// WebhookFields are the fields a WebhookUpdate changes.
type WebhookFields uint8

// Fields.
const (
	WebhookFieldURL WebhookFields = 1 << iota
	WebhookFieldKinds
	WebhookFieldDescription
	// WebhookFieldEnable re-enables a failing or gapped webhook.
	WebhookFieldEnable
	webhookFieldsAll = WebhookFieldURL | WebhookFieldKinds | WebhookFieldDescription | WebhookFieldEnable
)

// WebhookCommand creates, updates or deletes a webhook. For a create,
// the id and secret were drawn by the node that took the request.
type WebhookCommand struct {
	Action      WebhookAction
	ID          string
	Fields      WebhookFields // WebhookUpdate
	URL         string
	Kinds       uint8
	Description string
	Secret      []byte // WebhookCreate
}

// WebhookReport is the leader's progress on one webhook.
type WebhookReport struct {
	ID             string
	Gen            uint64
	AckedIndex     uint64
	AckedN         uint32
	FailingSinceMs int64
	LastAttemptMs  int64
	LastError      string
	// Status, when not active, moves an active webhook of the same
	// generation to failing or gap (with GapOldest).
	Status    WebhookStatus
	GapOldest uint64
}

// AckedAfter reports whether position (index, n) is after the webhook's
// acknowledged position.
func (w *Webhook) AckedAfter(index uint64, n uint32) bool {
	return index > w.AckedIndex || index == w.AckedIndex && n > w.AckedN
}

// CheckWebhookURL checks a target's syntax: an absolute http or https URL
// with a host, no user information, at most MaxWebhookURL bytes. (Where
// it points is the transport's and the deliverer's check.)
func CheckWebhookURL(s string) *Error {
	bad := func(msg string) *Error { return &Error{Kind: KindBadRequest, Field: "url", Message: msg} }
	if s == "" {
		return bad("url is required: the http or https address to deliver to")
	}
	if len(s) > MaxWebhookURL {
		return bad(fmt.Sprintf("url is %d bytes; at most %d", len(s), MaxWebhookURL))
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("url does not parse: " + err.Error())
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return bad("url must start with http:// or https://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return bad("url has no host")
	}
	if u.User != nil {
		return bad("url must not carry user information (the secret signs each delivery)")
	}
	if u.Fragment != "" || strings.ContainsAny(s, " \t\r\n") {
		return bad("url must not have a fragment or white space")
	}
	return nil
}

// CheckWebhookDescription checks a description: valid UTF-8 of at most
// MaxWebhookDescription bytes.
func CheckWebhookDescription(s string) *Error {
	if len(s) > MaxWebhookDescription || !utf8.ValidString(s) {
		return &Error{Kind: KindBadRequest, Field: "description",
			Message: fmt.Sprintf("description must be valid UTF-8 of at most %d bytes", MaxWebhookDescription)}
	}
	return nil
}

// CheckWebhookKinds checks a kinds set: some of the feed's kinds.
func CheckWebhookKinds(k uint8) *Error {
	if k == 0 || k&^WebhookKinds != 0 {
		return &Error{Kind: KindBadRequest, Field: "kinds", Message: "kinds must name some of users, docs, policies, members"}
	}
	return nil
}

// validate checks a command as apply and the decoder see it.
func (c *WebhookCommand) validate() *Error {
	if c.ID == "" || len(c.ID) > 64 {
		return &Error{Kind: KindBadRequest, Field: "id", Message: "webhook id must be 1 to 64 bytes"}
	}
	switch c.Action {
	case WebhookCreate:
		if len(c.Secret) != WebhookSecretBytes {
			return &Error{Kind: KindBadRequest, Message: fmt.Sprintf("webhook secret must be %d bytes", WebhookSecretBytes)}
		}
		if e := CheckWebhookURL(c.URL); e != nil {
			return e
		}
		if e := CheckWebhookKinds(c.Kinds); e != nil {
			return e
		}
		return CheckWebhookDescription(c.Description)
	case WebhookUpdate:
		if c.Fields&WebhookFieldURL != 0 {
			if e := CheckWebhookURL(c.URL); e != nil {
				return e
			}
		}
		if c.Fields&WebhookFieldKinds != 0 {
			if e := CheckWebhookKinds(c.Kinds); e != nil {
				return e
			}
		}
		if c.Fields&WebhookFieldDescription != 0 {
			return CheckWebhookDescription(c.Description)
		}
	}
	return nil
}

// ApplyWebhook applies c to hooks (not changed: the result is a new map
// when anything changed) at log index, command time now.
func ApplyWebhook(hooks map[string]*Webhook, c *WebhookCommand, index uint64, now int64) (map[string]*Webhook, Result) {
	if e := c.validate(); e != nil {
		return hooks, Result{Err: e}
	}
	cur := hooks[c.ID]
	next := func() map[string]*Webhook {
		m := make(map[string]*Webhook, len(hooks)+1)
		for id, w := range hooks {
			m[id] = w
		}
		return m
	}
	switch c.Action {
	case WebhookCreate:
		if cur != nil {
			return hooks, Result{Err: &Error{Kind: KindConflict, Message: "a webhook with id " + c.ID + " exists"}}
		}
		if len(hooks) >= MaxWebhooks {
			return hooks, Result{Err: &Error{Kind: KindQuotaExceeded, Limit: MaxWebhooks,
				Message: fmt.Sprintf("the cluster has %d webhooks, the most it may have; delete one first", MaxWebhooks)}}
		}
		m := next()
		m[c.ID] = &Webhook{ID: c.ID, URL: c.URL, Kinds: c.Kinds, Description: c.Description,
			Secret: c.Secret, CreatedMs: now, Gen: 1, AckedIndex: index, AckedN: math.MaxUint32}
		return m, Result{}
	case WebhookUpdate:
		if cur == nil {
			return hooks, Result{Err: &Error{Kind: KindNotFound, Message: "no webhook " + c.ID}}
		}
		w := *cur
		w.Gen++
		if c.Fields&WebhookFieldURL != 0 {
			w.URL = c.URL
		}
		if c.Fields&WebhookFieldKinds != 0 {
			w.Kinds = c.Kinds
		}
		if c.Fields&WebhookFieldDescription != 0 {
			w.Description = c.Description
		}
		if c.Fields&WebhookFieldEnable != 0 && w.Status != WebhookActive {
			if w.Status == WebhookGap {
				// What was missed is lost: resume from this entry on.
				w.AckedIndex, w.AckedN, w.GapOldest = index, math.MaxUint32, 0
			}
			w.Status, w.FailingSinceMs, w.LastError = WebhookActive, 0, ""
		}
		m := next()
		m[c.ID] = &w
		return m, Result{}
	case WebhookDelete:
		if cur == nil {
			return hooks, Result{Err: &Error{Kind: KindNotFound, Message: "no webhook " + c.ID}}
		}
		m := next()
		delete(m, c.ID)
		return m, Result{}
	}
	return hooks, Result{Err: &Error{Kind: KindBadRequest, Message: fmt.Sprintf("unknown webhook action %d", c.Action)}}
}

// ApplyWebhookProgress applies the leader's reports: a position only
// ever moves forward; the rest is taken only from a report of the
// webhook's current generation (an update since makes older reports
// stale). Reports of deleted webhooks are ignored.
func ApplyWebhookProgress(hooks map[string]*Webhook, reports []WebhookReport) map[string]*Webhook {
	var m map[string]*Webhook
	for i := range reports {
		r := &reports[i]
		cur := hooks[r.ID]
		if cur == nil {
			continue
		}
		w := *cur
		if w.AckedAfter(r.AckedIndex, r.AckedN) {
			w.AckedIndex, w.AckedN = r.AckedIndex, r.AckedN
		}
		if r.Gen == w.Gen {
			w.FailingSinceMs, w.LastAttemptMs = r.FailingSinceMs, r.LastAttemptMs
			w.LastError = truncateUTF8(r.LastError, MaxWebhookError)
			if w.Status == WebhookActive && r.Status != WebhookActive {
				w.Status, w.GapOldest = r.Status, r.GapOldest
			}
		}
		if m == nil {
			m = make(map[string]*Webhook, len(hooks))
			for id, x := range hooks {
				m[id] = x
			}
		}
		m[r.ID] = &w
	}
	if m == nil {
		return hooks
	}
	return m
}

// truncateUTF8 cuts s to at most n bytes on a rune boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// TruncateWebhookError cuts an error message to what a report keeps.
func TruncateWebhookError(s string) string { return truncateUTF8(s, MaxWebhookError) }

// --- encoding ---

func (e *encoder) webhookCommand(c *WebhookCommand) {
	e.byte1(byte(c.Action))
	e.str(c.ID)
	switch c.Action {
	case WebhookCreate:
		e.str(c.URL)
		e.byte1(c.Kinds)
		e.str(c.Description)
		e.bytes(c.Secret)
	case WebhookUpdate:
		e.byte1(byte(c.Fields))
		if c.Fields&WebhookFieldURL != 0 {
			e.str(c.URL)
		}
		if c.Fields&WebhookFieldKinds != 0 {
			e.byte1(c.Kinds)
		}
		if c.Fields&WebhookFieldDescription != 0 {
			e.str(c.Description)
		}
	}
}

func (d *decoder) webhookCommand() *WebhookCommand {
	c := &WebhookCommand{Action: WebhookAction(d.byte1()), ID: d.str()}
	switch c.Action {
	case WebhookCreate:
		c.URL = d.str()
		c.Kinds = d.byte1()
		c.Description = d.str()
		c.Secret = d.bytes()
	case WebhookUpdate:
		c.Fields = WebhookFields(d.byte1())
		if c.Fields&^webhookFieldsAll != 0 {
			d.fail("unknown webhook fields %#x", c.Fields)
		}
		if c.Fields&WebhookFieldURL != 0 {
			c.URL = d.str()
		}
		if c.Fields&WebhookFieldKinds != 0 {
			c.Kinds = d.byte1()
		}
		if c.Fields&WebhookFieldDescription != 0 {
			c.Description = d.str()
		}
	case WebhookDelete:
	default:
		d.fail("unknown webhook action %d", c.Action)
	}
	return c
}

func (e *encoder) webhookReports(rs []WebhookReport) {
	e.uvarint(uint64(len(rs)))
	for i := range rs {
		r := &rs[i]
		e.str(r.ID)
		e.uvarint(r.Gen)
		e.uvarint(r.AckedIndex)
		e.uvarint(uint64(r.AckedN))
		e.varint(r.FailingSinceMs)
		e.varint(r.LastAttemptMs)
		e.str(r.LastError)
		e.byte1(byte(r.Status))
		e.uvarint(r.GapOldest)
	}
}

func (d *decoder) webhookReports() []WebhookReport {
	n := d.count(9)
	if d.err == nil && n > MaxWebhooks {
		d.fail("%d webhook reports", n)
	}
	var rs []WebhookReport
	for i := 0; i < n && d.err == nil; i++ {
		r := WebhookReport{ID: d.str(), Gen: d.uvarint(), AckedIndex: d.uvarint()}
		r.AckedN = d.uint32()
		r.FailingSinceMs = d.varint()
		r.LastAttemptMs = d.varint()
		r.LastError = d.str()
		r.Status = d.webhookStatus()
		r.GapOldest = d.uvarint()
		rs = append(rs, r)
	}
	return rs
}

func (d *decoder) uint32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("%d does not fit 32 bits", v)
	}
	return uint32(v)
}

func (d *decoder) webhookStatus() WebhookStatus {
	s := WebhookStatus(d.byte1())
	if d.err == nil && s > lastWebhookSt {
		d.fail("unknown webhook status %d", s)
	}
	return s
}

func (e *encoder) webhook(w *Webhook) {
	e.str(w.ID)
	e.str(w.URL)
	e.byte1(w.Kinds)
	e.str(w.Description)
	e.bytes(w.Secret)
	e.varint(w.CreatedMs)
	e.uvarint(w.Gen)
	e.byte1(byte(w.Status))
	e.uvarint(w.AckedIndex)
	e.uvarint(uint64(w.AckedN))
	e.varint(w.FailingSinceMs)
	e.varint(w.LastAttemptMs)
	e.str(w.LastError)
	e.uvarint(w.GapOldest)
}

func (d *decoder) webhook() *Webhook {
	w := &Webhook{ID: d.str(), URL: d.str(), Kinds: d.byte1(), Description: d.str(), Secret: d.bytes(),
		CreatedMs: d.varint(), Gen: d.uvarint()}
	w.Status = d.webhookStatus()
	w.AckedIndex = d.uvarint()
	w.AckedN = d.uint32()
	w.FailingSinceMs = d.varint()
	w.LastAttemptMs = d.varint()
	w.LastError = d.str()
	w.GapOldest = d.uvarint()
	if d.err == nil {
		c := WebhookCommand{Action: WebhookCreate, ID: w.ID, URL: w.URL, Kinds: w.Kinds, Description: w.Description, Secret: w.Secret}
		if e := c.validate(); e != nil {
			d.fail("webhook %q: %s", w.ID, e.Message)
		}
	}
	return w
}
