package main

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troupe-db/troupe/transport/client"
)

// A refused call says what to give: the flag and the variable.
func TestCredentialHints(t *testing.T) {
	refused := &client.APIError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "a cluster secret or an admin's token is required"}
	for _, tc := range []struct {
		creds credentials
		err   error
		want  []string
	}{
		{credentials{}, refused, []string{"--cluster-secret-file", "TROUPE_CLUSTER_SECRET", "--token", "TROUPE_TOKEN"}},
		{credentials{secret: "s"}, refused, []string{"not accepted"}},
		{credentials{token: "t"}, &client.APIError{Status: http.StatusForbidden, Code: "forbidden"}, []string{"not an admin's"}},
		{credentials{}, &client.APIError{Status: http.StatusNotFound, Code: "not_found"}, nil},
		{credentials{}, errors.New("connection refused"), nil},
	} {
		got := tc.creds.explain(tc.err).Error()
		if !strings.HasPrefix(got, tc.err.Error()) {
			t.Fatalf("%q lost the original error %q", got, tc.err)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%q: no %q", got, w)
			}
		}
		if tc.want == nil && got != tc.err.Error() {
			t.Errorf("%q: a hint where none applies", got)
		}
	}
}

// The start-up message names where the first admin's password is only
// where there is one: the variable, or the file a first start generated.
// A restored or joined node made no first admin and names no file.
func TestAdminPasswordHint(t *testing.T) {
	cfg := &serveConfig{}
	cfg.Node.DataDir = t.TempDir()
	t.Setenv("TROUPE_ADMIN_PASSWORD", "")
	if hint, ok := adminPasswordHint(cfg, false); ok {
		t.Fatalf("no password anywhere, but the hint is %s", hint)
	}
	// A start that creates the cluster writes the file as it initialises.
	if hint, ok := adminPasswordHint(cfg, true); !ok || !strings.Contains(hint, filepath.Join(cfg.Node.DataDir, "admin-password")) {
		t.Fatalf("a first start: %s %v", hint, ok)
	}
	if err := os.WriteFile(filepath.Join(cfg.Node.DataDir, "admin-password"), []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if hint, ok := adminPasswordHint(cfg, false); !ok || !strings.Contains(hint, filepath.Join(cfg.Node.DataDir, "admin-password")) {
		t.Fatalf("generated file: %s %v", hint, ok)
	}
	t.Setenv("TROUPE_ADMIN_PASSWORD", "a long admin password")
	if hint, ok := adminPasswordHint(cfg, false); !ok || !strings.Contains(hint, "$TROUPE_ADMIN_PASSWORD") {
		t.Fatalf("variable: %s %v", hint, ok)
	}
}
