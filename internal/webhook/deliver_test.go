package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/storage"
)

// fakeSource is a node as the deliverer sees it: a feed of changes kept
// after floor, the replicated webhooks (progress applied as the FSM
// applies it) and leadership.
type fakeSource struct {
	mu        sync.Mutex
	leading   bool
	hooks     map[string]*storage.Webhook
	changes   []*feed.Change
	floor     feed.Position
	processed uint64
	progress  chan struct{}
	reports   int
}

func newFakeSource() *fakeSource {
	return &fakeSource{leading: true, progress: make(chan struct{})}
}

func (s *fakeSource) Leading() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.leading }
func (s *fakeSource) setLeading(v bool) {
	s.mu.Lock()
	s.leading = v
	s.mu.Unlock()
}

func (s *fakeSource) Webhooks() []*storage.Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*storage.Webhook
	for _, w := range s.hooks {
		out = append(out, w)
	}
	return out
}

func (s *fakeSource) hook(id string) storage.Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.hooks[id]
}

func (s *fakeSource) AppliedIndex() uint64 { return s.Processed() }

func (s *fakeSource) Processed() uint64 { s.mu.Lock(); defer s.mu.Unlock(); return s.processed }

func (s *fakeSource) Since(p feed.Position, dst []*feed.Change, max int) ([]*feed.Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Less(s.floor) {
		return dst, &feed.GoneError{Oldest: s.floor.Index}
	}
	i := sort.Search(len(s.changes), func(i int) bool { return p.Less(s.changes[i].Position) })
	return append(dst, s.changes[i:min(len(s.changes), i+max)]...), nil
}

func (s *fakeSource) WaitProcessed(index uint64, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		s.mu.Lock()
		done, ch := s.processed >= index, s.progress
		s.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return feed.ErrNotYet
		}
	}
}

func (s *fakeSource) Report(_ context.Context, rs []storage.WebhookReport) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = storage.ApplyWebhookProgress(s.hooks, rs)
	s.reports++
	return nil
}

// add appends one entry of n changes of kind k.
func (s *fakeSource) add(k feed.Kind, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.processed++
	for i := range n {
		s.changes = append(s.changes, &feed.Change{Position: feed.Position{Index: s.processed, N: uint32(i)}, Kind: k, Op: feed.OpCreated,
			ID: fmt.Sprintf("%s-%d-%d", k, s.processed, i)})
	}
	close(s.progress)
	s.progress = make(chan struct{})
}

func (s *fakeSource) apply(c *storage.WebhookCommand) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.processed++
	var r storage.Result
	s.hooks, r = storage.ApplyWebhook(s.hooks, c, s.processed, time.Now().UnixMilli())
	if r.Err != nil {
		panic(r.Err)
	}
}

func render(c *feed.Change) []byte {
	b, _ := json.Marshal(map[string]any{"index": c.Index, "n": c.N, "kind": c.Kind.String(), "id": c.ID})
	return b
}

// receiver records the changes delivered, checking each request's
// signature and id; fail says how to answer a request (0: 204).
type receiver struct {
	t        *testing.T
	secret   []byte
	mu       sync.Mutex
	got      []string // positions, in the order received
	requests int
	maxBatch int
	fail     func(n int) int
	srv      *httptest.Server
}

