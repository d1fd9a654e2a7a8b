package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/storage"
)

// Ownership. Run's goroutine owns the workers map: it starts and stops
// the workers and reports their progress. Each worker goroutine owns its
// cursor and writes what it has come to into its progress under the
// worker's mu, which Run's goroutine reads to report. Lock order: none is
// held while taking another.

// Source is what the deliverer needs from the node (cluster.Node and its
// change feed, wired in by cmd/troupe).
type Source interface {
	// Leading: this node leads and has applied every entry committed
	// before its term.
	Leading() bool
	Webhooks() []*storage.Webhook
	AppliedIndex() uint64
	// Since and WaitProcessed are the change feed's (feed.Feed).
	Since(p feed.Position, dst []*feed.Change, max int) ([]*feed.Change, error)
	WaitProcessed(index uint64, deadline time.Time) error
	Processed() uint64
	// Report proposes the progress reports (CmdWebhookProgress).
	Report(ctx context.Context, reports []storage.WebhookReport) error
}

// Config configures a Deliverer; zero fields take the defaults.
type Config struct {
	AllowPrivate bool          // --webhook-allow-private
	Timeout      time.Duration // --webhook-timeout: each request
	// Render is a change's JSON as the watch stream sends it.
	Render func(*feed.Change) []byte
	// Now is the clock (tests inject one).
	Now func() time.Time
	// RetryBase and RetryMax bound the backoff between tries; FailAfter
	// is how long failures go on before the webhook is marked failing.
	RetryBase, RetryMax, FailAfter time.Duration
	// ReportEvery is how often progress is proposed (at most).
	ReportEvery time.Duration
	// Poll is how often leadership and the webhooks are looked at.
	Poll time.Duration
}

// Defaults and bounds of the configuration.
const (
	DefaultTimeout     = 10 * time.Second
	MinTimeout         = 100 * time.Millisecond
	MaxTimeout         = 5 * time.Minute
	DefaultRetryBase   = time.Second
	DefaultRetryMax    = time.Hour
	DefaultFailAfter   = 24 * time.Hour
	DefaultReportEvery = time.Second
	// MaxBatch is the most changes one delivery carries.
	MaxBatch = 100
)

// ValidateTimeout checks --webhook-timeout.
func ValidateTimeout(d time.Duration) error {
	if d < MinTimeout || d > MaxTimeout {
		return fmt.Errorf("--webhook-timeout %v must be from %v to %v", d, MinTimeout, MaxTimeout)
	}
	return nil
}

