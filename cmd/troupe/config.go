package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/troupe-db/troupe/cluster"
	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/internal/webhook"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/api"
)

// serveConfig is everything `troupe serve` is told: one struct per
// component, plus the process's own settings.
type serveConfig struct {
	Node      cluster.Config
	HTTP      api.Config
	LogLevel  string
	LogFormat string
	PprofAddr string // serve net/http/pprof here; empty: off
	// Tracing says where spans go (--otlp-endpoint, or the OTEL_*
	// variables) and which share of traces is kept (--trace-sample).
	Tracing tracing.Config
	// GRPCAddr serves Envoy's rate-limit service (gRPC) here; empty: off.
	GRPCAddr string
	// Webhooks configures the leader's webhook deliveries
	// (--webhook-allow-private, --webhook-timeout).
	Webhooks webhook.Config

	// Explicit records which flags the operator set (flag or env), e.g. to
	// tell a chosen --user-shards from the default.
	Explicit map[string]bool
	// Warnings are logged once the logger is set up (a secret given on
	// the command line).
	Warnings []string
	// ClusterSecretFile holds the cluster secret, which then stays off
	// the command line; secretOnArgv: --cluster-secret was a flag, not
	// TROUPE_CLUSTER_SECRET.
	ClusterSecretFile string
	secretOnArgv      bool

	// Accepted for the documented interface; refused until implemented.
	Join            string
	BootstrapExpect int
	Bootstrap       bool
	ClusterSecret   string
	TLSCert         string
	TLSKey          string
	TLSCA           string
	HTTPTLSCert     string
	HTTPTLSKey      string
	CORSOrigins     string
	RateLimit       string
	RateLimitMode   string
	TrustedProxies  string

	// peerTLS is how this node calls other nodes' HTTP APIs when they
	// serve HTTPS (nil: plain HTTP); derived from the TLS flags.
	peerTLS *tls.Config
}

