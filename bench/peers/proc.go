package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is one server process of a run (a troupe node, an etcd member, the
// ShareDB server) on 127.0.0.1, its output in a log file under the run's
// temporary directory. Only the run's goroutine touches it; done is closed
// by the goroutine that waits for the process.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// freeAddr is a loopback address no one listens on right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("cannot find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// freeAddrs is n of them.
func freeAddrs(n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		var err error
		if out[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// startProc starts bin with args, its output to root/name.log, with env
// added to this process's environment.
func startProc(root, name, bin string, args, env []string) (*proc, error) {
	p := &proc{name: name, logPath: filepath.Join(root, name+".log"), done: make(chan struct{})}
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot open the log of %s: %w", name, err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	err = p.cmd.Start()
	log.Close() // the child holds its own descriptor
	if err != nil {
		return nil, fmt.Errorf("cannot start %s (%s): %w", name, bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// waitReady polls ready until it says true, the process exits, or
// timeout passes.
func (p *proc) waitReady(timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %s", p.name, p.logTail())
		default:
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not ready within %v: %s", p.name, timeout, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the process to exit (SIGKILL after
// 30 s).
func (p *proc) stop() {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail is the end of the process's log, for an error message.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "no log"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 1500 {
		s = "…" + s[len(s)-1500:]
	}
	if s == "" {
		return "empty log"
	}
	return s
}

func stopAll(ps []*proc) {
	// The reverse of the order they started in.
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop()
	}
}
