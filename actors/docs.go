package actors

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/storage"
)

// Docs keeps the collaborative documents: an actor per document while it
// is in use, owning its state (an immutable *storage.Doc) and its
// subscribers. An idle document without subscribers passivates: its
// actor stops and the directory keeps the document's state, so a
// passivated document costs its Doc value and a directory entry; the
// next message wakes it (a spawn).
//
// Passivation is safe without locks on the hot path: every message to a
// document is sent under the directory's mutex, which counts it; the
// actor counts what it handled. An actor asked to passivate does so only
// if nothing was sent behind the request (the counts agree), handing its
// state back under the same mutex; otherwise it stays.
//
// Listings are the catalog's (see Catalog): Apply gathers a note of each
// command for it, and Flush, which the FSM calls at the end of each batch
// before it advances its applied index, sends them in one message.
//
// Ownership: Apply, Views and Restore are called by the FSM goroutine in
// log order; queries and subscriptions by any goroutine.
type Docs struct {
	sys         *System
	catalog     *Catalog
	notes       []*catalogNote // for the catalog, since the last Flush (FSM goroutine)
	maxHistory  int
	idleAfter   time.Duration
	presenceTTL time.Duration
	// onPresence, if set, hears of every presence change of this node's
	// own subscribers (to tell the other nodes). It must not block.
	onPresence atomic.Pointer[func(docID string, p Presence)]
	// onNarrowed, if set, hears of every document whose readers lost
	// someone while it had subscribers here (an editor removed). It must
	// not block.
	onNarrowed  Hooks[string]
	maxPresence atomic.Int64

	mu      sync.Mutex
	entries map[string]docEntry
	// owned counts each user's documents, for the quota a create carries
	// (changed in log order, by the FSM goroutine, under mu).
	owned map[string]int
	// namedBytes sums each owner's named-version bytes
	// (storage.NamedVersion.Bytes) over its documents, for the quota a
	// naming carries. It changes in log order: a naming or a delete is
	// applied while the FSM goroutine waits for it, under mu.
	namedBytes map[string]int

	active      atomic.Int64
	stop        chan struct{}
	stopOnce    sync.Once
	wg          sync.WaitGroup
	dropped     atomic.Int64 // subscribers cut off for falling behind
	published   atomic.Int64 // change events queued to subscribers
	submits     atomic.Int64 // submits applied (repeats excluded)
	subscribers atomic.Int64 // open subscriptions on this node
	transformed atomic.Int64 // of which based on an older version (transform conflicts)
	// presenceRefused counts clients refused (and other nodes' reports
	// dropped) because a document had MaxPresence present.
	presenceRefused atomic.Int64
}

// docEntry is a document's place in the directory, held in the map's
// slot (no allocation of its own): its state while passivated, or its
// actor's box while active. Changed under Docs.mu only.
type docEntry struct {
	doc *storage.Doc // the state while passivated
	box *docBox      // the actor while active (doc is nil)
}

// DocsConfig configures Docs.
type DocsConfig struct {
	MaxHistory int           // changes kept per document
	IdleAfter  time.Duration // passivate a document unused this long; default 1 min
	// PresenceTTL: another node's presence report lasts this long unless
	// renewed; default 10 s.
	PresenceTTL time.Duration
	// MaxPresence bounds the clients present in a document (this node's
	// subscribers with a client id and other nodes' reports); default
	// DefaultMaxPresence.
	MaxPresence int
}

// DefaultMaxPresence is the default bound on the clients present in a
// document.
const DefaultMaxPresence = 1000

// NewDocs returns an empty set of documents.
func NewDocs(sys *System, cfg DocsConfig) *Docs {
	if cfg.MaxHistory <= 0 {
		cfg.MaxHistory = storage.DefaultDocHistory
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = time.Minute
	}
	if cfg.PresenceTTL <= 0 {
		cfg.PresenceTTL = 10 * time.Second
	}
	if cfg.MaxPresence <= 0 {
		cfg.MaxPresence = DefaultMaxPresence
	}
	d := &Docs{sys: sys, catalog: NewCatalog(sys), maxHistory: cfg.MaxHistory, idleAfter: cfg.IdleAfter, presenceTTL: cfg.PresenceTTL,
		entries: map[string]docEntry{}, owned: map[string]int{}, namedBytes: map[string]int{}, stop: make(chan struct{})}
	d.maxPresence.Store(int64(cfg.MaxPresence))
	d.wg.Add(1)
	go d.sweeper()
	return d
}

