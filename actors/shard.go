package actors

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-db/troupe/storage"
)

// Ownership of a user shard.
//
// A shard actor alone owns its *storage.UserShard (shardState): only the
// actor's Receive touches it, one message at a time. Shard actors run on
// the inline dispatcher (dispatcher.go): the goroutine that sends to an
// idle shard (mostly the FSM's) runs the actor's turn, the mailbox
// admitting one goroutine at a time, in message order. Every change is a
// function to run on the shard: the FSM sends command applications in
// log order, and because the mailbox is FIFO a read queued after the
// command of index N sees every write up to N.
//
// Readers by id stay off the mailbox by reading an immutable view of the
// shard's records that the actor publishes (shardLink.view, one atomic
// pointer): the shard's tree is copy-on-write and its arena append-only,
// so a view costs O(1) to take and the actor's later writes copy what
// they change instead of touching what the view holds. A view carries
// the number of shardMsgs it reflects. A reader loads the number sent so
// far (after its read barrier, when it has one), then the view: if the
// view reflects at least that many, everything sent before the reader
// looked — every command up to the index its barrier waited for — is in
// it, and the reader answers from it in its own goroutine; if not, it
// queues a shardRead behind those commands, exactly as a read without
// views would. Reads by email always queue (shardView says why).
//
// The actor publishes on demand, so that writes nobody reads pay
// nothing: a view is published once the mailbox holds no more shardMsgs
// (applied == sent: the last of a burst publishes) and either a reader
// has used the current view since it was published or a reader found it
// behind and queued (wanted). A write after a publish copies the tree
// nodes it changes (docs/DESIGN.md, user shard ownership, has the costs
// measured).
//
// What other goroutines share with the actor is shardLink: atomics only.
// Lock order: none; nothing here takes a lock.
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

// shardLink is what the goroutines that send to a shard actor and read its
// views share with it. Written by senders: sent; by the actor: view; by
// readers: wanted and the views' read marks; by Users.Stop: stopped.
type shardLink struct {
	// sent counts the shardMsgs sent to the actor, added to before each
	// is sent: a view whose count is sent reflects all of them.
	sent atomic.Uint64
	// sentOther counts those of them that are not creates, added to
	// before sent: a view whose other count is sentOther reflects every
	// change to the records that existed before, which is all a token
	// check reads (readTokenView).
	sentOther atomic.Uint64
	// applied is the actor's count of shardMsgs run, stored after each:
	// applied == sent means the actor has nothing queued.
	applied atomic.Uint64
	// users is the shard's record count, stored after each shardMsg.
	users atomic.Int64
	view  atomic.Pointer[shardView]
	// wanted: a reader found the view behind and queued; the actor
	// publishes once it has caught up.
	wanted atomic.Bool
	// stopped: the actor is stopping or gone (Users.Stop); its views are
	// no longer read, since a restore may have replaced the shards.
	stopped atomic.Bool
}

// shardView is a published, immutable state of a shard: its records, by
// id. It holds no email index (storage.UserShard.View): copying the
// index's map on the first write after each view cost more than the
// lookups by email (logins, the check before a create) gain by skipping
// the mailbox, so those go through the actor.
type shardView struct {
	shard *storage.UserShard // a View: never changed
	count uint64             // the shardMsgs it reflects
	other uint64             // of which not creates
	// read: a reader has answered from this view, so the actor publishes
	// a fresh one after the next change.
	read atomic.Bool
}

// shardState is a shard actor's state. Only the actor touches it; it
// lives outside the actor value so that a restart after an unrecovered
// panic keeps it (the producer hands it to the next incarnation).
type shardState struct {
	shard   *storage.UserShard
	applied uint64 // shardMsgs run (or panicked)
	other   uint64 // of which not creates
}

type shardActor struct {
	state *shardState
	link  *shardLink
	sys   *System
	index int
}

func newShardActor(sys *System, index int, link *shardLink) actor.Producer {
	st := &shardState{shard: storage.NewUserShard()}
	link.view.Store(&shardView{shard: st.shard.View()})
	return func() actor.Actor { return &shardActor{state: st, link: link, sys: sys, index: index} }
}

func (a *shardActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *shardRead:
		a.sys.mailboxDepth.Add(-1)
		m.done <- a.lookup(m)
	case *shardMsg:
		a.sys.mailboxDepth.Add(-1)
		a.run(m)
	default:
		return // lifecycle messages
	}
	a.publishIfWanted()
}

// run applies one message, recovering a panic for that message alone: the
// shard's changes are made by small final steps after all checks, so a
// panic leaves the state as it was.
func (a *shardActor) run(m *shardMsg) {
	defer func() {
		a.state.applied++
		if m.run != nil {
			a.state.other++
		}
		a.link.applied.Store(a.state.applied)
		if r := recover(); r != nil {
			a.sys.panics.Inc()
			a.sys.log.Error("user shard recovered from a panic", slog.Int("shard", a.index), slog.String("panic", fmt.Sprint(r)))
			if m.recovered != nil {
				m.recovered()
			} else if m.run == nil {
				m.pending.resolve(internalResult())
			}
		}
	}()
	if m.run == nil {
		usr, err := a.state.shard.Create(m.create.ID, &m.create.User, m.nowMs)
		a.countUsers() // before the answer: a next create sees it
		m.pending.resolve(storage.Result{User: usr, Err: err})
		return
	}
	m.run(a.state.shard)
	a.countUsers() // not after a panic: it left the shard as it was
}

