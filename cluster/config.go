package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/storage"
)

// Config configures a Node. Start from DefaultConfig and validate with
// Validate.
type Config struct {
	NodeID        string
	RaftAddr      string // address the raft transport listens on
	AdvertiseRaft string // address other nodes reach it at; default RaftAddr
	// AdvertiseHTTP is where clients and other nodes reach this node's
	// HTTP API; the node records it in the member directory.
	AdvertiseHTTP string
	DataDir       string
	// ClusterSecret, if set, is shown to other members on node-to-node
	// calls (read indexes).
	ClusterSecret string
	// Mode says how a node with an empty data dir starts; a node with
	// raft state rejoins its cluster whatever the mode.
	Mode Mode

	// Raft timing. A node that is the only voter of its cluster uses
	// SoloTimeout instead, so it leads within tens of milliseconds of start.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SoloTimeout        time.Duration
	MaxAppendEntries   int
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
	// TLS, if set, carries raft traffic over mutual TLS.
	TLS TLSFiles
	// PeerHTTPTLS, if set, is how this node calls other nodes' HTTP APIs
	// (read indexes): over HTTPS.
	PeerHTTPTLS *tls.Config
	// StreamLayer, if set, carries raft traffic instead of plain TCP on
	// RaftAddr (it owns its listener); tests use it to partition nodes.
	StreamLayer raft.StreamLayer
	// WALSegmentSize is the size of a raft-wal segment file; the log is
	// truncated after a snapshot only by whole segments. 0: raft-wal's
	// default (64 MiB).
	WALSegmentSize int

	// ApplyTimeout bounds how long a write waits to be enqueued, committed
	// and applied before it answers that its outcome is unknown.
	ApplyTimeout time.Duration
	// ReadyLag is how many entries the applied index may trail the commit
	// index while /readyz still says ready.
	ReadyLag uint64

	// Cluster parameters, used when this node initialises a new cluster;
	// an existing cluster keeps its own (see Node.CheckParams).
	UserShards int
	// IdempotencyRetention is how long, in command time, a request id's
	// result is kept: MinIdempotencyRetention..MaxIdempotencyRetention.
	IdempotencyRetention time.Duration
	// MaxIdempotencyKeys bounds the idempotency window this node admits
	// writes into (--max-idempotency-keys): a write with a request id is
	// refused (replica.ErrIdempotencyFull) while the window holds that
	// many keys, until expiry makes room. A node's own bound, checked
	// before proposing, not a cluster parameter: 1..MaxIdempotencyKeysLimit.
	MaxIdempotencyKeys int64
	// Session rules, fixed when the cluster's authentication is set up.
	Sessions storage.AuthParams
	// Backups are the leader's scheduled backups (off if Backups.Dir is
	// empty).
	Backups BackupSchedule

	// Watch bounds the change feed's history (--watch-history,
	// --watch-history-bytes); zero values take feed's defaults.
	Watch feed.Config
}

// The range of Config.IdempotencyRetention (--idempotency-retention): long
// enough to cover a client's retries, short enough that the window (about
// 75 bytes a key beside the key and its encoded result) stays a bounded
// share of memory.
const (
	MinIdempotencyRetention = 10 * time.Second
	MaxIdempotencyRetention = 24 * time.Hour
)

// Bounds of Config.MaxIdempotencyKeys; the default keeps 10 million keys,
// about 1 to 2 GiB (docs/OPERATIONS.md).
const (
	DefaultMaxIdempotencyKeys = 10_000_000
	MaxIdempotencyKeysLimit   = 1 << 32
)

// Mode is how a node with no raft state starts.
type Mode uint8

// Start modes.
const (
	// Standalone bootstraps a one-node cluster with short raft timeouts
	// (SoloTimeout), so it leads at once. It may grow later.
	Standalone Mode = iota
	// Bootstrap bootstraps a cluster with this node as its first member,
	// with the multi-node timeouts: others are expected to join.
	Bootstrap
	// Join starts with no configuration and waits for a member to add it.
	Join
)

// DefaultConfig returns the defaults for a node.
func DefaultConfig() Config {
	return Config{
		NodeID:               "node1",
		RaftAddr:             "127.0.0.1:7080",
		DataDir:              "./troupe-data",
		HeartbeatTimeout:     1000 * time.Millisecond,
		ElectionTimeout:      1000 * time.Millisecond,
		LeaderLeaseTimeout:   500 * time.Millisecond,
		SoloTimeout:          100 * time.Millisecond,
		MaxAppendEntries:     64,
		SnapshotThreshold:    65536,
		SnapshotInterval:     60 * time.Second,
		TrailingLogs:         10240,
		ApplyTimeout:         10 * time.Second,
		ReadyLag:             1000,
		UserShards:           64,
		IdempotencyRetention: 10 * time.Minute,
		MaxIdempotencyKeys:   DefaultMaxIdempotencyKeys,
		Backups:              BackupSchedule{Every: time.Hour, Keep: 24},
		Sessions: storage.AuthParams{
			SessionTTLms: (30 * 24 * time.Hour).Milliseconds(),
			GraceMs:      (10 * time.Second).Milliseconds(),
			MaxSessions:  32,
		},
	}
}

