// Package cluster runs troupe's replication: a hashicorp/raft node whose
// FSM hands commands to actors, the stamps that make apply deterministic,
// the consistency gate for reads, and the node's lifecycle.
package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// logCacheEntries is how many recent log entries a node keeps in memory
// (smallLogCache); a few group commits' worth covers replication and
// apply.
const logCacheEntries = 4096

// Node is one troupe raft node. Its goroutines: raft's own, the leader
// watcher and the read-index batcher; all end before Shutdown returns.
type Node struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics.Set // where the node's metrics are registered
	admin   func() (storage.NewUser, error)
	sys     *actors.System
	fsm     *FSM
	raft    *raft.Raft
	wal     *wal.WAL
	stable  *stableGuard
	meta    *metadb.BoltMetaDB
	trans   *raft.NetworkTransport
	stamps  stampClock
	group   proposalGroup
	admit   admitMetrics

	// leaderTerm is the term in which this node, as leader, completed a
	// barrier: only then may it serve linearizable reads.
	leaderTerm atomic.Uint64
	// soloTerm is the term in which this leader found itself the only
	// voter: its reads need no leadership round.
	soloTerm atomic.Uint64
	// soloTimeouts is set while raft runs with the short one-node
	// timeouts; growing the cluster lengthens them.
	soloTimeouts atomic.Bool
	memberMu     sync.Mutex // serialises membership changes on this node
	reads        readIndexer
	leaders      leaderClients // read-index calls to the leader
	restorePath  string        // a backup to take on at first leadership
	health       peerHealth    // as leader: which followers fail heartbeats

	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
	fatalCh  chan error
}

