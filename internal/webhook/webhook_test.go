package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The published Standard Webhooks test vector.
func TestSignStandardWebhooksVector(t *testing.T) {
	secret, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	if s := FormatSecret(secret); s != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" {
		t.Fatalf("formatted %s", s)
	}
	if _, err := ParseSecret("whsec_!!"); err == nil {
		t.Fatal("a secret that is not base64 parsed")
	}
}

func TestBackoffBounds(t *testing.T) {
	base, top := time.Second, time.Hour
	prevMax := time.Duration(0)
	for attempt := 1; attempt <= 40; attempt++ {
		lo, hi := Backoff(attempt, base, top, 0), Backoff(attempt, base, top, 0.999999)
		if lo > hi || hi > top || lo < base/2 {
			t.Fatalf("attempt %d: [%v, %v]", attempt, lo, hi)
		}
		if hi < prevMax {
			t.Fatalf("attempt %d: waits shrink: %v after %v", attempt, hi, prevMax)
		}
		prevMax = hi
		if attempt <= 10 {
			want := base << (attempt - 1)
			if hi > want || lo != want/2 {
				t.Fatalf("attempt %d: [%v, %v], want [%v, %v]", attempt, lo, hi, want/2, want)
			}
		}
	}
	if lo := Backoff(40, base, top, 0); lo != top/2 {
		t.Fatalf("late attempts wait at least %v, want %v", lo, top/2)
	}
}

func TestCheckTarget(t *testing.T) {
	ctx := context.Background()
	resolve := func(addrs ...string) Resolver {
		return func(context.Context, string) ([]netip.Addr, error) {
			var out []netip.Addr
			for _, a := range addrs {
				out = append(out, netip.MustParseAddr(a))
			}
			return out, nil
		}
	}
	for _, tc := range []struct {
		url   string
		addrs []string
		why   string
	}{
		{"http://127.0.0.1:8080/h", nil, "loopback"},
		{"http://[::1]/h", nil, "loopback"},
		{"http://10.1.2.3/h", nil, "private"},
		{"http://192.168.1.1/h", nil, "private"},
		{"http://100.64.0.1/h", nil, "private"},
		{"http://169.254.169.254/latest/meta-data", nil, "link-local"},
		{"http://0.0.0.0/h", nil, "unspecified"},
		{"http://224.0.0.1/h", nil, "multicast"},
		{"http://[::ffff:127.0.0.1]/h", nil, "loopback"},
		// A name that resolves to loopback, among public addresses.
		{"https://hooks.example.com/h", []string{"93.184.216.34", "127.0.0.1"}, "loopback"},
		{"https://hooks.example.com/h", []string{"93.184.216.34"}, ""},
		{"https://8.8.8.8/h", nil, ""},
	} {
		err := CheckTarget(ctx, tc.url, false, resolve(tc.addrs...))
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("%s: %v", tc.url, err)
		case tc.why != "" && (!errors.Is(err, ErrForbiddenTarget) || !strings.Contains(err.Error(), tc.why)):
			t.Errorf("%s: %v, want a %s refusal", tc.url, err, tc.why)
		}
		if err := CheckTarget(ctx, tc.url, true, resolve(tc.addrs...)); err != nil {
			t.Errorf("%s with private targets allowed: %v", tc.url, err)
		}
	}
	// The real resolver: localhost is loopback.
	if err := CheckTarget(ctx, "http://localhost:1/", false, nil); !errors.Is(err, ErrForbiddenTarget) {
		t.Fatalf("localhost: %v", err)
	}
}

// At dial time the guard sees the address dialled: a name resolving to
// 127.0.0.1 is refused even though it passed (or skipped) the check at
// creation, and redirects are not followed.
func TestClientGuardsDialAndRedirects(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	guarded := newHTTPClient(false, 2*time.Second)
	o := post(context.Background(), guarded, "http://localhost:"+port+"/h", []byte("k"), "1-0", time.Now(), []byte(`{}`))
	if !errors.Is(o.Err, ErrForbiddenTarget) || hits != 0 {
		t.Fatalf("guarded dial to localhost: %+v, %d requests reached it", o, hits)
	}
	open := newHTTPClient(true, 2*time.Second)
	o = post(context.Background(), open, "http://localhost:"+port+"/h", []byte("k"), "1-0", time.Now(), []byte(`{}`))
	if o.OK() || o.Status != http.StatusFound || hits != 1 || !strings.Contains(o.Err.Error(), "redirects are not followed") {
		t.Fatalf("redirect: %+v (hits %d)", o, hits)
	}
}
