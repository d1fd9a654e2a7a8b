package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/storage"
)

// FSM is troupe's raft state machine. It decodes each committed command,
// settles what must be settled in log order (command time, idempotency),
// and hands the command to the owning actors without waiting; the apply
// response is an *actors.Pending that the proposer waits on (for a
// CmdMulti entry, one per command it carries).
//
// Ownership: raft calls ApplyBatch, Snapshot and Restore from one
// goroutine; that goroutine alone touches the fields below the line. The
// applied index and the users pointer are atomics that any goroutine may
// read.
type FSM struct {
	sys   *actors.System
	log   *slog.Logger
	fatal func(error) // called once when the log holds what this build cannot apply

	users   atomic.Pointer[actors.Users]
	docs    *actors.Docs                              // every document; the directory lives as long as the FSM
	members atomic.Pointer[map[string]storage.Member] // replaced, never changed
	auth    atomic.Pointer[storage.AuthState]         // nil until set up; replaced, never changed
	// policies are the named rate-limit policies (replaced, never changed).
	policies atomic.Pointer[map[string]storage.Policy]
	// webhooks are the webhooks (webhooks.go; replaced, never changed).
	webhooks atomic.Pointer[map[string]*storage.Webhook]
	applied  atomic.Uint64
	stamp    atomic.Uint64 // highest stamp applied, read by proposers
	// narrowed hears of users whose tokens may have lost rights ("":
	// anyone's, after a restore); see OnAuthNarrowed.
	narrowed actors.Hooks[string]

	mu        sync.Mutex // guards appliedCh
	appliedCh chan struct{}

	batchSize *metrics.PrometheusHistogram
	// The last snapshot written (Persist): its size and how long it took.
	snapBytes, snapMillis atomic.Int64
	// idemKept is the idempotency window, for its size gauge (the window
	// is replaced on restore; only its kept count is read elsewhere).
	idemKept atomic.Pointer[idempotencyWindow]

	// applyMu is held while raft's goroutine applies, snapshots or
	// restores, so that Capture, from any other goroutine, sees the state
	// between two batches.
	applyMu sync.Mutex

	// traced holds the trace contexts of sampled commands this node
	// proposed (tracing.go).
	traced traceRegistry

	// feed hears of every command applied, in log order (Record, Applied
	// and Reset are called from the FSM goroutine only).
	feed *feed.Feed

	// --- FSM goroutine only ---
	idsBuf []string // decodeBatch's request ids, reused
	index  uint64   // of the entry being applied
	init   *storage.InitParams
	lastMs int64
	idem   *idempotencyWindow // replaced on restore; its kept count is read by the metrics
	failed bool
}

// NewFSM returns an empty state machine whose actors live in sys.
// fatal is called (once) when a command or snapshot of an unsupported
// version is met: the node must stop rather than diverge.
func NewFSM(sys *actors.System, logger *slog.Logger, set *metrics.Set, fatal func(error)) *FSM {
	f := &FSM{
		sys: sys, log: logger, fatal: fatal,
		appliedCh: make(chan struct{}),
		batchSize: set.NewPrometheusHistogramExt(`troupe_fsm_apply_batch_size`, countBuckets),
		idem:      newIdempotencyWindow(),
		docs:      actors.NewDocs(sys, actors.DocsConfig{}),
		feed:      feed.New(feed.Config{}, set),
	}
	f.idemKept.Store(f.idem)
	set.NewGauge(`troupe_snapshot_last_size_bytes`, func() float64 { return float64(f.snapBytes.Load()) })
	set.NewGauge(`troupe_snapshot_last_duration_seconds`, func() float64 { return float64(f.snapMillis.Load()) / 1000 })
	set.NewGauge(`troupe_idempotency_keys`, func() float64 { return float64(f.idemKept.Load().kept.Load()) })
	set.NewGauge(`troupe_docs`, func() float64 { n, _ := f.docs.Counts(); return float64(n) })
	set.NewGauge(`troupe_docs_active`, func() float64 { _, n := f.docs.Counts(); return float64(n) })
	set.NewGauge(`troupe_docs_passivated`, func() float64 { n, a := f.docs.Counts(); return float64(n - a) })
	set.NewGauge(`troupe_docs_subscribers`, func() float64 { return float64(f.docs.Subscribers()) })
	set.NewGauge(`troupe_docs_subscribers_dropped`, func() float64 { return float64(f.docs.Dropped()) })
	set.NewGauge(`troupe_docs_submits_applied`, func() float64 { return float64(f.docs.Submits()) })
	set.NewGauge(`troupe_docs_transformed_submits`, func() float64 { return float64(f.docs.Transformed()) })
	set.NewGauge(`troupe_docs_catalog_entries`, func() float64 { return float64(f.docs.Catalog().Entries()) })
	return f
}