func (c *Config) defaults() {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RetryBase <= 0 {
		c.RetryBase = DefaultRetryBase
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.FailAfter <= 0 {
		c.FailAfter = DefaultFailAfter
	}
	if c.ReportEvery <= 0 {
		c.ReportEvery = DefaultReportEvery
	}
	if c.Poll <= 0 {
		c.Poll = 200 * time.Millisecond
	}
	if c.Render == nil {
		c.Render = func(c *feed.Change) []byte { return []byte(`{"id":` + strconv.Quote(c.ID) + `}`) }
	}
}

// Deliverer delivers the change feed to the webhooks while this node
// leads.
type Deliverer struct {
	cfg    Config
	src    Source
	log    *slog.Logger
	client *http.Client

	workers map[string]*worker // Run's goroutine only

	delivered, httpFailed, sendFailed, retries, gaps, failed *metrics.Counter
}

// New returns a deliverer; Run makes it work.
func New(cfg Config, src Source, logger *slog.Logger, set *metrics.Set) *Deliverer {
	cfg.defaults()
	d := &Deliverer{cfg: cfg, src: src, log: logger, client: newHTTPClient(cfg.AllowPrivate, cfg.Timeout),
		workers: map[string]*worker{}}
	if set == nil {
		set = metrics.NewSet()
	}
	d.delivered = set.NewCounter(`troupe_webhook_deliveries_total{result="ok"}`)
	d.httpFailed = set.NewCounter(`troupe_webhook_deliveries_total{result="http_error"}`)
	d.sendFailed = set.NewCounter(`troupe_webhook_deliveries_total{result="send_error"}`)
	d.retries = set.NewCounter(`troupe_webhook_retries_total`)
	d.gaps = set.NewCounter(`troupe_webhook_gaps_total`)
	d.failed = set.NewCounter(`troupe_webhook_failed_total`)
	count := func(st storage.WebhookStatus) func() float64 {
		return func() float64 {
			n := 0
			for _, w := range src.Webhooks() {
				if w.Status == st {
					n++
				}
			}
			return float64(n)
		}
	}
	set.NewGauge(`troupe_webhooks{status="active"}`, count(storage.WebhookActive))
	set.NewGauge(`troupe_webhooks{status="failing"}`, count(storage.WebhookFailing))
	set.NewGauge(`troupe_webhooks{status="gap"}`, count(storage.WebhookGap))
	set.NewGauge(`troupe_webhook_lag_max`, func() float64 {
		applied, lag := src.AppliedIndex(), uint64(0)
		for _, w := range src.Webhooks() {
			if w.Status == storage.WebhookActive && applied > w.AckedIndex {
				lag = max(lag, applied-w.AckedIndex)
			}
		}
		return float64(lag)
	})
	return d
}

// Run works until stop closes: while this node leads, one worker per
// active webhook; progress proposed at most every ReportEvery.
func (d *Deliverer) Run(stop <-chan struct{}) {
	poll := time.NewTicker(d.cfg.Poll)
	defer poll.Stop()
	report := time.NewTicker(d.cfg.ReportEvery)
	defer report.Stop()
	// Last: no connection (and its goroutines) outlives the deliverer.
	defer d.client.CloseIdleConnections()
	defer d.stopAll()
	for {
		select {
		case <-stop:
			return
		case <-poll.C:
			d.reconcile()
		case <-report.C:
			d.report()
		}
	}
}

// reconcile starts and stops workers as leadership and the webhooks say.
func (d *Deliverer) reconcile() {
	if !d.src.Leading() {
		if len(d.workers) > 0 {
			d.log.Info("webhook deliveries stop: this node no longer leads", slog.Int("webhooks", len(d.workers)))
			d.stopAll()
		}
		return
	}
	hooks := d.src.Webhooks()
	seen := make(map[string]bool, len(hooks))
	for _, w := range hooks {
		seen[w.ID] = true
		cur := d.workers[w.ID]
		if cur != nil && cur.hook.Gen == w.Gen {
			continue // same generation: running, or done until updated
		}
		start := feed.Position{Index: w.AckedIndex, N: w.AckedN}
		if cur != nil {
			cur.stop()
			if p := cur.progress().pos; start.Less(p) {
				start = p
			}
			delete(d.workers, w.ID)
		}
		if w.Status != storage.WebhookActive {
			// Parked until updated; keep a finished worker so the
			// generation is remembered.
			d.workers[w.ID] = parked(w)
			continue
		}
		d.workers[w.ID] = d.startWorker(w, start)
	}
	for id, wk := range d.workers {
		if !seen[id] {
			wk.stop()
			delete(d.workers, id)
		}
	}
}

// stopAll stops every worker: all are cancelled first, then waited for
// (a worker notices within a feed wait, waitChanges).
func (d *Deliverer) stopAll() {
	for _, wk := range d.workers {
		wk.cancel()
	}
	for id, wk := range d.workers {
		<-wk.done
		delete(d.workers, id)
	}
}

// waitChanges bounds how long a worker with nothing to send waits for the
// feed before it looks again (and at its context).
const waitChanges = 250 * time.Millisecond

// report proposes the progress of the workers that moved.
func (d *Deliverer) report() {
	if len(d.workers) == 0 || !d.src.Leading() {
		return
	}
	var rs []storage.WebhookReport
	var sent []*worker
	var seqs []uint64
	for _, wk := range d.workers {
		p := wk.progress()
		if p.seq == wk.reported {
			continue
		}
		rs = append(rs, storage.WebhookReport{ID: wk.hook.ID, Gen: wk.hook.Gen, AckedIndex: p.pos.Index, AckedN: p.pos.N,
			FailingSinceMs: ms(p.failingSince), LastAttemptMs: ms(p.lastAttempt), LastError: storage.TruncateWebhookError(p.lastError),
			Status: p.status, GapOldest: p.gapOldest})
		sent, seqs = append(sent, wk), append(seqs, p.seq)
	}
	if len(rs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.src.Report(ctx, rs); err != nil {
		d.log.Warn("cannot record webhook progress; will try again", slog.Any("err", err))
		return
	}
	for i, wk := range sent {
		wk.reported = seqs[i]
	}
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// progress is what a worker has come to.
type progress struct {
	seq          uint64 // bumped by every change below
	pos          feed.Position
	failingSince time.Time
	lastAttempt  time.Time
	lastError    string
	status       storage.WebhookStatus
	gapOldest    uint64
}

// worker delivers to one webhook, from its goroutine.
type worker struct {
	hook     storage.Webhook // as it was when the worker started
	cancel   context.CancelFunc
	done     chan struct{}
	reported uint64 // Run's goroutine: the seq last reported

	mu sync.Mutex
	p  progress
}

func parked(w *storage.Webhook) *worker {
	wk := &worker{hook: *w, cancel: func() {}, done: make(chan struct{})}
	wk.p.pos = feed.Position{Index: w.AckedIndex, N: w.AckedN}
	close(wk.done)
	return wk
}

func (wk *worker) stop() {
	wk.cancel()
	<-wk.done
}

func (wk *worker) progress() progress {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	return wk.p
}

func (wk *worker) update(f func(p *progress)) {
	wk.mu.Lock()
	f(&wk.p)
	wk.p.seq++
	wk.mu.Unlock()
}

func (d *Deliverer) startWorker(w *storage.Webhook, start feed.Position) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	wk := &worker{hook: *w, cancel: cancel, done: make(chan struct{})}
	wk.p = progress{pos: start, failingSince: msTime(w.FailingSinceMs), lastAttempt: msTime(w.LastAttemptMs), lastError: w.LastError}
	go d.deliverLoop(ctx, wk)
	return wk
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// deliverLoop delivers the webhook's changes after its position, in
// order, each batch until acknowledged, until ctx ends or the webhook
// fails for FailAfter or meets a gap.
func (d *Deliverer) deliverLoop(ctx context.Context, wk *worker) {
	defer close(wk.done)
	pos := wk.progress().pos
	var buf []*feed.Change
	batch := make([]*feed.Change, 0, MaxBatch)
	for ctx.Err() == nil {
		// Taken before reading: a change that comes after the read comes
		// with a later processed index, which the wait below waits for.
		processed := d.src.Processed()
		var upTo feed.Position
		var err error
		batch, upTo, buf, err = d.collect(wk.hook.Kinds, pos, batch[:0], buf)
		var gone *feed.GoneError
		if errors.As(err, &gone) {
			d.gaps.Inc()
			d.log.Error("webhook stopped: changes it has not received are no longer kept on the leader; re-sync the receiver, then PATCH the webhook with enabled:true to resume from then",
				slog.String("webhook", wk.hook.ID), slog.String("acked", pos.String()), slog.Uint64("oldest_kept", gone.Oldest))
			wk.update(func(p *progress) {
				p.status, p.gapOldest = storage.WebhookGap, gone.Oldest
				p.lastError = fmt.Sprintf("the changes after %s are no longer kept on the leader (the oldest it can deliver after is %d)", pos, gone.Oldest)
			})
			return
		}
		if len(batch) == 0 {
			if pos.Less(upTo) {
				pos = upTo // changes of other kinds only: nothing to send
				wk.update(func(p *progress) { p.pos = pos })
			}
			_ = d.src.WaitProcessed(processed+1, time.Now().Add(waitChanges))
			continue
		}
		if !d.send(ctx, wk, batch) {
			return
		}
		pos = upTo
		wk.update(func(p *progress) { p.pos = pos })
	}
}

// collect appends to batch the changes of kinds after pos, at most
// MaxBatch, and says up to where it looked (the last change sent, or of
// other kinds, examined).
func (d *Deliverer) collect(kinds uint8, pos feed.Position, batch, buf []*feed.Change) ([]*feed.Change, feed.Position, []*feed.Change, error) {
	upTo := pos
	for len(batch) < MaxBatch {
		var err error
		buf, err = d.src.Since(upTo, buf[:0], MaxBatch)
		if err != nil {
			return batch, upTo, buf, err
		}
		for _, c := range buf {
			upTo = c.Position
			if uint8(c.Kind)&kinds != 0 {
				batch = append(batch, c)
				if len(batch) == MaxBatch {
					break
				}
			}
		}
		if len(buf) < MaxBatch {
			break
		}
	}
	clear(buf)
	return batch, upTo, buf, nil
}

// Body is a delivery's body: {"changes":[change,…]}.
func Body(batch []*feed.Change, render func(*feed.Change) []byte) []byte {
	b := append(make([]byte, 0, 256*len(batch)), `{"changes":[`...)
	for i, c := range batch {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, c.Rendered(render)...)
	}
	return append(b, "]}"...)
}

// send delivers batch until the receiver acknowledges it (true), ctx
// ends, or failures have lasted FailAfter (false).
func (d *Deliverer) send(ctx context.Context, wk *worker, batch []*feed.Change) bool {
	body := Body(batch, d.cfg.Render)
	id := batch[0].String()
	for attempt := 1; ; attempt++ {
		now := d.cfg.Now()
		o := post(ctx, d.client, wk.hook.URL, wk.hook.Secret, id, now, body)
		if ctx.Err() != nil {
			return false
		}
		if o.OK() {
			d.delivered.Inc()
			wk.update(func(p *progress) {
				if !p.failingSince.IsZero() {
					d.log.Info("webhook delivers again", slog.String("webhook", wk.hook.ID))
				}
				p.lastAttempt, p.failingSince, p.lastError = now, time.Time{}, ""
			})
			return true
		}
		if o.Status != 0 {
			d.httpFailed.Inc()
		} else {
			d.sendFailed.Inc()
		}
		failed := false
		wk.update(func(p *progress) {
			if p.failingSince.IsZero() {
				p.failingSince = now
				d.log.Warn("webhook delivery failed; retrying with backoff", slog.String("webhook", wk.hook.ID), slog.String("id", id), slog.Any("err", o.Err))
			}
			p.lastAttempt, p.lastError = now, o.Err.Error()
			if now.Sub(p.failingSince) >= d.cfg.FailAfter {
				p.status, failed = storage.WebhookFailing, true
			}
		})
		if failed {
			d.failed.Inc()
			d.log.Error("webhook marked failing: its deliveries have failed for too long; PATCH it with enabled:true to resume",
				slog.String("webhook", wk.hook.ID), slog.Duration("failing_for", d.cfg.FailAfter), slog.Any("err", o.Err))
			return false
		}
		d.retries.Inc()
		t := time.NewTimer(Backoff(attempt, d.cfg.RetryBase, d.cfg.RetryMax, rand.Float64()))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// Test sends one signed test delivery to w now, from this node
// (whichever leads), and says what came of it. Its body is
// {"changes":[],"test":true}, its id "test-" and the time in ms.
func (d *Deliverer) Test(ctx context.Context, w *storage.Webhook) Outcome {
	now := d.cfg.Now()
	id := "test-" + strconv.FormatInt(now.UnixMilli(), 10)
	return post(ctx, d.client, w.URL, w.Secret, id, now, []byte(`{"changes":[],"test":true}`))
}

// CheckTarget checks a target against the SSRF guard as this deliverer
// is configured (see the package function).
func (d *Deliverer) CheckTarget(ctx context.Context, rawURL string) error {
	return CheckTarget(ctx, rawURL, d.cfg.AllowPrivate, nil)
}
