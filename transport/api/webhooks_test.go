package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/cluster"
	"github.com/troupe-db/troupe/internal/webhook"
	"github.com/troupe-db/troupe/storage"
)

// hookReceiver is a webhook receiver on 127.0.0.1 that checks every
// signature with the secret it is given.
type hookReceiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	secret []byte
	ids    []string // the users created, in the order delivered
	tests  int
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	ts, _ := strconv.ParseInt(req.Header.Get("webhook-timestamp"), 10, 64)
	if r.secret == nil || req.Header.Get("webhook-signature") != webhook.Sign(r.secret, req.Header.Get("webhook-id"), ts, body) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var msg struct {
		Changes []struct {
			Kind, Op, ID string
		} `json:"changes"`
		Test bool `json:"test"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		r.t.Errorf("body %q: %v", body, err)
	}
	if msg.Test {
		r.tests++
	}
	for _, c := range msg.Changes {
		if c.Kind != "user" {
			r.t.Errorf("a %s change delivered to a users-only webhook", c.Kind)
		}
		r.ids = append(r.ids, c.ID)
	}
	w.WriteHeader(http.StatusNoContent)
}

func TestWebhooksDeliverOnARealNode(t *testing.T) {
	rcv := &hookReceiver{t: t}
	rcv.srv = httptest.NewServer(http.HandlerFunc(rcv.serve))
	defer rcv.srv.Close()

	var hooks *webhook.Deliverer
	ts := startServer(t, func(c *Config) {
		// The deliverer is built once the node exists (below); the
		// server reaches it through this indirection.
		c.Webhooks = &lateDeliverer{get: func() *webhook.Deliverer { return hooks }}
	})
	hooks = webhook.New(webhook.Config{AllowPrivate: true, Timeout: 2 * time.Second, Render: RenderChange, ReportEvery: 50 * time.Millisecond, Poll: 20 * time.Millisecond},
		ts.node, slog.New(slog.DiscardHandler), metrics.NewSet())
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); hooks.Run(stop) }()
	defer func() { close(stop); <-done }()

	// Refusals.
	for body, code := range map[string]string{
		`{}`:                         "bad_request",
		`{"url":"ftp://x.example/"}`: "bad_request",
		`{"url":"https://x.example/","kinds":[]}`:                                       "bad_request",
		`{"url":"https://x.example/","kinds":["x"]}`:                                    "bad_request",
		`{"url":"https://x.example/","description":"` + strings.Repeat("d", 501) + `"}`: "bad_request",
		`{"url":"http://` + strings.Repeat("a", 2048) + `/"}`:                           "bad_request",
	} {
		if r := ts.do("POST", "/v1/webhooks", body, nil, false); r.status != 400 || r.errorCode(t) != code {
			t.Errorf("%.60s: %d %s", body, r.status, r.body)
		}
	}

	r := ts.do("POST", "/v1/webhooks", `{"url":"`+rcv.srv.URL+`/hook","kinds":["users"],"description":"mirror"}`, nil, true)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var created struct {
		ID, URL, Secret, Status string
		Kinds                   []string
	}
	r.json(t, &created)
	secret, err := webhook.ParseSecret(created.Secret)
	if err != nil || len(secret) != 32 || created.Status != "active" || fmt.Sprint(created.Kinds) != "[users]" {
		t.Fatalf("created %+v: %v", created, err)
	}
	rcv.mu.Lock()
	rcv.secret = secret
	rcv.mu.Unlock()
	// The secret is shown once.
	if r := ts.do("GET", "/v1/webhooks/"+created.ID, "", nil, true); r.status != 200 || strings.Contains(string(r.body), created.Secret) {
		t.Fatalf("get: %d %s", r.status, r.body)
	}

	// A test delivery, answered with what the receiver said.
	r = ts.do("POST", "/v1/webhooks/"+created.ID+"/test", "", nil, true)
	var tested struct {
		Delivered bool
		Status    int
	}
	r.json(t, &tested)
	if r.status != 200 || !tested.Delivered || tested.Status != 204 {
		t.Fatalf("test delivery: %d %s", r.status, r.body)
	}

	var want []string
	for i := range 5 {
		u := ts.create(fmt.Sprintf("U%d", i), fmt.Sprintf("u%d@example.com", i))
		want = append(want, u["id"].(string))
		ts.do("POST", "/v1/docs", `{"title":"not delivered"}`, nil, false)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rcv.mu.Lock()
		got := append([]string(nil), rcv.ids...)
		rcv.mu.Unlock()
		if len(got) >= len(want) {
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("delivered %v, want %v", got, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v of %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The acknowledged position reaches the replicated state.
	for {
		var got struct {
			Status     string `json:"status"`
			AckedIndex uint64 `json:"acked_index"`
			LastError  *string
			LastAt     *string `json:"last_attempt_at"`
		}
		r := ts.do("GET", "/v1/webhooks/"+created.ID, "", nil, true)
		r.json(t, &got)
		if got.AckedIndex > 0 && got.LastAt != nil && got.LastError == nil && got.Status == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook %s", r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if r := ts.do("PATCH", "/v1/webhooks/"+created.ID, `{"enabled":false}`, nil, false); r.status != 400 {
		t.Fatalf("disable: %d %s", r.status, r.body)
	}
	if r := ts.do("PATCH", "/v1/webhooks/"+created.ID, `{"description":"renamed","enabled":true}`, nil, true); r.status != 200 || !strings.Contains(string(r.body), `"renamed"`) {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	if r := ts.do("GET", "/v1/webhooks", "", nil, true); r.status != 200 || !strings.Contains(string(r.body), created.ID) {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	if r := ts.do("DELETE", "/v1/webhooks/"+created.ID, "", nil, true); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := ts.do("GET", "/v1/webhooks/"+created.ID, "", nil, true); r.status != 404 {
		t.Fatalf("get after delete: %d %s", r.status, r.body)
	}
}

// Without --webhook-allow-private a target on loopback is refused, by
// address and by a name that resolves to it.
func TestWebhookTargetGuard(t *testing.T) {
	ts := startServer(t)
	for _, u := range []string{"http://127.0.0.1:9/h", "http://localhost:9/h", "http://10.0.0.1/h", "http://169.254.169.254/"} {
		r := ts.do("POST", "/v1/webhooks", `{"url":"`+u+`"}`, nil, true)
		if r.status != 400 || r.errorCode(t) != "target_not_allowed" {
			t.Errorf("%s: %d %s", u, r.status, r.body)
		}
	}
}

// lateDeliverer lets a test hand the server a deliverer made after it.
type lateDeliverer struct{ get func() *webhook.Deliverer }

func (l *lateDeliverer) CheckTarget(ctx context.Context, u string) error {
	return l.get().CheckTarget(ctx, u)
}

func (l *lateDeliverer) Test(ctx context.Context, w *storage.Webhook) webhook.Outcome {
	return l.get().Test(ctx, w)
}

// A receiver down while more changes come than the leader's feed keeps
// finds its webhook in status gap, with the oldest index the leader can
// deliver after; nothing after the gap is sent until it is re-enabled,
// which resumes from the re-enabling entry on.
func TestWebhookGapOnARealNode(t *testing.T) {
	var mu sync.Mutex
	down := true
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if down {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		var msg struct {
			Changes []struct{ ID string } `json:"changes"`
		}
		_ = json.Unmarshal(body, &msg)
		for _, c := range msg.Changes {
			ids = append(ids, c.ID)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	var hooks *webhook.Deliverer
	ts := startServerWith(t, func(c *cluster.Config) { c.Watch.MaxChanges = 4 }, func(c *Config) {
		c.Webhooks = &lateDeliverer{get: func() *webhook.Deliverer { return hooks }}
	})
	hooks = webhook.New(webhook.Config{AllowPrivate: true, Timeout: 2 * time.Second, Render: RenderChange, ReportEvery: 20 * time.Millisecond,
		Poll: 10 * time.Millisecond, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond}, ts.node, slog.New(slog.DiscardHandler), metrics.NewSet())
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); hooks.Run(stop) }()
	defer func() { close(stop); <-done }()

	r := ts.do("POST", "/v1/webhooks", `{"url":"`+srv.URL+`","kinds":["users"]}`, nil, true)
	var created struct{ ID string }
	r.json(t, &created)
	first := ts.create("G", "g@example.com")
	get := func() (status string, oldest uint64, lastError string) {
		var w struct {
			Status    string  `json:"status"`
			GapOldest *uint64 `json:"gap_oldest"`
			LastError *string `json:"last_error"`
		}
		ts.do("GET", "/v1/webhooks/"+created.ID, "", nil, true).json(t, &w)
		if w.GapOldest != nil {
			oldest = *w.GapOldest
		}
		if w.LastError != nil {
			lastError = *w.LastError
		}
		return w.Status, oldest, lastError
	}
	// Failing meanwhile, not failed: the batch in hand is retried.
	deadline := time.Now().Add(10 * time.Second)
	for _, _, e := get(); !strings.Contains(e, "502"); _, _, e = get() {
		if time.Now().After(deadline) {
			t.Fatalf("no failure recorded: %q", e)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// More changes than the feed keeps, while the first is retried.
	for i := range 12 {
		ts.create(fmt.Sprintf("G%d", i), fmt.Sprintf("g%d@example.com", i))
	}
	mu.Lock()
	down = false
	mu.Unlock()
	status, oldest, lastError := get()
	for ; status != "gap"; status, oldest, lastError = get() {
		if time.Now().After(deadline) {
			t.Fatalf("status %s", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if oldest == 0 || !strings.Contains(lastError, "no longer kept") {
		t.Fatalf("gap: oldest %d, last error %q", oldest, lastError)
	}
	mu.Lock()
	before := len(ids)
	if before != 1 || ids[0] != first["id"] {
		t.Fatalf("delivered %v: want the change in hand only, nothing across the gap", ids)
	}
	mu.Unlock()
	// Re-enabled: the changes after the PATCH are delivered.
	if r := ts.do("PATCH", "/v1/webhooks/"+created.ID, `{"enabled":true}`, nil, true); r.status != 200 || !strings.Contains(string(r.body), `"status":"active"`) {
		t.Fatalf("re-enable: %d %s", r.status, r.body)
	}
	u := ts.create("After", "after@example.com")
	for {
		mu.Lock()
		got := append([]string(nil), ids[before:]...)
		mu.Unlock()
		if len(got) == 1 && got[0] == u["id"] {
			break
		}
		if len(got) > 1 || time.Now().After(deadline) {
			t.Fatalf("after re-enabling: %v, want [%s]", got, u["id"])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
