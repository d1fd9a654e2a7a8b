// Package webhook delivers the change feed to the webhooks registered
// through the API: on the leader only, per webhook in log order, in signed
// HTTP POSTs (Standard Webhooks), retried with backoff, with the
// acknowledged position reported back through Raft so that a new leader
// resumes from it. It holds the HTTP client with its SSRF guard, the
// signer, the backoff and each webhook's cursor; the cluster's state and
// feed reach it through Source (wired in by cmd/troupe).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// SecretPrefix starts every secret as the API shows it.
const SecretPrefix = "whsec_"

// FormatSecret is a secret as the API shows it: "whsec_" and the
// standard base64 of its bytes.
func FormatSecret(b []byte) string { return SecretPrefix + base64.StdEncoding.EncodeToString(b) }

// ParseSecret reads a secret as FormatSecret writes it.
func ParseSecret(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
	if err != nil || len(b) == 0 {
		return nil, errors.New(`a webhook secret is "whsec_" followed by standard base64`)
	}
	return b, nil
}

// Sign is the webhook-signature header of a delivery (Standard
// Webhooks): "v1," and the base64 HMAC-SHA256, keyed with the secret's
// bytes, of "<id>.<timestamp>.<body>".
func Sign(secret []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