// Open starts a node: it opens the stores in cfg.DataDir, restores the
// latest snapshot, and bootstraps a one-node cluster if the directory holds
// no raft state. admin supplies the first admin when this node initialises
// the cluster (it may hash a password; it is called at most once).
func Open(cfg Config, logger *slog.Logger, set *metrics.Set, sys *actors.System, admin func() (storage.NewUser, error)) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Backups.Dir != "" {
		if err := prepareBackupDir(cfg.Backups.Dir); err != nil {
			return nil, err
		}
	}
	// Bind first: a taken port must fail before the stores are created.
	if cfg.StreamLayer == nil {
		sl, err := ListenRaft(cfg)
		if err != nil {
			return nil, err
		}
		cfg.StreamLayer = sl
	}
	n := &Node{cfg: cfg, log: logger, admin: admin, sys: sys, metrics: set, stop: make(chan struct{}), fatalCh: make(chan error, 1)}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: cfg.StreamLayer, MaxPool: 8, Timeout: 10 * time.Second, Logger: NewHclog(logger, "raft.net"),
	})
	if cfg.TLS.Enabled() {
		logger.Info("raft traffic uses mutual TLS")
	}
	n.fsm = NewFSM(sys, logger.With("component", "fsm"), set, n.fatal)
	n.fsm.SetWatchHistory(cfg.Watch)
	n.group.commands = set.NewPrometheusHistogramExt(`troupe_raft_entry_commands`, countBuckets)
	n.admit = newAdmitMetrics(set)
	n.group.abandon = make(chan struct{})
	started := false
	defer func() {
		if !started {
			n.closeStores()
			n.fsm.Close()
		}
	}()

	var snaps *raft.FileSnapshotStore
	var err error
	if n.wal, n.meta, snaps, err = openStores(cfg.DataDir, cfg.WALSegmentSize, logger); err != nil {
		return nil, err
	}
	hasState, err := raft.HasExistingState(n.wal, n.wal, snaps)
	if err != nil {
		return nil, fmt.Errorf("cannot read raft state: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = NewHclog(logger, "raft")
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	rc.SnapshotThreshold, rc.SnapshotInterval, rc.TrailingLogs = cfg.SnapshotThreshold, cfg.SnapshotInterval, cfg.TrailingLogs
	rc.NoLegacyTelemetry = true
	fresh := !hasState
	if fresh {
		if n.restorePath = pendingRestore(cfg.DataDir); n.restorePath != "" {
			// A restored data dir boots as a fresh one-node cluster, under
			// whatever id this node has, whatever the mode.
			cfg.Mode = Standalone
			n.cfg.Mode = Standalone
		}
	}
	if fresh && cfg.Mode == Standalone || hasState {
		if solo, err := soloConfiguration(n.wal, snaps, rc.LocalID, hasState); err == nil && solo {
			rc.HeartbeatTimeout, rc.ElectionTimeout = cfg.SoloTimeout, cfg.SoloTimeout
			rc.LeaderLeaseTimeout = cfg.SoloTimeout
			n.soloTimeouts.Store(true)
		}
	}
	n.stable = &stableGuard{StableStore: n.wal}
	// Recent entries stay in memory (see smallLogCache).
	logs := newSmallLogCache(logCacheEntries, n.wal)
	logs.stored = n.group.stored
	n.raft, err = raft.NewRaft(rc, n.fsm, logs, n.stable, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("cannot start raft: %w", err)
	}
	switch {
	case hasState:
		logger.Info("rejoining the cluster recorded in the data dir", "node_id", cfg.NodeID, "data", cfg.DataDir)
	case cfg.Mode == Join:
		logger.Info("waiting to be added to a cluster", "node_id", cfg.NodeID, "raft_addr", string(n.trans.LocalAddr()))
	default:
		conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: n.trans.LocalAddr(), Suffrage: raft.Voter}}}
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil {
			n.raft.Shutdown()
			return nil, fmt.Errorf("cannot bootstrap a new cluster: %w", err)
		}
		logger.Info("bootstrapped a new cluster with this node as its first member", "node_id", cfg.NodeID, "data", cfg.DataDir)
	}
	n.reads.init()
	n.leaders.tls = cfg.PeerHTTPTLS
	n.registerMetrics(set)
	n.wg.Add(4)
	go n.watchLeadership()
	go n.settleTextChanges()
	go n.reads.run(n)
	go n.health.observe(n.raft, n.stop, n.wg.Done)
	if cfg.Backups.Dir != "" {
		n.wg.Add(1)
		go n.runBackups(cfg.Backups, newBackupMetrics(set))
	}
	started = true
	return n, nil
}

// openStores opens the raft log and stable store (raft-wal with its bolt
// metadata, which the caller closes too) and the snapshot store in dataDir.
func openStores(dataDir string, segmentSize int, logger *slog.Logger) (*wal.WAL, *metadb.BoltMetaDB, *raft.FileSnapshotStore, error) {
	raftDir := filepath.Join(dataDir, "raft")
	walDir := filepath.Join(raftDir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("cannot create data dir %q: %w", walDir, err)
	}
	meta := &metadb.BoltMetaDB{}
	var w *wal.WAL
	var err error
	if segmentSize <= 0 {
		segmentSize = wal.DefaultSegmentSize
	}
	w, err = wal.Open(walDir, wal.WithMetaStore(meta), wal.WithLogger(NewHclog(logger, "raft.wal")),
		wal.WithSegmentSize(segmentSize), wal.WithSegmentFiler(segmentFiler(walDir)))
	if err != nil {
		meta.Close()
		return nil, nil, nil, fmt.Errorf("cannot open raft log in %q: %w", walDir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, NewHclog(logger, "raft.snapshot"))
	if err != nil {
		w.Close()
		meta.Close()
		return nil, nil, nil, fmt.Errorf("cannot open snapshot store in %q: %w", raftDir, err)
	}
	return w, meta, snaps, nil
}

// soloConfiguration reports whether the latest stored configuration has
// this node as its only voter (or the node is about to bootstrap alone).
func soloConfiguration(logs raft.LogStore, snaps raft.SnapshotStore, id raft.ServerID, hasState bool) (bool, error) {
	if !hasState {
		return true, nil
	}
	var conf *raft.Configuration
	confIndex := uint64(0)
	if metas, err := snaps.List(); err == nil && len(metas) > 0 {
		c := metas[0].Configuration
		conf, confIndex = &c, metas[0].ConfigurationIndex
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return false, err
	}
	last, err := logs.LastIndex()
	if err != nil {
		return false, err
	}
	consider := func(i uint64) bool {
		var l raft.Log
		if logs.GetLog(i, &l) != nil || l.Type != raft.LogConfiguration {
			return false
		}
		if i > confIndex {
			c := raft.DecodeConfiguration(l.Data)
			conf, confIndex = &c, i
		}
		return true
	}
	// Configuration entries sit at the start of a log (bootstrap) and are
	// rare later: look at the first few and the newest few thousand.
	for i := first; i > 0 && i <= last && i < first+16; i++ {
		consider(i)
	}
	for i, seen := last, 0; i >= first && i > 0 && seen < 4096; i, seen = i-1, seen+1 {
		if consider(i) {
			break
		}
	}
	if conf == nil {
		return false, nil
	}
	voters := 0
	self := false
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			voters++
			self = self || s.ID == id
		}
	}
	return voters == 1 && self, nil
}

