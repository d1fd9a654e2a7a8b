package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseServeFlagsEnvDefaults(t *testing.T) {
	c, err := parseServe([]string{"--insecure", "--http-addr", "127.0.0.1:9000"}, io.Discard,
		env(map[string]string{"TROUPE_HTTP_ADDR": "127.0.0.1:1", "TROUPE_USER_SHARDS": "16", "TROUPE_REQUEST_TIMEOUT": "3s"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.HTTPAddr != "127.0.0.1:9000" {
		t.Fatalf("flag must win over env: %s", c.HTTP.HTTPAddr)
	}
	if c.Node.UserShards != 16 || !c.Explicit["user-shards"] || c.HTTP.RequestTimeout != 3*time.Second {
		t.Fatalf("env not applied: %+v", c.Node)
	}
	if c.Node.DataDir != "./troupe-data" || c.Node.RaftAddr != "127.0.0.1:7080" || c.Explicit["data"] {
		t.Fatalf("defaults: %+v", c.Node)
	}
	if c.Node.LeaderLeaseTimeout != 500*time.Millisecond {
		t.Fatalf("leader lease %v", c.Node.LeaderLeaseTimeout)
	}
	if c, err := parseServe([]string{"--insecure", "--raft-heartbeat-timeout", "3s", "--raft-election-timeout", "3s"}, io.Discard, env(nil)); err != nil || c.Node.LeaderLeaseTimeout != 1500*time.Millisecond {
		t.Fatalf("leader lease with a 3s heartbeat: %v", err)
	}
	if c.HTTP.MaxMembersPerDocument != 1000 || c.HTTP.MaxLinksPerDocument != 100 {
		t.Fatalf("member and link limits: %d, %d", c.HTTP.MaxMembersPerDocument, c.HTTP.MaxLinksPerDocument)
	}
	if c.HTTP.MaxDocumentsPerUser != 10_000 || c.HTTP.DocumentHistoryBytes != 16<<20 {
		t.Fatalf("document limits: %d, %d", c.HTTP.MaxDocumentsPerUser, c.HTTP.DocumentHistoryBytes)
	}
}

func TestParseServeRejects(t *testing.T) {
	cases := map[string][]string{
		"bad shards":              {"--insecure", "--user-shards", "6"},
		"join and bootstrap":      {"--insecure", "--join", "http://127.0.0.1:8081", "--bootstrap"},
		"bad join url":            {"--insecure", "--join", "ftp://127.0.0.1:8081"},
		"join, no advertise":      {"--insecure", "--join", "127.0.0.1:8081", "--http-addr", "0.0.0.0:8080"},
		"expect without peers":    {"--insecure", "--bootstrap-expect", "3"},
		"half tls":                {"--insecure", "--tls-cert", "node.pem"},
		"missing tls files":       {"--insecure", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem", "--tls-ca", "/nonexistent/ca.pem"},
		"expect out of range":     {"--insecure", "--bootstrap-expect", "12", "--join", "127.0.0.1:8081"},
		"bad log level":           {"--insecure", "--log-level", "loud"},
		"access ttl too long":     {"--access-token-ttl", "48h"},
		"bad rate limit":          {"--insecure", "--rate-limit", "lots"},
		"bad limit mode":          {"--insecure", "--rate-limit-mode", "planetary"},
		"bad trusted proxy":       {"--insecure", "--trusted-proxies", "10.0.0.0/33"},
		"bad address":             {"--insecure", "--http-addr", "nonsense"},
		"bad grpc address":        {"--insecure", "--grpc-addr", "nonsense"},
		"grpc port out of range":  {"--insecure", "--grpc-addr", "127.0.0.1:70000"},
		"stray argument":          {"--insecure", "extra"},
		"tiny argon2":             {"--insecure", "--argon2-memory-kib", "1"},
		"bad node id":             {"--insecure", "--node-id", "a b"},
		"unspecified advertise":   {"--insecure", "--advertise-raft", "0.0.0.0:7080"},
		"no connections":          {"--insecure", "--max-connections", "0"},
		"too many streams":        {"--insecure", "--max-streams", "1000001"},
		"no streams per user":     {"--insecure", "--max-streams-per-user", "0"},
		"no presence":             {"--insecure", "--max-presence-per-document", "0"},
		"no documents per user":   {"--insecure", "--max-documents-per-user", "0"},
		"no members per document": {"--insecure", "--max-members-per-document", "0"},
		"too many links":          {"--insecure", "--max-links-per-document", "10001"},
		"no named versions":       {"--insecure", "--max-named-versions-per-document", "0"},
		"tiny named bytes":        {"--insecure", "--max-named-version-bytes-per-user", "1000"},
		"tiny wal segments":       {"--insecure", "--raft-wal-segment-size", "1000"},
		"many trailing logs":      {"--insecure", "--raft-trailing-logs", "20000000"},
		"tiny document history":   {"--insecure", "--document-history-bytes", "1000"},
		"huge document history":   {"--insecure", "--document-history-bytes", "2147483648"},
		"retention too short":     {"--insecure", "--idempotency-retention", "9s"},
		"retention too long":      {"--insecure", "--idempotency-retention", "25h"},
		"no idempotency keys":     {"--insecure", "--max-idempotency-keys", "0"},
		"no users":                {"--insecure", "--max-users", "0"},
		"too many users":          {"--insecure", "--max-users", "4294967297"},
		"too many idem. keys":     {"--insecure", "--max-idempotency-keys", "4294967297"},
		"no watch history":        {"--insecure", "--watch-history", "0"},
		"huge watch history":      {"--insecure", "--watch-history", "10000001"},
		"tiny watch history":      {"--insecure", "--watch-history-bytes", "1000"},
		"instant webhook timeout": {"--insecure", "--webhook-timeout", "1ms"},
		"endless webhook timeout": {"--insecure", "--webhook-timeout", "1h"},
	}
	for name, args := range cases {
		if _, err := parseServe(args, io.Discard, env(nil)); err == nil {
			t.Errorf("%s: accepted %v", name, args)
		}
	}
	if _, err := parseServe([]string{"--insecure", "--max-streams-per-user", "0"}, io.Discard, env(nil)); err == nil ||
		!strings.Contains(err.Error(), "max-streams-per-user 0 must be from 1 to 100000") {
		t.Errorf("out of range: %v", err)
	}
	if _, err := parseServe([]string{"--insecure", "--watch-history", "0"}, io.Discard, env(nil)); err == nil ||
		!strings.Contains(err.Error(), "watch history (--watch-history) 0 must be from 1 to 10000000 changes") {
		t.Errorf("watch history out of range: %v", err)
	}
	if _, err := parseServe([]string{"--insecure", "--webhook-timeout", "0s"}, io.Discard, env(nil)); err == nil ||
		!strings.Contains(err.Error(), "--webhook-timeout 0s must be from 100ms to 5m0s") {
		t.Errorf("webhook timeout out of range: %v", err)
	}
	if c, err := parseServe([]string{"--insecure"}, io.Discard, env(nil)); err != nil || c.Webhooks.Timeout != 10*time.Second || c.Webhooks.AllowPrivate {
		t.Errorf("webhook defaults: %+v, %v", c.Webhooks, err)
	}
	if c, err := parseServe([]string{"--insecure"}, io.Discard, env(nil)); err != nil || c.Node.Watch.MaxChanges != 100_000 || c.Node.Watch.MaxBytes != 64<<20 {
		t.Errorf("watch history defaults: %+v, %v", c.Node.Watch, err)
	}
	if _, err := parseServe([]string{"--insecure", "--grpc-addr", "8081"}, io.Discard, env(nil)); err == nil ||
		!strings.Contains(err.Error(), `--grpc-addr "8081": give host:port with a port from 0 to 65535`) {
		t.Errorf("bad grpc address: %v", err)
	}
	if c, err := parseServe([]string{"--insecure", "--grpc-addr", "127.0.0.1:8081"}, io.Discard, env(nil)); err != nil || c.GRPCAddr != "127.0.0.1:8081" {
		t.Errorf("grpc address: %v", err)
	}
	if _, err := parseServe([]string{"--insecure"}, io.Discard, env(map[string]string{"TROUPE_USER_SHARDS": "many"})); err == nil ||
		!strings.Contains(err.Error(), "TROUPE_USER_SHARDS") {
		t.Errorf("bad env value: %v", err)
	}
}

func TestIdempotencyRetentionRange(t *testing.T) {
	for _, ok := range []string{"10s", "10m", "24h"} {
		c, err := parseServe([]string{"--insecure", "--idempotency-retention", ok}, io.Discard, env(nil))
		if err != nil {
			t.Fatalf("--idempotency-retention %s: %v", ok, err)
		}
		if want, _ := time.ParseDuration(ok); c.Node.IdempotencyRetention != want {
			t.Fatalf("--idempotency-retention %s: got %v", ok, c.Node.IdempotencyRetention)
		}
	}
	for _, bad := range []string{"1s", "9999ms", "24h1s", "0s"} {
		_, err := parseServe([]string{"--insecure", "--idempotency-retention", bad}, io.Discard, env(nil))
		if err == nil || !strings.Contains(err.Error(), "--idempotency-retention") || !strings.Contains(err.Error(), "out of range 10s..24h") {
			t.Errorf("--idempotency-retention %s: %v", bad, err)
		}
	}
	_, err := parseServe([]string{"--insecure"}, io.Discard, env(map[string]string{"TROUPE_IDEMPOTENCY_RETENTION": "5s"}))
	if err == nil || !strings.Contains(err.Error(), "out of range 10s..") {
		t.Errorf("TROUPE_IDEMPOTENCY_RETENTION=5s: %v", err)
	}
}

func TestSettleNodeID(t *testing.T) {
	dir := t.TempDir()
	id, err := settleNodeID(dir, "alpha", true)
	if err != nil || id != "alpha" {
		t.Fatal(id, err)
	}
	if id, err := settleNodeID(dir, "node1", false); err != nil || id != "alpha" {
		t.Fatalf("stored id not kept: %s %v", id, err)
	}
	if _, err := settleNodeID(dir, "beta", true); err == nil {
		t.Fatal("a different explicit id was accepted")
	}
}

func TestFirstAdminGeneratesPasswordFile(t *testing.T) {
	dir := t.TempDir()
	c, err := parseServe([]string{"--insecure", "--data", dir, "--argon2-memory-kib", "64", "--argon2-time", "1"}, io.Discard, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TROUPE_ADMIN_PASSWORD", "")
	t.Setenv("TROUPE_ADMIN_EMAIL", "Boss@Example.com")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	u, err := firstAdmin(c, logger)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin-password")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", st, err)
	}
	b, _ := os.ReadFile(path)
	password := strings.TrimSpace(string(b))
	if u.Email != "Boss@Example.com" || u.PasswordHash == "" || strings.Contains(u.PasswordHash, password) {
		t.Fatalf("admin: %+v", u)
	}
	if ok, err := storage.VerifyPassword(password, u.PasswordHash); !ok || err != nil {
		t.Fatalf("hash does not match the written password: %v", err)
	}
	// A second preparation (an earlier start died before initialising)
	// reuses the same password.
	u2, err := firstAdmin(c, logger)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(path)
	if string(b) != string(b2) || u2.PasswordHash == "" {
		t.Fatal("password regenerated")
	}
}

func TestParseServeTracing(t *testing.T) {
	c, err := parseServe([]string{"--insecure"}, io.Discard, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing.Endpoint != "" || c.Tracing.SampleRatio != 1 {
		t.Fatalf("tracing defaults: %+v", c.Tracing)
	}
	c, err = parseServe([]string{"--insecure", "--otlp-endpoint", "http://127.0.0.1:4318"}, io.Discard, env(map[string]string{"TROUPE_TRACE_SAMPLE": "0.01"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing.Endpoint != "http://127.0.0.1:4318" || c.Tracing.SampleRatio != 0.01 {
		t.Fatalf("tracing flags: %+v", c.Tracing)
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"ratio above 1":    {[]string{"--insecure", "--trace-sample", "1.5"}, "0 to 1"},
		"negative ratio":   {[]string{"--insecure", "--trace-sample", "-0.1"}, "0 to 1"},
		"not a url":        {[]string{"--insecure", "--otlp-endpoint", "collector:4318"}, "--otlp-endpoint"},
		"unknown scheme":   {[]string{"--insecure", "--otlp-endpoint", "grpc://127.0.0.1:4317"}, "http:// or https://"},
		"ratio not number": {[]string{"--insecure", "--trace-sample", "some"}, "trace-sample"},
	} {
		if _, err := parseServe(tc.args, io.Discard, env(nil)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %q", name, err, tc.want)
		}
	}
}