// parseServe reads flags, then TROUPE_* environment variables for flags
// not given (TROUPE_HTTP_ADDR for --http-addr), then defaults.
func parseServe(args []string, stderr io.Writer, getenv func(string) string) (*serveConfig, error) {
	c := &serveConfig{Node: cluster.DefaultConfig(), HTTP: api.DefaultConfig(), Explicit: map[string]bool{}}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	// The usage goes out for -h only: a bad flag is one line of error.
	var usage bytes.Buffer
	fs.SetOutput(&usage)
	fs.StringVar(&c.Node.NodeID, "node-id", c.Node.NodeID, "this node's id, unique in its cluster (kept in the data dir)")
	fs.StringVar(&c.HTTP.HTTPAddr, "http-addr", c.HTTP.HTTPAddr, "address to serve the HTTP API on")
	fs.StringVar(&c.Node.RaftAddr, "raft-addr", c.Node.RaftAddr, "address for raft traffic between nodes")
	fs.StringVar(&c.Node.DataDir, "data", c.Node.DataDir, "data directory (raft log, snapshots)")
	fs.StringVar(&c.HTTP.AdvertiseHTTP, "advertise-http", "", "HTTP address clients and other nodes reach this node at (default --http-addr)")
	fs.StringVar(&c.Node.AdvertiseRaft, "advertise-raft", "", "raft address other nodes reach this node at (default --raft-addr)")
	fs.BoolVar(&c.Bootstrap, "bootstrap", false, "bootstrap a new cluster with this node as its first member")
	fs.StringVar(&c.Join, "join", "", "join the cluster of these members (URL[,URL])")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", 0, "form a cluster once this many nodes know each other")
	fs.StringVar(&c.ClusterSecret, "cluster-secret", "", "shared secret a joining node must prove (visible in the process list: prefer --cluster-secret-file or TROUPE_CLUSTER_SECRET)")
	fs.StringVar(&c.ClusterSecretFile, "cluster-secret-file", "", "file holding the cluster secret (its content, trimmed)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "node-to-node TLS certificate")
	fs.StringVar(&c.TLSKey, "tls-key", "", "node-to-node TLS key")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "CA that node-to-node certificates must chain to")
	fs.StringVar(&c.HTTPTLSCert, "http-tls-cert", "", "HTTPS certificate for clients")
	fs.StringVar(&c.HTTPTLSKey, "http-tls-key", "", "HTTPS key for clients")
	fs.StringVar(&c.CORSOrigins, "cors-origins", "", "origins allowed by CORS")
	fs.BoolVar(&c.HTTP.Insecure, "insecure", false, "turn authentication off: every request acts as admin (local trials, benchmarks)")
	fs.StringVar(&c.RateLimit, "rate-limit", "100/1s", "the default policy: requests per client (user, else address), e.g. 100/1s, or off")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "addresses or CIDRs of proxies whose X-Forwarded-For is believed")
	fs.StringVar(&c.RateLimitMode, "rate-limit-mode", "local", "local (each node limits what it receives) or global (each key's decisions on the node that owns it)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.Tracing.Endpoint, "otlp-endpoint", "", "send traces here, OTLP over HTTP, e.g. http://127.0.0.1:4318 (/v1/traces is added to a URL without a path); empty: the OTEL_EXPORTER_OTLP_* variables, else tracing is off")
	fs.Float64Var(&c.Tracing.SampleRatio, "trace-sample", tracing.DefaultSampleRatio, "share of new traces kept when tracing is on, 0 to 1 (a request whose traceparent is sampled is always traced)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "", "serve Envoy's rate-limit service (gRPC) on this address, e.g. 127.0.0.1:8081; off when empty")
	fs.StringVar(&c.PprofAddr, "pprof", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060; off when empty")
	fs.IntVar(&c.Node.UserShards, "user-shards", c.Node.UserShards, "user shards of a new cluster (a power of two; fixed at creation)")
	fs.DurationVar(&c.Node.IdempotencyRetention, "idempotency-retention", c.Node.IdempotencyRetention, "how long Idempotency-Keys are remembered in a new cluster, 10s to 24h (fixed at creation)")
	fs.Int64Var(&c.Node.MaxIdempotencyKeys, "max-idempotency-keys", c.Node.MaxIdempotencyKeys, "keys the idempotency window may hold before this node refuses writes that carry one (Idempotency-Key, forwarded writes, WebSocket submits) with 503 until room comes back, 1 to 4294967296")
	fs.DurationVar(&c.HTTP.AccessTTL, "access-token-ttl", c.HTTP.AccessTTL, "how long an access token is valid (1m to 24h)")
	fs.DurationVar(&c.HTTP.TokenLeeway, "token-leeway", c.HTTP.TokenLeeway, "clock skew between nodes allowed for access tokens' times (0s to 5m)")
	fs.DurationVar(&c.HTTP.RequestTimeout, "request-timeout", c.HTTP.RequestTimeout, "how long a request may wait for the cluster")
	fs.DurationVar(&c.HTTP.ShutdownGrace, "shutdown-grace", c.HTTP.ShutdownGrace, "how long in-flight requests may take on shutdown")
	fs.DurationVar(&c.Node.HeartbeatTimeout, "raft-heartbeat-timeout", c.Node.HeartbeatTimeout, "raft heartbeat timeout of multi-node clusters")
	fs.DurationVar(&c.Node.ElectionTimeout, "raft-election-timeout", c.Node.ElectionTimeout, "raft election timeout of multi-node clusters")
	fs.Int64Var(&c.HTTP.MaxUsers, "max-users", c.HTTP.MaxUsers, "users the cluster may hold (1 to 4294967296); a create, registration or batch that would pass it gets 403 quota_exceeded")
	fs.IntVar(&c.HTTP.MaxDocumentsPerUser, "max-documents-per-user", c.HTTP.MaxDocumentsPerUser, "documents one user may own (1 to 10000000); over it a create gets 403 quota_exceeded")
	fs.IntVar(&c.HTTP.MaxMembersPerDocument, "max-members-per-document", c.HTTP.MaxMembersPerDocument, "members (viewers and editors) one document may have (1 to 100000); one more gets 403 quota_exceeded")
	fs.IntVar(&c.HTTP.MaxLinksPerDocument, "max-links-per-document", c.HTTP.MaxLinksPerDocument, "share links one document may have that have not expired (1 to 10000); one more gets 403 quota_exceeded")
	fs.IntVar(&c.HTTP.MaxNamedVersionsPerDocument, "max-named-versions-per-document", c.HTTP.MaxNamedVersionsPerDocument, "named versions one document may keep (1 to 10000); one more gets 403 quota_exceeded")
	fs.IntVar(&c.HTTP.MaxNamedVersionBytesPerUser, "max-named-version-bytes-per-user", c.HTTP.MaxNamedVersionBytesPerUser, "bytes of named versions (texts and names) the documents one user owns may keep (1048576 to 1099511627776); over it a naming gets 403 quota_exceeded")
	fs.IntVar(&c.HTTP.DocumentHistoryBytes, "document-history-bytes", c.HTTP.DocumentHistoryBytes, "bytes of changes and checkpoints a document keeps for late submits, replays and reading past versions (1048576 to 1073741824); the oldest drop out")
	fs.IntVar(&c.Node.Watch.MaxChanges, "watch-history", feed.DefaultMaxChanges, "changes the node keeps for watchers that resume (1 to 10000000); a watch from before them gets 410 gone")
	fs.Int64Var(&c.Node.Watch.MaxBytes, "watch-history-bytes", feed.DefaultMaxBytes, "bytes of kept changes at most (1048576 to 68719476736); the oldest go first")
	fs.BoolVar(&c.Webhooks.AllowPrivate, "webhook-allow-private", false, "let webhooks target loopback, private, link-local and other non-public addresses (off: refused when created and when dialled)")
	fs.DurationVar(&c.Webhooks.Timeout, "webhook-timeout", webhook.DefaultTimeout, "how long one webhook delivery may take (100ms to 5m); a slower receiver's delivery fails and is retried")
	fs.Uint64Var(&c.Node.SnapshotThreshold, "snapshot-threshold", c.Node.SnapshotThreshold, "log entries between automatic snapshots")
	fs.IntVar(&c.HTTP.MaxConnections, "max-connections", c.HTTP.MaxConnections, "client connections this node holds open, WebSockets included (1 to 1000000); the next gets 503")
	fs.IntVar(&c.HTTP.MaxStreams, "max-streams", c.HTTP.MaxStreams, "SSE and WebSocket streams open on this node (1 to 1000000); the next gets 503")
	fs.IntVar(&c.HTTP.MaxStreamsPerUser, "max-streams-per-user", c.HTTP.MaxStreamsPerUser, "streams one user (else one client address) may hold open on this node (1 to 100000); the next gets 429")
	fs.IntVar(&c.HTTP.MaxPresence, "max-presence-per-document", c.HTTP.MaxPresence, "clients present in one document (streams with a client_id, 1 to 100000); the next gets 429")
	fs.StringVar(&c.Node.Backups.Dir, "backup-dir", "", "the leader writes a backup here every --backup-every (empty: no scheduled backups)")
	fs.DurationVar(&c.Node.Backups.Every, "backup-every", c.Node.Backups.Every, "time between scheduled backups (1s to 168h)")
	fs.IntVar(&c.Node.Backups.Keep, "backup-keep", c.Node.Backups.Keep, "scheduled backups kept, the newest (1 to 10000)")
	fs.Uint64Var(&c.Node.TrailingLogs, "raft-trailing-logs", c.Node.TrailingLogs, "log entries kept behind a snapshot for followers that lag (0 to 16777216); one further behind gets the snapshot")
	fs.IntVar(&c.Node.WALSegmentSize, "raft-wal-segment-size", 64<<20, "bytes of a raft log segment file (65536 to 1073741824); the log is truncated after a snapshot by whole segments")
	argonMem := fs.Uint("argon2-memory-kib", uint(c.HTTP.Argon2.MemoryKiB), "argon2id memory per password hash, KiB (OWASP: 19456)")
	argonTime := fs.Uint("argon2-time", uint(c.HTTP.Argon2.Time), "argon2id iterations (OWASP: 2)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = usage.WriteTo(stderr)
			return nil, err
		}
		return nil, fmt.Errorf("%v (troupe serve -h lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	fs.Visit(func(f *flag.Flag) { c.Explicit[f.Name] = true })
	c.secretOnArgv = c.Explicit["cluster-secret"]
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if c.Explicit[f.Name] {
			return
		}
		env := "TROUPE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", env, v, err))
			}
			c.Explicit[f.Name] = true
		}
	})
	c.HTTP.Argon2.MemoryKiB, c.HTTP.Argon2.Time = uint32(*argonMem), uint32(*argonTime)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, c.validate()
}

