package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.opentelemetry.io/otel"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/cluster"
	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/internal/webhook"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/api"
	"github.com/troupe-db/troupe/transport/envoy"
)

func serve(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseServe(args, stderr, os.Getenv)
	if err != nil {
		if errors.Is(err, errHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "troupe: cannot start: %s\n", oneLine(err))
		return 1
	}
	logger := newLogger(cfg, stderr)
	for _, w := range cfg.Warnings {
		logger.Warn(w)
	}
	if os.Getenv("GOGC") == "" {
		// The heap is mostly long-lived records: collecting at 5× the live
		// heap instead of 2× costs memory but buys ~10% more creates and a
		// lower p99 (docs/BENCHMARKS.md). GOGC in the environment wins.
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// Twice as many Go processors as the runtime would pick. Raft's
		// leader loop syncs the log in a system call and then waits for
		// a free processor behind the goroutines the last commit woke;
		// with more processors than cores the kernel's scheduler, which
		// preempts, interleaves them instead. On two cores this halved
		// the open-loop p99 and p99.9 at half the maximum create rate,
		// throughput unchanged (OPERATIONS.md). GOMAXPROCS in the
		// environment wins.
		runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := runNode(ctx, cfg, logger, stdout); err != nil {
		var se startError
		if !errors.As(err, &se) {
			logger.Error("troupe stopped with an error", slog.Any("err", err))
		}
		fmt.Fprintf(stderr, "troupe: %s\n", oneLine(err))
		return 1
	}
	return 0
}

// startError is a failure to start: the operator reads it as one line,
// "troupe: cannot <what>: <cause>", naming the flag or path to fix.
type startError struct{ error }

func (e startError) Unwrap() error { return e.error }

// oneLine joins the lines of err (errors.Join puts each on its own).
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

func newLogger(cfg *serveConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runNode starts the components in order — actors, raft node, HTTP — and
// stops them in reverse when ctx ends or the node cannot go on.
func runNode(ctx context.Context, cfg *serveConfig, logger *slog.Logger, stdout io.Writer) (err error) {
	// Everything that may fail for a reason the operator fixes — a taken
	// port, a data dir that is not ours or is in use — fails before a
	// byte is written into the data dir; a first start that fails leaves
	// the data dir as it found it.
	dir := cfg.Node.DataDir
	if err := cluster.CheckDataDir(dir); err != nil {
		return startError{err}
	}
	fresh := dataDirEmpty(dir)
	ln, err := net.Listen("tcp", cfg.HTTP.HTTPAddr)
	if err != nil {
		return startError{fmt.Errorf("cannot listen for HTTP on %s (--http-addr): %w", cfg.HTTP.HTTPAddr, netCause(err))}
	}
	serving := false
	defer func() {
		if !serving {
			ln.Close()
		}
	}()
	var grpcLn net.Listener
	if cfg.GRPCAddr != "" {
		if grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return startError{fmt.Errorf("cannot listen for gRPC on %s (--grpc-addr): %w", cfg.GRPCAddr, netCause(err))}
		}
		defer func() {
			if !serving {
				grpcLn.Close()
			}
		}()
	}
	raftLayer, err := cluster.ListenRaft(cfg.Node)
	if err != nil {
		return startError{err}
	}
	opened := false
	defer func() {
		if !opened {
			raftLayer.Close()
		}
	}()
	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, logger)
		if err != nil {
			return startError{err}
		}
		defer stopPprof()
	}
	release, err := cluster.LockDataDir(dir)
	if err != nil {
		return startError{err}
	}
	defer release()
	defer func() {
		if err != nil && !serving && fresh {
			// Nothing of this start is worth keeping: leave the directory
			// empty, so that the same command succeeds once the cause is
			// fixed.
			clearDataDir(dir, logger)
		}
	}()
	if cfg.Node.NodeID, err = settleNodeID(dir, cfg.Node.NodeID, cfg.Explicit["node-id"]); err != nil {
		return startError{err}
	}
	cfg.Node.StreamLayer = raftLayer
	cfg.Tracing.NodeID = cfg.Node.NodeID
	traces, err := tracing.New(ctx, cfg.Tracing, os.Getenv)
	if err != nil {
		return startError{err}
	}
	if traces != nil {
		// The SDK reports failed exports to the process's handler.
		otel.SetErrorHandler(&tracing.ErrorLog{Logger: logger, Every: time.Minute})
		// Stopped last: the spans of the requests that shutdown waits
		// for are exported too.
		defer func() {
			if serr := traces.Shutdown(context.Background()); serr != nil {
				logger.Warn("not every span could be exported on shutdown", slog.Any("err", serr))
			}
		}()
		logger.Info("tracing is on", slog.String("otlp_endpoint", tracingEndpoint(cfg.Tracing.Endpoint)), slog.Float64("trace_sample", cfg.Tracing.SampleRatio))
	}
	cfg.HTTP.Tracing = traces
	if cfg.HTTP.Insecure {
		logger.Warn("AUTHENTICATION IS OFF (--insecure): every request acts as admin; use only on a trusted network")
	}
	set := metrics.NewSet()
	// raft reports through the process-wide go-metrics registry; one node
	// per process, so it goes straight into this node's set.
	stopRaftMetrics, err := cluster.InstallRaftMetrics(set, "troupe")
	if err != nil {
		return fmt.Errorf("cannot install raft metrics: %w", err)
	}
	defer stopRaftMetrics()
	sys := actors.NewSystem(logger, set)
	defer sys.Shutdown()

	admin := func() (storage.NewUser, error) { return firstAdmin(cfg, logger) }
	opened = true // from here the node closes the raft listener
	node, err := cluster.Open(cfg.Node, logger, set, sys, admin)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "cannot ") {
			err = fmt.Errorf("cannot open the node: %w", err)
		}
		return startError{err}
	}
	defer func() {
		if serr := node.Shutdown(); serr != nil && err == nil {
			err = fmt.Errorf("raft shutdown: %w", serr)
		}
		logger.Info("node stopped")
	}()

	users := func() api.Users {
		if u := node.Users(); u != nil {
			return u
		}
		return nil
	}
	limiter := actors.NewLimiter(sys, set, actors.LimiterConfig{})
	defer limiter.Close()
	cfg.HTTP.Limiter = limiter
	// Webhooks: the leader delivers; the API checks targets and sends
	// test deliveries with the same guard and client.
	cfg.Webhooks.Render = api.RenderChange
	hooks := webhook.New(cfg.Webhooks, node, logger, set)
	cfg.HTTP.Webhooks = hooks
	hooksStop, hooksDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(hooksDone); hooks.Run(hooksStop) }()
	defer func() { close(hooksStop); <-hooksDone }()
	srv, err := api.New(cfg.HTTP, logger, set, node, node.Docs(), users)
	if err != nil {
		return startError{fmt.Errorf("cannot start the HTTP server: %w", err)}
	}
	var rls *envoy.Server
	if grpcLn != nil {
		var tlsCfg *tls.Config
		if cfg.Node.TLS.Enabled() {
			if tlsCfg, err = cfg.Node.TLS.Config(); err != nil {
				return startError{err}
			}
		}
		rls = envoy.New(envoy.Config{TLS: tlsCfg, Timeout: cfg.HTTP.RequestTimeout, Logger: logger}, node, srv.RateLimiter(), srv)
	}
	serving = true // Serve owns the listener now
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownGrace)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			logger.Warn("HTTP shutdown did not finish in time", slog.Any("err", serr))
		}
		if err := <-serveErr; err != nil {
			logger.Warn("HTTP server ended with an error", slog.Any("err", err))
		}
		logger.Info("HTTP server stopped")
	}()
	if rls != nil {
		grpcErr := make(chan error, 1)
		go func() { grpcErr <- rls.Serve(grpcLn) }()
		logger.Info("serving Envoy's rate-limit service", slog.String("addr", grpcLn.Addr().String()), slog.Bool("tls", cfg.Node.TLS.Enabled()))
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownGrace)
			defer cancel()
			rls.Stop(sctx)
			if err := <-grpcErr; err != nil {
				logger.Warn("gRPC server ended with an error", slog.Any("err", err))
			}
			logger.Info("gRPC server stopped")
		}()
	}

	joinCtx, cancelJoin := context.WithCancel(ctx)
	defer cancelJoin()
	joinErr := make(chan error, 1)
	if cfg.Node.Mode == cluster.Join && node.Unconfigured() {
		var urls []string
		for _, u := range strings.Split(cfg.Join, ",") {
			ju, _ := joinURL(u)
			urls = append(urls, ju)
		}
		req := joinRequest{ID: cfg.Node.NodeID, HTTPAddr: cfg.Node.AdvertiseHTTP, RaftAddr: node.RaftAddr(), Voter: true}
		if cfg.BootstrapExpect > 0 {
			go func() {
				joinErr <- formCluster(joinCtx, cfg.peerClient(5*time.Second), node, urls, cfg.BootstrapExpect, req, cfg.ClusterSecret, logger)
			}()
		} else {
			go func() {
				joinErr <- joinCluster(joinCtx, cfg.peerClient(15*time.Second), urls, req, cfg.ClusterSecret, logger)
			}()
		}
	}
	registered := make(chan struct{})
	go func() {
		defer close(registered)
		req := joinRequest{ID: cfg.Node.NodeID, HTTPAddr: cfg.Node.AdvertiseHTTP, RaftAddr: node.RaftAddr(), Voter: true}
		var fallback []string
		if cfg.Join != "" {
			for _, u := range strings.Split(cfg.Join, ",") {
				if ju, err := joinURL(u); err == nil {
					fallback = append(fallback, ju)
				}
			}
		}
		keepRegistered(joinCtx, cfg.peerClient(5*time.Second), cfg.peerScheme(), node, req, cfg.ClusterSecret, fallback, logger)
	}()
	defer func() { cancelJoin(); <-registered }()

	initErr := make(chan error, 1)
	initDeadline := time.Now().Add(2 * time.Minute)
	if cfg.Node.Mode == cluster.Join {
		initDeadline = time.Now().Add(100 * 365 * 24 * time.Hour) // a joining node waits as long as it takes
	}
	go func() {
		initErr <- node.WaitInitialised(initDeadline, cfg.Explicit["user-shards"])
	}()
	url := cfg.peerScheme() + ln.Addr().String()
	logger.Info("troupe is serving", slog.String("url", url), slog.String("node_id", cfg.Node.NodeID), slog.String("data", cfg.Node.DataDir))
	fmt.Fprintf(stdout, "troupe %s is serving on %s  (the editor: open %s/ in a browser)\n", version, url, url)
	if cfg.HTTP.Insecure {
		fmt.Fprintf(stdout, "  authentication is off; try: curl %s/v1/users\n", url)
	} else {
		if hint, ok := adminPasswordHint(cfg, fresh && cfg.Node.Mode != cluster.Join); ok {
			fmt.Fprintf(stdout, "  log in: curl -s %s/v1/auth/login -d '{\"email\":\"%s\",\"password\":\"%s\"}'\n", url, adminEmail(), hint)
		} else {
			// A joined or restored node: its admins are the cluster's (or
			// the backup's), whose passwords this node never saw.
			fmt.Fprintf(stdout, "  log in: curl -s %s/v1/auth/login -d '{\"email\":\"…\",\"password\":\"…\"}' as an admin of this cluster's data\n", url)
		}
		fmt.Fprintf(stdout, "  then:   curl -H \"Authorization: Bearer $TOKEN\" %s/v1/users\n", url)
	}

	for {
		select {
		case <-ctx.Done():
			logger.Info("signal received; shutting down")
			return nil
		case err := <-node.Fatal():
			return err
		case err := <-serveErr:
			serveErr <- err
			return fmt.Errorf("HTTP server failed: %w", err)
		case err := <-initErr:
			if err != nil {
				return err
			}
			initErr = nil
		case err := <-joinErr:
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("cannot join the cluster: %w", err)
			}
			joinErr = nil
		}
	}
}

