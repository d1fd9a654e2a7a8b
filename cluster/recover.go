package cluster

import (
	"fmt"
	"log/slog"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/actors"
)

// Recover rewrites the cluster configuration in a stopped node's data
// dir to the servers listed in peersFile, the way out of a lost quorum
// (hashicorp/raft's peers.json). peersFile is a JSON array of
// {"id","address","non_voter"} (raft addresses). Run it on every
// surviving node, with the same file, while they are stopped; then start
// them. Entries not yet committed are committed by the recovery.
func Recover(dataDir, peersFile, nodeID string, logger *slog.Logger) (raft.Configuration, error) {
	conf, err := raft.ReadConfigJSON(peersFile)
	if err != nil {
		return conf, fmt.Errorf("cannot read %s: %w", peersFile, err)
	}
	self := false
	for _, s := range conf.Servers {
		self = self || string(s.ID) == nodeID
	}
	if !self {
		return conf, fmt.Errorf("%s does not list this node (%q): a recovered node must be one of the servers", peersFile, nodeID)
	}
	logs, meta, snaps, err := openStores(dataDir, 0, logger)
	if err != nil {
		return conf, err
	}
	defer meta.Close()
	defer logs.Close()
	has, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return conf, err
	}
	if !has {
		return conf, fmt.Errorf("data dir %s holds no raft state to recover", dataDir)
	}
	// Recovery replays the state into an FSM to take a fresh snapshot.
	set := metrics.NewSet()
	sys := actors.NewSystem(logger, set)
	defer sys.Shutdown()
	var fatal error
	fsm := NewFSM(sys, logger, set, func(err error) { fatal = err })
	defer fsm.Close()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(nodeID)
	rc.Logger = NewHclog(logger, "raft")
	_, trans := raft.NewInmemTransport(raft.ServerAddress(nodeID))
	if err := raft.RecoverCluster(rc, fsm, logs, logs, snaps, trans, conf); err != nil {
		return conf, fmt.Errorf("cannot recover: %w", err)
	}
	if fatal != nil {
		return conf, fatal
	}
	return conf, nil
}
