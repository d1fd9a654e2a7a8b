package actors

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/btree"

	"github.com/troupe-db/troupe/storage"
)

// Catalog is the listing of the documents (GET /v1/docs): an actor that
// alone owns every document's place in the listing (an entry holding the
// document's immutable state, shared with the directory), kept in id
// order for admins and, per user, in id order for the documents that user
// may read (storage.Doc.Readers, the users MayRead admits), so that a
// user's page costs O(page + log n) whatever the number of documents.
//
// It is fed in log order: Docs.Apply, which the FSM calls in log order,
// makes a note of every document command that reached a document, and
// Docs.Flush sends them at the end of each batch, before the FSM advances
// its applied index (Docs.Restore sends the restored documents). A
// create's or a delete's note is settled when made; a title, editor or
// submit command's note is settled by the document's actor, which records
// the document's new state in it before it resolves the command's
// Pending. The catalog applies notes in the order it got them, as they
// settle, and answers a listing once every note it had received when the
// listing came is applied: a listing asked after this node applied index
// N (a read barrier) reflects every command up to N. A listing that must
// wait for a note is parked, and a goroutine that waits for the note tells
// the catalog when to look again: the actor itself never blocks.
//
// Ownership: the fields of catalogState are the actor goroutine's alone.
// Document actors write a note once, before the Pending it waits on is
// resolved, and never wait on the catalog. entries is published for the
// metrics.
type Catalog struct {
	sys *System
	pid *actor.PID

	entries atomic.Int64 // documents listed, for the metrics

	// closing ends the catalog's waits on documents when the node stops
	// (their actors are stopped first and may never answer).
	closing   chan struct{}
	closeOnce sync.Once
}

// catalogNote is one document command's effect on the listing. A
// document's actor sets doc before done is closed, and the catalog reads
// it after; a create's and a delete's note is complete when made.
type catalogNote struct {
	id   string
	done <-chan struct{} // nil: settled when sent
	doc  *storage.Doc    // the document after the command; nil: unchanged
	gone bool            // the document was deleted
}

