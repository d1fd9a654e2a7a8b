package main

import (
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeSecret(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func hasWarning(c *serveConfig, sub string) bool {
	for _, w := range c.Warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

func TestClusterSecretSources(t *testing.T) {
	file := writeSecret(t, "from-file\n", 0o600)
	c, err := parseServe([]string{"--insecure", "--cluster-secret-file", file}, io.Discard, env(nil))
	if err != nil || c.HTTP.ClusterSecret != "from-file" || c.Node.ClusterSecret != "from-file" || len(c.Warnings) != 0 {
		t.Fatalf("from a file: %+v %v", c, err)
	}
	// The file through the environment too.
	c, err = parseServe([]string{"--insecure"}, io.Discard, env(map[string]string{"TROUPE_CLUSTER_SECRET_FILE": file}))
	if err != nil || c.HTTP.ClusterSecret != "from-file" {
		t.Fatalf("file from env: %v", err)
	}
	// The environment variable: no warning.
	c, err = parseServe([]string{"--insecure"}, io.Discard, env(map[string]string{"TROUPE_CLUSTER_SECRET": "from-env"}))
	if err != nil || c.HTTP.ClusterSecret != "from-env" || len(c.Warnings) != 0 {
		t.Fatalf("from env: %+v %v", c.Warnings, err)
	}
	// On the command line: accepted, with a warning.
	c, err = parseServe([]string{"--insecure", "--cluster-secret", "on-argv"}, io.Discard, env(nil))
	if err != nil || c.HTTP.ClusterSecret != "on-argv" || !hasWarning(c, "process list") && !hasWarning(c, "visible") {
		t.Fatalf("from argv: %+v %v", c.Warnings, err)
	}
	// A file others may read: a warning.
	loose := writeSecret(t, "loose", 0o644)
	if c, err = parseServe([]string{"--insecure", "--cluster-secret-file", loose}, io.Discard, env(nil)); err != nil || !hasWarning(c, "chmod 600") {
		t.Fatalf("loose file: %+v %v", c, err)
	}
	for name, args := range map[string][]string{
		"both":       {"--insecure", "--cluster-secret", "x", "--cluster-secret-file", file},
		"missing":    {"--insecure", "--cluster-secret-file", filepath.Join(t.TempDir(), "nope")},
		"empty":      {"--insecure", "--cluster-secret-file", writeSecret(t, " \n", 0o600)},
		"too big":    {"--insecure", "--cluster-secret-file", writeSecret(t, strings.Repeat("s", maxSecretFileBytes+1), 0o600)},
		"a dir":      {"--insecure", "--cluster-secret-file", t.TempDir()},
		"leeway < 0": {"--insecure", "--token-leeway", "-1s"},
		"leeway big": {"--insecure", "--token-leeway", "6m"},
	} {
		_, err := parseServe(args, io.Discard, env(nil))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if want := map[bool]string{true: "0s to 5m", false: "cluster-secret"}[strings.HasPrefix(name, "leeway")]; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v does not say %q", name, err, want)
		}
	}
	c, err = parseServe([]string{"--insecure", "--token-leeway", "0s"}, io.Discard, env(nil))
	if err != nil || c.HTTP.TokenLeeway != 0 {
		t.Fatalf("zero leeway: %v", err)
	}
	if c, _ = parseServe([]string{"--insecure"}, io.Discard, env(nil)); c.HTTP.TokenLeeway != 5*time.Second {
		t.Fatalf("default leeway %v", c.HTTP.TokenLeeway)
	}
}

// The CLI commands read the secret from a file too.
func TestCredentialsSecretFile(t *testing.T) {
	file := writeSecret(t, "cli-secret\n", 0o600)
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var creds credentials
	creds.flags(fs)
	if err := fs.Parse([]string{"--cluster-secret-file", file}); err != nil || creds.secret != "cli-secret" {
		t.Fatalf("%q %v", creds.secret, err)
	}
}

func TestPprofHidesCmdline(t *testing.T) {
	mux := pprofMux()
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	for _, path := range []string{"/debug/pprof/cmdline", "/debug/pprof/cmdline?debug=1"} {
		if w := get(path); w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), os.Args[0]) {
			t.Fatalf("%s: %d %q", path, w.Code, w.Body.String())
		}
	}
	if w := get("/debug/pprof/"); w.Code != http.StatusOK {
		t.Fatalf("index: %d", w.Code)
	}
	if w := get("/debug/pprof/goroutine?debug=1"); w.Code != http.StatusOK {
		t.Fatalf("goroutine profile: %d", w.Code)
	}
}