// dataDirEmpty reports whether dir is absent or empty (a first start).
func dataDirEmpty(dir string) bool {
	entries, err := os.ReadDir(dir)
	return errors.Is(err, fs.ErrNotExist) || err == nil && len(entries) == 0
}

// clearDataDir removes what a failed first start wrote into dir, which
// was empty before it.
func clearDataDir(dir string, logger *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			logger.Warn("cannot clear the data dir after a failed start", slog.Any("err", err))
		}
	}
}

// netCause is the cause of a failed listen ("address already in use"),
// without the address the message names already.
func netCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// settleNodeID keeps the node id in the data dir: a restarted node must
// keep its raft identity. A different explicit --node-id is refused.
func settleNodeID(dataDir, id string, explicit bool) (string, error) {
	path := filepath.Join(dataDir, "node-id")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		stored := strings.TrimSpace(string(b))
		if explicit && stored != id {
			return "", fmt.Errorf("--node-id=%s, but data dir %s belongs to node %q; start it with --node-id=%s or use another data dir", id, dataDir, stored, stored)
		}
		return stored, nil
	case errors.Is(err, fs.ErrNotExist):
		if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("cannot record the node id: %w", err)
		}
		return id, nil
	default:
		return "", fmt.Errorf("cannot read %s: %w", path, err)
	}
}

