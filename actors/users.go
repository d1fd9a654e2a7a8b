package actors

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-db/troupe/storage"
)

// Users routes user commands and queries to the user shard actors.
//
// Ownership: the apply methods (Create, Batch, Patch, Delete, Views,
// Restore) are called only by the FSM's goroutine, in log order; they own
// the admins set. The query methods (Get, FindEmail, List, Count) may be
// called from any goroutine. The shards themselves belong to their actors
// (shard.go); Users holds only their pids and links.
//
// Most commands touch one shard and are sent without waiting. A command
// that spans shards (an email change, a delete whose email is indexed
// elsewhere) or changes the set of admins is applied step by step, the
// FSM waiting for each step, so that the next command sees its effect.
type Users struct {
	sys    *System
	pids   []*actor.PID
	links  []*shardLink
	admins map[string]struct{} // FSM goroutine only
	// narrowed, if set, hears of every change that may take rights away
	// from a user's tokens (storage.AuthNarrowed), from the shard's
	// actor: it must not block.
	narrowed atomic.Pointer[func(userID string)]
}

// OnAuthNarrowed sets the function told of every user whose tokens may
// have lost rights: deleted, a new role or token epoch, a session ended.
func (u *Users) OnAuthNarrowed(fn func(userID string)) { u.narrowed.Store(&fn) }

func (u *Users) authChanged(cur, next *storage.User) {
	if fn := u.narrowed.Load(); fn != nil && storage.AuthNarrowed(cur, next) {
		(*fn)(cur.ID)
	}
}

// ErrTimeout is returned by queries that did not get an answer in time.
var ErrTimeout = errors.New("actor did not answer in time")

// NewUsers spawns n (a power of two) empty user shards.
func NewUsers(sys *System, n int) *Users {
	u := &Users{sys: sys, pids: make([]*actor.PID, n), links: make([]*shardLink, n), admins: map[string]struct{}{}}
	for i := range u.pids {
		u.links[i] = &shardLink{}
		u.pids[i] = sys.spawnInline(newShardActor(sys, i, u.links[i]))
	}
	sys.actorCount.Add(int64(n))
	return u
}

// Shards is the number of user shards.
func (u *Users) Shards() int { return len(u.pids) }

// Stop stops the shard actors and waits for them.
func (u *Users) Stop() {
	for _, l := range u.links {
		l.stopped.Store(true)
	}
	u.sys.stop(u.pids)
	u.sys.actorCount.Add(-int64(len(u.pids)))
}

func (u *Users) send(shard int, m *shardMsg) {
	if m.run != nil {
		u.links[shard].sentOther.Add(1)
	}
	u.links[shard].sent.Add(1)
	u.post(shard, m)
}

// post sends any message to a shard actor; shardMsgs go through send.
func (u *Users) post(shard int, m any) {
	u.sys.mailboxDepth.Add(1)
	u.sys.root.Send(u.pids[shard], m)
}

// exec runs fn on a shard and waits until it has run (or panicked).
func (u *Users) exec(shard int, fn func(*storage.UserShard)) (ok bool) {
	done := make(chan bool, 1)
	u.send(shard, &shardMsg{
		run:       func(s *storage.UserShard) { fn(s); done <- true },
		recovered: func() { done <- false },
	})
	return <-done
}

func (u *Users) emailShard(email string) int {
	return int(storage.ShardOf(storage.EmailKey(email), len(u.pids)))
}

// homeShard returns the shard holding a user id, or -1 for an id that no
// user can have.
func (u *Users) homeShard(id string) int {
	_, shard, ok := storage.ParseUserID(id)
	if !ok || int(shard) >= len(u.pids) {
		return -1
	}
	return int(shard)
}

// HomeShardFor is the shard a new user with this email lives in; its id
// must embed it (storage.MakeUserID).
func (u *Users) HomeShardFor(email string) uint16 { return uint16(u.emailShard(email)) }

func notFound(id string) *storage.Error {
	return &storage.Error{Kind: storage.KindNotFound, Message: "no user with id " + id}
}