// Auth returns the authentication state (signing keys, session rules), or
// nil before it is set up. It must not be changed.
func (f *FSM) Auth() *storage.AuthState { return f.auth.Load() }

// Docs returns the documents.
func (f *FSM) Docs() *actors.Docs { return f.docs }

// OnAuthNarrowed adds a function told, as this node applies it, of every
// change that may take rights away from a user's tokens (deleted, a new
// role or token epoch, a session ended), with the user's id, or "" after
// a restore (anyone's). It must not block. The returned function removes
// it.
func (f *FSM) OnAuthNarrowed(fn func(userID string)) (remove func()) { return f.narrowed.Add(fn) }

func (f *FSM) authNarrowed(userID string) { f.narrowed.Call(userID) }

// Users returns the user shards, or nil before the cluster is initialised.
func (f *FSM) Users() *actors.Users { return f.users.Load() }

// AppliedIndex is the index of the last command handed to its actors: a
// read sent to an actor after observing it sees every write up to it.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// LastStamp is the highest command stamp applied.
func (f *FSM) LastStamp() uint64 { return f.stamp.Load() }

// Feed is the change feed of the commands this FSM applies.
func (f *FSM) Feed() *feed.Feed { return f.feed }

// SetWatchHistory bounds the change feed's history.
func (f *FSM) SetWatchHistory(cfg feed.Config) { f.feed.SetBounds(cfg) }

// Close stops the actors and the change feed.
func (f *FSM) Close() {
	f.feed.Close()
	if u := f.users.Swap(nil); u != nil {
		u.Stop()
	}
	f.docs.Close()
}

func (f *FSM) setApplied(index uint64) {
	f.applied.Store(index)
	f.mu.Lock()
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	f.mu.Unlock()
}

// appliedChanged returns a channel closed at the next advance of the
// applied index.
func (f *FSM) appliedChanged() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appliedCh
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM. It returns exactly one response
// per log, configuration entries included.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	out := make([]any, len(logs))
	cmds, errs := f.decodeBatch(logs)
	for i, l := range logs {
		if l.Type == raft.LogCommand {
			out[i] = f.applyCommand(l, cmds[i], errs[i])
		}
	}
	// The catalog hears of the batch's document commands before a read
	// can see the batch applied.
	f.docs.Flush()
	if n := len(logs); n > 0 {
		f.batchSize.Update(float64(n))
		f.setApplied(logs[n-1].Index)
		f.feed.Applied(logs[n-1].Index)
	}
	return out
}

// decodeBatch decodes the batch's commands (errors in errs, applied in
// their turn), then has the idempotency window read ahead the slots
// their request ids will need.
func (f *FSM) decodeBatch(logs []*raft.Log) ([]*storage.Command, []error) {
	cmds, errs := make([]*storage.Command, len(logs)), make([]error, len(logs))
	ids := f.idsBuf[:0]
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		cmds[i], errs[i] = storage.DecodeCommand(l.Data)
		switch c := cmds[i]; {
		case c == nil:
		case c.Kind == storage.CmdMulti:
			for _, sub := range c.Multi {
				if sub.RequestID != "" {
					ids = append(ids, sub.RequestID)
				}
			}
		case c.RequestID != "":
			ids = append(ids, c.RequestID)
		}
	}
	if len(ids) > 1 {
		f.idem.prefetch(ids)
	}
	clear(ids)
	f.idsBuf = ids[:0]
	return cmds, errs
}