// Close stops the sweeper and every document actor (subscribers are cut
// off).
func (d *Docs) Close() {
	d.stopOnce.Do(func() {
		close(d.stop)
		d.wg.Wait()
		d.mu.Lock()
		var pids []*actor.PID
		for id, e := range d.entries {
			if e.box != nil {
				pids = append(pids, e.box.pid)
				d.entries[id] = docEntry{doc: e.box.latest.Load()}
			}
		}
		d.mu.Unlock()
		d.sys.stop(pids)
		d.sys.actorCount.Add(-int64(len(pids)))
		d.active.Add(-int64(len(pids)))
		d.catalog.Close()
	})
}

// Catalog returns the documents' listing.
func (d *Docs) Catalog() *Catalog { return d.catalog }

// Counts returns the documents held and how many have an active actor.
func (d *Docs) Counts() (total, active int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.entries), int(d.active.Load())
}

// Dropped is the number of subscribers cut off for falling behind;
// Published the change events queued to subscribers.
func (d *Docs) Dropped() int64   { return d.dropped.Load() }
func (d *Docs) Published() int64 { return d.published.Load() }

// Submits is the number of submits applied on this node; Transformed
// those that were written against an older version (concurrent edits).
func (d *Docs) Submits() int64 { return d.submits.Load() }

// PresenceRefused is the number of clients refused presence (and other
// nodes' reports dropped) because their document was full.
func (d *Docs) PresenceRefused() int64 { return d.presenceRefused.Load() }

// SetMaxPresence changes the bound on the clients present in a document
// (for documents' next joins); n < 1 keeps the current bound.
func (d *Docs) SetMaxPresence(n int) {
	if n >= 1 {
		d.maxPresence.Store(int64(n))
	}
}

// OnReadersNarrowed adds a function told of every document that lost a
// reader (a member removed, the owner changed, a share link revoked or
// expired and dropped) while it had subscribers
// on this node, so their rights can be checked again; it must not block.
// The returned function removes it.
func (d *Docs) OnReadersNarrowed(fn func(docID string)) (remove func()) { return d.onNarrowed.Add(fn) }

// Subscribers is the number of open subscriptions on this node.
func (d *Docs) Subscribers() int64 { return d.subscribers.Load() }
func (d *Docs) Transformed() int64 { return d.transformed.Load() }

// docMsg runs fn on a document's state in its actor.
type docMsg struct {
	run       func(b *docBox)
	recovered func() // instead of completing run when it panics
}

// tickMsg is the sweeper's periodic message: expire other nodes'
// presence, and passivate if idle.
type tickMsg struct{}

// docBox is a document actor's state; it survives a restart after a
// panic (the producer shares it).
type docBox struct {
	d   *Docs
	id  string
	pid *actor.PID
	// sent counts the messages sent to pid, under Docs.mu.
	sent uint64
	// latest is the newest state, published by the actor after each
	// change, for what needs no actor round trip (a stream's reset).
	latest   atomic.Pointer[storage.Doc]
	doc      *storage.Doc // nil once deleted
	done     uint64       // messages handled
	lastUsed time.Time
	subs     map[*Subscriber]struct{}
	// remote is other nodes' presence in this document, by client id.
	remote map[string]remotePresence
	cut    []*Subscriber // cut off while publishing; they leave after
}

type remotePresence struct {
	Presence
	expires time.Time
}

type docActor struct{ box *docBox }

