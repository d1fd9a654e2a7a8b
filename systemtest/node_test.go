package systemtest

// A node is one `troupe serve` process. Its stdout and stderr go to a log
// file per start, printed (its tail) with t.Log when the test has failed.
// Every process is killed in t.Cleanup if the test did not stop it; the
// goroutine started in startNode is the only caller of cmd.Wait.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

const (
	adminPassword = "systemtest-admin-password"
	readyTimeout  = 30 * time.Second
	stopTimeout   = 20 * time.Second
	logTailBytes  = 64 << 10
)

// nodeConfig is what a node is started with; a restart reuses it unchanged
// (same ports, same data dir), as an operator would.
type nodeConfig struct {
	ID       string
	HTTPAddr string
	RaftAddr string
	DataDir  string
	// ExtraArgs follow the standard flags.
	ExtraArgs []string
	// ClientTLS, if set, means the node serves HTTPS; the test's client
	// trusts it with this configuration.
	ClientTLS *tls.Config
	// NetNS, if set, is the network namespace the process runs in (`ip
	// netns exec NetNS troupe serve ...`; ip execs troupe, so the pid is
	// troupe's). Its addresses are the namespace's own, never retried.
	NetNS string
	// Secure starts the node with authentication on (no --insecure);
	// the first admin's password is adminPassword.
	Secure bool
	// fresh is true until the first start; only a fresh node may be moved
	// to other ports when the ones picked turn out to be taken.
	fresh bool
}

// newNodeConfig picks free ports and a new data dir.
func newNodeConfig(t testing.TB, id string) nodeConfig {
	t.Helper()
	return nodeConfig{
		ID:       id,
		HTTPAddr: clustertest.FreeAddr(t),
		RaftAddr: clustertest.FreeAddr(t),
		DataDir:  t.TempDir(),
		// The default per-node rate limit would throttle the load these
		// tests drive from one client address (API.md, Rate limits).
		ExtraArgs: []string{"--rate-limit", "off"},
		fresh:     true,
	}
}

// node is a running (or exited) troupe process.
type node struct {
	cfg     nodeConfig
	URL     string // http://127.0.0.1:port
	Cmd     *exec.Cmd
	Client  *http.Client
	logPath string

	done    chan struct{} // closed when the process has exited
	waitErr error         // cmd.Wait's result, valid after done
}

// startNode starts `troupe serve` and waits until GET /readyz answers 200.
func startNode(t testing.TB, cfg nodeConfig) *node {
	t.Helper()
	requireBinary(t)
	const attempts = 3
	for attempt := 1; ; attempt++ {
		n, err := launch(t, cfg)
		if err == nil {
			err = n.waitReady(readyTimeout)
		}
		if err == nil {
			return n
		}
		if n != nil && cfg.fresh && cfg.NetNS == "" && attempt < attempts && n.exited() && strings.Contains(n.logTail(), "address already in use") {
			t.Logf("node %s: ports %s/%s were taken, retrying with others", cfg.ID, cfg.HTTPAddr, cfg.RaftAddr)
			cfg.HTTPAddr, cfg.RaftAddr = clustertest.FreeAddr(t), clustertest.FreeAddr(t)
			continue
		}
		t.Fatalf("node %s did not become ready: %v", cfg.ID, err)
	}
}

// launch starts `troupe serve` for cfg and registers its cleanup.
func launch(t testing.TB, cfg nodeConfig) (*node, error) {
	t.Helper()
	args := []string{"serve",
		"--node-id", cfg.ID,
		"--http-addr", cfg.HTTPAddr,
		"--raft-addr", cfg.RaftAddr,
		"--data", cfg.DataDir,
		"--log-level", "info",
	}
	if !cfg.Secure {
		args = append(args, "--insecure")
	}
	args = append(args, cfg.ExtraArgs...)
	cmd := exec.Command(troupeBin, args...)
	if cfg.NetNS != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", cfg.NetNS, troupeBin}, args...)...)
	}
	cmd.Env = append(cleanEnv(), "TROUPE_ADMIN_PASSWORD="+adminPassword)
	return spawn(t, cfg, cmd)
}