// firstAdmin prepares the first admin of a new cluster from
// TROUPE_ADMIN_EMAIL and TROUPE_ADMIN_PASSWORD; without a password it
// generates one into <data>/admin-password (mode 0600), reusing that file
// if an earlier start already wrote it.
func firstAdmin(cfg *serveConfig, logger *slog.Logger) (storage.NewUser, error) {
	email, serr := storage.NormalizeEmail("TROUPE_ADMIN_EMAIL", adminEmail())
	if serr != nil {
		return storage.NewUser{}, errors.New(serr.Message)
	}
	password := os.Getenv("TROUPE_ADMIN_PASSWORD")
	if password == "" {
		path := filepath.Join(cfg.Node.DataDir, "admin-password")
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			password = strings.TrimSpace(string(b))
		} else {
			password = generatePassword()
			if err := os.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
				return storage.NewUser{}, fmt.Errorf("cannot write %s: %w", path, err)
			}
		}
		logger.Warn("generated the first admin's password", slog.String("email", email), slog.String("password_file", path))
	}
	if serr := storage.CheckPassword("TROUPE_ADMIN_PASSWORD", password); serr != nil {
		return storage.NewUser{}, errors.New(serr.Message)
	}
	salt := make([]byte, cfg.HTTP.Argon2.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return storage.NewUser{}, err
	}
	return storage.NewUser{
		Name: "Administrator", Email: email, Role: storage.RoleAdmin,
		PasswordHash: storage.HashPassword(password, salt, cfg.HTTP.Argon2),
	}, nil
}

