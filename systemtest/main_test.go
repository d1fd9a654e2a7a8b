// Package systemtest starts real troupe processes and checks, from the
// outside, what the public contract (API.md) promises across restarts and
// crashes: data survives a clean restart and a kill -9, and errors keep
// their documented shape over a real socket.
//
// TestMain builds cmd/troupe once, without -race (system tests must fit CI
// on two cores); every test starts its own nodes on 127.0.0.1 with distinct
// ports and data dirs, so tests may run in parallel.
package systemtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// troupeBin is the path of the binary built by TestMain; buildErr is set
// instead when the build failed, and every test then fails with it.
var (
	troupeBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "troupe-systemtest-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "systemtest: cannot create temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	troupeBin, buildErr = buildTroupe(dir)
	return m.Run()
}

// buildTroupe builds cmd/troupe into dir from the module root, without -race.
func buildTroupe(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("cannot run go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD found no module (got %q)", gomod)
	}
	bin := filepath.Join(dir, "troupe")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/troupe-db/troupe/cmd/troupe")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/troupe failed: %w\n%s", err, out)
	}
	return bin, nil
}

// requireBinary fails the test when TestMain could not build troupe.
func requireBinary(t testing.TB) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("troupe binary not available: %v", buildErr)
	}
}