// applyCommand returns the command's *actors.Pending, or for a CmdMulti
// one per command it carries ([]*actors.Pending), in order. cmd and err
// are what decoding l gave.
func (f *FSM) applyCommand(l *raft.Log, cmd *storage.Command, err error) any {
	if f.failed {
		return actors.Resolved(internal("this node stopped applying commands"))
	}
	f.index = l.Index
	if err != nil {
		if errors.Is(err, storage.ErrUnsupportedVersion) {
			f.failed = true
			f.fatal(fmt.Errorf("log index %d: %w", l.Index, err))
			return actors.Resolved(internal("unsupported command version"))
		}
		// Every node decodes the same bytes the same way, so a corrupt
		// command fails identically everywhere.
		f.log.Error("undecodable command in the log", slog.Uint64("index", l.Index), slog.Any("err", err))
		return actors.Resolved(internal("undecodable command"))
	}
	if cmd.Kind == storage.CmdMulti {
		// Each as if in an entry of its own, each with its own result.
		ps := make([]*actors.Pending, len(cmd.Multi))
		for i, sub := range cmd.Multi {
			ps[i] = f.applyDecoded(sub)
		}
		return ps
	}
	return f.applyDecoded(cmd)
}

// applyDecoded applies one command (not a CmdMulti), with its spans when
// this node proposed it in a sampled trace.
func (f *FSM) applyDecoded(cmd *storage.Command) *actors.Pending {
	if tctx := f.traced.take(cmd.Stamp); tctx != nil {
		a := startApply(tctx, cmd, f.index)
		p, replayed := f.applyTraced(cmd, a)
		a.finish(p, replayed)
		return p
	}
	p, _ := f.applyTraced(cmd, nil)
	return p
}

// applyTraced applies cmd; a, if not nil, traces it. replayed says the
// result is a recorded one (a repeated request id).
func (f *FSM) applyTraced(cmd *storage.Command, a *applyTrace) (_ *actors.Pending, replayed bool) {
	// Command time never goes backwards, whatever the leaders' clocks.
	now := max(storage.StampMillis(cmd.Stamp), f.lastMs)
	f.lastMs = now
	if cmd.Stamp > f.stamp.Load() {
		f.stamp.Store(cmd.Stamp)
	}
	if f.init != nil {
		f.idem.expire(now - int64(f.init.IdempotencyRetention))
	}
	if cmd.RequestID != "" {
		if seq, ok := f.idem.get(cmd.RequestID); ok {
			if f.idem.fingerprint(seq) != cmd.Fingerprint {
				return actors.Resolved(storage.Result{Err: &storage.Error{Kind: storage.KindConflict,
					Message: "this Idempotency-Key was already used with a different request"}}), true
			}
			return f.idem.answer(seq), true
		}
	}
	tctx := noTrace
	if a != nil {
		tctx = a.actorCtx(cmd)
	}
	var meta *feed.Meta
	if cmd.Kind == storage.CmdPolicyPut || cmd.Kind == storage.CmdPolicyDelete || cmd.Kind == storage.CmdMember {
		meta = f.feedMetaBefore(cmd)
	}
	p := f.dispatch(tctx, cmd, now)
	if meta != nil {
		f.feedMetaAfter(cmd, meta)
	}
	f.feed.Record(f.index, cmd, p, now, meta)
	if cmd.RequestID != "" {
		f.idem.add(cmd.RequestID, cmd.Fingerprint, now, p, storage.Result{})
	}
	return p, false
}

// noTrace is the trace context of a command that is not traced.
var noTrace = context.Background()