func (n *catalogNote) settled() bool {
	if n.done == nil {
		return true
	}
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// catalogNotes are the notes of a batch of commands, in log order.
type catalogNotes []*catalogNote

// catalogRestore replaces the whole catalog by these documents.
type catalogRestore struct{ docs []*storage.Doc }

// catalogList asks for a page; the answer goes to reply (capacity 1).
type catalogList struct {
	user     string
	admin    bool
	after    string
	limit    int
	deadline time.Time
	reply    chan catalogPage
	mark     uint64 // the notes received when it came: the page reflects them all
}

// catalogWake tells the catalog that a note it waits for may be settled
// (or a parked listing's deadline passed).
type catalogWake struct{}

type catalogPage struct {
	docs []*storage.Doc
	more bool
	err  error
}

// catalogEntry is one document's place in the listing, replaced in
// place, by the actor only: the document's state as the newest applied
// note gave it. A Doc is immutable and the directory holds the same one
// (each note carries the state the document's actor keeps), so an entry
// costs the catalog a pointer, and no text or history the directory does
// not hold too: the next note replaces it by the newer state. The rules
// (MayRead, Readers) are asked on it, and a page answers its Listing.
type catalogEntry struct{ doc *storage.Doc }

func entryLess(a, b *catalogEntry) bool { return a.doc.ID < b.doc.ID }

// catalogDegree is the B-trees' degree: nodes of up to 63 pointers.
const catalogDegree = 32

// catalogState is the actor's state; only its goroutine touches it.
type catalogState struct {
	c      *Catalog
	byID   map[string]*catalogEntry
	all    *btree.BTreeG[*catalogEntry]
	byUser map[string]*btree.BTreeG[*catalogEntry]
	// free is the node free list all the trees share (one per tree would
	// cost a user with one document 256 bytes).
	free *btree.FreeListG[*catalogEntry]
	// queue holds the notes not yet applied, in the order sent; head is
	// the first.
	queue []*catalogNote
	head  int
	// Notes ever received and ever applied (or dropped by a restore).
	received, applied uint64
	// parked are the listings waiting for notes up to their mark, in
	// arrival order; waking: a goroutine waits for the first unsettled
	// note to send catalogWake.
	parked   []*catalogList
	waking   bool
	pivot    catalogEntry // a search key, reused
	pivotDoc storage.Doc  // pivot's
}

func newCatalogState(c *Catalog) *catalogState {
	s := &catalogState{c: c, free: btree.NewFreeListG[*catalogEntry](btree.DefaultFreeListSize)}
	s.reset()
	return s
}

func (s *catalogState) newTree() *btree.BTreeG[*catalogEntry] {
	return btree.NewWithFreeListG(catalogDegree, entryLess, s.free)
}

func (s *catalogState) reset() {
	s.byID = map[string]*catalogEntry{}
	s.all = s.newTree()
	s.byUser = map[string]*btree.BTreeG[*catalogEntry]{}
	clear(s.queue)
	s.queue, s.head = s.queue[:0], 0
	s.applied = s.received // what was queued is superseded
}

type catalogActor struct{ s *catalogState }

func (a *catalogActor) Receive(ctx actor.Context) {
	s := a.s
	switch m := ctx.Message().(type) {
	case catalogNotes:
		s.c.sys.mailboxDepth.Add(-1)
		s.queue = append(s.queue, m...)
		s.received += uint64(len(m))
		s.settle()
		s.answerParked()
	case *catalogRestore:
		s.c.sys.mailboxDepth.Add(-1)
		s.restore(m.docs)
		s.answerParked()
	case *catalogList:
		s.c.sys.mailboxDepth.Add(-1)
		m.mark = s.received
		s.settle()
		if s.applied >= m.mark {
			s.answer(m)
		} else {
			s.parked = append(s.parked, m)
			s.wake()
		}
	case catalogWake:
		s.c.sys.mailboxDepth.Add(-1)
		s.waking = false
		s.settle()
		s.answerParked()
	default:
		return
	}
	s.c.entries.Store(int64(len(s.byID)))
}

// settle applies the queued notes that are settled, in order, up to the
// first that is not. It never waits: a listing that needs a note not yet
// settled is parked, and a goroutine waits for the note (wake).
func (s *catalogState) settle() {
	for s.head < len(s.queue) {
		n := s.queue[s.head]
		if !n.settled() {
			break
		}
		s.queue[s.head] = nil
		s.head++
		s.applied++
		s.apply(n)
	}
	if s.head == len(s.queue) {
		s.queue, s.head = s.queue[:0], 0
	} else if s.head > len(s.queue)/2 {
		s.queue = s.queue[:copy(s.queue, s.queue[s.head:])]
		clear(s.queue[len(s.queue) : len(s.queue)+s.head])
		s.head = 0
	}
}

// answer replies to a listing with its page.
func (s *catalogState) answer(m *catalogList) {
	var p catalogPage
	p.docs, p.more = s.page(m.user, m.admin, m.after, m.limit)
	m.reply <- p
}

// answerParked answers the parked listings whose notes are all applied,
// drops those whose deadline passed (their callers stopped waiting), and
// keeps a waker out for the rest.
func (s *catalogState) answerParked() {
	if len(s.parked) == 0 {
		return
	}
	now := time.Now()
	kept := s.parked[:0]
	for _, m := range s.parked {
		switch {
		case s.applied >= m.mark:
			s.answer(m)
		case !now.Before(m.deadline):
			m.reply <- catalogPage{err: ErrTimeout}
		default:
			kept = append(kept, m)
		}
	}
	clear(s.parked[len(kept):])
	s.parked = kept
	s.wake()
}

// wake starts a goroutine that sends catalogWake once the first unsettled
// note is settled or the earliest parked deadline passes, unless one is
// out already or nothing is parked. Document actors settle notes without
// ever waiting on the catalog, so the catalog never waits on them either.
func (s *catalogState) wake() {
	if s.waking || len(s.parked) == 0 || s.head == len(s.queue) {
		return
	}
	s.waking = true
	done := s.queue[s.head].done
	deadline := s.parked[0].deadline
	for _, m := range s.parked[1:] {
		if m.deadline.Before(deadline) {
			deadline = m.deadline
		}
	}
	c := s.c
	go func() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		case <-c.closing:
			return
		}
		c.send(catalogWake{})
	}()
}

// apply makes one settled note's change.
func (s *catalogState) apply(n *catalogNote) {
	e := s.byID[n.id]
	switch {
	case n.gone:
		if e == nil {
			return
		}
		delete(s.byID, n.id)
		s.all.Delete(e)
		for _, u := range e.doc.Readers() {
			s.unindex(u, e)
		}
	case n.doc == nil:
	case e == nil:
		e = &catalogEntry{doc: n.doc}
		s.byID[n.id] = e
		s.all.ReplaceOrInsert(e)
		for _, u := range e.doc.Readers() {
			s.index(u, e)
		}
	default:
		prev, cur := e.doc, n.doc
		e.doc = cur
		if prev.Owner == cur.Owner && sameEditors(prev.Editors, cur.Editors) && sameEditors(prev.Viewers, cur.Viewers) {
			return
		}
		// Who may read it changed: move it between users' indexes by the
		// rule itself.
		for _, u := range prev.Readers() {
			if !cur.MayRead(u, false) {
				s.unindex(u, e)
			}
		}
		for _, u := range cur.Readers() {
			if !prev.MayRead(u, false) {
				s.index(u, e)
			}
		}
	}
}