// Validate rejects unusable settings with a message naming the setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.NodeID == "" {
		bad("node id must not be empty")
	}
	for _, r := range c.NodeID {
		if !storage.IDRune(r) || len(c.NodeID) > 64 {
			bad("node id %q must be 1-64 characters of letters, digits, '-', '_' or '.'", c.NodeID)
			break
		}
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		bad("raft address %q: %v", c.RaftAddr, err)
	}
	if c.AdvertiseRaft != "" {
		host, _, err := net.SplitHostPort(c.AdvertiseRaft)
		if err != nil {
			bad("advertised raft address %q: %v", c.AdvertiseRaft, err)
		} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			bad("advertised raft address %q must not be unspecified (0.0.0.0 or ::)", c.AdvertiseRaft)
		}
	}
	if c.DataDir == "" {
		bad("data dir must not be empty")
	}
	if c.AdvertiseHTTP != "" {
		m := storage.Member{ID: "x", HTTPAddr: c.AdvertiseHTTP, RaftAddr: "x:1"}
		if err := m.Validate(); err != nil {
			bad("advertised http address: %v", err)
		}
	}
	if c.Mode > Join {
		bad("unknown start mode %d", c.Mode)
	}
	if c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < c.HeartbeatTimeout {
		bad("raft timeouts: need heartbeat ≥ 5ms and election ≥ heartbeat (got %v, %v)", c.HeartbeatTimeout, c.ElectionTimeout)
	}
	if c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		bad("raft leader lease %v must be between 5ms and the heartbeat timeout", c.LeaderLeaseTimeout)
	}
	if c.SoloTimeout < 5*time.Millisecond {
		bad("solo timeout %v must be at least 5ms", c.SoloTimeout)
	}
	if c.MaxAppendEntries < 1 || c.MaxAppendEntries > 4096 {
		bad("max append entries %d out of range 1..4096", c.MaxAppendEntries)
	}
	if c.SnapshotThreshold < 16 || c.SnapshotInterval < 10*time.Millisecond {
		bad("snapshot threshold (%d) and interval (%v) too small", c.SnapshotThreshold, c.SnapshotInterval)
	}
	if c.WALSegmentSize != 0 && (c.WALSegmentSize < 64<<10 || c.WALSegmentSize > 1<<30) {
		bad("raft WAL segment size (--raft-wal-segment-size) %d must be from 65536 (64 KiB) to 1073741824 (1 GiB)", c.WALSegmentSize)
	}
	if c.TrailingLogs > 1<<24 {
		bad("raft trailing logs (--raft-trailing-logs) %d must be from 0 to 16777216", c.TrailingLogs)
	}
	if err := c.Backups.validate(); err != nil {
		bad("%v", err)
	}
	if c.ApplyTimeout < 10*time.Millisecond {
		bad("apply timeout %v too small", c.ApplyTimeout)
	}
	if c.IdempotencyRetention < MinIdempotencyRetention || c.IdempotencyRetention > MaxIdempotencyRetention {
		bad("idempotency retention (--idempotency-retention) %v out of range 10s..24h", c.IdempotencyRetention)
	}
	if c.MaxIdempotencyKeys < 1 || c.MaxIdempotencyKeys > MaxIdempotencyKeysLimit {
		bad("--max-idempotency-keys %d out of range 1..%d", c.MaxIdempotencyKeys, int64(MaxIdempotencyKeysLimit))
	}
	p := storage.InitParams{ClusterID: "x", UserShards: uint32(c.UserShards), IdempotencyRetention: uint64(c.IdempotencyRetention.Milliseconds())}
	if c.UserShards < 1 || c.UserShards > 1<<12 {
		p.UserShards = 3 // any invalid value: let InitParams word the message
	}
	if c.IdempotencyRetention < MinIdempotencyRetention || c.IdempotencyRetention > MaxIdempotencyRetention {
		p.IdempotencyRetention = uint64(MinIdempotencyRetention.Milliseconds()) // worded above
	}
	if err := p.Validate(); err != nil {
		bad("%v", err)
	}
	if err := c.Watch.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
