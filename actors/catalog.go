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
// alone owns every document's listing metadata, kept in id order for
// admins and, per user, in id order for the documents that user may read
// (storage.Doc.Readers, the users MayRead admits), so that a user's page
// costs O(page + log n) whatever the number of documents.
//
// It is fed in log order: Docs.Apply, which the FSM calls in log order,
// makes a note of every document command that reached a document, and
// Docs.Flush sends them at the end of each batch, before the FSM advances
// its applied index (Docs.Restore sends the restored documents). A
// create's or a delete's note is settled when made; a title, editor or
// submit command's note is settled by the document's actor, which records
// the document's new state in it before it resolves the command's
// Pending. The catalog applies
// notes in the order it got them, as they settle, and settles every one
// it has before it answers a listing: a listing asked after this node
// applied index N (a read barrier) reflects every command up to N.
//
// Ownership: the fields of catalogState are the actor goroutine's alone.
// Document actors write a note once, before the Pending it waits on is
// resolved, and never wait on the catalog, so the catalog's waits on
// them cannot deadlock. entries is published for the metrics.
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
}

type catalogPage struct {
	docs []*storage.Doc
	more bool
	err  error
}

// catalogEntry is one document's listing: a storage.Doc without text or
// history (Doc.Listing), replaced in place, by the actor only.
type catalogEntry struct{ doc storage.Doc }

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
	pivot catalogEntry // a search key, reused
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
}

type catalogActor struct{ s *catalogState }

func (a *catalogActor) Receive(ctx actor.Context) {
	s := a.s
	switch m := ctx.Message().(type) {
	case catalogNotes:
		s.c.sys.mailboxDepth.Add(-1)
		s.queue = append(s.queue, m...)
		s.settle(time.Time{})
	case *catalogRestore:
		s.c.sys.mailboxDepth.Add(-1)
		s.restore(m.docs)
	case *catalogList:
		s.c.sys.mailboxDepth.Add(-1)
		var p catalogPage
		if s.settle(m.deadline) {
			p.docs, p.more = s.page(m.user, m.admin, m.after, m.limit)
		} else {
			p.err = ErrTimeout
		}
		m.reply <- p
	default:
		return
	}
	s.c.entries.Store(int64(len(s.byID)))
}

// settle applies the queued notes in order: those already settled if
// deadline is zero, else all of them, waiting for each until deadline.
// It reports whether none is left.
func (s *catalogState) settle(deadline time.Time) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for s.head < len(s.queue) {
		n := s.queue[s.head]
		if !n.settled() {
			if deadline.IsZero() {
				break
			}
			if timer == nil {
				timer = time.NewTimer(time.Until(deadline))
			}
			select {
			case <-n.done:
			case <-timer.C:
				return false
			case <-s.c.closing:
				return false
			}
		}
		s.queue[s.head] = nil
		s.head++
		s.apply(n)
	}
	if s.head == len(s.queue) {
		s.queue, s.head = s.queue[:0], 0
	} else if s.head > len(s.queue)/2 {
		s.queue = s.queue[:copy(s.queue, s.queue[s.head:])]
		clear(s.queue[len(s.queue) : len(s.queue)+s.head])
		s.head = 0
	}
	return true
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
		e = &catalogEntry{doc: n.doc.Listing()}
		s.byID[n.id] = e
		s.all.ReplaceOrInsert(e)
		for _, u := range e.doc.Readers() {
			s.index(u, e)
		}
	default:
		prev := e.doc
		e.doc = n.doc.Listing()
		if prev.Owner == e.doc.Owner && sameEditors(prev.Editors, e.doc.Editors) {
			return
		}
		// Who may read it changed: move it between users' indexes by the
		// rule itself.
		for _, u := range prev.Readers() {
			if !e.doc.MayRead(u, false) {
				s.unindex(u, e)
			}
		}
		for _, u := range e.doc.Readers() {
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
	for _, d := range docs {
		if s.byID[d.ID] != nil {
			continue
		}
		e := &catalogEntry{doc: d.Listing()}
		s.byID[d.ID] = e
		s.all.ReplaceOrInsert(e)
		for _, u := range e.doc.Readers() {
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
	s.pivot.doc.ID = after
	t.AscendGreaterOrEqual(&s.pivot, func(e *catalogEntry) bool {
		if e.doc.ID == after || !e.doc.MayRead(user, admin) {
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
		docs[i] = e.doc
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
	}
}
