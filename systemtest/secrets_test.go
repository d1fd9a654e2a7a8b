package systemtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

// TestSecretsStayOffTheCommandLine starts a secure node with its cluster
// secret in a file: the secret works, and is neither in the process's
// command line nor served by pprof (/debug/pprof/cmdline is 404). The
// node answers 431 to a 200 KB header. A secret given on the command line
// still works, with a warning in the log; a bad --token-leeway is refused.
func TestSecretsStayOffTheCommandLine(t *testing.T) {
	t.Parallel()
	const secret = "file-secret-0123456789"
	secretFile := filepath.Join(t.TempDir(), "cluster-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pprofAddr := clustertest.FreeAddr(t)
	cfg := newNodeConfig(t, "n1")
	cfg.Secure = true
	cfg.ExtraArgs = append(cfg.ExtraArgs, "--cluster-secret-file", secretFile, "--pprof", pprofAddr, "--token-leeway", "2s")
	n := startNode(t, cfg)

	// The secret from the file proves a member.
	expectError(t, n.do(t, "GET", "/v1/cluster", nil, nil), 401, "unauthenticated")
	expectStatus(t, n.do(t, "GET", "/v1/cluster", nil, map[string]string{"X-Troupe-Cluster-Secret": secret}), 200)
	expectError(t, n.do(t, "GET", "/v1/cluster", nil, map[string]string{"X-Troupe-Cluster-Secret": "wrong"}), 401, "unauthenticated")

	if runtime.GOOS == "linux" {
		argv, err := os.ReadFile("/proc/" + strconv.Itoa(n.Cmd.Process.Pid) + "/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(argv), secret) {
			t.Fatal("the secret is in the process's command line")
		}
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := n.Client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + pprofAddr + "/debug/pprof/cmdline"); code != 404 || strings.Contains(body, "cluster-secret") {
		t.Fatalf("pprof cmdline: %d %q", code, body)
	}
	if code, _ := get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1"); code != 200 {
		t.Fatalf("pprof goroutine profile: %d", code)
	}

	// A 200 KB header: 431 in the API's error shape.
	conn, err := net.Dial("tcp", cfg.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		_, _ = fmt.Fprintf(conn, "GET /v1/auth/me HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 200<<10))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	expectError(t, response{Status: resp.StatusCode, Header: resp.Header, Body: body}, 431, "request_header_fields_too_large")

	// On the command line: it works, and the log says it is visible.
	argvCfg := newNodeConfig(t, "n2")
	argvCfg.Secure = true
	argvCfg.ExtraArgs = append(argvCfg.ExtraArgs, "--cluster-secret", secret)
	m := startNode(t, argvCfg)
	expectStatus(t, m.do(t, "GET", "/v1/cluster", nil, map[string]string{"X-Troupe-Cluster-Secret": secret}), 200)
	if !strings.Contains(m.logTail(), "visible to every user of this machine") {
		t.Fatalf("no warning about the secret on the command line:\n%s", m.logTail())
	}

	// A leeway out of range is refused before anything starts.
	out, err := exec.Command(troupeBin, "serve", "--insecure", "--data", t.TempDir(), "--token-leeway", "10m").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "0s to 5m") {
		t.Fatalf("--token-leeway 10m: %v %s", err, out)
	}
}