func (a *docActor) Receive(ctx actor.Context) {
	b := a.box
	switch m := ctx.Message().(type) {
	case *docMsg:
		b.done++
		b.lastUsed = time.Now()
		b.d.sys.mailboxDepth.Add(-1)
		b.run(m)
	case tickMsg:
		b.done++
		b.d.sys.mailboxDepth.Add(-1)
		b.expirePresence(time.Now())
		if b.passivate() {
			ctx.Stop(ctx.Self())
		}
	}
}

func (b *docBox) run(m *docMsg) {
	defer func() {
		if r := recover(); r != nil {
			b.d.sys.panics.Inc()
			b.d.sys.log.Error("document actor recovered from a panic", slog.String("doc", b.id), slog.String("panic", fmt.Sprint(r)))
			if m.recovered != nil {
				m.recovered()
			}
		}
	}()
	m.run(b)
}

// passivate hands the state back to the directory if the document is
// idle, has no subscribers, and nothing waits behind this message.
func (b *docBox) passivate() bool {
	if len(b.subs) > 0 || time.Since(b.lastUsed) < b.d.idleAfter {
		return false
	}
	b.d.mu.Lock()
	defer b.d.mu.Unlock()
	if e := b.d.entries[b.id]; b.sent != b.done || e.box != b {
		return false
	}
	b.d.entries[b.id] = docEntry{doc: b.doc}
	b.d.active.Add(-1)
	b.d.sys.actorCount.Add(-1)
	return true
}

// sendIfActive delivers m only if the document's actor is running.
func (d *Docs) sendIfActive(id string, m any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b := d.entries[id].box; b != nil {
		b.sent++
		d.sys.mailboxDepth.Add(1)
		d.sys.root.Send(b.pid, m)
	}
}

// send delivers m to the document's actor, waking it if passivated. It
// returns false if there is no such document.
func (d *Docs) send(id string, m any) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries[id]
	if !ok {
		return false
	}
	b := e.box
	if b == nil {
		// The box keeps the id the directory's key was made of (the
		// caller's id may live in a request's buffer).
		key := strings.Clone(id)
		if e.doc != nil {
			key = e.doc.ID
		}
		b = &docBox{d: d, id: key, doc: e.doc, lastUsed: time.Now(), subs: map[*Subscriber]struct{}{}, remote: map[string]remotePresence{}}
		b.latest.Store(e.doc)
		b.pid = d.sys.spawn(func() actor.Actor { return &docActor{box: b} })
		d.entries[id] = docEntry{box: b}
		d.active.Add(1)
		d.sys.actorCount.Add(1)
	}
	b.sent++
	d.sys.mailboxDepth.Add(1)
	d.sys.root.Send(b.pid, m)
	return true
}

func (d *Docs) sweeper() {
	defer d.wg.Done()
	t := time.NewTicker(min(max(d.idleAfter/2, 10*time.Millisecond), time.Second, d.presenceTTL/4))
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.mu.Lock()
			// Each active actor decides whether it is idle.
			for _, e := range d.entries {
				if b := e.box; b != nil {
					b.sent++
					d.sys.mailboxDepth.Add(1)
					d.sys.root.Send(b.pid, tickMsg{})
				}
			}
			d.mu.Unlock()
		}
	}
}

// Apply applies a document command in log order. Creates and deletes
// change the directory and are applied before Apply returns, so the next
// command sees them; the others are sent to the document's actor.
func (d *Docs) Apply(kind storage.CommandKind, c *storage.DocCommand, nowMs int64) *Pending {
	return d.ApplyTraced(context.Background(), kind, c, nowMs)
}

