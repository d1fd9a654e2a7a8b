package api

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/auth"
)

// Config configures the HTTP server.
type Config struct {
	HTTPAddr      string // listen address
	AdvertiseHTTP string // address clients reach this node at; default HTTPAddr
	// Insecure turns authentication off: every request acts as admin.
	Insecure bool
	// TLS, if set, serves HTTPS (TLSConfig.Certificates, and ClientCAs to
	// recognise other nodes by their client certificates).
	TLS *tls.Config
	// PeerTLS, if set, is how this node calls other nodes' HTTP APIs
	// (forwarded writes): over HTTPS, presenting its own certificate.
	PeerTLS *tls.Config
	// ClusterSecret, if set, must be shown (X-Troupe-Cluster-Secret) to
	// add or remove members.
	ClusterSecret  string
	MaxBodyBytes   int
	RequestTimeout time.Duration // how long a request may wait on the cluster
	// LeaderWait bounds how long a write on a follower waits for a leader
	// to be known (during an election) before answering 503.
	LeaderWait    time.Duration
	ReadTimeout   time.Duration
	WriteTimeout  time.Duration
	IdleTimeout   time.Duration
	ShutdownGrace time.Duration // in-flight requests get this long on shutdown
	Argon2        storage.Argon2Params
	// HashConcurrency bounds concurrent password hashing (memory-hard:
	// each takes Argon2.MemoryKiB). Default: the number of CPUs.
	HashConcurrency int
	// AccessTTL is how long an access token is valid.
	AccessTTL time.Duration
	// TokenLeeway is the clock skew between nodes an access token's
	// times are given (--token-leeway): accepted this long past its exp.
	TokenLeeway time.Duration
	// MaxHeaderBytes bounds the request line and headers together;
	// beyond it a request gets 431.
	MaxHeaderBytes int
	// LoginFailuresPerMinute is how many failed logins an email or a
	// client address may have a minute before it gets 429.
	LoginFailuresPerMinute int
	// RateLimit is the node's default policy (nil: off); Limiter makes
	// the decisions (nil: no rate limiting and no check route).
	RateLimit *storage.Policy
	Limiter   Limiter
	// Webhooks, if set, checks webhook targets as the node is configured
	// and sends test deliveries; nil: targets are checked with private
	// networks refused, and the test route answers 503.
	Webhooks WebhookDeliverer
	// Tracing, if set, traces requests (package tracing); nil: off.
	Tracing *tracing.Provider
	// RateLimitGlobal makes each key's decisions on the node that owns
	// it (--rate-limit-mode=global); else every node decides alone.
	RateLimitGlobal bool
	// StreamKeepAlive is how often a quiet event stream or WebSocket
	// gets a keep-alive, which is also how a vanished client is noticed.
	StreamKeepAlive time.Duration
	// WSAckWait bounds how long a document socket holds an op's own
	// change for the op's ack, to send both in one write (wsack.go).
	// Not a flag; 0 is the default, 5 ms.
	WSAckWait time.Duration
	// TrustedProxies may set X-Forwarded-For: the client address of a
	// request from one of them is the last untrusted hop.
	TrustedProxies []netip.Prefix
	// MaxConnections bounds the client connections the node holds open
	// (WebSockets included); the next is answered 503 and closed.
	MaxConnections int
	// MaxStreams bounds the node's open SSE and WebSocket streams (503
	// beyond); MaxStreamsPerUser those of one user (or, without one,
	// one client address) on this node (429 beyond).
	MaxStreams        int
	MaxStreamsPerUser int
	// MaxPresence bounds the clients present in one document (429 for
	// the next that gives a client_id).
	MaxPresence int
	// WSOverLimitClose: a WebSocket whose messages have been refused by
	// the rate limit for this long without a break is closed (1008).
	WSOverLimitClose time.Duration
	// MaxDocumentsPerUser is how many documents a user may own (0: no
	// limit); DocumentHistoryBytes bounds a document's kept history by
	// bytes (0: count only). Both travel in the commands this node
	// proposes, so every node applies the proposer's value.
	MaxDocumentsPerUser  int
	DocumentHistoryBytes int
	// MaxUsers bounds the users of the cluster (--max-users): a create,
	// registration or batch that would pass it is refused with 403
	// quota_exceeded (details.field "users") before it is proposed. This
	// node's own check against its applied state, so a bound the writes in
	// flight can pass by their number; 1..maxUsersLimit.
	MaxUsers int64
	// MaxMembersPerDocument bounds a document's members (editors and
	// viewers) and MaxLinksPerDocument its live share links; 403
	// quota_exceeded beyond. They travel in the commands too.
	MaxMembersPerDocument int
	MaxLinksPerDocument   int
	// MaxNamedVersionsPerDocument bounds a document's named versions,
	// MaxNamedVersionBytesPerUser the bytes of named versions (texts and
	// names) of all the documents one user owns; 403 quota_exceeded
	// beyond. They travel in the commands too.
	MaxNamedVersionsPerDocument int
	MaxNamedVersionBytesPerUser int
}

// DefaultMaxHeaderBytes bounds a request's line and headers (API.md): an
// access token in a header or the query is well under 1 KiB.
const DefaultMaxHeaderBytes = 8 << 10