// dispatch hands cmd to its actor; tctx is the actor span's context (a
// document submit's transform hangs below it).
func (f *FSM) dispatch(tctx context.Context, cmd *storage.Command, now int64) *actors.Pending {
	switch cmd.Kind {
	case storage.CmdInit:
		return f.applyInit(cmd.Init, now)
	case storage.CmdNoop:
		return actors.Resolved(storage.Result{})
	case storage.CmdMember:
		return actors.Resolved(f.applyMember(cmd.Member))
	case storage.CmdAuthSetup:
		return actors.Resolved(f.applyAuthSetup(cmd.Auth, now))
	case storage.CmdKeyRotate:
		return actors.Resolved(f.applyKeyRotate(cmd.Key, now))
	case storage.CmdPolicyPut:
		return actors.Resolved(f.applyPolicy(cmd.Policy, false))
	case storage.CmdPolicyDelete:
		return actors.Resolved(f.applyPolicy(cmd.Policy, true))
	case storage.CmdWebhook:
		return f.applyWebhook(cmd.Webhook, now)
	case storage.CmdWebhookProgress:
		return f.applyWebhookProgress(cmd.Progress)
	}
	u := f.users.Load()
	if u == nil {
		return actors.Resolved(internal("the cluster is not initialised yet"))
	}
	if cmd.Kind.IsDoc() {
		if cmd.Doc == nil {
			return actors.Resolved(internal("document command without its payload"))
		}
		return f.docs.ApplyTraced(tctx, cmd.Kind, cmd.Doc, now)
	}
	switch cmd.Kind {
	case storage.CmdUserCreate:
		return u.Create(cmd.Create, now)
	case storage.CmdUserBatch:
		return u.Batch(cmd.Batch, now)
	case storage.CmdUserPatch:
		return u.Patch(cmd.Patch, now)
	case storage.CmdUserDelete:
		return u.Delete(cmd.Delete)
	case storage.CmdSession:
		a := f.auth.Load()
		if a == nil {
			return actors.Resolved(internal("authentication is not set up yet"))
		}
		return u.Session(cmd.Session, now, a.Params)
	}
	return actors.Resolved(internal("unknown command"))
}

// applyInit fixes the cluster parameters and creates the first admin. Only
// the first Init in the log takes effect.
func (f *FSM) applyInit(p *storage.InitParams, now int64) *actors.Pending {
	if f.init != nil {
		return actors.Resolved(storage.Result{Err: &storage.Error{Kind: storage.KindConflict, Message: "the cluster is already initialised"}})
	}
	if err := p.Validate(); err != nil {
		return actors.Resolved(storage.Result{Err: &storage.Error{Kind: storage.KindBadRequest, Message: err.Error()}})
	}
	f.init = p
	u := actors.NewUsers(f.sys, int(p.UserShards))
	u.OnAuthNarrowed(f.authNarrowed)
	f.users.Store(u)
	return u.Create(&p.Admin, now)
}

// applyAuthSetup creates the authentication state; only the first setup
// in the log takes effect.
func (f *FSM) applyAuthSetup(s *storage.AuthSetup, now int64) storage.Result {
	if f.auth.Load() != nil {
		return storage.Result{Err: &storage.Error{Kind: storage.KindConflict, Message: "authentication is already set up"}}
	}
	a, err := storage.NewAuthState(s, now)
	if err != nil {
		return storage.Result{Err: &storage.Error{Kind: storage.KindBadRequest, Message: err.Error()}}
	}
	f.auth.Store(a)
	return storage.Result{}
}

// applyKeyRotate makes k the signing key.
func (f *FSM) applyKeyRotate(k *storage.SigningKey, now int64) storage.Result {
	cur := f.auth.Load()
	if cur == nil {
		return internal("authentication is not set up yet")
	}
	next, err := cur.Rotate(*k, now)
	if err != nil {
		return storage.Result{Err: &storage.Error{Kind: storage.KindBadRequest, Message: err.Error()}}
	}
	f.auth.Store(next)
	return storage.Result{}
}