// ApplyTraced is Apply in the trace of tctx: a submit's transform gets a
// span ("doc transform") when tctx carries a recording span.
func (d *Docs) ApplyTraced(tctx context.Context, kind storage.CommandKind, c *storage.DocCommand, nowMs int64) *Pending {
	if kind == storage.CmdDocCreate {
		d.mu.Lock()
		_, exists := d.entries[c.DocID]
		owned := d.owned[c.Caller]
		d.mu.Unlock()
		var cur *storage.Doc
		if exists {
			cur = &storage.Doc{ID: c.DocID} // any: create only checks existence
		}
		doc, _, err := storage.ApplyDoc(kind, c, cur, nowMs, d.maxHistory)
		if err == nil {
			err = storage.CheckDocQuota(owned, c.MaxDocs)
		}
		if err != nil {
			return Resolved(storage.Result{Err: err})
		}
		d.mu.Lock()
		d.entries[doc.ID] = docEntry{doc: doc}
		d.owned[doc.Owner]++
		d.mu.Unlock()
		d.notes = append(d.notes, &catalogNote{id: doc.ID, doc: doc})
		return Resolved(storage.Result{Doc: doc})
	}
	p := NewPending()
	// deleted is the document's last state if the command deleted it,
	// else nil; only deletes and named versions wait for it (a submit
	// does not pay for the channel).
	var deleted chan *storage.Doc
	if kind == storage.CmdDocDelete || kind == storage.CmdDocVersion {
		deleted = make(chan *storage.Doc, 1)
	}
	// The catalog hears of the new state before p is resolved (a delete:
	// below, once known).
	var note *catalogNote
	if kind != storage.CmdDocDelete {
		note = &catalogNote{id: c.DocID, done: p.Done()}
	}
	ok := d.send(c.DocID, &docMsg{
		run: func(b *docBox) {
			spanName := "doc apply"
			if kind == storage.CmdDocSubmit {
				spanName = "doc transform"
			}
			_, span := tracing.Child(tctx, spanName)
			var next *storage.Doc
			var sub *storage.SubmitResult
			var err *storage.Error
			if kind == storage.CmdDocVersion {
				next, err = d.applyNamed(c, b.doc, nowMs)
			} else {
				next, sub, err = storage.ApplyDoc(kind, c, b.doc, nowMs, d.maxHistory)
			}
			if span.IsRecording() {
				traceTransform(span, c, sub, err)
			}
			span.End()
			if err != nil {
				tell(deleted, nil)
				p.resolve(storage.Result{Err: err})
				return
			}
			prev := b.doc
			b.doc = next
			if next != nil {
				b.latest.Store(next)
				if note != nil && next != prev {
					note.doc = next
				}
			}
			if kind == storage.CmdDocDelete {
				b.closeSubs(nil)
				deleted <- prev
				p.resolve(storage.Result{Doc: prev})
				return
			}
			tell(deleted, nil)
			if prev != nil && next != nil && len(b.subs) > 0 && !d.onNarrowed.Empty() && readersNarrowed(prev, next) {
				d.onNarrowed.Call(b.id)
			}
			if sub != nil {
				if !sub.Repeated {
					d.submits.Add(1)
					if c.Submit.Base < sub.Version-1 {
						d.transformed.Add(1)
					}
					b.publish(Event{Kind: EventChange, Change: &storage.Change{Version: sub.Version, ClientID: c.Submit.ClientID, Seq: c.Submit.Seq, Ops: sub.Ops}})
				}
				p.after = next
				p.resolve(storage.Result{Submit: sub})
				return
			}
			p.resolve(storage.Result{Doc: next})
		},
		recovered: func() {
			tell(deleted, nil)
			p.resolve(internalResult())
		},
	})
	if !ok {
		return Resolved(storage.Result{Err: &storage.Error{Kind: storage.KindNotFound, Message: "no document with id " + c.DocID}})
	}
	if note != nil {
		d.notes = append(d.notes, note)
	}
	if kind == storage.CmdDocVersion {
		// The owner's named-version bytes are counted in log order: the
		// next command waits for this one.
		<-deleted
	}
	if kind == storage.CmdDocDelete {
		// The directory entry goes now, in log order.
		if last := <-deleted; last != nil {
			d.notes = append(d.notes, &catalogNote{id: c.DocID, gone: true})
			d.mu.Lock()
			if e, ok := d.entries[c.DocID]; ok {
				delete(d.entries, c.DocID)
				d.disown(last.Owner)
				d.addNamedBytes(last.Owner, -last.NamedBytes())
				if e.box != nil {
					d.sys.root.Stop(e.box.pid)
					d.active.Add(-1)
					d.sys.actorCount.Add(-1)
				}
			}
			d.mu.Unlock()
		}
	}
	return p
}