// DefaultMaxUsers is --max-users's default: 10 million users, about
// 2.4 GB of records in memory on every node (≈ 240 B each, more with a
// password hash; docs/OPERATIONS.md).
const DefaultMaxUsers = 10_000_000

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:          "127.0.0.1:8080",
		MaxBodyBytes:      1 << 20,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		RequestTimeout:    10 * time.Second,
		LeaderWait:        3 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ShutdownGrace:     15 * time.Second,
		Argon2:            storage.DefaultArgon2,
		HashConcurrency:   runtime.NumCPU(),
		AccessTTL:         15 * time.Minute,
		TokenLeeway:       auth.DefaultLeeway,
		StreamKeepAlive:   5 * time.Second,
		MaxConnections:    10_000,
		MaxStreams:        10_000,
		MaxStreamsPerUser: 32,
		MaxPresence:       actors.DefaultMaxPresence,
		WSOverLimitClose:  10 * time.Second,
		// API.md: no sooner than 10 failures a minute.
		LoginFailuresPerMinute:      10,
		MaxDocumentsPerUser:         storage.DefaultMaxDocsPerUser,
		MaxUsers:                    DefaultMaxUsers,
		DocumentHistoryBytes:        storage.DefaultDocHistoryBytes,
		MaxMembersPerDocument:       storage.DefaultMaxMembersPerDoc,
		MaxLinksPerDocument:         storage.DefaultMaxLinksPerDoc,
		MaxNamedVersionsPerDocument: storage.DefaultMaxNamedVersions,
		MaxNamedVersionBytesPerUser: storage.DefaultMaxNamedVersionBytes,
	}
}

// Ranges of the document limits.
const (
	maxDocsPerUserLimit   = 10_000_000
	maxUsersLimit         = 1 << 32
	minDocHistoryBytes    = 1 << 20
	maxDocHistoryBytesArg = 1 << 30
)

// Validate rejects unusable settings.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http address %q: %v", c.HTTPAddr, err))
	}
	if c.AdvertiseHTTP != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseHTTP); err != nil {
			errs = append(errs, fmt.Errorf("advertised http address %q: %v", c.AdvertiseHTTP, err))
		}
	}
	if c.MaxHeaderBytes < 1024 || c.MaxHeaderBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("max header size %d must be from 1024 to %d bytes", c.MaxHeaderBytes, 1<<20))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("max body size %d too small", c.MaxBodyBytes))
	}
	for name, d := range map[string]time.Duration{"request timeout": c.RequestTimeout, "leader wait": c.LeaderWait, "read timeout": c.ReadTimeout,
		"write timeout": c.WriteTimeout, "idle timeout": c.IdleTimeout, "shutdown grace": c.ShutdownGrace} {
		if d < time.Millisecond {
			errs = append(errs, fmt.Errorf("%s %v must be positive", name, d))
		}
	}
	if err := c.Argon2.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.HashConcurrency < 1 {
		errs = append(errs, fmt.Errorf("hash concurrency %d must be at least 1", c.HashConcurrency))
	}
	if c.StreamKeepAlive < time.Millisecond {
		errs = append(errs, fmt.Errorf("stream keep-alive %v must be positive", c.StreamKeepAlive))
	}
	if c.AccessTTL < time.Minute || c.AccessTTL > storage.MaxAccessTTL {
		errs = append(errs, fmt.Errorf("access token lifetime %v must be from 1m to %v", c.AccessTTL, storage.MaxAccessTTL))
	}
	for _, l := range []struct {
		name      string
		v, lo, hi int
	}{
		{"max-connections", c.MaxConnections, 1, 1_000_000},
		{"max-streams", c.MaxStreams, 1, 1_000_000},
		{"max-streams-per-user", c.MaxStreamsPerUser, 1, 100_000},
		{"max-presence-per-document", c.MaxPresence, 1, 100_000},
		{"max-members-per-document", c.MaxMembersPerDocument, 1, 100_000},
		{"max-links-per-document", c.MaxLinksPerDocument, 1, 10_000},
		{"max-named-versions-per-document", c.MaxNamedVersionsPerDocument, 1, 10_000},
		{"max-named-version-bytes-per-user", c.MaxNamedVersionBytesPerUser, 1 << 20, 1 << 40},
	} {
		if l.v < l.lo || l.v > l.hi {
			errs = append(errs, fmt.Errorf("--%s %d must be from %d to %d", l.name, l.v, l.lo, l.hi))
		}
	}
	if c.WSOverLimitClose < time.Millisecond {
		errs = append(errs, fmt.Errorf("websocket over-limit close %v must be positive", c.WSOverLimitClose))
	}
	if c.TokenLeeway < 0 || c.TokenLeeway > auth.MaxLeeway {
		errs = append(errs, fmt.Errorf("--token-leeway %v must be from 0s to %v", c.TokenLeeway, auth.MaxLeeway))
	}
	if c.LoginFailuresPerMinute < 10 {
		errs = append(errs, fmt.Errorf("login failures per minute %d must be at least 10", c.LoginFailuresPerMinute))
	}
	if c.MaxUsers < 1 || c.MaxUsers > maxUsersLimit {
		errs = append(errs, fmt.Errorf("users (--max-users) %d must be from 1 to %d", c.MaxUsers, int64(maxUsersLimit)))
	}
	if c.MaxDocumentsPerUser < 1 || c.MaxDocumentsPerUser > maxDocsPerUserLimit {
		errs = append(errs, fmt.Errorf("documents per user (--max-documents-per-user) %d must be from 1 to %d", c.MaxDocumentsPerUser, maxDocsPerUserLimit))
	}
	if c.DocumentHistoryBytes < minDocHistoryBytes || c.DocumentHistoryBytes > maxDocHistoryBytesArg {
		errs = append(errs, fmt.Errorf("document history bytes (--document-history-bytes) %d must be from %d (1 MiB) to %d (1 GiB)", c.DocumentHistoryBytes, minDocHistoryBytes, maxDocHistoryBytesArg))
	}
	return errors.Join(errs...)
}
