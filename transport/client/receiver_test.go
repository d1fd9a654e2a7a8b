package client_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/internal/webhook"
	"github.com/troupe-db/troupe/transport/client"
)

// The webhook receiver of README.md ("Receiving webhooks"): the code
// between the markers is in the README word for word (TestReadmeReceiver
// checks it), so what the README shows compiles and verifies real
// deliveries.

// README receiver begin
// receive answers 204 to a delivery signed with secret ("whsec_..."), 401 to any other.
func receive(secret string) http.HandlerFunc {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(r.Header.Get("webhook-id") + "." + r.Header.Get("webhook-timestamp") + "." + string(body)))
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		if !hmac.Equal([]byte(r.Header.Get("webhook-signature")), []byte(want)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// body is {"changes":[...]}: apply each once (its "<index>-<n>" is unique), then answer 2xx
		w.WriteHeader(http.StatusNoContent)
	}
}

// README receiver end

func TestReadmeReceiver(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, 32)
	secret := webhook.FormatSecret(raw)
	srv := httptest.NewServer(receive(secret))
	defer srv.Close()
	body := []byte(`{"changes":[{"index":7,"n":0,"kind":"user","op":"created","id":"u1","at":"2026-01-01T00:00:00.000Z"}]}`)
	send := func(sig string, b []byte) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(b))
		now := time.Now().Unix()
		req.Header.Set("webhook-id", "7-0")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now, 10))
		if sig == "" {
			sig = webhook.Sign(raw, "7-0", now, b)
		}
		req.Header.Set("webhook-signature", sig)
		// The client's verifier agrees with the receiver.
		verr := client.VerifyWebhook(secret, req.Header, b, time.Now(), 0)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if (verr == nil) != (resp.StatusCode == http.StatusNoContent) {
			t.Fatalf("VerifyWebhook %v, the receiver %d", verr, resp.StatusCode)
		}
		return resp.StatusCode
	}
	if code := send("", body); code != http.StatusNoContent {
		t.Fatalf("a signed delivery: %d", code)
	}
	if code := send(webhook.Sign(raw, "7-0", 1, body), body); code != http.StatusUnauthorized {
		t.Fatalf("a signature of another timestamp: %d", code)
	}
	forged := append([]byte(nil), body...)
	forged[len(forged)-3] = 'Y'
	if code := send(webhook.Sign(raw, "7-0", time.Now().Unix(), body), forged); code != http.StatusUnauthorized {
		t.Fatalf("a changed body: %d", code)
	}

	src, err := os.ReadFile("receiver_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(src), "// README receiver begin\n")
	block, _, _ = strings.Cut(block, "\n// README receiver end")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), block) {
		t.Fatalf("README.md does not show the receiver as this file has it:\n%s", block)
	}
}

func TestVerifyWebhookRefusals(t *testing.T) {
	raw := bytes.Repeat([]byte{1}, 32)
	secret := webhook.FormatSecret(raw)
	body := []byte(`{"changes":[]}`)
	now := time.Unix(1_800_000_000, 0)
	h := http.Header{}
	h.Set("webhook-id", "9-1")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", "v1,bm9wZQ== "+webhook.Sign(raw, "9-1", now.Unix(), body))
	if err := client.VerifyWebhook(secret, h, body, now.Add(time.Minute), 0); err != nil {
		t.Fatalf("among several signatures: %v", err)
	}
	if err := client.VerifyWebhook(secret, h, body, now.Add(10*time.Minute), 0); !errors.Is(err, client.ErrWebhookSignature) {
		t.Fatalf("an old delivery: %v", err)
	}
	if err := client.VerifyWebhook("whsec_%%", h, body, now, 0); !errors.Is(err, client.ErrWebhookSignature) {
		t.Fatalf("a bad secret: %v", err)
	}
	// The published Standard Webhooks vector.
	v := http.Header{}
	v.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	v.Set("webhook-timestamp", "1614265330")
	v.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	if err := client.VerifyWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", v, []byte(`{"test": 2432232314}`), time.Unix(1614265330, 0), 0); err != nil {
		t.Fatalf("the Standard Webhooks vector: %v", err)
	}
}