// Fatal delivers an error that requires the node to stop (e.g. a log
// entry of a newer version).
func (n *Node) Fatal() <-chan error { return n.fatalCh }

func (n *Node) fatal(err error) {
	n.log.Error("node cannot go on applying the log; stopping", slog.Any("err", err))
	select {
	case n.fatalCh <- err:
	default:
	}
}

// FSM returns the node's state machine.
func (n *Node) FSM() *FSM { return n.fsm }

// Users returns the user shards, or nil before initialisation.
func (n *Node) Users() *actors.Users { return n.fsm.Users() }

// Raft exposes the raft instance to the cluster's own tests and tools.
func (n *Node) Raft() *raft.Raft { return n.raft }

// Shutdown stops the node in the reverse order of start: raft (which
// stops applying), the watcher and read batcher, then the stores and the
// actors. It is safe to call more than once.
func (n *Node) Shutdown() error {
	var err error
	n.stopOnce.Do(func() {
		n.handOver()
		close(n.stop)
		// Proposals in flight settle while raft still runs (group.go).
		n.group.close(n.cfg.ApplyTimeout)
		// Raft first: its shutdown fails the futures that the leader
		// watcher or the read batcher may be waiting on, so they end.
		if n.raft != nil {
			err = n.raft.Shutdown().Error()
		}
		n.wg.Wait()
		n.closeStores()
		n.leaders.close()
		n.fsm.Close()
	})
	return err
}

// handOver transfers leadership to another voter before this leader stops,
// so that the cluster does not wait out an election timeout.
func (n *Node) handOver() {
	if n.raft == nil || n.raft.State() != raft.Leader {
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters < 2 {
		return
	}
	start := time.Now()
	done := make(chan error, 1)
	f2 := n.raft.LeadershipTransfer()
	go func() { done <- f2.Error() }() // ends at the latest when raft shuts down
	select {
	case err := <-done:
		if err != nil {
			n.log.Warn("could not hand leadership over before stopping", slog.Any("err", err))
			return
		}
		n.log.Info("handed leadership over before stopping", slog.Duration("took", time.Since(start)))
	case <-time.After(2 * n.cfg.ElectionTimeout):
		n.log.Warn("leadership hand-over did not finish in time; stopping anyway")
	}
}

func (n *Node) closeStores() {
	if n.stable != nil {
		n.stable.stop()
	}
	if n.trans != nil {
		// Close the pooled outbound connections too: a peer's goroutine
		// serving one only ends when it reads EOF.
		n.trans.CloseStreams()
		n.trans.Close()
	}
	if n.wal != nil {
		n.wal.Close()
	}
	if n.meta != nil {
		n.meta.Close()
	}
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
