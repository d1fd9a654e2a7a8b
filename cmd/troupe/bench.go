package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	json "github.com/goccy/go-json"

	"github.com/troupe-db/troupe/bench"
)

// benchCmd runs `troupe bench [flags]` and `troupe bench serve-floor`.
func benchCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "serve-floor" {
		return serveFloor(args[1:], stdout, stderr)
	}
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addr", "http://127.0.0.1:8080", "target node(s): URL[,URL]; connections are spread over them")
	fs.StringVar(&cfg.Scenario, "scenario", cfg.Scenario, "workload: "+strings.Join(bench.ScenarioNames(), ", "))
	fs.IntVar(&cfg.Connections, "connections", cfg.Connections, "concurrent connections")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured time")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured time before it")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests per second in all (latency from each request's intended start); 0: closed loop")
	fs.Int64Var(&cfg.Requests, "requests", 0, "stop after this many measured requests (0: no limit)")
	fs.IntVar(&cfg.Users, "users", cfg.Users, "users created before the read scenarios (not timed); users-churn keeps as many (each connection its share)")
	fs.IntVar(&cfg.BatchSize, "batch-size", cfg.BatchSize, "users per request in users-batch")
	fs.IntVar(&cfg.Docs, "docs", cfg.Docs, "documents docs-ops and docs-ws edit (connections are spread over them)")
	fs.IntVar(&cfg.DocBytes, "doc-bytes", cfg.DocBytes, "bytes of text in each document docs-create creates, 0..1048576")
	fs.IntVar(&cfg.DocLength, "doc-length", 0, "docs-ws: create the documents with this many letters and keep them there (an edit deletes a letter when the document has this many, else inserts one), 0..1048576; 0: every edit inserts and the documents grow")
	fs.IntVar(&cfg.Checks, "checks", cfg.Checks, "checks per multi-check in ratelimit-batch, 1..100")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "", "ratelimit-grpc: host:port of the node's rate-limit service (its --grpc-addr); the policy is put through --addr")
	fs.StringVar(&cfg.GRPCClient, "grpc-client", cfg.GRPCClient, "ratelimit-grpc's client: h2 (the load generator's own HTTP/2 client, requests marshalled once: a few µs of CPU a call) or grpc-go (grpc-go's client, ≈ 20 µs a call on the cores the node shares)")
	fs.IntVar(&cfg.Watchers, "watchers", cfg.Watchers, "change-feed streams the watch scenario holds open while it creates users (0 to 10000; 0: none, to compare)")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-request timeout")
	fs.StringVar(&cfg.Token, "token", os.Getenv("TROUPE_TOKEN"), "access token for secure nodes (an admin's for scenarios that create users or policies; env TROUPE_TOKEN)")
	fs.BoolVar(&cfg.SignIn, "sign-in", false, "secure nodes: before timing, create one admin user per connection with --token and log each in; every connection then sends its own user's token (HTTP scenarios)")
	fs.BoolVar(&cfg.FollowLeader, "follow-leader", false, "write scenarios: move each connection to the node its answers name in X-Troupe-Leader (among --addr), as the Go client sends writes")
	fs.BoolVar(&cfg.Idempotency, "idempotency", false, "send a fresh Idempotency-Key with every write (the scenarios that write over HTTP: "+strings.Join(bench.KeyedScenarios(), ", ")+")")
	asJSON := fs.Bool("json", false, "print the result as one JSON object on the last line")
	compare := fs.Bool("compare-floor", false, "also run the scenario against a bare fasthttp server, or for ratelimit-grpc a bare gRPC rate-limit service (troupe bench serve-floor), and print the ratio")
	list := fs.Bool("list", false, "list the scenarios")
	allowErrors := fs.Bool("allow-errors", false, "exit 0 even when more than 1% of the measured requests failed (else such a run exits 2)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *list {
		for _, n := range bench.ScenarioNames() {
			fmt.Fprintf(stdout, "%-16s %s\n", n, bench.ScenarioDescription(n))
		}
		return 0
	}
	var err error
	if cfg.Addrs, err = bench.ParseAddrs(*addrs); err != nil {
		fmt.Fprintf(stderr, "troupe bench: %v\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "troupe bench: %v\n", err)
		return 2
	}
	if *compare && !bench.HasFloor(cfg.Scenario) {
		fmt.Fprintf(stderr, "troupe bench: --compare-floor: scenario %s has no floor (the floor server speaks plain HTTP and gRPC only)\n", cfg.Scenario)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	res, err := runBench(ctx, cfg, false, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "troupe bench: %v\n", err)
		return 1
	}
	if *compare {
		floor, err := runFloor(ctx, cfg, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "troupe bench: floor: %v\n", err)
			return 1
		}
		res.Floor = floor
		if floor.ThroughputRPS > 0 {
			res.FloorRatio = res.ThroughputRPS / floor.ThroughputRPS
		}
	}
	bench.WriteTable(stdout, res)
	if *asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	if !*allowErrors && res.Errors*100 > res.Requests {
		fmt.Fprintf(stderr, "troupe bench: %d of %d measured requests failed (more than 1%%): the figures above are not the node's; see the errors listed, or pass --allow-errors\n", res.Errors, res.Requests)
		return 2
	}
	return 0
}

