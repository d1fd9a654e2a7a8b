package replica

// Member is one server of the raft configuration.
type Member struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	Voter    bool   `json:"voter"`
	State    string `json:"state"`
	// Reachable, answered by a leader only, for each other member: false
	// while heartbeats to it fail; then LastContactMs is how long ago it
	// was last heard from (if ever).
	Reachable     *bool  `json:"reachable,omitempty"`
	LastContactMs *int64 `json:"last_contact_ms,omitempty"`
}

// Leader identifies the current leader.
type Leader struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
}

// Status is the node's view of the cluster (GET /v1/cluster).
type Status struct {
	NodeID       string   `json:"node_id"`
	State        string   `json:"state"`
	Leader       *Leader  `json:"leader"`
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	Members      []Member `json:"members"`
}

// Identity is what a node tells peers that are forming a cluster with
// --bootstrap-expect.
type Identity struct {
	ID         string `json:"id"`
	HTTPAddr   string `json:"http_addr"`
	RaftAddr   string `json:"raft_addr"`
	Configured bool   `json:"configured"` // it already belongs to a cluster
}

// StateHash is a digest of the replicated data at one applied index: the
// cluster parameters, the idempotency window and every user. Replicas that
// applied the same log have equal hashes, and so do a backup and the
// cluster restored from it. Bookkeeping that legitimately differs between
// such clusters (the log index, the last stamp, the member directory)
// is left out of the digest; Index says how far the state goes.
type StateHash struct {
	NodeID string `json:"node_id"`
	Index  uint64 `json:"index"`
	Hash   string `json:"hash"` // hex SHA-256 of the snapshot encoding
}