func newReceiver(t *testing.T, secret []byte, fail func(n int) int) *receiver {
	r := &receiver{t: t, secret: secret, fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || req.Header.Get("webhook-signature") != Sign(r.secret, id, sec, body) {
		r.t.Errorf("bad signature on %s", id)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var msg struct {
		Changes []struct {
			Index uint64 `json:"index"`
			N     uint32 `json:"n"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(body, &msg); err != nil || len(msg.Changes) == 0 {
		r.t.Errorf("body %q: %v", body, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if r.fail != nil {
		if code := r.fail(r.requests); code != 0 {
			w.WriteHeader(code)
			return
		}
	}
	first := fmt.Sprintf("%d-%d", msg.Changes[0].Index, msg.Changes[0].N)
	if id != first {
		r.t.Errorf("webhook-id %s, first change %s", id, first)
	}
	r.maxBatch = max(r.maxBatch, len(msg.Changes))
	for _, c := range msg.Changes {
		r.got = append(r.got, fmt.Sprintf("%d-%d", c.Index, c.N))
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fastConfig() Config {
	return Config{AllowPrivate: true, Timeout: 2 * time.Second, Render: render, RetryBase: time.Millisecond, RetryMax: 4 * time.Millisecond,
		ReportEvery: 10 * time.Millisecond, Poll: 5 * time.Millisecond}
}

func start(t *testing.T, cfg Config, src Source) func() {
	return startWith(t, cfg, src, nil)
}

func startWith(t *testing.T, cfg Config, src Source, set *metrics.Set) func() {
	d := New(cfg, src, slog.New(slog.DiscardHandler), set)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { d.Run(stop); close(done) }()
	var once sync.Once
	end := func() { once.Do(func() { close(stop); <-done }) }
	t.Cleanup(end)
	return end
}

var key = []byte("0123456789abcdef0123456789abcdef")

// Every change of the kinds asked for, in order, at most MaxBatch a
// request, the acknowledged position replicated; changes of other kinds
// are skipped.
func TestDeliverInOrderBatched(t *testing.T) {
	src := newFakeSource()
	rcv := newReceiver(t, key, nil)
	src.apply(&storage.WebhookCommand{Action: storage.WebhookCreate, ID: "w", URL: rcv.srv.URL, Kinds: uint8(feed.KindUser), Secret: key})
	var want []string
	for i := range 30 {
		src.add(feed.KindUser, 10)
		for n := range 10 {
			want = append(want, fmt.Sprintf("%d-%d", src.processed, n))
		}
		src.add(feed.KindDoc, i%3)
	}
	set := metrics.NewSet()
	startWith(t, fastConfig(), src, set)
	waitFor(t, "every change", func() bool { return len(rcv.received()) >= len(want) })
	if got := rcv.received(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received\n%v\nwant\n%v", got, want)
	}
	if rcv.maxBatch > MaxBatch || rcv.maxBatch < 2 {
		t.Fatalf("largest batch %d", rcv.maxBatch)
	}
	last := src.processed
	waitFor(t, "the position replicated", func() bool {
		w := src.hook("w")
		return w.AckedIndex >= last-1 // the last entry holds documents only (or none)
	})
	var text strings.Builder
	set.WritePrometheus(&text)
	for _, m := range []string{`troupe_webhook_deliveries_total{result="ok"} `, `troupe_webhooks{status="active"} 1`, `troupe_webhook_lag_max `} {
		if !strings.Contains(text.String(), m) {
			t.Errorf("metrics lack %s:\n%s", m, text.String())
		}
	}
}

// A receiver that fails for FailAfter (by the injected clock) marks the
// webhook failing, and deliveries stop until it is re-enabled; then they
// resume from the acknowledged position, nothing lost.
func TestFailingAfterADayAndReenabled(t *testing.T) {
	src := newFakeSource()
	var failing atomic.Bool
	failing.Store(true)
	rcv := newReceiver(t, key, func(int) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	src.apply(&storage.WebhookCommand{Action: storage.WebhookCreate, ID: "w", URL: rcv.srv.URL, Kinds: storage.WebhookKinds, Secret: key})
	src.add(feed.KindUser, 3)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	cfg := fastConfig()
	cfg.Now = func() time.Time { return time.Unix(0, clock.Add(int64(time.Hour))) }
	start(t, cfg, src)
	waitFor(t, "the failing status", func() bool { return src.hook("w").Status == storage.WebhookFailing })
	w := src.hook("w")
	if w.LastError == "" || w.FailingSinceMs == 0 || w.LastAttemptMs-w.FailingSinceMs < (24*time.Hour).Milliseconds() {
		t.Fatalf("failing webhook %+v", w)
	}
	rcv.mu.Lock()
	tries := rcv.requests
	rcv.mu.Unlock()
	if tries < 24 || tries > 26 {
		t.Fatalf("%d tries in a day of hourly clock steps", tries)
	}
	failing.Store(false)
	src.add(feed.KindUser, 1)
	src.apply(&storage.WebhookCommand{Action: storage.WebhookUpdate, ID: "w", Fields: storage.WebhookFieldEnable})
	waitFor(t, "deliveries resumed", func() bool { return len(rcv.received()) == 4 })
	if got := fmt.Sprint(rcv.received()); got != "[2-0 2-1 2-2 3-0]" {
		t.Fatalf("received %s", got)
	}
	waitFor(t, "the error cleared", func() bool { w := src.hook("w"); return w.LastError == "" && w.FailingSinceMs == 0 })
}

// A position older than what the feed keeps is a gap: reported with the
// oldest kept index, nothing delivered; re-enabling resumes from then.
func TestGapIsReported(t *testing.T) {
	src := newFakeSource()
	rcv := newReceiver(t, key, nil)
	src.apply(&storage.WebhookCommand{Action: storage.WebhookCreate, ID: "w", URL: rcv.srv.URL, Kinds: storage.WebhookKinds, Secret: key})
	for range 5 {
		src.add(feed.KindUser, 1)
	}
	src.mu.Lock()
	src.floor = src.changes[2].Position // 2-0 and 3-0 are dropped
	src.changes = src.changes[3:]
	src.mu.Unlock()
	start(t, fastConfig(), src)
	waitFor(t, "the gap status", func() bool { return src.hook("w").Status == storage.WebhookGap })
	if w := src.hook("w"); w.GapOldest != 4 || w.LastError == "" || w.AckedIndex != 1 || w.AckedN != math.MaxUint32 {
		t.Fatalf("gapped webhook %+v", w)
	}
	if n := len(rcv.received()); n != 0 {
		t.Fatalf("%d changes delivered across a gap", n)
	}
	src.apply(&storage.WebhookCommand{Action: storage.WebhookUpdate, ID: "w", Fields: storage.WebhookFieldEnable})
	src.add(feed.KindDoc, 2)
	waitFor(t, "deliveries from the re-enabling on", func() bool { return len(rcv.received()) == 2 })
	if got := fmt.Sprint(rcv.received()); got != "[8-0 8-1]" {
		t.Fatalf("received %s", got)
	}
}

// Leadership moves while a delivery is retried: the new leader's
// deliverer resumes from the replicated position. The receiver sees every
// change, in order, some perhaps twice, never a gap.
func TestResumeOnNewLeader(t *testing.T) {
	src := newFakeSource()
	rcv := newReceiver(t, key, func(n int) int {
		if n%7 == 0 {
			return http.StatusInternalServerError
		}
		return 0
	})
	src.apply(&storage.WebhookCommand{Action: storage.WebhookCreate, ID: "w", URL: rcv.srv.URL, Kinds: storage.WebhookKinds, Secret: key})
	for range 40 {
		src.add(feed.KindUser, 3)
	}
	end := start(t, fastConfig(), src)
	waitFor(t, "some deliveries", func() bool { return len(rcv.received()) > 0 })
	src.setLeading(false)
	end()
	for range 40 {
		src.add(feed.KindDoc, 2)
	}
	src.setLeading(true)
	start(t, fastConfig(), src)
	waitFor(t, "every change", func() bool {
		got := rcv.received()
		return len(got) > 0 && got[len(got)-1] == fmt.Sprintf("%d-1", src.Processed())
	})
	// In order, contiguous, duplicates only as a replay of a suffix.
	var all []string
	src.mu.Lock()
	for _, c := range src.changes {
		all = append(all, c.String())
	}
	src.mu.Unlock()
	got := rcv.received()
	next := 0
	for _, p := range got {
		switch {
		case next < len(all) && p == all[next]:
			next++
		default:
			i := indexOf(all, p)
			if i < 0 || i >= next {
				t.Fatalf("%s out of order (expected %s)", p, all[min(next, len(all)-1)])
			}
			next = i + 1 // a replay from an acknowledged position
		}
	}
	if next != len(all) {
		t.Fatalf("received up to %d of %d", next, len(all))
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