// applyPolicy creates, replaces or deletes a named rate-limit policy.
// "default" is each node's own (--rate-limit) and cannot be set here.
func (f *FSM) applyPolicy(p *storage.Policy, remove bool) storage.Result {
	if p.Name == storage.DefaultPolicy {
		return storage.Result{Err: &storage.Error{Kind: storage.KindBadRequest, Field: "name",
			Message: "the default policy is set per node with --rate-limit, not through the API"}}
	}
	cur := f.Policies()
	if remove {
		if _, ok := cur[p.Name]; !ok {
			return storage.Result{Err: &storage.Error{Kind: storage.KindNotFound, Message: "no policy named " + p.Name}}
		}
	} else {
		q := *p
		if err := q.Validate(); err != nil {
			return storage.Result{Err: err}
		}
		p = &q
	}
	next := make(map[string]storage.Policy, len(cur)+1)
	for name, q := range cur {
		next[name] = q
	}
	if remove {
		delete(next, p.Name)
	} else {
		next[p.Name] = *p
	}
	f.policies.Store(&next)
	return storage.Result{}
}

// Policies returns the named rate-limit policies; the map must not be
// changed.
func (f *FSM) Policies() map[string]storage.Policy {
	if m := f.policies.Load(); m != nil {
		return *m
	}
	return nil
}

// applyMember changes the member directory (copy on write: readers hold
// the old map).
func (f *FSM) applyMember(c *storage.MemberChange) storage.Result {
	if !c.Remove {
		if err := c.Validate(); err != nil {
			return storage.Result{Err: &storage.Error{Kind: storage.KindBadRequest, Message: err.Error()}}
		}
	}
	next := map[string]storage.Member{}
	for id, m := range f.Members() {
		next[id] = m
	}
	if c.Remove {
		delete(next, c.ID)
	} else {
		next[c.ID] = c.Member
	}
	f.members.Store(&next)
	return storage.Result{}
}

// Members returns the member directory; the map must not be changed.
func (f *FSM) Members() map[string]storage.Member {
	if m := f.members.Load(); m != nil {
		return *m
	}
	return nil
}

func internal(msg string) storage.Result {
	return storage.Result{Err: &storage.Error{Kind: storage.KindInternal, Message: msg}}
}

// Snapshot implements raft.FSM: a barrier across all actors that returns
// their immutable views at once; Persist materialises the idempotency
// window from its view and streams them all while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.applyMu.Lock()
	s, idem := f.captureViews()
	f.applyMu.Unlock()
	return &fsmSnapshot{snap: s, idem: idem, fsm: f}, nil
}

// Capture takes the whole state at the current applied index, from any
// goroutine: backups and state hashes use it. It holds Apply off only for
// the O(shards) barrier; the idempotency window is materialised after.
func (f *FSM) Capture() *storage.Snapshot {
	f.applyMu.Lock()
	s, idem := f.captureViews()
	f.applyMu.Unlock()
	s.Meta.Idempotency = idem.entries()
	return s
}

// capture takes the whole state at the current applied index, the
// idempotency window materialised (from the FSM goroutine, or with
// applyMu held).
func (f *FSM) capture() *storage.Snapshot {
	s, idem := f.captureViews()
	s.Meta.Idempotency = idem.entries()
	return s
}

// captureViews takes the state at the current applied index, all but the
// idempotency window, which it returns as a view: O(shards + documents),
// never O(keys), while Apply is held off.
func (f *FSM) captureViews() (*storage.Snapshot, idemView) {
	s := &storage.Snapshot{Meta: storage.Meta{
		Init: f.init, Index: f.applied.Load(), LastStamp: f.stamp.Load(), LastMs: f.lastMs,
		Auth: f.auth.Load(),
	}}
	if u := f.users.Load(); u != nil {
		s.Shards = u.Views()
	}
	s.Docs = f.docs.Views()
	// After the barrier every command sent to an actor has run, so every
	// recorded result is known.
	idem := f.idem.view()
	for _, m := range f.Members() {
		s.Meta.Members = append(s.Meta.Members, m)
	}
	slices.SortFunc(s.Meta.Members, func(a, b storage.Member) int { return strings.Compare(a.ID, b.ID) })
	for _, p := range f.Policies() {
		s.Meta.Policies = append(s.Meta.Policies, p)
	}
	slices.SortFunc(s.Meta.Policies, func(a, b storage.Policy) int { return strings.Compare(a.Name, b.Name) })
	f.captureWebhooks(&s.Meta)
	return s, idem
}