// sameEditors reports whether two editor lists are the same one (a Doc
// change that does not touch the editors keeps the slice).
func sameEditors(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (s *catalogState) index(user string, e *catalogEntry) {
	t := s.byUser[user]
	if t == nil {
		t = s.newTree()
		s.byUser[user] = t
	}
	t.ReplaceOrInsert(e)
}

func (s *catalogState) unindex(user string, e *catalogEntry) {
	t := s.byUser[user]
	if t == nil {
		return
	}
	t.Delete(e)
	if t.Len() == 0 {
		delete(s.byUser, user)
	}
}

func (s *catalogState) restore(docs []*storage.Doc) {
	s.reset()
	s.byID = make(map[string]*catalogEntry, len(docs))
	for _, d := range docs {
		if s.byID[d.ID] != nil {
			continue
		}
		e := &catalogEntry{doc: d}
		s.byID[d.ID] = e
		s.all.ReplaceOrInsert(e)
		for _, u := range d.Readers() {
			s.index(u, e)
		}
	}
}

// page returns up to limit documents with ids after after, in id order,
// that user (or an admin: all) may read, and whether there are more. The
// documents are copies: they stay as they are while the catalog goes on.
func (s *catalogState) page(user string, admin bool, after string, limit int) ([]*storage.Doc, bool) {
	t := s.all
	if !admin {
		t = s.byUser[user]
	}
	if t == nil || limit < 1 {
		return nil, false
	}
	found := make([]*catalogEntry, 0, min(limit, t.Len()))
	more := false
	s.pivotDoc.ID = after
	s.pivot.doc = &s.pivotDoc
	t.AscendGreaterOrEqual(&s.pivot, func(e *catalogEntry) bool {
		if e.doc.ID == after {
			return true
		}
		if !e.doc.MayRead(user, admin) {
			return true
		}
		if len(found) == limit {
			more = true
			return false
		}
		found = append(found, e)
		return true
	})
	docs := make([]storage.Doc, len(found))
	out := make([]*storage.Doc, len(found))
	for i, e := range found {
		docs[i] = e.doc.Listing()
		out[i] = &docs[i]
	}
	return out, more
}

// NewCatalog starts an empty catalog.
func NewCatalog(sys *System) *Catalog {
	c := &Catalog{sys: sys, closing: make(chan struct{})}
	s := newCatalogState(c)
	c.pid = sys.spawn(func() actor.Actor { return &catalogActor{s: s} })
	sys.actorCount.Add(1)
	return c
}

// Close stops the catalog; listings waiting on it time out.
func (c *Catalog) Close() {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.sys.stop([]*actor.PID{c.pid})
		c.sys.actorCount.Add(-1)
	})
}

// Entries is the number of documents listed.
func (c *Catalog) Entries() int64 { return c.entries.Load() }

func (c *Catalog) send(m any) {
	c.sys.mailboxDepth.Add(1)
	c.sys.root.Send(c.pid, m)
}

// record sends a batch's notes, in log order (the FSM goroutine).
func (c *Catalog) record(notes []*catalogNote) { c.send(catalogNotes(notes)) }

// restore replaces the catalog by docs, in log order (the FSM goroutine).
func (c *Catalog) restore(docs []*storage.Doc) { c.send(&catalogRestore{docs: docs}) }

// List returns up to limit documents with ids after after, in id order,
// that user may read (an admin: every document), and whether there are
// more: a page reflecting every command this node had applied when List
// was called. The documents hold no text. It returns ErrTimeout if the
// page is not ready by deadline.
func (c *Catalog) List(user string, admin bool, after string, limit int, deadline time.Time) ([]*storage.Doc, bool, error) {
	reply := make(chan catalogPage, 1)
	c.send(&catalogList{user: user, admin: admin, after: after, limit: limit, deadline: deadline, reply: reply})
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case p := <-reply:
		return p.docs, p.more, p.err
	case <-t.C:
		return nil, false, ErrTimeout
	case <-c.closing:
		return nil, false, ErrTimeout
	}
}