// readersNarrowed reports whether someone who could read prev cannot
// read next (admins aside, who read everything): a member or the owner
// gone, or a share link revoked or dropped once expired. A change that
// kept the members and links (a submit, a retitle) shares their slices:
// told at once.
func readersNarrowed(prev, next *storage.Doc) bool {
	if prev.Owner == next.Owner && sameSlice(prev.Editors, next.Editors) && sameSlice(prev.Viewers, next.Viewers) &&
		sameSlice(prev.Links(), next.Links()) {
		return false
	}
	for _, u := range prev.Readers() {
		if !next.MayRead(u, false) {
			return true
		}
	}
	for _, l := range prev.Links() {
		if next.Link(l.ID) == nil {
			return true
		}
	}
	return false
}

// sameSlice reports whether a and b are the same slice (a Doc change
// that does not touch a list keeps it).
func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// disown counts one document less for owner; under mu.
func (d *Docs) disown(owner string) {
	if d.owned[owner]--; d.owned[owner] <= 0 {
		delete(d.owned, owner)
	}
}

// applyNamed applies a CmdDocVersion to cur in its actor, while the FSM
// goroutine waits for it (so no other command changes namedBytes
// meanwhile), and counts the change in the owner's named-version bytes.
func (d *Docs) applyNamed(c *storage.DocCommand, cur *storage.Doc, nowMs int64) (*storage.Doc, *storage.Error) {
	var ownerBytes int
	if cur != nil {
		d.mu.Lock()
		ownerBytes = d.namedBytes[cur.Owner]
		d.mu.Unlock()
	}
	next, delta, err := storage.ApplyNamedVersion(c, cur, nowMs, ownerBytes)
	if err == nil && delta != 0 {
		d.mu.Lock()
		d.addNamedBytes(cur.Owner, delta)
		d.mu.Unlock()
	}
	return next, err
}

// addNamedBytes counts delta more named-version bytes for owner; under mu.
func (d *Docs) addNamedBytes(owner string, delta int) {
	if d.namedBytes[owner] += delta; d.namedBytes[owner] <= 0 {
		delete(d.namedBytes, owner)
	}
}

// NamedBytes is what userID's named versions count, over all the
// documents it owns (storage.NamedVersion.Bytes).
func (d *Docs) NamedBytes(userID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.namedBytes[userID]
}

// Owned is the number of documents userID owns.
func (d *Docs) Owned(userID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.owned[userID]
}

// query runs fn in the document's actor and waits until deadline.
func (d *Docs) query(id string, deadline time.Time, fn func(b *docBox)) error {
	done := make(chan bool, 1)
	if !d.send(id, &docMsg{run: func(b *docBox) { fn(b); done <- true }, recovered: func() { done <- false }}) {
		return &storage.Error{Kind: storage.KindNotFound, Message: "no document with id " + id}
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case ok := <-done:
		if !ok {
			return &storage.Error{Kind: storage.KindInternal, Message: "internal error while reading"}
		}
		return nil
	case <-t.C:
		return ErrTimeout
	}
}

func notFoundDoc(id string) *storage.Error {
	return &storage.Error{Kind: storage.KindNotFound, Message: "no document with id " + id}
}

// Get returns the document's current state.
func (d *Docs) Get(id string, deadline time.Time) (*storage.Doc, error) {
	var doc *storage.Doc
	if err := d.query(id, deadline, func(b *docBox) { doc = b.doc }); err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, notFoundDoc(id)
	}
	return doc, nil
}

// Latest returns the newest state the directory knows, without a round
// trip to the actor (listings).
func (d *Docs) Latest(id string) *storage.Doc {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.entries[id]
	if e.box != nil {
		return e.box.latest.Load()
	}
	return e.doc
}