func (c *serveConfig) validate() error {
	var errs []error
	notYet := func(flagName string) {
		errs = append(errs, fmt.Errorf("--%s is not available in this version of troupe yet; it runs one-node clusters", flagName))
	}
	switch {
	case c.Join != "" && c.Bootstrap:
		errs = append(errs, errors.New("--join and --bootstrap exclude each other: the first node bootstraps, the others join"))
	case c.Join != "":
		c.Node.Mode = cluster.Join // with --bootstrap-expect, the nodes bootstrap together
		for _, u := range strings.Split(c.Join, ",") {
			if _, err := joinURL(u); err != nil {
				errs = append(errs, err)
			}
		}
	case c.Bootstrap:
		c.Node.Mode = cluster.Bootstrap
	}
	if c.BootstrapExpect != 0 {
		switch {
		case c.BootstrapExpect < 1 || c.BootstrapExpect > 9:
			errs = append(errs, fmt.Errorf("--bootstrap-expect=%d: give the number of nodes forming the cluster, 1 to 9", c.BootstrapExpect))
		case c.Join == "":
			errs = append(errs, errors.New("--bootstrap-expect needs --join with the URLs of the other nodes that form the cluster"))
		case c.Bootstrap:
			errs = append(errs, errors.New("--bootstrap-expect and --bootstrap exclude each other"))
		}
	}
	if secret, warnings, err := settleClusterSecret(c.ClusterSecret, c.ClusterSecretFile, c.secretOnArgv); err != nil {
		errs = append(errs, err)
	} else {
		c.ClusterSecret, c.Warnings = secret, append(c.Warnings, warnings...)
	}
	c.HTTP.ClusterSecret = c.ClusterSecret
	c.Node.ClusterSecret = c.ClusterSecret
	// The member directory records where this node's HTTP API is reached.
	advertise := c.HTTP.AdvertiseHTTP
	if advertise == "" {
		advertise = c.HTTP.HTTPAddr
	}
	if host, _, err := net.SplitHostPort(advertise); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			if c.Node.Mode != cluster.Standalone {
				errs = append(errs, fmt.Errorf("--http-addr %s listens on all interfaces: give --advertise-http, the address other nodes and clients use", c.HTTP.HTTPAddr))
			}
			advertise = ""
		}
	}
	c.Node.AdvertiseHTTP = advertise
	if advertise != "" {
		c.HTTP.AdvertiseHTTP = advertise
	}
	c.Node.TLS = cluster.TLSFiles{Cert: c.TLSCert, Key: c.TLSKey, CA: c.TLSCA}
	if c.Node.TLS.Enabled() {
		if _, err := c.Node.TLS.Config(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.setupHTTPTLS(); err != nil {
		errs = append(errs, err)
	}
	if err := webhook.ValidateTimeout(c.Webhooks.Timeout); err != nil {
		errs = append(errs, err)
	}
	if err := checkListenAddr("grpc-addr", c.GRPCAddr); err != nil {
		errs = append(errs, err)
	}
	for name, v := range map[string]string{"cors-origins": c.CORSOrigins} {
		if v != "" {
			notYet(name)
		}
	}
	if p, on, err := storage.ParseRateLimit(storage.DefaultPolicy, c.RateLimit); err != nil {
		errs = append(errs, fmt.Errorf("--rate-limit: %v", err))
	} else if on {
		c.HTTP.RateLimit = &p
	}
	if proxies, err := api.ParseTrustedProxies(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("--trusted-proxies: %v", err))
	} else {
		c.HTTP.TrustedProxies = proxies
	}
	switch c.RateLimitMode {
	case "local":
	case "global":
		c.HTTP.RateLimitGlobal = true
	default:
		errs = append(errs, fmt.Errorf("--rate-limit-mode must be local or global, got %q", c.RateLimitMode))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", c.LogLevel))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format must be text or json, got %q", c.LogFormat))
	}
	// The leader's lease follows the heartbeat timeout (500 ms at the
	// default 1 s), so a longer heartbeat for a slow or loaded host also
	// keeps a leader from stepping down while its followers sync large
	// entries.
	c.Node.LeaderLeaseTimeout = c.Node.HeartbeatTimeout / 2
	if err := c.Node.Watch.ValidateFlags(); err != nil {
		errs = append(errs, err)
	} else if err := c.Node.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Tracing.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.HTTP.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

