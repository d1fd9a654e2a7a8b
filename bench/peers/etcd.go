package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// etcd: its server and its benchmark tool (tools/benchmark), built with
// the go command from the Go module proxy into a scratch directory outside
// the repository, never into troupe's go.mod.
//
// `go install module@version` refuses etcd's modules (their go.mod files
// carry replace directives for the repository's other modules), so the
// build runs `go get` and `go build` in a throwaway module of the scratch
// directory that requires them: the same sources, resolved from the proxy.
// The benchmark tool lives in the repository's root module
// (go.etcd.io/etcd/v3), the server in go.etcd.io/etcd/server/v3.

const (
	etcdServerPkg = "go.etcd.io/etcd/server/v3"
	etcdBenchPkg  = "go.etcd.io/etcd/v3/tools/benchmark"
	etcdRootMod   = "go.etcd.io/etcd/v3"
)

// etcdTools are the built binaries.
type etcdTools struct {
	version     string
	server      string
	benchmark   string
	buildCmds   []string // as run, for the report
	buildDir    string
	goVersionOf string // `go version` of the toolchain that built them
}

// buildEtcd builds (or finds, from an earlier run) etcd version into
// scratch/etcd-<version>. An error means the peer is skipped.
func buildEtcd(scratch, version string) (*etcdTools, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return nil, fmt.Errorf("no go command on PATH: %w", err)
	}
	dir := filepath.Join(scratch, "etcd-"+version)
	t := &etcdTools{
		version:   version,
		server:    filepath.Join(dir, "bin", "etcd"),
		benchmark: filepath.Join(dir, "bin", "benchmark"),
		buildDir:  dir,
	}
	steps := [][]string{
		{"go", "mod", "init", "troupe-peers-etcd"},
		{"go", "get", etcdServerPkg + "@" + version, etcdRootMod + "@" + version},
		{"go", "build", "-o", "bin/etcd", etcdServerPkg},
		{"go", "build", "-o", "bin/benchmark", etcdBenchPkg},
	}
	for _, s := range steps {
		t.buildCmds = append(t.buildCmds, strings.Join(s, " "))
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		t.goVersionOf = strings.TrimSpace(string(out))
	}
	if isFile(t.server) && isFile(t.benchmark) {
		return t, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// A half-made module from an interrupted build is started afresh.
	_ = os.Remove(filepath.Join(dir, "go.mod"))
	_ = os.Remove(filepath.Join(dir, "go.sum"))
	for _, s := range steps {
		fmt.Fprintf(os.Stderr, "  (in %s) %s\n", dir, strings.Join(s, " "))
		cmd := exec.Command(s[0], s[1:]...)
		cmd.Dir = dir
		// Not troupe's module, workspace or flags.
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", strings.Join(s, " "), err, tail(string(out), 1500))
		}
	}
	return t, nil
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// etcdCluster is 1 or 3 etcd members on loopback ports, each with a
// fresh data dir under root (fsync on, as etcd runs by default).
type etcdCluster struct {
	procs     []*proc
	endpoints []string // host:port of each member's client URL
}

