// Command suite is `make bench`: it starts a fresh one-node troupe, runs
// the load scenarios against it and against the floor (each figure next
// to its floor, measured in the same run), runs the Go benchmarks, and
// writes docs/BENCHMARKS.md.
//
//	go run ./bench/suite --troupe bin/troupe --out docs/BENCHMARKS.md
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troupe-db/troupe/bench"
)

type result struct {
	Scenario    string  `json:"scenario"`
	Connections int     `json:"connections"`
	Rate        float64 `json:"rate_rps"`
	DurationS   float64 `json:"duration_s"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	// ByStatus counts the measured answers by status ("201", "429", …)
	// and the transport failures by kind.
	ByStatus      map[string]int64 `json:"by_status"`
	ThroughputRPS float64          `json:"throughput_rps"`
	Items         int              `json:"items_per_request"`
	LatencyUS     struct {
		P50, P90, P99, P999, Max int64
	} `json:"latency_us"`
	Floor      *result `json:"floor"`
	FloorRatio float64 `json:"floor_ratio"`
	Docs       int     `json:"docs"`
	EventsRPS  float64 `json:"events_rps"`
	FirstRPS   float64 `json:"first_rps"`
	LastRPS    float64 `json:"last_rps"`
	// The watch scenario: changes read by the watchers together, and
	// their lag.
	WatchEventsRPS float64 `json:"watch_events_rps"`
	WatchLagMS     *struct {
		P50, P90, P99, P999, Max int64
	} `json:"watch_lag_ms"`
	WatchErrors []string `json:"watch_errors"`
	// Steal is the share of the machine's CPU time the hypervisor gave
	// to other machines while the command ran (floor included), or -1.
	Steal float64 `json:"-"`
}

type run struct {
	label string
	args  []string
	rate  float64 // open loop: the rate in args
	res   *result
	cmd   string
	// The row's target, for the chart: a ratio to its floor, or a
	// throughput (drawn at targetRPS / the floor's); 0: none.
	targetRatio, targetRPS float64
	short                  string // the chart's label, if not the label's start
}

var memUsers, memDocs int

func main() {
	bin := flag.String("troupe", "bin/troupe", "the troupe binary")
	out := flag.String("out", "docs/BENCHMARKS.md", "where to write the report")
	duration := flag.Duration("duration", 5*time.Second, "measured time per scenario")
	flag.IntVar(&memUsers, "mem-users", 1_000_000, "users loaded for the memory and restart figures")
	flag.IntVar(&memDocs, "mem-docs", 100_000, "documents of 1 KiB created for the memory-per-document and restart figures")
	gobench := flag.String("gobench", "./storage/ ./actors/ ./cluster/ ./transport/api/", "packages whose Go benchmarks to run")
	only := flag.String("only", "", "run only one group of rows and print its section instead of writing the report: keyed (the Idempotency-Key rows), secure (the secure-default rows), docs-memory (memory per idle document and the restart with them), users (the user rows, --before against --troupe), ratelimit (the rate-limit rows, --before against --troupe), watch (the change-feed row: creates with and without 64 watchers, alternately)")
	before := flag.String("before", "", "with --only users or ratelimit: a second troupe binary to run the same rows against, alternately")
	rounds := flag.Int("rounds", 2, "with --only users or ratelimit: how many times to run each binary; with --only watch: how many pairs without and with watchers")
	flag.Parse()
	switch *only {
	case "":
	case "keyed":
		if err := keyedOnly(*bin, *duration); err != nil {
			fmt.Fprintln(os.Stderr, "bench suite:", err)
			os.Exit(1)
		}
		return
	case "secure", "docs-memory":
		if err := sectionOnly(*only, *bin, *duration); err != nil {
			fmt.Fprintln(os.Stderr, "bench suite:", err)
			os.Exit(1)
		}
		return
	case "users":
		if err := usersOnly(*bin, *before, *duration, *rounds); err != nil {
			fmt.Fprintln(os.Stderr, "bench suite:", err)
			os.Exit(1)
		}
		return
	case "ratelimit":
		if err := rateLimitOnly(*bin, *before, *duration, *rounds); err != nil {
			fmt.Fprintln(os.Stderr, "bench suite:", err)
			os.Exit(1)
		}
		return
	case "watch":
		if err := watchOnly(*bin, *duration, *rounds); err != nil {
			fmt.Fprintln(os.Stderr, "bench suite:", err)
			os.Exit(1)
		}
		return
	default:
		fmt.Fprintf(os.Stderr, "bench suite: --only %q: the groups are: keyed, secure, docs-memory, users, ratelimit, watch\n", *only)
		os.Exit(2)
	}
	if err := suite(*bin, *out, *duration, strings.Fields(*gobench)); err != nil {
		fmt.Fprintln(os.Stderr, "bench suite:", err)
		os.Exit(1)
	}
}

func suite(bin, out string, d time.Duration, gopkgs []string) error {
	n, err := startNodeProc(bin)
	if err != nil {
		return err
	}
	defer n.remove()
	// The rate-limit and document rows run on a second fresh node. The
	// batch row leaves about a million users on the first, whose heap then
	// grows once to its goal (GOGC 400: ≈ 1.4 GB) under whatever row comes
	// next: that row paid ≈ 6 µs a request more, in page faults and fresh
	// memory (docs/BENCHMARKS-notes.md), which is not its own cost.
	n2, err := startNodeProc(bin)
	if err != nil {
		return err
	}
	defer n2.remove()
	dur := d.String()
	url := "http://" + n.addr
	common := []string{"bench", "--addr", url, "--duration", dur, "--warmup", "1s", "--json", "--compare-floor"}
	url2 := "http://" + n2.addr
	common2 := []string{"bench", "--addr", url2, "--duration", dur, "--warmup", "1s", "--json", "--compare-floor"}
	ws := []string{"bench", "--addr", url2, "--duration", dur, "--warmup", "1s", "--json", "--scenario", "docs-ws", "--connections", "64"}
	runs := []*run{
		{label: "users-create, 64 connections", args: append(common, "--scenario", "users-create", "--connections", "64"), targetRPS: 34000},
		{label: "users-create, 1 connection", args: append(common, "--scenario", "users-create", "--connections", "1")},
		{label: "users-get (linearizable), 64 connections", args: append(common, "--scenario", "users-get", "--connections", "64"), targetRatio: 0.70, short: "users-get (linearizable), 64 connections"},
		{label: "users-get-stale, 64 connections", args: append(common, "--scenario", "users-get-stale", "--connections", "64")},
		{label: "users-mixed (90% get, 10% create), 64 connections", args: append(common, "--scenario", "users-mixed", "--connections", "64")},
		{label: "users-batch (100 per request), 16 connections", args: append(common, "--scenario", "users-batch", "--connections", "16", "--batch-size", "100")},
		{label: rateLimitRows[0].label, args: append(common2, rateLimitRows[0].args(n2)...), targetRatio: 0.6},
		{label: rateLimitRows[1].label, args: append(common2, rateLimitRows[1].args(n2)...), targetRPS: 300_000 / 10}, // decisions/s over 10 per request
		{label: rateLimitRows[2].label, args: append(common2, rateLimitRows[2].args(n2)...), targetRPS: 40_000},
		{label: rateLimitRows[3].label, args: append(common2, rateLimitRows[3].args(n2)...)},
		{label: "docs-ops, 64 clients on 1 document (HTTP)", args: append(common2, "--scenario", "docs-ops", "--docs", "1", "--connections", "64")},
		{label: "docs-ops, 64 clients on 64 documents (HTTP)", args: append(common2, "--scenario", "docs-ops", "--docs", "64", "--connections", "64")},
		// The floor server speaks no WebSocket: these rows have none.
		{label: "docs-ws, 64 clients on 1 document (WebSocket, every op to all 64)", args: append(ws, "--docs", "1")},
		{label: "docs-ws, 64 clients on 64 documents (WebSocket)", args: append(ws, "--docs", "64")},
	}
	var open *run
	for i, r := range runs {
		fmt.Fprintf(os.Stderr, "→ %s\n", r.label)
		if r.res, r.cmd, err = runBench(bin, r.args); err != nil {
			return err
		}
		if i > 0 {
			continue
		}
		// Open loop at half the closed-loop create throughput (the p99
		// target), right after it: on the same state, before the later
		// scenarios (the batch one adds millions of users) change it.
		half := runs[0].res.ThroughputRPS / 2
		open = &run{label: fmt.Sprintf("users-create, open loop at %.0f req/s (half the closed-loop maximum)", half), args: createArgs(url, dur, half), rate: half}
		fmt.Fprintf(os.Stderr, "→ %s\n", open.label)
		if open.res, open.cmd, err = runBench(bin, open.args); err != nil {
			return err
		}
	}
	keyed, err := runKeyed(bin, url, dur)
	if err != nil {
		return err
	}
	fsync := measureFsync()
	if fsync > 0 {
		runs[1].targetRPS = 0.6 / fsync.Seconds()
	}

	// The same open loop on a node that trades memory for latency: the
	// garbage collector off until a memory limit (OPERATIONS.md).
	tuned, err := runOpenTuned(bin, dur, open)
	if err != nil {
		return err
	}

	wn, err := startNodeProc(bin)
	if err != nil {
		return err
	}
	watchRate, watchRows, err := runWatchRows(bin, wn, d, 2)
	wn.remove()
	if err != nil {
		return err
	}

	secure, err := runSecure(bin, dur)
	if err != nil {
		return err
	}

	three, err := runThreeNode(bin, dur)
	if err != nil {
		return err
	}
	runs = append(runs, three...)

	fmt.Fprintf(os.Stderr, "→ memory and restart with %d users\n", memUsers)
	mem, err := measureMemory(bin, memUsers)
	if err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "→ memory per idle document and restart with %d documents\n", memDocs)
	docMem, err := measureDocMemory(bin, memDocs)
	if err != nil {
		return err
	}

	fmt.Fprintln(os.Stderr, "→ Go benchmarks")
	goOut, goCmd, err := runGoBench(gopkgs)
	if err != nil {
		return err
	}
	return writeReport(out, runs, []*run{open, tuned}, keyed, secure, watchTable(watchRate, watchRows), fsync, mem, docMem, goOut, goCmd)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// node is a troupe process under test, with its data dir.
type node struct {
	bin, dir, addr, raftAddr, pprofAddr, grpcAddr string
	extra                                         []string
	env                                           []string // added to the environment
	// secure: authentication on and the default rate limit at
	// secureRateLimit, in place of --insecure --rate-limit off.
	secure bool
	cmd    *exec.Cmd
}

func newNode(bin string) (*node, error) {
	dir, err := os.MkdirTemp("", "troupe-bench-")
	if err != nil {
		return nil, err
	}
	return &node{bin: bin, dir: dir, addr: freeAddr(), raftAddr: freeAddr(), pprofAddr: freeAddr(), grpcAddr: freeAddr()}, nil
}

// start runs the node and returns how long it took to become ready.
func (n *node) start() (time.Duration, error) {
	begin := time.Now()
	// Every bench client is one user (or one address): it may hold as
	// many streams as the scenario opens.
	mode := []string{"--insecure", "--rate-limit", "off"}
	if n.secure {
		mode = []string{"--rate-limit", secureRateLimit}
	}
	args := append(append([]string{"serve"}, mode...), "--max-streams-per-user", "100000", "--data", n.dir,
		"--http-addr", n.addr, "--raft-addr", n.raftAddr, "--pprof", n.pprofAddr, "--log-level", "warn")
	if servesFlag(n.bin, "grpc-addr") { // an earlier build compared against may not have it
		args = append(args, "--grpc-addr", n.grpcAddr)
	}
	n.cmd = exec.Command(n.bin, append(args, n.extra...)...)
	n.cmd.Stderr = os.Stderr
	if len(n.env) > 0 {
		n.cmd.Env = append(os.Environ(), n.env...)
	}
	if err := n.cmd.Start(); err != nil {
		n.cmd = nil // no process to stop
		return 0, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + n.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(begin), nil
			}
		}
		if time.Now().After(deadline) {
			n.stop()
			return 0, fmt.Errorf("node did not become ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the process with SIGTERM and keeps the data dir.
func (n *node) stop() {
	if n.cmd != nil {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		_ = n.cmd.Wait()
		n.cmd = nil
	}
}

func (n *node) remove() {
	n.stop()
	os.RemoveAll(n.dir)
}

// createArgs is users-create at 64 connections against url: a closed
// loop, or an open one at rate requests/s. An open loop runs against the
// floor too: the floor's p99 at the same rate is this machine's own tail
// (client, kernel, scheduling), next to which the node's stands.
func createArgs(url, dur string, rate float64) []string {
	args := []string{"bench", "--addr", url, "--duration", dur, "--warmup", "1s", "--json", "--scenario", "users-create", "--connections", "64"}
	if rate > 0 {
		args = append(args, "--rate", fmt.Sprintf("%.0f", rate), "--compare-floor")
	}
	return args
}

// tunedGC is the environment of the node behind the second open-loop
// row: no collection until the heap nears the limit.
var tunedGC = []string{"GOGC=off", "GOMEMLIMIT=2GiB"}

// runOpenTuned repeats open's measurement on a fresh node run with
// tunedGC: closed-loop creates first (the same state), then the open
// loop at open's rate.
func runOpenTuned(bin, dur string, open *run) (*run, error) {
	n, err := newNode(bin)
	if err != nil {
		return nil, err
	}
	n.env = tunedGC
	defer n.remove()
	if _, err := n.start(); err != nil {
		return nil, err
	}
	url := "http://" + n.addr
	fmt.Fprintf(os.Stderr, "→ open loop again with %s\n", strings.Join(tunedGC, " "))
	if _, _, err := runBench(bin, createArgs(url, dur, 0)); err != nil {
		return nil, err
	}
	r := &run{label: open.label + ", node run with " + strings.Join(tunedGC, " "), args: createArgs(url, dur, open.rate)}
	if r.res, r.cmd, err = runBench(bin, r.args); err != nil {
		return nil, err
	}
	r.cmd = strings.Join(tunedGC, " ") + " troupe serve …; " + r.cmd
	return r, nil
}

func startNode(bin string) (string, func(), error) {
	n, err := startNodeProc(bin)
	if err != nil {
		return "", nil, err
	}
	return n.addr, n.remove, nil
}

// startNodeProc starts a fresh node and returns it running.
func startNodeProc(bin string) (*node, error) {
	n, err := newNode(bin)
	if err != nil {
		return nil, err
	}
	if _, err := n.start(); err != nil {
		n.remove()
		return nil, err
	}
	return n, nil
}

func runBench(bin string, args []string) (*result, string, error) {
	cmd := exec.Command(bin, args...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	before, okBefore := bench.ReadCPU()
	if err := cmd.Run(); err != nil {
		return nil, "", fmt.Errorf("troupe %s: %w", strings.Join(args, " "), err)
	}
	after, okAfter := bench.ReadCPU()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var r result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return nil, "", fmt.Errorf("cannot parse the bench result: %w", err)
	}
	r.Steal = bench.Stolen(before, after, okBefore, okAfter)
	shown := append([]string{"troupe"}, args...)
	for i, a := range shown {
		if !strings.HasPrefix(a, "http://127.0.0.1:") {
			continue
		}
		if parts := strings.Split(a, ","); len(parts) > 1 {
			for j := range parts {
				parts[j] = fmt.Sprintf("http://127.0.0.1:%d", 8081+j)
			}
			shown[i] = strings.Join(parts, ",")
		} else {
			shown[i] = "http://127.0.0.1:8080"
		}
	}
	return &r, strings.Join(shown, " "), nil
}

// measureFsync times 200 appends of 4 KiB with an fsync each in the
// working directory's file system: the floor of a durable write.
func measureFsync() time.Duration {
	f, err := os.CreateTemp(".", ".fsync-probe-")
	if err != nil {
		return 0
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	const n = 200
	start := time.Now()
	for range n {
		if _, err := f.Write(buf); err != nil {
			return 0
		}
		if err := f.Sync(); err != nil {
			return 0
		}
	}
	return time.Since(start) / n
}

func runGoBench(pkgs []string) (string, string, error) {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", "300ms"}, pkgs...)
	cmd := exec.Command("go", args...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stdout.String())
	}
	var keep []string
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Benchmark") || strings.HasPrefix(line, "pkg:") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n"), "go " + strings.Join(args, " "), nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown"
}

func goVersion() string {
	out, err := exec.Command("go", "version").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

// runThreeNode forms a three-node cluster of processes on this machine
// and drives users-create at 64 connections spread over the three nodes
// (followers forward to the leader), next to the floor.
func runThreeNode(bin, dur string) ([]*run, error) {
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.remove()
		}
	}()
	var urls []string
	for i := range 3 {
		n, err := newNode(bin)
		if err != nil {
			return nil, err
		}
		n.extra = []string{"--node-id", fmt.Sprintf("n%d", i+1)}
		if i == 0 {
			n.extra = append(n.extra, "--bootstrap")
		} else {
			n.extra = append(n.extra, "--join", urls[0])
		}
		nodes = append(nodes, n)
		if _, err := n.start(); err != nil {
			return nil, err
		}
		urls = append(urls, "http://"+n.addr)
	}
	args := []string{"bench", "--addr", strings.Join(urls, ","), "--duration", dur, "--warmup", "1s", "--json",
		"--compare-floor", "--scenario", "users-create", "--connections", "64"}
	spread := &run{label: "users-create, 3-node cluster, 64 connections over the 3 nodes", args: args, targetRPS: 17000}
	// The same connections, each moving to the leader its first answer
	// names, as the Go client sends writes: no forwarding hop.
	leader := &run{label: "users-create, 3-node cluster, 64 connections over the 3 nodes, each following X-Troupe-Leader (`--follow-leader`, as the Go client does)",
		args: append(slices.Clip(args), "--follow-leader"), targetRPS: 25000, short: "users-create, 3-node cluster, following the leader"}
	for _, r := range []*run{spread, leader} {
		fmt.Fprintf(os.Stderr, "→ %s\n", r.label)
		var err error
		if r.res, r.cmd, err = runBench(bin, r.args); err != nil {
			return nil, err
		}
	}
	return []*run{spread, leader}, nil
}

var (
	serveFlagsMu sync.Mutex
	serveFlags   = map[string]string{} // binary → its `serve -h` output
)

// servesFlag reports whether bin's `troupe serve` takes --name: the suite
// also runs builds from before a flag existed (--before).
func servesFlag(bin, name string) bool {
	serveFlagsMu.Lock()
	defer serveFlagsMu.Unlock()
	help, ok := serveFlags[bin]
	if !ok {
		out, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
		help = string(out)
		serveFlags[bin] = help
	}
	return strings.Contains(help, "-"+name+" ")
}