// spawn starts cmd, a `troupe serve` process for node cfg.ID, with its
// output in a log file, and registers its cleanup: the process is killed
// when the test ends if it has not exited, and its log's tail is printed
// if the test failed. cfg.HTTPAddr names where it serves.
func spawn(t testing.TB, cfg nodeConfig, cmd *exec.Cmd) (*node, error) {
	t.Helper()
	logFile, err := os.CreateTemp(t.TempDir(), "troupe-"+cfg.ID+"-*.log")
	if err != nil {
		return nil, fmt.Errorf("cannot create log file: %w", err)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("cannot start %s: %w", cmd.Path, err)
	}
	// The child holds its own descriptor; ours is no longer needed.
	logFile.Close()

	scheme := "http://"
	if cfg.ClientTLS != nil {
		scheme = "https://"
	}
	n := &node{
		cfg:     cfg,
		URL:     scheme + cfg.HTTPAddr,
		Cmd:     cmd,
		logPath: logFile.Name(),
		done:    make(chan struct{}),
		Client: &http.Client{
			Timeout: 15 * time.Second,
			Transport: &http.Transport{
				Proxy:               nil, // only ever 127.0.0.1 or a test namespace's address
				MaxIdleConns:        64,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     30 * time.Second,
				TLSClientConfig:     cfg.ClientTLS,
			},
		},
	}
	go func() {
		n.waitErr = cmd.Wait()
		close(n.done)
	}()
	t.Logf("started node %s (pid %d): %s", cfg.ID, cmd.Process.Pid, strings.Join(cmd.Args, " "))
	t.Cleanup(func() {
		if !n.exited() {
			_ = cmd.Process.Kill()
			<-n.done
		}
		n.Client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("---- log of node %s (pid %d, %s), last %d KiB ----\n%s\n---- end of log ----",
				cfg.ID, cmd.Process.Pid, n.exitDescription(), logTailBytes>>10, n.logTail())
		}
	})
	return n, nil
}

// cleanEnv is the test's environment without TROUPE_* settings, so that a
// developer's shell cannot change what the nodes are started with.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TROUPE_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitReady polls GET /readyz until it answers 200, the process exits, or
// the deadline passes.
func (n *node) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: n.cfg.ClientTLS}}
	defer client.CloseIdleConnections()
	var last string
	for {
		if n.exited() {
			return fmt.Errorf("process exited before it was ready (%s)", n.exitDescription())
		}
		resp, err := client.Get(n.URL + "/readyz")
		if err == nil {
			body := readAllLimited(resp, 1024)
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET /readyz not 200 within %v; last: %s", timeout, last)
		}
		select {
		case <-n.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM and requires a clean exit (code 0) within stopTimeout.
func (n *node) Stop(t testing.TB) {
	t.Helper()
	if n.exited() {
		t.Fatalf("node %s exited before Stop: %s", n.cfg.ID, n.exitDescription())
	}
	start := time.Now()
	if err := n.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("cannot send SIGTERM to node %s: %v", n.cfg.ID, err)
	}
	select {
	case <-n.done:
	case <-time.After(stopTimeout):
		_ = n.Cmd.Process.Kill()
		<-n.done
		t.Fatalf("node %s did not exit within %v of SIGTERM (killed)", n.cfg.ID, stopTimeout)
	}
	n.Client.CloseIdleConnections()
	if code := n.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("node %s exited with %s after SIGTERM, want exit code 0", n.cfg.ID, n.exitDescription())
	}
	t.Logf("node %s stopped cleanly in %v", n.cfg.ID, time.Since(start).Round(time.Millisecond))
}

// Kill sends SIGKILL and waits for the process to be gone.
func (n *node) Kill(t testing.TB) {
	t.Helper()
	if err := n.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("cannot kill node %s: %v", n.cfg.ID, err)
	}
	<-n.done
	n.Client.CloseIdleConnections()
}

// Restart starts a new process with the same configuration; the node must
// have exited.
func (n *node) Restart(t testing.TB) *node {
	t.Helper()
	if !n.exited() {
		t.Fatalf("node %s restarted while still running", n.cfg.ID)
	}
	cfg := n.cfg
	cfg.fresh = false
	return startNode(t, cfg)
}

func (n *node) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

func (n *node) exitDescription() string {
	if !n.exited() {
		return "still running"
	}
	if n.waitErr == nil {
		return "exit code 0"
	}
	return n.waitErr.Error()
}

// logTail returns the end of the node's log.
func (n *node) logTail() string {
	data, err := os.ReadFile(n.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log %s: %v)", filepath.Base(n.logPath), err)
	}
	if len(data) > logTailBytes {
		data = data[len(data)-logTailBytes:]
		if i := strings.IndexByte(string(data), '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return string(data)
}
