package api

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	if err := s.node.Ready(); err != nil {
		e := newError("unavailable", err.Error())
		writeError(ctx, e)
		return
	}
	writeJSON(ctx, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) metrics(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	s.set.WritePrometheus(ctx)
	metrics.WriteProcessMetrics(ctx)
}

func (s *Server) clusterStatus(ctx *fasthttp.RequestCtx) {
	// The members as of this index at least: watch members from it.
	setIndex(ctx, s.node.AppliedIndex())
	writeJSON(ctx, http.StatusOK, s.node.Status(s.cfg.AdvertiseHTTP))
}

type memberRequest struct {
	ID       *string `json:"id"`
	HTTPAddr *string `json:"http_addr"`
	RaftAddr *string `json:"raft_addr"`
	Voter    *bool   `json:"voter"`
}

// clusterSecretOK checks X-Troupe-Cluster-Secret when a secret is set.
// Another node that proved itself with a client certificate from the
// cluster's CA needs no secret, nor does an admin who showed a token
// (an anonymous --insecure caller is not one).
func (s *Server) clusterSecretOK(ctx *fasthttp.RequestCtx) bool {
	if s.cfg.ClusterSecret == "" || s.peerProven(ctx) {
		return true
	}
	if c := callerOf(ctx); c.signedIn() && c.admin {
		return true
	}
	writeError(ctx, newError("unauthenticated", "membership changes need the cluster secret (X-Troupe-Cluster-Secret)"))
	return false
}

// notLeader answers 503 with where the leader is, so a joining node or
// a client can go there.
func (s *Server) notLeader(ctx *fasthttp.RequestCtx) {
	e := newError("unavailable", "this node is not the leader")
	if l := s.node.LeaderHTTP(); l != "" {
		e.Details = map[string]any{"leader": l}
		e.Message = "this node is not the leader; the leader is at " + l
	}
	writeError(ctx, e)
}

func (s *Server) addMember(ctx *fasthttp.RequestCtx) {
	if !s.clusterSecretOK(ctx) {
		return
	}
	var req memberRequest
	if e := decodeJSON(ctx.PostBody(), &req); e != nil {
		writeError(ctx, e)
		return
	}
	if req.ID == nil || req.HTTPAddr == nil || req.RaftAddr == nil {
		writeError(ctx, badRequest("id, http_addr and raft_addr are required", ""))
		return
	}
	m := storage.Member{ID: *req.ID, HTTPAddr: *req.HTTPAddr, RaftAddr: *req.RaftAddr}
	voter := req.Voter == nil || *req.Voter
	err := s.node.AddMember(m, voter, s.deadline())
	switch {
	case errors.Is(err, replica.ErrNotLeader):
		s.notLeader(ctx)
	case errors.Is(err, replica.ErrBadMember):
		writeError(ctx, badRequest(err.Error(), ""))
	case err != nil:
		writeError(ctx, err)
	default:
		writeJSON(ctx, http.StatusOK, replica.Member{ID: m.ID, HTTPAddr: m.HTTPAddr, RaftAddr: m.RaftAddr, Voter: voter, State: "joining"})
	}
}

func (s *Server) removeMember(ctx *fasthttp.RequestCtx) {
	if !s.clusterSecretOK(ctx) {
		return
	}
	err := s.node.RemoveMember(pathID(ctx), s.deadline())
	switch {
	case errors.Is(err, replica.ErrNotLeader):
		s.notLeader(ctx)
	case errors.Is(err, replica.ErrNoSuchMember):
		writeError(ctx, newError("not_found", err.Error()))
	case err != nil:
		writeError(ctx, err)
	default:
		ctx.SetStatusCode(http.StatusNoContent)
	}
}

// readIndex serves a follower's read index (node to node).
func (s *Server) readIndex(ctx *fasthttp.RequestCtx) {
	if !s.clusterSecretOK(ctx) {
		return
	}
	idx, err := s.node.LeaderReadIndex()
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusOK, map[string]uint64{"index": idx})
}

// stateHash reports this node's state digest and the index it covers.
func (s *Server) stateHash(ctx *fasthttp.RequestCtx) {
	h, err := s.node.StateHash()
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusOK, h)
}

// snapshot takes a raft snapshot on this node now.
func (s *Server) snapshot(ctx *fasthttp.RequestCtx) {
	idx, err := s.node.TakeSnapshot(s.deadline())
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusOK, map[string]uint64{"index": idx})
}

// backup streams a consistent snapshot of the whole state, captured
// before the first byte (the view is immutable, so it streams while the
// node goes on). A stream cut short fails the reader's trailer check. It
// holds password hashes: it needs the cluster secret when the node has one.
func (s *Server) backup(ctx *fasthttp.RequestCtx) {
	if !s.clusterSecretOK(ctx) {
		return
	}
	snap := s.node.Backup()
	ctx.SetContentType("application/octet-stream")
	ctx.Response.Header.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="troupe-%d.backup"`, snap.Meta.Index))
	ctx.Response.Header.Set("X-Troupe-Index", strconv.FormatUint(snap.Meta.Index, 10))
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		if err := storage.WriteSnapshot(w, snap); err != nil {
			s.log.Warn("backup stream ended early", slog.Any("err", err))
		}
	})
}

// identity tells a peer forming a cluster who this node is (node to node).
func (s *Server) identity(ctx *fasthttp.RequestCtx) {
	if !s.clusterSecretOK(ctx) {
		return
	}
	writeJSON(ctx, http.StatusOK, s.node.Identity())
}
