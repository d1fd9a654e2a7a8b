package actors

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-db/troupe/storage"
)

// A shard actor owns one *storage.UserShard. Every change is a function
// to run on the shard in the actor's goroutine: the FSM sends command
// applications in log order, and because the mailbox is FIFO a read
// queued after the command of index N sees every write up to N.
//
// Reads skip the mailbox when they can: the actor runs each shardMsg
// under its box's mutex and counts it, and a reader that finds the mutex
// free (TryLock, never waiting) and every message sent so far applied
// reads the shard itself, in its own goroutine. Whatever was sent before
// the reader looked — every command up to the index its read barrier
// waited for — has then been applied, so it sees what a read queued in
// the mailbox would have seen, without the two goroutine switches. A
// reader that finds the shard busy queues a shardRead as before. A
// create from the FSM does the same (tryRun): on an idle shard the FSM's
// goroutine runs it, in log order since nothing is queued before it.
type shardMsg struct {
	run func(*storage.UserShard)
	// recovered is called instead of completing run when run panics, so
	// that the waiter gets a deterministic internal error rather than
	// hanging. It must not panic.
	recovered func()

	// Without run: the creation of create at nowMs, resolving pending
	// (with the internal error if it panics). A typed message, so that a
	// create allocates no closures.
	create  *storage.BatchItem
	nowMs   int64
	pending *Pending
}

// shardActor is recreated by the supervisor after an unrecovered panic;
// the state lives in box, which the producer shares across restarts.
type shardActor struct {
	box *shardBox
}

type shardBox struct {
	// mu is held by the actor while it runs a shardMsg and by a reader
	// reading the idle shard directly (tryRead). Readers only ever
	// TryLock it. It guards shard and applied.
	mu      sync.Mutex
	shard   *storage.UserShard
	applied uint64 // shardMsgs run (or panicked)
	// stopped: the actor is stopping or gone (Users.Stop); readers then
	// no longer read the shard, which a restore may have replaced.
	stopped bool
	// sent counts the shardMsgs sent to the actor, added to before each
	// is sent: applied == sent means none is queued or running.
	sent  atomic.Uint64
	sys   *System
	index int
}

func (a *shardActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *shardRead:
		a.box.sys.mailboxDepth.Add(-1)
		a.box.read(m)
	case *shardMsg:
		a.box.sys.mailboxDepth.Add(-1)
		a.box.run(m)
	}
	// anything else: lifecycle messages
}

// run applies one message, recovering a panic for that message alone: the
// shard's changes are made by small final steps after all checks, so a
// panic leaves the state as it was.
func (b *shardBox) run(m *shardMsg) {
	b.mu.Lock()
	b.runLocked(m)
}

// tryRun runs m in the caller's goroutine if the shard is idle, as
// tryRead does for reads: nobody holds it and every shardMsg sent to it
// has been applied, so m runs exactly where the actor would have run it.
// false means m was not run and must be sent.
func (b *shardBox) tryRun(m *shardMsg) bool {
	if !b.mu.TryLock() {
		return false
	}
	if b.stopped || b.applied != b.sent.Load() {
		b.mu.Unlock()
		return false
	}
	b.sent.Add(1)
	b.runLocked(m)
	return true
}

// runLocked runs m with mu held, and releases it.
func (b *shardBox) runLocked(m *shardMsg) {
	defer func() {
		b.applied++
		b.mu.Unlock()
		if r := recover(); r != nil {
			b.sys.panics.Inc()
			b.sys.log.Error("user shard recovered from a panic", slog.Int("shard", b.index), slog.String("panic", fmt.Sprint(r)))
			if m.recovered != nil {
				m.recovered()
			} else if m.run == nil {
				m.pending.resolve(internalResult())
			}
		}
	}()
	if m.run == nil {
		usr, err := b.shard.Create(m.create.ID, &m.create.User, m.nowMs)
		m.pending.resolve(storage.Result{User: usr, Err: err})
		return
	}
	m.run(b.shard)
}

// A shardRead is a query on one shard: a typed message rather than a
// closure, so that a read allocates nothing. The reader owns it until it
// sends it, the actor until it signals done, then the reader again; a
// reader that stops waiting (deadline) abandons it, since the actor may
// still answer into it.
type shardRead struct {
	op  readOp
	key string // the user id (readUser) or email key (readEmail)

	// Answers, written by the actor before it signals done.
	usr   *storage.User
	owner string // readEmail: the id holding the email
	found bool

	// done gets the actor's answer (answered or panicked) and, should the
	// deadline pass first, the timer's (expired): cap 2, so that neither
	// ever blocks. A reader waits on it alone, which is cheaper than a
	// select over a reply channel and a timer channel.
	done  chan readState
	timer *time.Timer // runs expire at the deadline
	// direct: answered by tryRead, without the actor or the timer.
	direct bool
}

type readState uint8

const (
	readAnswered readState = iota
	readPanicked
	readExpired
)

func (m *shardRead) expire() { m.done <- readExpired }

type readOp uint8

const (
	readUser  readOp = iota // the user with id key
	readEmail               // the owner of email key
)

// read answers one query in the actor. It takes mu, as every access to
// the shard does, and releases it before answering.
func (b *shardBox) read(m *shardRead) {
	m.done <- b.lockedLookup(m)
}

// lockedLookup runs m's lookup under mu, recovering a panic for that read
// alone: reads change nothing, so the shard is as it was.
func (b *shardBox) lockedLookup(m *shardRead) (st readState) {
	b.mu.Lock()
	defer func() {
		b.mu.Unlock()
		if r := recover(); r != nil {
			b.readPanicked(r)
			st = readPanicked
		}
	}()
	m.lookup(b.shard)
	return readAnswered
}

// tryRead answers m in the caller's goroutine if the shard is idle:
// nobody holds it and every shardMsg sent to it so far has been applied.
// ok false means m was not run and must be sent to the actor.
func (b *shardBox) tryRead(m *shardRead) (ok bool, err error) {
	if !b.mu.TryLock() {
		return false, nil
	}
	defer func() {
		b.mu.Unlock()
		if r := recover(); r != nil {
			b.readPanicked(r)
			ok, err = true, errReadPanicked
		}
	}()
	if b.stopped || b.applied != b.sent.Load() {
		return false, nil
	}
	m.lookup(b.shard)
	return true, nil
}

func (b *shardBox) readPanicked(r any) {
	b.sys.panics.Inc()
	b.sys.log.Error("user shard recovered from a panic while reading", slog.Int("shard", b.index), slog.String("panic", fmt.Sprint(r)))
}

func (m *shardRead) lookup(s *storage.UserShard) {
	switch m.op {
	case readUser:
		m.usr, m.found = s.Get(m.key)
	case readEmail:
		m.owner, m.found = s.EmailOwner(m.key)
	}
}

// internalResult is what a command that panicked answers, on every node.
func internalResult() storage.Result {
	return storage.Result{Err: &storage.Error{Kind: storage.KindInternal, Message: "internal error while applying the command"}}
}
