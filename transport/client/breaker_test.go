package client

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestBreakerStates(t *testing.T) {
	var b breaker
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const threshold, cooldown = 3, time.Minute
	for i := range threshold - 1 {
		if tk, ok := b.allow(now, cooldown); !ok || tk != admitted {
			t.Fatalf("closed breaker refused (%d)", i)
		}
		if b.failed(admitted, now, threshold, "boom") {
			t.Fatalf("opened after %d failures", i+1)
		}
	}
	if !b.failed(admitted, now, threshold, "boom") {
		t.Fatal("did not open at the threshold")
	}
	if _, ok := b.allow(now.Add(cooldown-time.Nanosecond), cooldown); ok {
		t.Fatal("open breaker admitted during its cool-down")
	}
	// Half-open: one trial at a time.
	later := now.Add(cooldown)
	tk, ok := b.allow(later, cooldown)
	if !ok || tk != trial {
		t.Fatalf("no trial after the cool-down: %v %v", tk, ok)
	}
	if _, ok := b.allow(later, cooldown); ok {
		t.Fatal("a second trial while the first is in flight")
	}
	// An abandoned trial lets another go.
	b.abandoned(trial)
	if tk, ok = b.allow(later, cooldown); !ok || tk != trial {
		t.Fatal("no trial after an abandoned one")
	}
	// A failed trial reopens for a whole cool-down.
	if b.failed(trial, later, threshold, "still down") {
		t.Fatal("reopening reported as opening")
	}
	var st NodeState
	b.snapshot(&st, cooldown)
	if st.Breaker != BreakerOpen || !st.CooldownEnds.Equal(later.Add(cooldown)) || st.LastError != "still down" || st.ConsecutiveFailures != threshold+1 {
		t.Fatalf("%+v", st)
	}
	if _, ok := b.allow(later.Add(time.Second), cooldown); ok {
		t.Fatal("admitted right after a failed trial")
	}
	tk, _ = b.allow(later.Add(cooldown), cooldown)
	if !b.succeeded(tk) {
		t.Fatal("a successful trial did not report closing")
	}
	b.snapshot(&st, cooldown)
	if st.Breaker != BreakerClosed || st.ConsecutiveFailures != 0 || !st.CooldownEnds.IsZero() {
		t.Fatalf("%+v", st)
	}
	if b.succeeded(admitted) {
		t.Fatal("success on a closed breaker reported as closing")
	}
	for _, s := range []BreakerState{BreakerClosed, BreakerOpen, BreakerHalfOpen, 9} {
		if s.String() == "" {
			t.Fatal("unnamed state")
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "no nodes") {
		t.Fatalf("no nodes: %v", err)
	}
	cfg.Nodes = []string{"http://127.0.0.1:8080", "127.0.0.1:8081", "https://db.example.com"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.Nodes = []string{"ftp://x:1", "http://", "http://h:1/v1", "http://127.0.0.1:8080", "127.0.0.1:8080"}
	bad.Timeout = 0
	bad.MaxAttempts = 0
	bad.BackoffMax = time.Millisecond
	bad.BreakerThreshold = 0
	bad.Token = "a\r\nX-Evil: 1"
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"scheme", "no host", "only scheme", "twice", "timeout", "attempts", "below backoff base", "threshold", "token"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := New(bad); err == nil {
		t.Fatal("New accepted a bad config")
	}
}

func TestParseNode(t *testing.T) {
	for in, want := range map[string]endpoint{
		"http://127.0.0.1:8080":  {base: "http://127.0.0.1:8080", addr: "127.0.0.1:8080"},
		"127.0.0.1:8080":         {base: "http://127.0.0.1:8080", addr: "127.0.0.1:8080"},
		"http://127.0.0.1:8080/": {base: "http://127.0.0.1:8080", addr: "127.0.0.1:8080"},
		"https://db.example.com": {base: "https://db.example.com:443", addr: "db.example.com:443", tls: true},
		"http://[::1]:9000":      {base: "http://[::1]:9000", addr: "[::1]:9000"},
	} {
		if got, err := parseNode(in); err != nil || got != want {
			t.Errorf("%s: %+v %v", in, got, err)
		}
	}
}

func TestParseHeaders(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"1": time.Second, "0": 0, "-1": -1, "soon": -1, " 120 ": 2 * time.Minute,
		now.Add(3 * time.Second).Format(http.TimeFormat): 3 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):      0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", in, got, want)
		}
	}
	for in, want := range map[string]uint64{`"7"`: 7, `W/"8"`: 8, `"x"`: 0, ``: 0} {
		if got := parseETag(in); got != want {
			t.Errorf("ETag %q: %d", in, got)
		}
	}
}

func TestBackoffIsBounded(t *testing.T) {
	cfg := testConfig("127.0.0.1:1")
	cfg.BackoffBase = 10 * time.Millisecond
	cfg.BackoffMax = time.Second
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for retry := 1; retry < 100; retry++ {
		ceiling := min(cfg.BackoffBase<<min(retry-1, 20), cfg.BackoffMax)
		for range 20 {
			if d := c.backoff(retry); d < 0 || d >= ceiling {
				t.Fatalf("retry %d: %v outside [0, %v)", retry, d, ceiling)
			}
		}
	}
}

func TestAPIErrorFallback(t *testing.T) {
	e := parseAPIError(502, []byte("<html>\n  <body>Bad   Gateway</body>\n</html>"), "http://n:1", 0)
	if e.Code != "" || e.Message != "<html> <body>Bad Gateway</body> </html>" || !strings.Contains(e.Error(), "502") {
		t.Fatalf("%+v", e)
	}
	e = parseAPIError(404, nil, "http://n:1", 0)
	if e.Code != "not_found" || e.Message != "Not Found" || !IsNotFound(e) {
		t.Fatalf("%+v", e)
	}
	e = parseAPIError(400, []byte(`{"error":{"code":"bad_request","message":"m","details":{"field":"email"}}}`), "http://n:1", 0)
	if e.Field() != "email" || e.Error() != "troupe: 400 bad_request: m (field email) [http://n:1]" {
		t.Fatalf("%q", e.Error())
	}
	long := parseAPIError(500, []byte(strings.Repeat("é", 300)), "", 0)
	if len(long.Message) > 210 || !strings.HasSuffix(long.Message, "…") {
		t.Fatalf("%q", long.Message)
	}
}
