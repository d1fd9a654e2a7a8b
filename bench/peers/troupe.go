package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/troupe-db/troupe/bench"
)

// troupeCluster is 1 or 3 troupe nodes on loopback ports, run as
// `make bench` runs its node: --insecure --rate-limit off, a fresh data
// dir each.
type troupeCluster struct {
	procs []*proc
	addrs []string // HTTP host:port of each node, n1 (bootstrap) first
}

func startTroupe(bin, root string, nodes int) (*troupeCluster, error) {
	c := &troupeCluster{}
	for i := range nodes {
		a, err := freeAddrs(3)
		if err != nil {
			c.stop()
			return nil, err
		}
		name := fmt.Sprintf("troupe%d-n%d", nodes, i+1)
		args := []string{"serve", "--insecure", "--rate-limit", "off", "--max-streams-per-user", "100000",
			"--data", filepath.Join(root, name), "--node-id", fmt.Sprintf("n%d", i+1),
			"--http-addr", a[0], "--raft-addr", a[1], "--pprof", a[2], "--log-level", "warn"}
		if i == 0 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", "http://"+c.addrs[0])
		}
		p, err := startProc(root, name, bin, args, nil)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
		c.addrs = append(c.addrs, a[0])
		// Each joins a running cluster: one at a time.
		url := "http://" + a[0] + "/readyz"
		if err := p.waitReady(2*time.Minute, func() bool { return httpOK(url) }); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *troupeCluster) stop() { stopAll(c.procs) }

func (c *troupeCluster) urls() string {
	out := make([]string, len(c.addrs))
	for i, a := range c.addrs {
		out[i] = "http://" + a
	}
	return strings.Join(out, ",")
}

func httpOK(url string) bool {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// runTroupeBench runs `troupe bench … --json` and reads its result (the
// last line of its output). The command line it returns shows the
// addresses as fixed ports (8080, or 8081–8083 for three nodes), as
// BENCHMARKS.md does.
func runTroupeBench(bin string, args []string) (*bench.Result, string, error) {
	cmd := exec.Command(bin, args...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	shown := "troupe " + strings.Join(shownAddrs(args), " ")
	if err := cmd.Run(); err != nil {
		return nil, shown, fmt.Errorf("%s: %w", shown, err)
	}
	r, err := parseTroupeResult(stdout.Bytes())
	if err != nil {
		return nil, shown, fmt.Errorf("%s: %w", shown, err)
	}
	return r, shown, nil
}

// parseTroupeResult reads the JSON result `troupe bench --json` prints
// as its last line.
func parseTroupeResult(out []byte) (*bench.Result, error) {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	var r bench.Result
	if err := json.Unmarshal(lines[len(lines)-1], &r); err != nil {
		return nil, fmt.Errorf("cannot parse the bench result: %w", err)
	}
	if r.Scenario == "" || r.DurationS <= 0 {
		return nil, fmt.Errorf("the bench result names no scenario or duration: %.200s", lines[len(lines)-1])
	}
	return &r, nil
}

func shownAddrs(args []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] != "--addr" {
			continue
		}
		parts := strings.Split(out[i+1], ",")
		if len(parts) == 1 {
			out[i+1] = "http://127.0.0.1:8080"
			continue
		}
		for j := range parts {
			parts[j] = fmt.Sprintf("http://127.0.0.1:%d", 8081+j)
		}
		out[i+1] = strings.Join(parts, ",")
	}
	return out
}