func runBench(ctx context.Context, cfg bench.Config, floor bool, stderr io.Writer) (*bench.Result, error) {
	r, err := bench.NewRunner(cfg, floor)
	if err != nil {
		return nil, err
	}
	var progress func(bench.Live)
	if isTerminal(stderr) {
		progress = func(l bench.Live) { fmt.Fprint(stderr, bench.ProgressLine(l)) }
		defer fmt.Fprintln(stderr)
	}
	return r.Run(ctx, progress)
}

// runFloor starts `troupe bench serve-floor` as a separate process (as
// the node under test is one) and runs the same scenario against it.
func runFloor(ctx context.Context, cfg bench.Config, stderr io.Writer) (*bench.Result, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"bench", "serve-floor", "--http-addr", addr}
	if bench.IsGRPC(cfg.Scenario) {
		if cfg.GRPCAddr, err = freeLoopbackAddr(); err != nil {
			return nil, err
		}
		args = append(args, "--grpc-addr", cfg.GRPCAddr)
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start the floor server: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range []string{addr, cfg.GRPCAddr} {
		for a != "" {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the floor server did not start on %s", a)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cfg.Addrs = []string{addr}
	return runBench(ctx, cfg, true, stderr)
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func serveFloor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve-floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http-addr", "127.0.0.1:8090", "address to serve on")
	grpcAddr := fs.String("grpc-addr", "", "also serve a bare gRPC rate-limit service (the floor of ratelimit-grpc) here; default: none")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "troupe bench serve-floor: %v\n", err)
		return 1
	}
	srv := bench.NewFloorServer()
	var rls *bench.FloorRateLimitService
	if *grpcAddr != "" {
		// The gRPC floor runs with the node's runtime settings (serve's
		// collector target and processors, unless the environment sets
		// them), so that it differs from the node's rate-limit service
		// by the work behind the answer only.
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(400)
		}
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0))
		}
		gln, err := net.Listen("tcp", *grpcAddr)
		if err != nil {
			ln.Close()
			fmt.Fprintf(stderr, "troupe bench serve-floor: --grpc-addr: %v\n", err)
			return 1
		}
		rls = bench.NewFloorRateLimitService()
		go func() { _ = rls.Serve(gln) }()
		fmt.Fprintf(stdout, "floor rate-limit service (gRPC) on %s\n", gln.Addr())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		if rls != nil {
			rls.Stop()
		}
		_ = srv.Shutdown()
	}()
	fmt.Fprintf(stdout, "floor server on http://%s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintf(stderr, "troupe bench serve-floor: %v\n", err)
		return 1
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
