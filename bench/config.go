// Package bench is troupe's load generator: it drives a scenario against
// one or more nodes over fasthttp's client, closed loop (each connection
// sends its next request when the previous answered) or open loop (a
// fixed rate, latency measured from each request's intended start so that
// stalls cannot hide), and reports throughput and latency percentiles
// (HdrHistogram) next to the floor: the same scenario against a bare
// fasthttp server. The docs-ws scenario drives documents over WebSockets
// instead (no floor; docsws.go).
package bench

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is one bench run.
type Config struct {
	Addrs       []string // host:port of each target node
	Scenario    string
	Connections int
	Duration    time.Duration
	Warmup      time.Duration
	Rate        float64 // requests/s over all connections; 0: closed loop
	Requests    int64   // stop after this many measured requests; 0: no limit
	Users       int     // users created before read scenarios; users-churn keeps as many
	BatchSize   int     // users per request in users-batch
	Timeout     time.Duration
	// Docs is how many documents docs-ops and docs-ws edit
	// (connections spread over them round-robin).
	Docs int
	// DocBytes is the length of each document's text in docs-create.
	DocBytes int
	// DocLength, if positive, holds docs-ws's documents at that many
	// letters: they are created with it, and an edit deletes one letter
	// where the client's document has DocLength or more, else inserts
	// one, so that the text keeps its size however long the run (a
	// soak's steady state). 0: every edit inserts and the text grows.
	DocLength int
	// Checks is how many checks one ratelimit-batch request makes (a
	// multi-check, decided all or nothing).
	Checks int
	// GRPCAddr is the host:port of the node's rate-limit service
	// (--grpc-addr), which ratelimit-grpc calls; the other scenarios
	// ignore it.
	GRPCAddr string
	// GRPCClient is ratelimit-grpc's client: GRPCClientH2 (the
	// default, also when empty) or GRPCClientGo.
	GRPCClient string
	// Watchers is how many change-feed streams the watch scenario
	// holds open while it writes (0: none, the comparison run).
	Watchers int
	// Token is sent as "Authorization: Bearer" (secure nodes); the
	// scenarios that create users or policies need an admin's.
	Token string
	// SignIn gives each connection a user of its own (an admin, created
	// with Token before timing) and sends that user's access token, so a
	// secure node verifies a different token on every connection. The
	// floor is sent Token. HTTP scenarios only (not docs-ws,
	// ratelimit-grpc).
	SignIn bool
	// FollowLeader moves each connection of a write scenario to the node
	// its answers name in X-Troupe-Leader, if that is one of Addrs: the
	// Go client sends writes to the leader so, saving followers the
	// forwarding hop.
	FollowLeader bool
	// Idempotency sends a fresh Idempotency-Key (unique to the run,
	// connection and request) with every write of a scenario that
	// writes over HTTP, as clients that retry safely do: the node keeps
	// each key's result for its retention window.
	Idempotency bool
	// OnAck, if set, is called with every write the cluster acknowledged
	// (warmup included), from the worker goroutines at once: users-create
	// and users-churn report each created (and deleted) user's id,
	// docs-ws each acknowledged op. A
	// soak reads them all back at the end (no acknowledged write lost).
	OnAck func(Ack)
}

// Ack is one acknowledged write: a user created (or, Deleted, deleted),
// or an op of document Doc acknowledged at Version. Deleting reports a
// delete of User sent, not yet answered: until its Deleted ack comes
// the user's fate is open (an answer lost with a killed node leaves it
// so; a retry that finds the user gone then reports it Deleted).
type Ack struct {
	User     string
	Deleted  bool
	Deleting bool
	Doc      string
	Version  uint64
}

// ratelimit-grpc's clients (Config.GRPCClient).
const (
	// GRPCClientH2 is the load generator's lean client (h2grpc.go):
	// requests marshalled once, a few µs of CPU a call, as an Envoy's
	// C++ client spends little beside the service.
	GRPCClientH2 = "h2"
	// GRPCClientGo is grpc-go's client, ≈ 20 µs of CPU a call on the
	// cores the service shares (the figures of earlier reports).
	GRPCClientGo = "grpc-go"
)

// MaxDocBytes bounds Config.DocBytes: a create's body stays small
// beside the node's cap on a document's text.
const MaxDocBytes = 1 << 20

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Addrs:       []string{"127.0.0.1:8080"},
		Scenario:    "users-get",
		Connections: 64,
		Duration:    10 * time.Second,
		Warmup:      2 * time.Second,
		Users:       1000,
		BatchSize:   100,
		Docs:        64,
		DocBytes:    1024,
		Checks:      10,
		Watchers:    64,
		Timeout:     10 * time.Second,
		GRPCClient:  GRPCClientH2,
	}
}