var errLastAdmin = &storage.Error{Kind: storage.KindConflict, Message: "the last admin cannot be deleted or demoted"}

// Create applies a user creation. A new admin is applied synchronously so
// that the admins set stays exact.
func (u *Users) Create(it *storage.BatchItem, nowMs int64) *Pending {
	p := NewPending()
	shard := u.homeShard(it.ID)
	if shard < 0 || shard != u.emailShard(it.User.Email) {
		p.resolve(storage.Result{Err: &storage.Error{Kind: storage.KindInternal, Message: "user id does not match the email's shard"}})
		return p
	}
	u.send(shard, &shardMsg{create: it, nowMs: nowMs, pending: p})
	if it.User.Role == storage.RoleAdmin {
		<-p.Done()
		if r := p.Result(); r.Err == nil {
			u.admins[r.User.ID] = struct{}{}
		}
	}
	return p
}

// Batch applies the creation of many users as one command: items are
// grouped by shard, each shard creates its items in order, and the
// results come back in the order given.
func (u *Users) Batch(items []storage.BatchItem, nowMs int64) *Pending {
	g := &gather{p: NewPending(), items: make([]storage.Result, len(items))}
	if len(items) == 0 {
		g.p.resolve(storage.Result{Items: g.items})
		return g.p
	}
	parts := map[int][]int{}
	order := []int{}
	hasAdmin := false
	for i := range items {
		shard := u.homeShard(items[i].ID)
		if shard < 0 || shard != u.emailShard(items[i].User.Email) {
			shard = -1
		}
		if _, seen := parts[shard]; !seen {
			order = append(order, shard)
		}
		parts[shard] = append(parts[shard], i)
		hasAdmin = hasAdmin || items[i].User.Role == storage.RoleAdmin
	}
	g.pending.Store(int32(len(order)))
	for _, shard := range order {
		idx := parts[shard]
		if shard < 0 {
			for _, i := range idx {
				g.items[i] = storage.Result{Err: &storage.Error{Kind: storage.KindInternal, Message: "user id does not match the email's shard"}}
			}
			g.partDone()
			continue
		}
		u.send(shard, &shardMsg{
			run: func(s *storage.UserShard) {
				for _, i := range idx {
					usr, err := s.Create(items[i].ID, &items[i].User, nowMs)
					g.items[i] = storage.Result{User: usr, Err: err}
				}
				g.partDone()
			},
			recovered: func() {
				// Items created before the panic stay created and report
				// success; the rest report internal. Deterministic either way.
				for _, i := range idx {
					if g.items[i].User == nil && g.items[i].Err == nil {
						g.items[i] = internalResult()
					}
				}
				g.partDone()
			},
		})
	}
	if hasAdmin {
		<-g.p.Done()
		for _, r := range g.p.Result().Items {
			if r.Err == nil && r.User.Role == storage.RoleAdmin {
				u.admins[r.User.ID] = struct{}{}
			}
		}
	}
	return g.p
}

// Patch applies a change to one user. A patch of name or password is one
// step on the home shard; one that may change the email or the role is
// applied in steps: compute, reserve the new email in its shard, write the
// record, release the old email.
func (u *Users) Patch(pt *storage.UserPatch, nowMs int64) *Pending {
	p := NewPending()
	home := u.homeShard(pt.ID)
	if home < 0 {
		p.resolve(storage.Result{Err: notFound(pt.ID)})
		return p
	}
	if !pt.ChangesEmailOrRole() {
		u.send(home, &shardMsg{
			run: func(s *storage.UserShard) {
				cur, ok := s.Get(pt.ID)
				if !ok {
					p.resolve(storage.Result{Err: notFound(pt.ID)})
					return
				}
				next, err := pt.Apply(cur, nowMs)
				if err == nil && next != cur {
					s.Put(next)
					u.authChanged(cur, next)
				}
				p.resolve(storage.Result{User: next, Err: err})
			},
			recovered: func() { p.resolve(internalResult()) },
		})
		return p
	}
	p.resolve(u.patchAcross(pt, home, nowMs))
	return p
}