// Flush sends the catalog the notes of the commands applied since the
// last Flush: one message a batch rather than one a command (a message
// wakes the catalog's goroutine, which cost more than the rest of its
// work). The FSM calls it at the end of each batch, before it advances
// its applied index, so that a listing after a read barrier finds every
// command up to the barrier in the catalog's mailbox.
func (d *Docs) Flush() {
	if len(d.notes) > 0 {
		d.catalog.record(d.notes)
		d.notes = nil
	}
}

// List returns up to limit documents with ids after after, in id order,
// that user may read (admin: all), and whether there are more; the
// catalog answers (see Catalog.List).
func (d *Docs) List(user string, admin bool, after string, limit int, deadline time.Time) ([]*storage.Doc, bool, error) {
	return d.catalog.List(user, admin, after, limit, deadline)
}

// Views returns every document's state after every command sent so far:
// the snapshot barrier. A passivated document's state is the directory's;
// an active one is asked (one round trip each), so a snapshot wakes
// nothing.
func (d *Docs) Views() []*storage.Doc {
	d.mu.Lock()
	out := make([]*storage.Doc, 0, len(d.entries))
	var active []string
	for id, e := range d.entries {
		if e.box == nil {
			if e.doc != nil {
				out = append(out, e.doc)
			}
		} else {
			active = append(active, id)
		}
	}
	d.mu.Unlock()
	for _, id := range active {
		var doc *storage.Doc
		done := make(chan struct{})
		if !d.send(id, &docMsg{run: func(b *docBox) { doc = b.doc; close(done) }, recovered: func() { close(done) }}) {
			continue
		}
		<-done
		if doc != nil {
			out = append(out, doc)
		}
	}
	slices.SortFunc(out, func(a, b *storage.Doc) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Restore replaces every document (passivated, subscribers reset).
func (d *Docs) Restore(docs []*storage.Doc) {
	d.mu.Lock()
	old := d.entries
	d.entries = make(map[string]docEntry, len(docs))
	d.owned = map[string]int{}
	d.namedBytes = map[string]int{}
	for _, doc := range docs {
		d.entries[doc.ID] = docEntry{doc: doc}
		d.owned[doc.Owner]++
		d.addNamedBytes(doc.Owner, doc.NamedBytes())
	}
	d.notes = nil // of commands the restored state replaces
	d.catalog.restore(docs)
	var pids []*actor.PID
	for _, e := range old {
		if e.box != nil {
			// Retired: an actor whose entry no longer names it never
			// passivates (it must be there to take the message below).
			pids = append(pids, e.box.pid)
		}
	}
	d.mu.Unlock()
	for _, pid := range pids {
		done := make(chan struct{})
		// Subscribers of the old state get a reset with the new one.
		d.sys.mailboxDepth.Add(1)
		d.sys.root.Send(pid, &docMsg{run: func(b *docBox) {
			b.closeSubs(d.Latest(b.id))
			close(done)
		}, recovered: func() { close(done) }})
		<-done
	}
	d.sys.stop(pids)
	d.active.Add(-int64(len(pids)))
	d.sys.actorCount.Add(-int64(len(pids)))
}

// traceTransform records on span what a command did to a document: for a
// submit, the version it was based on, the version it made and whether
// it was transformed over changes it had not seen.
func traceTransform(span trace.Span, c *storage.DocCommand, sub *storage.SubmitResult, err *storage.Error) {
	span.SetAttributes(attribute.String("troupe.doc.id", c.DocID))
	if c.Submit != nil {
		span.SetAttributes(attribute.Int64("troupe.doc.base_version", int64(c.Submit.Base)), attribute.Int("troupe.doc.ops", len(c.Submit.Ops)))
	}
	if sub != nil {
		span.SetAttributes(attribute.Int64("troupe.doc.version", int64(sub.Version)),
			attribute.Bool("troupe.doc.transformed", c.Submit != nil && c.Submit.Base < sub.Version-1),
			attribute.Bool("troupe.doc.repeated", sub.Repeated))
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
}

// tell sends doc on ch, a command's one-slot answer channel, unless the
// command has none (nil: nobody waits for it).
func tell(ch chan<- *storage.Doc, doc *storage.Doc) {
	if ch != nil {
		ch <- doc
	}
}