// countUsers mirrors the shard's record count into its link (Users.Total),
// after each message that may change it. The count is advisory (a
// bound's check), so a shard that cannot be read keeps its last count
// rather than take the actor down.
func (a *shardActor) countUsers() {
	defer func() { _ = recover() }()
	a.link.users.Store(int64(a.state.shard.Len()))
}

// publishIfWanted publishes a view of the shard if one is due: nothing
// more is queued, the current view is behind, and a reader has used it or
// wants a fresh one.
func (a *shardActor) publishIfWanted() {
	st := a.state
	if st.applied != a.link.sent.Load() {
		return // the last message of the burst publishes
	}
	cur := a.link.view.Load()
	if cur.count == st.applied || !cur.read.Load() && !a.link.wanted.Load() {
		return
	}
	a.link.wanted.Store(false)
	defer func() {
		if r := recover(); r != nil {
			// The view stays as it was: readers go on queueing.
			a.sys.panics.Inc()
			a.sys.log.Error("user shard recovered from a panic while publishing its view", slog.Int("shard", a.index), slog.String("panic", fmt.Sprint(r)))
		}
	}()
	a.link.view.Store(&shardView{shard: st.shard.View(), count: st.applied, other: st.other})
}

// A shardRead is a query on one shard: a typed message rather than a
// closure, so that a read allocates nothing. The reader owns it until it
// sends it, the actor until it signals done, then the reader again; a
// reader that stops waiting (deadline) abandons it, since the actor may
// still answer into it.
type shardRead struct {
	op  readOp
	key string // the email key (readEmail) or the user id (the others)
	sid string // readToken: the session asked about

	// Answers, written by the actor before it signals done.
	usr   *storage.User
	tok   storage.TokenState // readToken
	owner string             // readEmail: the id holding the email
	found bool

	// done gets the actor's answer (answered or panicked) and, should the
	// deadline pass first, the timer's (expired): cap 2, so that neither
	// ever blocks. A reader waits on it alone, which is cheaper than a
	// select over a reply channel and a timer channel.
	done  chan readState
	timer *time.Timer // runs expire at the deadline
	// direct: answered from a view, without the actor or the timer.
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
	readUser    readOp = iota // the user with id key
	readEmail                 // the owner of email key
	readToken                 // the token state of the user with id key
	readProfile               // the user with id key, without its auth state
)

// lookup answers m in the actor, recovering a panic for that read alone:
// reads change nothing, so the shard is as it was.
func (a *shardActor) lookup(m *shardRead) readState {
	if m.lookupIn(a.state.shard, a.sys, a.index) != nil {
		return readPanicked
	}
	return readAnswered
}

// readView answers m, a read by id, in the caller's goroutine from the
// published view, if that reflects every shardMsg sent so far. ok false
// means m was not answered and must be sent to the actor; the actor is
// then asked to publish a fresh view once it has caught up.
func (l *shardLink) readView(m *shardRead, sys *System, index int) (ok bool, err error) {
	if l.stopped.Load() || m.op == readEmail {
		return false, nil
	}
	sent := l.sent.Load()
	v := l.view.Load()
	if v.count < sent {
		l.want()
		return false, nil
	}
	if !v.read.Load() {
		v.read.Store(true)
	}
	return true, m.lookupIn(v.shard, sys, index)
}

// readTokenView answers m, a token check (readToken), from the published
// view if that reflects every shardMsg sent so far other than creates,
// and finds the token good there. A create adds a record and changes no
// other, so such a view answers a record that existed before exactly as
// a current one would: under a stream of creates, token checks need not
// queue behind them in the mailbox, nor have views published for them
// (the view is not marked read). Any other answer — no such user, a
// session closed, the view behind on other changes — is left to the
// actor (ok false), so a token is refused only on the current state.
func (l *shardLink) readTokenView(m *shardRead, sys *System, index int) (ok bool, err error) {
	if l.stopped.Load() {
		return false, nil
	}
	other := l.sentOther.Load()
	v := l.view.Load()
	if v.other < other {
		l.want()
		return false, nil
	}
	if err := m.lookupIn(v.shard, sys, index); err != nil {
		return true, err
	}
	if !m.found || !m.tok.Session {
		m.tok, m.found = storage.TokenState{}, false
		return false, nil
	}
	return true, nil
}

// want asks the actor to publish a fresh view once it has caught up.
func (l *shardLink) want() {
	if !l.wanted.Load() {
		l.wanted.Store(true)
	}
}

// lookupIn answers m from s, the actor's shard or a published view (in
// the caller's goroutine); a panic there is logged and counted, and
// answered with errReadPanicked.
func (m *shardRead) lookupIn(s *storage.UserShard, sys *System, index int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			sys.panics.Inc()
			sys.log.Error("user shard recovered from a panic while reading", slog.Int("shard", index), slog.String("panic", fmt.Sprint(r)))
			err = errReadPanicked
		}
	}()
	m.lookup(s)
	return nil
}

func (m *shardRead) lookup(s *storage.UserShard) {
	switch m.op {
	case readUser:
		m.usr, m.found = s.Get(m.key)
	case readEmail:
		m.owner, m.found = s.EmailOwner(m.key)
	case readToken:
		m.tok, m.found = s.TokenState(m.key, m.sid)
	case readProfile:
		m.usr, m.found = s.GetProfile(m.key)
	}
}

// internalResult is what a command that panicked answers, on every node.
func internalResult() storage.Result {
	return storage.Result{Err: &storage.Error{Kind: storage.KindInternal, Message: "internal error while applying the command"}}
}