// Session applies a session change on the user's home shard. A detected
// refresh token reuse both changes the record (the family is revoked) and
// reports an error.
func (u *Users) Session(op *storage.SessionOp, nowMs int64, params storage.AuthParams) *Pending {
	p := NewPending()
	home := u.homeShard(op.UserID)
	if home < 0 {
		p.resolve(storage.Result{Err: notFound(op.UserID)})
		return p
	}
	u.send(home, &shardMsg{
		run: func(s *storage.UserShard) {
			cur, ok := s.Get(op.UserID)
			if !ok {
				p.resolve(storage.Result{Err: notFound(op.UserID)})
				return
			}
			next, err := op.Apply(cur, nowMs, params)
			if next != nil && next != cur {
				s.Put(next)
				u.authChanged(cur, next)
			}
			if err != nil {
				next = nil
			}
			p.resolve(storage.Result{User: next, Err: err})
		},
		recovered: func() { p.resolve(internalResult()) },
	})
	return p
}

func (u *Users) patchAcross(pt *storage.UserPatch, home int, nowMs int64) storage.Result {
	var cur, next *storage.User
	var err *storage.Error
	if !u.exec(home, func(s *storage.UserShard) {
		c, ok := s.Get(pt.ID)
		if !ok {
			err = notFound(pt.ID)
			return
		}
		cur = c
		next, err = pt.Apply(c, nowMs)
	}) {
		return internalResult()
	}
	if err != nil {
		return storage.Result{Err: err}
	}
	if next == cur {
		return storage.Result{User: cur}
	}
	if cur.Role == storage.RoleAdmin && next.Role != storage.RoleAdmin && len(u.admins) <= 1 {
		return storage.Result{Err: errLastAdmin}
	}
	oldKey, newKey := storage.EmailKey(cur.Email), storage.EmailKey(next.Email)
	if oldKey != newKey {
		ns := int(storage.ShardOf(newKey, len(u.pids)))
		if !u.exec(ns, func(s *storage.UserShard) { err = s.IndexEmail(newKey, pt.ID) }) {
			return internalResult()
		}
		if err != nil {
			return storage.Result{Err: err}
		}
	}
	// From here on the steps cannot fail: the checks are done.
	u.exec(home, func(s *storage.UserShard) { s.Put(next) })
	u.authChanged(cur, next)
	if oldKey != newKey {
		os := int(storage.ShardOf(oldKey, len(u.pids)))
		u.exec(os, func(s *storage.UserShard) { s.UnindexEmail(oldKey, pt.ID) })
	}
	if next.Role == storage.RoleAdmin {
		u.admins[pt.ID] = struct{}{}
	} else {
		delete(u.admins, pt.ID)
	}
	return storage.Result{User: next}
}

// Delete removes a user and its email index entry; the last admin cannot
// be deleted. It is applied synchronously: the email entry may live in
// another shard, and the next command must not see it.
func (u *Users) Delete(id string) *Pending {
	home := u.homeShard(id)
	if home < 0 {
		return Resolved(storage.Result{Err: notFound(id)})
	}
	_, isAdmin := u.admins[id]
	lastAdmin := isAdmin && len(u.admins) <= 1
	var cur *storage.User
	var err *storage.Error
	otherShard := -1
	if !u.exec(home, func(s *storage.UserShard) {
		c, ok := s.Get(id)
		if !ok {
			err = notFound(id)
			return
		}
		if lastAdmin {
			err = errLastAdmin
			return
		}
		cur = c
		key := storage.EmailKey(c.Email)
		s.Remove(id)
		if es := int(storage.ShardOf(key, len(u.pids))); es == home {
			s.UnindexEmail(key, id)
		} else {
			otherShard = es
		}
	}) {
		return Resolved(internalResult())
	}
	if err != nil {
		return Resolved(storage.Result{Err: err})
	}
	if otherShard >= 0 {
		key := storage.EmailKey(cur.Email)
		u.exec(otherShard, func(s *storage.UserShard) { s.UnindexEmail(key, id) })
	}
	delete(u.admins, id)
	u.authChanged(cur, nil)
	return Resolved(storage.Result{User: cur})
}