// adminEmail is the first admin's email (TROUPE_ADMIN_EMAIL or the
// default).
func adminEmail() string {
	if e := os.Getenv("TROUPE_ADMIN_EMAIL"); e != "" {
		return e
	}
	return "admin@troupe.local"
}

// adminPasswordHint says where the first admin's password is, for the
// start-up message (never the password itself): TROUPE_ADMIN_PASSWORD, or
// the file this data dir's first start generates (creating says this
// start creates the cluster: the file is written as it initialises).
// false: neither (a node that joined a cluster, or boots from a backup,
// made no first admin).
func adminPasswordHint(cfg *serveConfig, creating bool) (string, bool) {
	if os.Getenv("TROUPE_ADMIN_PASSWORD") != "" {
		return `'"$TROUPE_ADMIN_PASSWORD"'`, true
	}
	path := filepath.Join(cfg.Node.DataDir, "admin-password")
	if _, err := os.Stat(path); err != nil && !creating {
		return "", false
	}
	return "'\"$(cat " + path + ")\"'", true
}

func generatePassword() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 24)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}

// tracingEndpoint names where spans go, for the start-up line.
func tracingEndpoint(flag string) string {
	if flag != "" {
		return flag
	}
	for _, env := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v := os.Getenv(env); v != "" {
			return v + " (" + env + ")"
		}
	}
	return ""
}