func startEtcd(t *etcdTools, root string, members int) (*etcdCluster, error) {
	clients, err := freeAddrs(members)
	if err != nil {
		return nil, err
	}
	peers, err := freeAddrs(members)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range members {
		initial = append(initial, fmt.Sprintf("e%d=http://%s", i+1, peers[i]))
	}
	c := &etcdCluster{endpoints: clients}
	token := fmt.Sprintf("troupe-peers-%d", time.Now().UnixNano())
	for i := range members {
		name := fmt.Sprintf("e%d", i+1)
		dir := filepath.Join(root, fmt.Sprintf("etcd%d-%s", members, name))
		args := []string{"--name", name, "--data-dir", dir,
			"--listen-client-urls", "http://" + clients[i], "--advertise-client-urls", "http://" + clients[i],
			"--listen-peer-urls", "http://" + peers[i], "--initial-advertise-peer-urls", "http://" + peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token, "--log-level", "warn"}
		p, err := startProc(root, fmt.Sprintf("etcd%d-%s", members, name), t.server, args, nil)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	for i, p := range c.procs {
		url := "http://" + clients[i] + "/health"
		if err := p.waitReady(2*time.Minute, func() bool { return etcdHealthy(url) }); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *etcdCluster) stop() { stopAll(c.procs) }

// etcdHealthy says whether a member's /health reports a leader and a
// working store.
func etcdHealthy(url string) bool {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(b.String(), `"health":"true"`)
}

// etcdPut writes key = value through the member's JSON gateway (the
// key the range rows read).
func etcdPut(endpoint, key, value string) error {
	body := fmt.Sprintf(`{"key":%q,"value":%q}`,
		base64.StdEncoding.EncodeToString([]byte(key)), base64.StdEncoding.EncodeToString([]byte(value)))
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post("http://"+endpoint+"/v3/kv/put", "application/json", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("cannot put the key to read: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cannot put the key to read: %s", resp.Status)
	}
	return nil
}

// The sizes of etcd's writes and reads: a key as long as a troupe user id
// (16 characters) and a value about as long as a user's JSON.
const (
	etcdKeySize   = 16
	etcdValueSize = 128
	etcdReadKey   = "troupe-peers-read"
)

// runEtcdBench runs the tool for about d: the tool takes a request count,
// not a time, so a first run of calib requests (it also warms the
// cluster up) measures the rate, and the measured run asks for rate × d
// requests. It returns the measured run's summary and command line.
func runEtcdBench(t *etcdTools, endpoints []string, conns int, d time.Duration, sub []string) (*etcdSummary, string, error) {
	calib := max(200, 50*conns)
	s, _, err := etcdBenchOnce(t, endpoints, conns, calib, sub, 5*time.Minute)
	if err != nil {
		return nil, "", err
	}
	total := max(calib, int(s.RPS*d.Seconds()))
	return etcdBenchOnce(t, endpoints, conns, total, sub, 2*d+5*time.Minute)
}

// etcdBenchOnce runs the tool for total requests, killed after limit.
func etcdBenchOnce(t *etcdTools, endpoints []string, conns, total int, sub []string, limit time.Duration) (*etcdSummary, string, error) {
	args := []string{"--endpoints", strings.Join(endpoints, ","), "--conns", strconv.Itoa(conns), "--clients", strconv.Itoa(conns), "--precise"}
	args = append(args, sub...)
	args = append(args, "--total", strconv.Itoa(total))
	if sub[0] == "put" {
		// Every put a new key, as every create is a new user.
		args = append(args, "--key-space-size", strconv.Itoa(total))
	}
	cmd := exec.Command(t.benchmark, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Bounded whatever the cluster does.
	timer := time.AfterFunc(limit, func() { _ = cmd.Process.Kill() })
	err := cmd.Run()
	timer.Stop()
	line := "benchmark " + strings.Join(shownEndpoints(args), " ")
	if err != nil {
		return nil, line, fmt.Errorf("%s: %w\n%s", line, err, tail(stderr.String()+stdout.String(), 1500))
	}
	s, err := parseEtcdSummary(stdout.String())
	if err != nil {
		return nil, line, fmt.Errorf("%s: %w\n%s", line, err, tail(stdout.String(), 1500))
	}
	return s, line, nil
}

// shownEndpoints replaces the random loopback ports in a command line
// with fixed ones (2379, 22379, 32379: etcd's own examples), for the
// report.
func shownEndpoints(args []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] != "--endpoints" {
			continue
		}
		parts := strings.Split(out[i+1], ",")
		for j := range parts {
			parts[j] = "127.0.0.1:" + []string{"2379", "22379", "32379"}[j%3]
		}
		out[i+1] = strings.Join(parts, ",")
	}
	return out
}
