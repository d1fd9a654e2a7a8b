package api

import (
	"errors"
	"hash/fnv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// The path of a write through its handler: the Idempotency-Key and the
// request's fingerprint, the command proposed to the node, and forwarded
// to the leader when this node follows (forward_commands.go).

// idempotency reads the Idempotency-Key header and fingerprints the
// request, so a key reused for a different request is refused.
func idempotency(ctx *fasthttp.RequestCtx) (string, uint64, *apiError) {
	key := ctx.Request.Header.Peek("Idempotency-Key")
	if len(key) == 0 {
		return "", 0, nil
	}
	if len(key) > 255 {
		return "", 0, badRequest("Idempotency-Key must be at most 255 characters", "Idempotency-Key")
	}
	for _, c := range key {
		if c < 0x21 || c > 0x7e {
			return "", 0, badRequest("Idempotency-Key must be printable ASCII without spaces", "Idempotency-Key")
		}
	}
	h := fnv.New64a()
	for _, part := range [][]byte{ctx.Method(), ctx.Path(), ctx.Request.Header.Peek("If-Match"), ctx.PostBody()} {
		h.Write(part)
		h.Write([]byte{0})
	}
	return string(key), h.Sum64(), nil
}

// writeRequest is what every write handler starts with: the user shards,
// the decoded body (when req is not nil) and the idempotency key. ok is
// false when it has already answered.
type writeRequest struct {
	users Users
	key   string
	fp    uint64
	// forward, if set, lets a follower send the command to the leader (the
	// handler runs here, not behind leaderOnly); it is the handler to
	// forward the request to the leader as HTTP instead, should the leader
	// not take commands.
	forward fasthttp.RequestHandler
}

func (s *Server) startWrite(ctx *fasthttp.RequestCtx, req any) (w writeRequest, ok bool) {
	if w.users = s.usersOrUnavailable(ctx); w.users == nil {
		return w, false
	}
	if req != nil {
		if e := decodeJSON(ctx.PostBody(), req); e != nil {
			writeError(ctx, e)
			return w, false
		}
	}
	var e *apiError
	if w.key, w.fp, e = idempotency(ctx); e != nil {
		writeError(ctx, e)
		return w, false
	}
	if w.key != "" {
		// Keys are scoped by caller: one user's key never answers
		// another's request.
		scope := "-"
		if c := callerOf(ctx); c.signedIn() {
			scope = c.uid
		} else if c.guest() {
			scope = storage.GuestAuthor(c.link.id) // one link's guests share a scope
		}
		w.key = scope + ":" + w.key
	}
	return w, true
}

// propose sends cmd through the cluster and writes the error response if
// it failed. It sets X-Troupe-Index whenever the index is known.
func (s *Server) propose(ctx *fasthttp.RequestCtx, cmd *storage.Command, deadline time.Time) (storage.Result, bool) {
	res, idx, err := s.node.Propose(s.traceCtx(ctx), cmd, deadline)
	return res, settled(ctx, res, idx, err)
}

// settled sets X-Troupe-Index (when idx is known) and writes the error
// response of a proposal that failed or was refused; true means it
// succeeded and the caller answers.
func settled(ctx *fasthttp.RequestCtx, res storage.Result, idx uint64, err error) bool {
	setIndex(ctx, idx)
	if err != nil {
		writeError(ctx, err)
		return false
	}
	if res.Err != nil {
		writeError(ctx, res.Err)
		return false
	}
	return true
}

// proposeVia proposes cmd here or, for a write that may be forwarded as a
// command and reached a follower, through the leader.
func (s *Server) proposeVia(ctx *fasthttp.RequestCtx, w writeRequest, cmd *storage.Command, deadline time.Time) (storage.Result, bool) {
	if w.forward == nil {
		return s.propose(ctx, cmd, deadline)
	}
	var res storage.Result
	var idx uint64
	var err error
	if s.node.IsLeader() {
		res, idx, err = s.node.Propose(s.traceCtx(ctx), cmd, deadline)
	} else {
		err = replica.ErrNotLeader
	}
	if errors.Is(err, replica.ErrNotLeader) {
		// Never entered the log here: the leader takes it.
		if cmd.RequestID == "" {
			cmd.RequestID = forwardedRequestID(ctx)
		}
		res, idx, err = s.forwardCommand(ctx, cmd, deadline)
		if errors.Is(err, errForwardUnsupported) {
			// Nothing was applied: the leader takes the request as HTTP.
			s.forward(ctx, w.forward)
			return res, false
		}
	}
	return res, settled(ctx, res, idx, err)
}
