package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// node is one troupe process of the soak's cluster, on 127.0.0.1, with
// its data dir and log in the run's temporary directory. The killer
// goroutine replaces the process; the sampler reads its pid: mu guards
// cmd and done.
type node struct {
	id                            string
	bin, dir, logPath             string
	httpAddr, raftAddr, pprofAddr string
	extra                         []string // --bootstrap or --join
	retention                     time.Duration

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("cannot find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func newNode(bin, root, id string, retention time.Duration, extra []string) (*node, error) {
	n := &node{id: id, bin: bin, dir: filepath.Join(root, id), logPath: filepath.Join(root, id+".log"), extra: extra, retention: retention}
	for _, a := range []*string{&n.httpAddr, &n.raftAddr, &n.pprofAddr} {
		var err error
		if *a, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// start runs the process (the same command every time: --join is only
// acted on by a node with no state) and waits until /readyz answers 200.
func (n *node) start(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	begin := time.Now()
	args := []string{"serve", "--insecure", "--rate-limit", "off", "--node-id", n.id, "--data", n.dir,
		"--http-addr", n.httpAddr, "--raft-addr", n.raftAddr, "--pprof", n.pprofAddr,
		"--idempotency-retention", n.retention.String(), "--log-level", "warn",
		// The soak's document owner keeps one access token for the
		// whole run (docs-ws and the SSE subscribers present it).
		"--access-token-ttl", "24h"}
	log, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("cannot open the log of %s: %w", n.id, err)
	}
	cmd := exec.Command(n.bin, append(args, n.extra...)...)
	cmd.Stdout, cmd.Stderr = log, log
	err = cmd.Start()
	log.Close() // the child holds its own descriptor
	if err != nil {
		return 0, fmt.Errorf("cannot start %s: %w", n.id, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()

	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-done:
			return 0, fmt.Errorf("%s exited before it was ready (log: %s)", n.id, n.logPath)
		case <-ctx.Done():
			return 0, ctx.Err()
		default:
		}
		if resp, err := client.Get("http://" + n.httpAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(begin), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s was not ready within %v (log: %s)", n.id, timeout, n.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pid is the running process's, or 0.
func (n *node) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	select {
	case <-n.done:
		return 0
	default:
		return n.cmd.Process.Pid
	}
}

// kill sends SIGKILL (sig nil) or sig and waits for the process to exit.
func (n *node) kill(sig os.Signal) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if sig == nil {
		sig = os.Kill
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cannot signal %s: %w", n.id, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not exit within a minute of %v", n.id, sig)
	}
}

// hasFlag says whether `bin serve` takes the flag name: the soak runs
// binaries from before and after a flag's arrival.
func hasFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	return strings.Contains(string(out), "\n  -"+name+" ")
}

// startCluster starts n1 (bootstrapping) and n2, n3 (joining it).
func startCluster(ctx context.Context, bin, root string, retention time.Duration) ([]*node, error) {
	var common []string
	// The soak's document owner holds every WebSocket and SSE stream of
	// the mix (about 80 over the three nodes): a per-user stream limit,
	// where the binary has one, must not refuse them.
	if hasFlag(bin, "max-streams-per-user") {
		common = append(common, "--max-streams-per-user", "100000")
	}
	var nodes []*node
	for i := range 3 {
		extra := append([]string{"--bootstrap"}, common...)
		if i > 0 {
			extra = append([]string{"--join", "http://" + nodes[0].httpAddr}, common...)
		}
		n, err := newNode(bin, root, fmt.Sprintf("n%d", i+1), retention, extra)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, n)
		if _, err := n.start(ctx, 2*time.Minute); err != nil {
			return nodes, err
		}
	}
	return nodes, nil
}

func addrs(nodes []*node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.httpAddr
	}
	return out
}
