package actors

import (
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-db/troupe/storage"
)

// A shard actor owns one *storage.UserShard. Every message is a function
// to run on the shard in the actor's goroutine: the FSM sends command
// applications in log order, readers send queries, and because the
// mailbox is FIFO a read queued after the command of index N sees every
// write up to N.
type shardMsg struct {
	run func(*storage.UserShard)
	// recovered is called instead of completing run when run panics, so
	// that the waiter gets a deterministic internal error rather than
	// hanging. It must not panic.
	recovered func()
}

// shardActor is recreated by the supervisor after an unrecovered panic;
// the state lives in box, which the producer shares across restarts.
type shardActor struct {
	box *shardBox
}

type shardBox struct {
	shard *storage.UserShard
	sys   *System
	index int
}

func (a *shardActor) Receive(ctx actor.Context) {
	m, ok := ctx.Message().(*shardMsg)
	if !ok {
		return // lifecycle messages
	}
	a.box.sys.mailboxDepth.Add(-1)
	a.box.run(m)
}

// run applies one message, recovering a panic for that message alone: the
// shard's changes are made by small final steps after all checks, so a
// panic leaves the state as it was.
func (b *shardBox) run(m *shardMsg) {
	defer func() {
		if r := recover(); r != nil {
			b.sys.panics.Inc()
			b.sys.log.Error("user shard recovered from a panic", slog.Int("shard", b.index), slog.String("panic", fmt.Sprint(r)))
			if m.recovered != nil {
				m.recovered()
			}
		}
	}()
	m.run(b.shard)
}

// internalResult is what a command that panicked answers, on every node.
func internalResult() storage.Result {
	return storage.Result{Err: &storage.Error{Kind: storage.KindInternal, Message: "internal error while applying the command"}}
}