// Restore implements raft.FSM: it replaces the whole state.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	snap, err := storage.ReadSnapshot(rc)
	if err != nil {
		if errors.Is(err, storage.ErrUnsupportedVersion) {
			f.failed = true
			f.fatal(err)
		}
		return fmt.Errorf("cannot restore snapshot: %w", err)
	}
	return f.restore(snap)
}

func (f *FSM) restore(snap *storage.Snapshot) error {
	m := &snap.Meta
	old := f.users.Load()
	switch {
	case m.Init == nil:
		f.users.Store(nil)
		if old != nil {
			old.Stop()
		}
	case old == nil || old.Shards() != len(snap.Shards):
		u := actors.NewUsers(f.sys, len(snap.Shards))
		u.OnAuthNarrowed(f.authNarrowed)
		if err := u.Restore(snap.Shards); err != nil {
			u.Stop()
			return fmt.Errorf("cannot restore snapshot: %w", err)
		}
		f.users.Store(u)
		if old != nil {
			old.Stop()
		}
	default:
		if err := old.Restore(snap.Shards); err != nil {
			return fmt.Errorf("cannot restore snapshot: %w", err)
		}
	}
	f.docs.Restore(snap.Docs)
	f.authNarrowed("")
	f.init = m.Init
	f.auth.Store(m.Auth)
	f.lastMs = m.LastMs
	f.stamp.Store(m.LastStamp)
	idem := newIdempotencyWindow()
	for i := range m.Idempotency {
		e := &m.Idempotency[i]
		// Ids are unique in a window; a snapshot that repeats one keeps
		// the first, as the window that wrote it answered.
		if _, dup := idem.get(e.RequestID); !dup {
			idem.add(e.RequestID, e.Fingerprint, e.AtMs, nil, e.Result)
		}
	}
	f.idem = idem
	f.idemKept.Store(idem)
	members := make(map[string]storage.Member, len(m.Members))
	for _, mb := range m.Members {
		members[mb.ID] = mb
	}
	f.members.Store(&members)
	policies := make(map[string]storage.Policy, len(m.Policies))
	for _, p := range m.Policies {
		policies[p.Name] = p
	}
	f.policies.Store(&policies)
	f.restoreWebhooks(m)
	f.setApplied(m.Index)
	f.feed.Reset(m.Index, snap.Docs, m.LastMs)
	return nil
}

// fsmSnapshot is the state captured at one index; the idempotency window
// is a view until Persist materialises it, off the apply path.
type fsmSnapshot struct {
	snap *storage.Snapshot
	idem idemView
	fsm  *FSM // for the snapshot metrics; nil in some tests
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	s.snap.Meta.Idempotency = s.idem.entries()
	w := &countingWriter{w: sink}
	if err := storage.WriteSnapshot(w, s.snap); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("cannot write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.fsm != nil {
		s.fsm.snapBytes.Store(w.n)
		s.fsm.snapMillis.Store(time.Since(start).Milliseconds())
	}
	return nil
}

func (s *fsmSnapshot) Release() {}

// feedMetaBefore notes, for the change feed, whether the policy or
// member a command names exists before it is applied.
func (f *FSM) feedMetaBefore(cmd *storage.Command) *feed.Meta {
	m := &feed.Meta{}
	switch {
	case cmd.Policy != nil:
		_, m.Existed = f.Policies()[cmd.Policy.Name]
	case cmd.Member != nil:
		_, m.Existed = f.Members()[cmd.Member.ID]
	}
	return m
}

// feedMetaAfter notes the policy or member as the command left it.
func (f *FSM) feedMetaAfter(cmd *storage.Command, m *feed.Meta) {
	switch {
	case cmd.Policy != nil:
		if p, ok := f.Policies()[cmd.Policy.Name]; ok {
			m.Policy = &p
		}
	case cmd.Member != nil:
		if mb, ok := f.Members()[cmd.Member.ID]; ok {
			m.Member = &mb
		}
	}
}
