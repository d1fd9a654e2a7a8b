package storage

import (
	"math/rand/v2"
	"testing"
	"time"
)

func mustPolicy(t *testing.T, p Policy) Policy {
	t.Helper()
	if e := p.Validate(); e != nil {
		t.Fatal(e)
	}
	return p
}

func TestGCRAExactPerWindow(t *testing.T) {
	for _, tc := range []struct {
		limit, burst uint32
		windowMs     int64
	}{{100, 0, 1000}, {10, 1, 1000}, {7, 3, 60_000}, {1000, 50, 1}, {3, 0, 10}} {
		p := mustPolicy(t, Policy{Name: "p", Limit: tc.limit, Burst: tc.burst, WindowMs: tc.windowMs})
		var b Bucket
		now := int64(1_000_000)
		// A full bucket lets exactly Burst through at once.
		n := 0
		for p.Decide(&b, 1, now).Allowed {
			n++
		}
		if n != int(p.Burst) {
			t.Fatalf("%+v: %d at once, want %d", p, n, p.Burst)
		}
		// Then, asking at every emission instant (and in between), one more
		// per interval: Limit per window when the interval divides the
		// window, else (rounded up) a hair fewer, never more.
		window := p.WindowMs * int64(time.Millisecond)
		step := max(p.Interval()/2, 1)
		allowed := 0
		end := now + 10*window
		for at := now + step; ; at += step {
			at = min(at, end)
			for p.Decide(&b, 1, at).Allowed {
				allowed++
			}
			if at == end {
				break
			}
		}
		want := int(10 * window / p.Interval())
		if allowed != want || want > 10*int(p.Limit) || (window%int64(p.Limit) == 0 && want != 10*int(p.Limit)) {
			t.Fatalf("%+v: %d allowed in 10 windows, want %d (limit %d per window)", p, allowed, want, p.Limit)
		}
	}
}

func TestGCRADecisionFields(t *testing.T) {
	p := mustPolicy(t, Policy{Name: "p", Limit: 10, WindowMs: 1000, Burst: 5}) // one per 100 ms
	ms := int64(time.Millisecond)
	var b Bucket
	d := p.Decide(&b, 1, 0)
	if !d.Allowed || d.Remaining != 4 || d.ResetNs != 100*ms || d.RetryAfterNs != 0 || d.Limit != 10 {
		t.Fatalf("first: %+v", d)
	}
	d = p.Decide(&b, 4, 0)
	if !d.Allowed || d.Remaining != 0 || d.ResetNs != 500*ms {
		t.Fatalf("cost 4: %+v", d)
	}
	d = p.Decide(&b, 1, 0)
	if d.Allowed || !d.Denied || d.RetryAfterNs != 100*ms || d.Remaining != 0 {
		t.Fatalf("over: %+v", d)
	}
	// A denial spends nothing: 100 ms later one passes.
	if d = p.Decide(&b, 1, 100*ms); !d.Allowed {
		t.Fatalf("after retry-after: %+v", d)
	}
	if d = p.Decide(&b, 6, 10_000*ms); d.Allowed || d.RetryAfterNs != -1 {
		t.Fatalf("cost above burst: %+v", d)
	}
	if !b.Full(10_000 * ms) {
		t.Fatal("a bucket unused for long is not full")
	}
	shadow := p
	shadow.Shadow = true
	var sb Bucket
	for range 5 {
		shadow.Decide(&sb, 1, 0)
	}
	if d = shadow.Decide(&sb, 1, 0); !d.Allowed || !d.Denied {
		t.Fatalf("shadow: %+v", d)
	}
}

// TestGCRANeverOverLimit: whatever the arrival pattern, no window of
// length W ever holds more than Burst + Limit allowed requests, and over
// a long run the rate is at most Limit per W.
func TestGCRANeverOverLimit(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		p := mustPolicy(t, Policy{Name: "p", Limit: 1 + uint32(r.IntN(50)), WindowMs: 1 + r.Int64N(2000), Burst: uint32(r.IntN(20))})
		window := p.WindowMs * int64(time.Millisecond)
		var b Bucket
		var times []int64
		now := int64(0)
		for range 5000 {
			now += r.Int64N(2 * window / int64(p.Limit))
			if p.Decide(&b, 1+uint32(r.IntN(2)), now).Allowed {
				times = append(times, now)
			}
		}
		j := 0
		for i := range times {
			for times[i]-times[j] >= window {
				j++
			}
			if n := i - j + 1; n > int(p.Burst)*2+int(p.Limit)*2 {
				t.Fatalf("%+v: %d allowed within one window", p, n)
			}
		}
		if len(times) > 0 {
			span := times[len(times)-1] - times[0]
			if maxN := int64(p.Burst) + span/p.Interval() + 1; int64(len(times)) > maxN {
				t.Fatalf("%+v: %d allowed over %v, at most %d", p, len(times), time.Duration(span), maxN)
			}
		}
	}
}

func TestPolicyValidation(t *testing.T) {
	for name, p := range map[string]Policy{
		"no name":      {Limit: 1, WindowMs: 1},
		"bad name":     {Name: "a b", Limit: 1, WindowMs: 1},
		"long name":    {Name: string(make([]byte, 65)), Limit: 1, WindowMs: 1},
		"zero limit":   {Name: "p", WindowMs: 1},
		"zero window":  {Name: "p", Limit: 1},
		"long window":  {Name: "p", Limit: 1, WindowMs: MaxWindowMs + 1},
		"huge limit":   {Name: "p", Limit: MaxPolicyLimit + 1, WindowMs: 1000},
		"huge burst":   {Name: "p", Limit: 1, WindowMs: 1, Burst: MaxPolicyLimit + 1},
		"sub-ns rate":  {Name: "p", Limit: 2_000_000, WindowMs: 1},
		"negative win": {Name: "p", Limit: 1, WindowMs: -5},
	} {
		if e := p.Validate(); e == nil || e.Kind != KindBadRequest {
			t.Errorf("%s: %v", name, e)
		}
	}
	p := Policy{Name: "a-b_c.d", Limit: 5, WindowMs: 1000}
	if e := p.Validate(); e != nil || p.Burst != 5 {
		t.Fatalf("good policy: %v %+v", e, p)
	}
}

func TestParseRateLimit(t *testing.T) {
	p, on, err := ParseRateLimit("default", "100/1s")
	if err != nil || !on || p.Limit != 100 || p.WindowMs != 1000 || p.Burst != 100 || p.Name != "default" {
		t.Fatalf("100/1s: %+v %v %v", p, on, err)
	}
	if _, on, err := ParseRateLimit("default", "off"); err != nil || on {
		t.Fatal("off")
	}
	for _, bad := range []string{"", "100", "100/", "/1s", "x/1s", "100/1x", "100/1us", "0/1s", "100/0s", "-1/1s", "100/1500us"} {
		if _, _, err := ParseRateLimit("default", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func BenchmarkGCRADecide(b *testing.B) {
	p := Policy{Name: "p", Limit: 1000, WindowMs: 1000}
	if e := p.Validate(); e != nil {
		b.Fatal(e)
	}
	buckets := make([]Bucket, 1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Decide(&buckets[i&1023], 1, int64(i)*1000)
	}
}
