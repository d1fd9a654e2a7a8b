package api

import (
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/replica"
)

// The path of a read: the consistency the client asks for (?consistency=,
// ?min_index=) and the node's read barrier, passed before the owning actor
// is asked.

// readOptions parses ?consistency= and ?min_index=.
func readOptions(ctx *fasthttp.RequestCtx) (replica.Consistency, uint64, *apiError) {
	args := ctx.QueryArgs()
	c := replica.Linearizable
	switch v := string(args.Peek("consistency")); v {
	case "", "linearizable":
	case "stale":
		c = replica.Stale
	default:
		return c, 0, badRequest("consistency must be \"linearizable\" or \"stale\"", "consistency")
	}
	var minIndex uint64
	if v := args.Peek("min_index"); len(v) > 0 {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return c, 0, badRequest("min_index must be an integer from 0 to "+maxUint64Text, "min_index")
		}
		minIndex = n
	}
	return c, minIndex, nil
}

// listGate is readGate for a listing: it also answers X-Troupe-Index,
// the index to watch the changes from (GET /v1/watch?from=): taken after
// the barrier and before the listing is read, so the listing reflects
// every change up to it and a watcher from it misses nothing (it may see
// again a change the listing already shows).
func (s *Server) listGate(ctx *fasthttp.RequestCtx, deadline time.Time) bool {
	if !s.readGate(ctx, deadline) {
		return false
	}
	setIndex(ctx, s.node.AppliedIndex())
	return true
}

// readGate applies the read's consistency; false means it answered.
func (s *Server) readGate(ctx *fasthttp.RequestCtx, deadline time.Time) bool {
	c, minIndex, e := readOptions(ctx)
	if e != nil {
		writeError(ctx, e)
		return false
	}
	if err := s.node.ReadBarrier(s.traceCtx(ctx), c, minIndex, deadline); err != nil {
		writeError(ctx, err)
		return false
	}
	return true
}
