package systemtest

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

// failedStart is what `troupe serve` left behind when it would not start.
type failedStart struct {
	code   int
	stderr string
}

// serveExpectingFailure runs `troupe serve` with args and expects it to
// exit by itself, quickly, with status 1 and one line on stderr of the
// form "troupe: cannot <what>: <cause>".
func serveExpectingFailure(t *testing.T, args ...string) failedStart {
	t.Helper()
	requireBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, troupeBin, append([]string{"serve"}, args...)...)
	cmd.Env = append(cleanEnv(), "TROUPE_ADMIN_PASSWORD="+adminPassword)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("troupe serve %s did not exit by itself within 20 s; stderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("troupe serve %s: want a failed exit, got %v; stderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	got := failedStart{code: exit.ExitCode(), stderr: stderr.String()}
	lines := strings.Split(strings.TrimRight(got.stderr, "\n"), "\n")
	if got.code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "troupe: cannot ") {
		t.Fatalf("troupe serve %s: want exit status 1 and one line \"troupe: cannot ...\" on stderr, got status %d and:\n%s",
			strings.Join(args, " "), got.code, got.stderr)
	}
	for _, bad := range []string{"panic", "goroutine "} {
		if strings.Contains(got.stderr, bad) {
			t.Fatalf("stderr holds %q:\n%s", bad, got.stderr)
		}
	}
	return got
}

// expectNoDataDir fails if dir exists and holds anything.
func expectNoDataDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err == nil && len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("a failed first start left %s holding %v", dir, names)
	}
}

// takePort holds a listener on a free loopback port until the test ends.
func takePort(t *testing.T) (addr string, release func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), func() { ln.Close() }
}

func TestStartupFailsCleanlyOnTakenPorts(t *testing.T) {
	t.Parallel()
	for _, which := range []string{"http", "raft", "grpc"} {
		t.Run(which, func(t *testing.T) {
			cfg := newNodeConfig(t, "n1")
			cfg.DataDir = filepath.Join(t.TempDir(), "data") // absent: a first start
			taken, release := takePort(t)
			flag := "--" + which + "-addr"
			args := []string{"--node-id", cfg.ID, "--data", cfg.DataDir, "--insecure", "--rate-limit", "off"}
			switch which {
			case "http":
				cfg.HTTPAddr = taken
			case "raft":
				cfg.RaftAddr = taken
			case "grpc":
				args = append(args, "--grpc-addr", taken)
			}
			args = append(args, "--http-addr", cfg.HTTPAddr, "--raft-addr", cfg.RaftAddr)
			got := serveExpectingFailure(t, args...)
			for _, want := range []string{"troupe: cannot listen for " + map[string]string{"http": "HTTP", "raft": "raft", "grpc": "gRPC"}[which], taken, flag, "address already in use"} {
				if !strings.Contains(got.stderr, want) {
					t.Errorf("stderr %q does not name %q", got.stderr, want)
				}
			}
			expectNoDataDir(t, cfg.DataDir)

			// Once the port is free, the same command starts the node.
			release()
			cfg.fresh = false // the same ports, as the operator would retry
			n := startNode(t, cfg)
			n.do(t, "GET", "/v1/users/count", nil, nil)
		})
	}
}

func TestStartupRefusesDataDirs(t *testing.T) {
	t.Parallel()
	base := func(t *testing.T, dir string) []string {
		cfg := newNodeConfig(t, "n1")
		return []string{"--node-id", "n1", "--http-addr", cfg.HTTPAddr, "--raft-addr", cfg.RaftAddr, "--data", dir, "--insecure"}
	}
	t.Run("foreign", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "thesis.tex"), []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
		got := serveExpectingFailure(t, base(t, dir)...)
		if !strings.Contains(got.stderr, "not a troupe data dir") || !strings.Contains(got.stderr, "thesis.tex") {
			t.Errorf("stderr %q", got.stderr)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("troupe wrote into a foreign directory: %v", entries)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		got := serveExpectingFailure(t, base(t, file)...)
		if !strings.Contains(got.stderr, "cannot read data dir "+file+" (--data)") {
			t.Errorf("stderr %q", got.stderr)
		}
	})
	t.Run("in use", func(t *testing.T) {
		first := startNode(t, newNodeConfig(t, "n1"))
		// serveExpectingFailure fails a process that does not exit by
		// itself: the second one must not wait for the lock.
		got := serveExpectingFailure(t, base(t, first.cfg.DataDir)...)
		if !strings.Contains(got.stderr, "another troupe process") {
			t.Errorf("stderr %q", got.stderr)
		}
		// The first node is untouched.
		first.do(t, "GET", "/v1/users/count", nil, nil)
	})
}

func TestStartupRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	cfg := newNodeConfig(t, "n1")
	dir := filepath.Join(t.TempDir(), "data")
	common := []string{"--http-addr", cfg.HTTPAddr, "--raft-addr", clustertest.FreeAddr(t), "--data", dir}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"unknown flag":   {[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		"bad rate limit": {[]string{"--rate-limit", "lots"}, "--rate-limit"},
		"missing TLS":    {[]string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem", "--tls-ca", "/nonexistent/ca.pem"}, "/nonexistent/cert.pem"},
		"half TLS":       {[]string{"--http-tls-cert", "/nonexistent/cert.pem"}, "--http-tls-key"},
	} {
		t.Run(name, func(t *testing.T) {
			got := serveExpectingFailure(t, append(append([]string{}, common...), tc.args...)...)
			if !strings.Contains(got.stderr, tc.want) {
				t.Errorf("stderr %q does not mention %q", got.stderr, tc.want)
			}
			expectNoDataDir(t, dir)
		})
	}
}
