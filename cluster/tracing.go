package cluster

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/storage"
)

// Spans of a traced write on the leader (see package tracing):
//
//	wait for commit      Propose: from queueing the command to its result
//	  raft apply         FSM: the command of entry raft.index, in log order
//	    actor <kind>     from the hand-off to the owning actor until it
//	                     resolved the command (a submit's "doc transform"
//	                     is its child)
//
// The FSM finds a proposal's trace context by the command's stamp, in a
// registry the proposer fills before proposing and empties when it is
// done. Only sampled commands are registered, and only on the node that
// proposes them; with none registered the FSM pays one atomic load per
// command. A command is traced on the leader alone: followers apply the
// same entries without spans.

// traceRegistry maps the stamps of traced commands in flight to the
// trace context their apply spans hang below.
type traceRegistry struct {
	n  atomic.Int64 // entries in m: the FSM looks only when there are any
	mu sync.Mutex
	m  map[uint64]context.Context
}

func (r *traceRegistry) add(stamp uint64, ctx context.Context) {
	r.mu.Lock()
	if r.m == nil {
		r.m = map[uint64]context.Context{}
	}
	if _, ok := r.m[stamp]; !ok {
		r.n.Add(1)
	}
	r.m[stamp] = ctx
	r.mu.Unlock()
}

// take removes and returns the trace context of the command stamped
// stamp, or nil.
func (r *traceRegistry) take(stamp uint64) context.Context {
	if r.n.Load() == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, ok := r.m[stamp]
	if ok {
		delete(r.m, stamp)
		r.n.Add(-1)
	}
	return ctx
}

// commitTrace is a proposal's "wait for commit" span and the stamps it
// registered.
type commitTrace struct {
	span   trace.Span
	reg    *traceRegistry
	stamps []uint64
}

// traceCommit starts the commit span of cmds below the recording span in
// ctx and registers them for their apply spans; nil if ctx is not being
// recorded. cmds must carry their final stamps.
func (n *Node) traceCommit(ctx context.Context, cmds ...*storage.Command) *commitTrace {
	if !tracing.Recording(ctx) {
		return nil
	}
	cctx, span := tracing.Child(ctx, "wait for commit")
	span.SetAttributes(attribute.String("troupe.node.id", n.cfg.NodeID), attribute.Int("troupe.commands", len(cmds)))
	t := &commitTrace{span: span, reg: &n.fsm.traced, stamps: make([]uint64, len(cmds))}
	for i, c := range cmds {
		t.stamps[i] = c.Stamp
		t.reg.add(c.Stamp, cctx)
	}
	return t
}

// end records where the commands went (out: their outcomes, err: the
// first command's error) and ends the span.
func (t *commitTrace) end(out []outcome, err error) {
	for _, s := range t.stamps {
		t.reg.take(s) // not applied here (refused, or not in time)
	}
	if len(out) > 0 {
		t.span.SetAttributes(attribute.Int64("raft.index", int64(out[0].index)),
			attribute.Int("troupe.group.commands", out[0].commands))
	}
	if err != nil {
		t.span.SetStatus(codes.Error, err.Error())
	}
	t.span.End()
}

// applyTrace is the spans of applying one traced command: "raft apply",
// and below it the owning actor's.
type applyTrace struct {
	ctx          context.Context // the apply span's
	apply, actor trace.Span
}

// startApply starts the apply span of cmd (at index) whose commit is
// traced by tctx.
func startApply(tctx context.Context, cmd *storage.Command, index uint64) *applyTrace {
	ctx, apply := tracing.Child(tctx, "raft apply")
	apply.SetAttributes(attribute.Int64("raft.index", int64(index)), attribute.String("troupe.command", cmd.Kind.String()))
	return &applyTrace{ctx: ctx, apply: apply}
}

// actorCtx starts the span of the owning actor's handling of cmd and
// returns its context, for the actor's own spans.
func (a *applyTrace) actorCtx(cmd *storage.Command) context.Context {
	ctx, span := tracing.Child(a.ctx, "actor "+cmd.Kind.String())
	a.actor = span
	return ctx
}

// finish ends the apply span once the command is handed over, and the
// actor's once it resolved p. replayed: an idempotent repeat, answered
// with the recorded result.
func (a *applyTrace) finish(p *actors.Pending, replayed bool) {
	a.apply.SetAttributes(attribute.Bool("troupe.idempotent_replay", replayed))
	a.apply.End()
	if a.actor == nil {
		return
	}
	actor := a.actor
	select {
	case <-p.Done():
		endActor(actor, p)
		return
	default:
	}
	// The actor resolves p on its own goroutine, later: the span ends
	// then (only sampled commands pay for this goroutine).
	go func() {
		<-p.Done()
		endActor(actor, p)
	}()
}

func endActor(span trace.Span, p *actors.Pending) {
	if r := p.Result(); r.Err != nil {
		span.SetStatus(codes.Error, r.Err.Error())
	}
	span.End()
}