// Views returns an immutable view of every shard, taken after every
// command sent so far: the snapshot barrier. Each shard hands over its
// copy-on-write view at once, so the barrier costs O(shards).
func (u *Users) Views() []*storage.UserShard {
	views := make([]*storage.UserShard, len(u.pids))
	for i := range u.pids {
		u.exec(i, func(s *storage.UserShard) { views[i] = s.View() })
	}
	return views
}

// Restore replaces every shard's state (len(shards) must equal Shards())
// and rebuilds the admins set from it. Shards without email indexes
// (views) get them rebuilt first. The shards' records stay unchanged
// whatever the actors do next; their email indexes are taken over.
func (u *Users) Restore(shards []*storage.UserShard) error {
	for _, s := range shards {
		if !s.HasEmailIndex() {
			if err := storage.RebuildEmailIndexes(shards); err != nil {
				return err
			}
			break
		}
	}
	u.admins = map[string]struct{}{}
	for i := range u.pids {
		repl := shards[i]
		var admins []string
		u.exec(i, func(s *storage.UserShard) {
			s.TakeOver(repl)
			admins = s.Admins(nil)
		})
		for _, id := range admins {
			u.admins[id] = struct{}{}
		}
	}
	return nil
}

// Total is the number of users in the shards as of their last applied
// message: no message to them, so cheap enough to check before every
// create (it may lag the log by what is queued). Any goroutine.
func (u *Users) Total() int64 {
	var n int64
	for _, l := range u.links {
		n += l.users.Load()
	}
	return n
}

// AdminCount is the number of admins (FSM goroutine only).
func (u *Users) AdminCount() int { return len(u.admins) }

var errReadPanicked = &storage.Error{Kind: storage.KindInternal, Message: "internal error while reading"}

// reads recycles shardReads with their reply channels and timers. Only a
// read answered in time, whose timer was stopped before it fired, goes
// back: any other may still receive a late answer or expiry, so it is left
// to the garbage collector.
var reads = sync.Pool{New: func() any {
	r := &shardRead{done: make(chan readState, 2)}
	return r
}}

func getRead(op readOp, key string) *shardRead {
	r := reads.Get().(*shardRead)
	r.op, r.key = op, key
	return r
}

// ask answers r: at once from the shard's view if that is current
// (shardLink.readView), else by sending it to the shard actor and waiting
// for the answer until deadline. After ErrTimeout r is abandoned: the
// caller must not touch or recycle it.
func (u *Users) ask(shard int, r *shardRead, deadline time.Time) error {
	if ok, err := u.links[shard].readView(r, u.sys, shard); ok {
		r.direct = true
		return err
	}
	return u.askActor(shard, r, deadline)
}

// askActor sends r to the shard actor and waits for the answer until
// deadline.
func (u *Users) askActor(shard int, r *shardRead, deadline time.Time) error {
	r.direct = false
	d := time.Until(deadline)
	if d <= 0 {
		return ErrTimeout
	}
	if r.timer == nil {
		r.timer = time.AfterFunc(d, r.expire)
	} else {
		r.timer.Reset(d)
	}
	u.post(shard, r)
	switch <-r.done {
	case readExpired:
		return ErrTimeout
	case readPanicked:
		return errReadPanicked
	}
	return nil
}

// release recycles r once its answers have been read, unless its timer
// has fired or is firing (then an expiry may still be on its way).
func release(r *shardRead) {
	if !r.direct && !r.timer.Stop() {
		return
	}
	r.key, r.sid, r.usr, r.tok, r.owner, r.found = "", "", nil, storage.TokenState{}, "", false
	reads.Put(r)
}

// Get returns the user with id, or a not-found *storage.Error.
func (u *Users) Get(id string, deadline time.Time) (*storage.User, error) {
	return u.get(readUser, id, deadline)
}

