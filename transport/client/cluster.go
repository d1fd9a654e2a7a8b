package client

import (
	"context"
	"net/http"
)

// ClusterStatus is a node's view of the cluster (GET /v1/cluster).
type ClusterStatus struct {
	NodeID       string          `json:"node_id"`
	State        string          `json:"state,omitempty"` // this node's raft state; an extension
	Leader       *ClusterLeader  `json:"leader"`          // nil when the node knows no leader
	Term         uint64          `json:"term"`
	CommitIndex  uint64          `json:"commit_index"`
	AppliedIndex uint64          `json:"applied_index"`
	Members      []ClusterMember `json:"members"`
}

// ClusterLeader identifies the leader a node knows of.
type ClusterLeader struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
}

// ClusterMember is one server of the raft configuration.
type ClusterMember struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	Voter    bool   `json:"voter"`
	State    string `json:"state"`
	// Reachable is set by a leader only, for the other members: false
	// while its heartbeats to the member fail, LastContactMs then being
	// how long ago the member was last heard from (nil if never).
	Reachable     *bool  `json:"reachable,omitempty"`
	LastContactMs *int64 `json:"last_contact_ms,omitempty"`
}

// ClusterStatus asks a node for its view of the cluster. The answer is
// node-local: Meta.Node says which node gave it; OnNode chooses.
func (c *Client) ClusterStatus(ctx context.Context, opts ...CallOption) (ClusterStatus, Meta, error) {
	var out ClusterStatus
	meta, err := c.call(ctx, http.MethodGet, "/v1/cluster", nil, &out, nil, opts)
	return out, meta, err
}

// Health asks GET /healthz: nil while a node's process serves. With the
// usual failover it says that some node serves (Meta.Node says which);
// with OnNode(n) and WithMaxAttempts(1) it probes node n once.
func (c *Client) Health(ctx context.Context, opts ...CallOption) (Meta, error) {
	return c.call(ctx, http.MethodGet, "/healthz", nil, nil, nil, opts)
}

// Ready asks GET /readyz: nil when a node knows a leader and has caught
// up, else a 503 *APIError whose Message gives the reason. Like Health it
// fails over and retries (503 included) unless OnNode and
// WithMaxAttempts say otherwise.
func (c *Client) Ready(ctx context.Context, opts ...CallOption) (Meta, error) {
	return c.call(ctx, http.MethodGet, "/readyz", nil, nil, nil, opts)
}