// ParseAddrs turns "http://h:p[,http://h2:p2]" (or bare host:port) into
// host:port targets.
func ParseAddrs(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "://") {
			part = "http://" + part
		}
		u, err := url.Parse(part)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("bad address %q", part)
		}
		if u.Scheme != "http" {
			return nil, fmt.Errorf("address %q: only http:// is supported", part)
		}
		out = append(out, u.Host)
	}
	if len(out) == 0 {
		return nil, errors.New("no address given")
	}
	return out, nil
}

// Validate rejects unusable settings.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Addrs) == 0 {
		errs = append(errs, errors.New("no target address"))
	}
	if _, ok := scenarios[c.Scenario]; !ok {
		errs = append(errs, fmt.Errorf("unknown scenario %q (have: %s)", c.Scenario, strings.Join(ScenarioNames(), ", ")))
	}
	if c.Connections < 1 || c.Connections > 10000 {
		errs = append(errs, fmt.Errorf("connections %d out of range 1..10000", c.Connections))
	}
	if c.Duration <= 0 && c.Requests <= 0 {
		errs = append(errs, errors.New("give a positive --duration or --requests"))
	}
	if c.Warmup < 0 || c.Rate < 0 || c.Requests < 0 {
		errs = append(errs, errors.New("warmup, rate and requests must not be negative"))
	}
	if sc, ok := scenarios[c.Scenario]; ok && sc.loop != nil && !sc.paced && c.Rate > 0 {
		errs = append(errs, fmt.Errorf("scenario %s is closed loop only (no --rate)", c.Scenario))
	}
	if c.Users < 1 || c.BatchSize < 1 || c.BatchSize > 1000 || c.Docs < 1 || c.Docs > 10_000 {
		errs = append(errs, errors.New("users must be ≥ 1, batch size 1..1000 and docs 1..10000"))
	}
	if c.DocBytes < 0 || c.DocBytes > MaxDocBytes {
		errs = append(errs, fmt.Errorf("doc-bytes %d out of range 0..%d", c.DocBytes, MaxDocBytes))
	}
	if c.DocLength < 0 || c.DocLength > MaxDocBytes {
		errs = append(errs, fmt.Errorf("doc-length %d out of range 0..%d", c.DocLength, MaxDocBytes))
	}
	if c.Checks < 1 || c.Checks > 100 {
		errs = append(errs, fmt.Errorf("checks %d out of range 1..100 (a multi-check holds at most 100)", c.Checks))
	}
	if c.GRPCClient != "" && c.GRPCClient != GRPCClientH2 && c.GRPCClient != GRPCClientGo {
		errs = append(errs, fmt.Errorf("--grpc-client %q: want %s or %s", c.GRPCClient, GRPCClientH2, GRPCClientGo))
	}
	if c.GRPCAddr != "" {
		if _, port, err := net.SplitHostPort(c.GRPCAddr); err != nil {
			errs = append(errs, fmt.Errorf("--grpc-addr %q: want host:port, as the node's --grpc-addr", c.GRPCAddr))
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("--grpc-addr %q: port must be 1..65535", c.GRPCAddr))
		}
	}
	if sc, ok := scenarios[c.Scenario]; ok && sc.grpc && c.GRPCAddr == "" {
		errs = append(errs, fmt.Errorf("scenario %s calls the node's rate-limit service: give its address with --grpc-addr (the node's --grpc-addr)", c.Scenario))
	}
	if c.Watchers < 0 || c.Watchers > 10_000 {
		errs = append(errs, fmt.Errorf("watchers %d out of range 0..10000", c.Watchers))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("timeout must be positive"))
	}
	if sc, ok := scenarios[c.Scenario]; ok && c.FollowLeader && !sc.writes {
		errs = append(errs, fmt.Errorf("--follow-leader applies to the write scenarios (%s), not %s", strings.Join(writeScenarios(), ", "), c.Scenario))
	}
	if sc, ok := scenarios[c.Scenario]; ok && c.Idempotency && !sc.keyed {
		errs = append(errs, fmt.Errorf("--idempotency applies to the scenarios that write over HTTP (%s), not %s", strings.Join(KeyedScenarios(), ", "), c.Scenario))
	}
	if c.SignIn {
		if c.Token == "" {
			errs = append(errs, errors.New("--sign-in creates a user per connection: give an admin's access token with --token or TROUPE_TOKEN"))
		}
		if sc, ok := scenarios[c.Scenario]; ok && sc.loop != nil {
			errs = append(errs, fmt.Errorf("--sign-in applies to the scenarios of one HTTP request per turn, not %s", c.Scenario))
		}
	}
	return errors.Join(errs...)
}