// GetProfile is Get without the user's authentication state (Auth nil,
// storage.UserShard.GetProfile): for answers that show the user.
func (u *Users) GetProfile(id string, deadline time.Time) (*storage.User, error) {
	return u.get(readProfile, id, deadline)
}

func (u *Users) get(op readOp, id string, deadline time.Time) (*storage.User, error) {
	home := u.homeShard(id)
	if home < 0 {
		return nil, notFound(id)
	}
	r := getRead(op, id)
	if err := u.ask(home, r, deadline); err != nil {
		if !errors.Is(err, ErrTimeout) {
			release(r)
		}
		return nil, err
	}
	usr := r.usr
	release(r)
	if usr == nil {
		return nil, notFound(id)
	}
	return usr, nil
}

// TokenState returns what an access token of session sid is checked
// against in the user with id's record (storage.UserShard.TokenState),
// read as Get reads the record, or a not-found *storage.Error. It builds
// no user: a token check costs no copy of the record.
func (u *Users) TokenState(id, sid string, deadline time.Time) (storage.TokenState, error) {
	home := u.homeShard(id)
	if home < 0 {
		return storage.TokenState{}, notFound(id)
	}
	r := getRead(readToken, id)
	r.sid = sid
	var err error
	if ok, verr := u.links[home].readTokenView(r, u.sys, home); ok {
		r.direct, err = true, verr
	} else {
		err = u.askActor(home, r, deadline)
	}
	if err != nil {
		if !errors.Is(err, ErrTimeout) {
			release(r)
		}
		return storage.TokenState{}, err
	}
	t, found := r.tok, r.found
	release(r)
	if !found {
		return storage.TokenState{}, notFound(id)
	}
	return t, nil
}

// FindEmail returns the user holding an email address, if any. The email
// index is not in the shards' views (see shardView), so the address is
// looked up by the email shard's actor; the record, by id, as Get does.
func (u *Users) FindEmail(email string, deadline time.Time) (*storage.User, error) {
	r := getRead(readEmail, storage.EmailKey(email))
	if err := u.askActor(u.emailShard(email), r, deadline); err != nil {
		if !errors.Is(err, ErrTimeout) {
			release(r)
		}
		return nil, err
	}
	id, found := r.owner, r.found
	release(r)
	if !found {
		return nil, nil
	}
	usr, err := u.Get(id, deadline)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	return usr, err
}

// EmailTakenIfIdle is FindEmail for an optimistic check that must not
// wait behind commands: it reports whether a user other than exceptID
// holds email, asking the email shard's actor only if it has run every
// message sent to it (with the inline dispatcher this caller then runs
// the lookup itself, or waits for the one turn in progress, at most
// emailCheckWait), and reading the record from its home shard's view if
// that is current. A shard with commands queued or a failed read answers
// false ("not taken"), as a failed FindEmail would.
func (u *Users) EmailTakenIfIdle(email, exceptID string) bool {
	es := u.emailShard(email)
	if l := u.links[es]; l.stopped.Load() || l.applied.Load() != l.sent.Load() {
		return false
	}
	r := getRead(readEmail, storage.EmailKey(email))
	if err := u.askActor(es, r, time.Now().Add(emailCheckWait)); err != nil {
		if !errors.Is(err, ErrTimeout) {
			release(r)
		}
		return false
	}
	id, found := r.owner, r.found
	release(r)
	if !found || id == exceptID {
		return false
	}
	home := u.homeShard(id)
	if home < 0 {
		return false
	}
	r = getRead(readUser, id)
	ok, err := u.links[home].readView(r, u.sys, home)
	r.direct = true
	usr := r.usr
	release(r)
	return ok && err == nil && usr != nil && usr.ID != exceptID
}

// emailCheckWait bounds how long EmailTakenIfIdle waits for an idle
// shard's answer: the turn of another reader at most, unless the process
// is starved of CPU.
const emailCheckWait = 50 * time.Millisecond