var errHelp = flag.ErrHelp

// joinURL checks one --join entry: an http:// URL of a member (or a bare
// host:port).
func joinURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("--join: %q is not a member's URL (http://host:port)", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// setupHTTPTLS turns --http-tls-cert/--http-tls-key into HTTPS for
// clients and for calls between nodes (every node of a cluster serves the
// same scheme). With --tls-ca, nodes recognise each other by their
// --tls-cert client certificates and trust only that CA for peers.
func (c *serveConfig) setupHTTPTLS() error {
	if c.HTTPTLSCert == "" && c.HTTPTLSKey == "" {
		return nil
	}
	if c.HTTPTLSCert == "" || c.HTTPTLSKey == "" {
		return errors.New("HTTPS needs both --http-tls-cert and --http-tls-key")
	}
	cert, err := tls.LoadX509KeyPair(c.HTTPTLSCert, c.HTTPTLSKey)
	if err != nil {
		return fmt.Errorf("cannot load the HTTPS certificate: %w", err)
	}
	server := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	peer := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.Node.TLS.Enabled() {
		nodeTLS, err := c.Node.TLS.Config()
		if err != nil {
			return err
		}
		server.ClientCAs, server.ClientAuth = nodeTLS.ClientCAs, tls.VerifyClientCertIfGiven
		peer.RootCAs, peer.Certificates = nodeTLS.RootCAs, nodeTLS.Certificates
	}
	c.HTTP.TLS, c.HTTP.PeerTLS, c.Node.PeerHTTPTLS, c.peerTLS = server, peer, peer, peer
	return nil
}

// peerScheme is the scheme of the nodes' HTTP APIs.
func (c *serveConfig) peerScheme() string {
	if c.peerTLS != nil {
		return "https://"
	}
	return "http://"
}

// peerClient is an HTTP client for calls to other nodes.
func (c *serveConfig) peerClient(timeout time.Duration) *http.Client {
	if c.peerTLS == nil {
		return &http.Client{Timeout: timeout}
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: c.peerTLS}}
}

// checkListenAddr checks an optional host:port flag (empty: off).
func checkListenAddr(flag, addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("--%s %q: give host:port with a port from 0 to 65535 (e.g. 127.0.0.1:8081), or leave it empty for off", flag, addr)
	}
	return nil
}
