package feed

import (
	"unsafe"

	"github.com/troupe-db/troupe/storage"
)

// The builder turns applied commands and their results into changes, in
// log order (the worker goroutine alone uses it).
//
// Text changes are coalesced by command time, deterministically, so
// that every node emits the same changes at the same positions: time is
// cut in buckets of TextBucketMs. A submit whose document's previous
// change fell in the same bucket is held back (the document is "owing");
// the first command applied in a later bucket — any command — first emits
// one `updated` per owing document, with its newest version. So a
// document gets at most one text change per bucket it is edited in, plus
// the last version of a burst once the burst's bucket is over. Whether
// a document owes is a function of its state and the last command time,
// so a node restored from a snapshot finds the same owing documents
// (reset) as one that applied the log.

// TextBucketMs is the coalescing window of text changes.
const TextBucketMs = 100

type builder struct {
	index uint64 // the entry being built
	n     uint32 // changes of it so far
	// owing are the documents whose newest version is not announced yet,
	// with their listing at that version; minBucket is the lowest
	// bucket among them.
	owing     map[string]owed
	minBucket int64
	// slab is where new changes are taken from: one allocation for
	// slabSize changes (a slab stays alive while the ring keeps any of
	// its changes: at most slabSize-1 dropped ones beyond the bounds).
	slab []Change
	// users and chunk hold the kept users' records: copies without
	// password hash or sessions, 64 to an allocation, their strings in
	// chunks of bytes that hold no pointers. The history keeps a hundred
	// thousand changes alive, and the collector marks what they point
	// to: one result object and its bytes per user cost it twice what the
	// rest of the apply path did (docs/BENCHMARKS-notes.md).
	users []storage.User
	chunk []byte
}

const (
	slabSize  = 64
	chunkSize = 16 << 10
)

// keepUser copies what a change shows of u into the builder's slabs.
func (b *builder) keepUser(u *storage.User) *storage.User {
	if len(b.users) == cap(b.users) {
		b.users = make([]storage.User, 0, slabSize)
	}
	// Appending within the capacity never moves the earlier records.
	b.users = append(b.users, storage.User{ID: b.str(u.ID), Name: b.str(u.Name), Email: b.str(u.Email),
		Role: u.Role, Version: u.Version, CreatedMs: u.CreatedMs, UpdatedMs: u.UpdatedMs})
	return &b.users[len(b.users)-1]
}

// str copies s into the current chunk. A chunk's written bytes never
// change (appends stay within its capacity), so strings may alias them.
func (b *builder) str(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > cap(b.chunk)-len(b.chunk) {
		b.chunk = make([]byte, 0, max(chunkSize, len(s)))
	}
	start := len(b.chunk)
	b.chunk = append(b.chunk, s...)
	return unsafe.String(&b.chunk[start], len(s))
}

// newChange returns a zero change of the builder's slab.
func (b *builder) newChange() *Change {
	if len(b.slab) == 0 {
		b.slab = make([]Change, slabSize)
	}
	c := &b.slab[0]
	b.slab = b.slab[1:]
	return c
}

// owed is a document's newest listing (title and editors as they are
// now) and the time of the change that was held back.
type owed struct {
	doc  *storage.Doc
	atMs int64
}

func (b *builder) init() { b.owing = map[string]owed{} }

// reset is a restore: the documents that owe are those whose last
// change was held back and whose bucket is not over at lastMs.
func (b *builder) reset(docs []*storage.Doc, lastMs int64) {
	clear(b.owing)
	b.index, b.n = 0, 0
	for _, d := range docs {
		if at, held := heldBack(d); held && at/TextBucketMs == lastMs/TextBucketMs {
			l := d.Listing()
			b.owe(&l, at)
		}
	}
}

func (b *builder) owe(d *storage.Doc, atMs int64) {
	if len(b.owing) == 0 || atMs/TextBucketMs < b.minBucket {
		b.minBucket = atMs / TextBucketMs
	}
	b.owing[d.ID] = owed{doc: d, atMs: atMs}
}

// heldBack reports whether d's newest change came in the same bucket as
// the one before it (then it was held back), and its time.
func heldBack(d *storage.Doc) (atMs int64, held bool) {
	if d.Version < 2 {
		return 0, false
	}
	cs, err := d.ChangesSince(d.Version - 2)
	if err != nil || len(cs) != 2 {
		return 0, false
	}
	return cs[1].AtMs, cs[0].AtMs/TextBucketMs == cs[1].AtMs/TextBucketMs
}

// spec is what a change says, before it has a place.
type spec struct {
	Kind       Kind
	Op         Op
	ID         string
	Version    uint64
	AtMs       int64
	User       *storage.User
	Doc        *storage.Doc
	Policy     *storage.Policy
	Member     *storage.Member
	LostReader string
}

// add appends a change (in the slab) at the next position of the
// current entry.
func (b *builder) add(out []*Change, v spec) []*Change {
	c := b.newChange()
	c.Position = Position{Index: b.index, N: b.n}
	b.n++
	c.Kind, c.Op, c.ID, c.Version, c.AtMs = v.Kind, v.Op, v.ID, v.Version, v.AtMs
	c.User, c.Doc, c.Policy, c.Member, c.LostReader = v.User, v.Doc, v.Policy, v.Member, v.LostReader
	return append(out, c)
}

// changes appends the changes of one applied command.
func (b *builder) changes(it *item, out []*Change) []*Change {
	if it.index != b.index {
		b.index, b.n = it.index, 0
	}
	res := it.p.Result()
	cmd := it.cmd
	// A bucket is over: the owing documents go first (but the one this
	// submit announces anyway).
	if len(b.owing) > 0 && it.atMs/TextBucketMs > b.minBucket {
		skip := ""
		if cmd.Kind == storage.CmdDocSubmit && res.Err == nil && res.Submit != nil && !res.Submit.Repeated {
			skip = cmd.Doc.DocID
		}
		out = b.settle(out, it.atMs/TextBucketMs, skip)
	}
	if res.Err != nil {
		return out
	}
	switch cmd.Kind {
	case storage.CmdInit, storage.CmdUserCreate:
		if res.User != nil {
			out = b.add(out, b.userChange(OpCreated, res.User, it.atMs))
		}
	case storage.CmdUserBatch:
		for i := range res.Items {
			if u := res.Items[i].User; u != nil && res.Items[i].Err == nil {
				out = b.add(out, b.userChange(OpCreated, u, it.atMs))
			}
		}
	case storage.CmdUserPatch:
		if res.User != nil && cmd.Patch.Fields != 0 {
			out = b.add(out, b.userChange(OpUpdated, res.User, it.atMs))
		}
	case storage.CmdUserDelete:
		out = b.add(out, spec{Kind: KindUser, Op: OpDeleted, ID: cmd.Delete, AtMs: it.atMs})
	case storage.CmdDocCreate, storage.CmdDocTitle, storage.CmdDocEditor, storage.CmdDocMember, storage.CmdDocDelete:
		if res.Doc == nil {
			break
		}
		l := res.Doc.Listing()
		c := spec{Kind: KindDoc, Op: OpUpdated, ID: l.ID, Version: l.Version, AtMs: it.atMs, Doc: &l}
		switch cmd.Kind {
		case storage.CmdDocCreate:
			c.Op = OpCreated
		case storage.CmdDocDelete:
			c.Op = OpDeleted
			delete(b.owing, l.ID)
		case storage.CmdDocEditor, storage.CmdDocMember:
			// A member removed (an editor's route removes any member):
			// this change is the last that user hears of the document.
			if cmd.Doc.Remove && !l.MayRead(cmd.Doc.Editor, false) {
				c.LostReader = cmd.Doc.Editor
			}
		}
		// An owing document's text change, when it comes, shows the
		// document as it is then (as a restored node would).
		if o, ok := b.owing[l.ID]; ok && c.Op == OpUpdated {
			l2 := l
			b.owing[l.ID] = owed{doc: &l2, atMs: o.atMs}
		}
		out = b.add(out, c)
	case storage.CmdDocSubmit:
		d := it.p.After()
		if res.Submit == nil || res.Submit.Repeated || d == nil {
			break
		}
		l := d.Listing()
		if _, held := heldBack(d); held {
			b.owe(&l, it.atMs)
			break
		}
		delete(b.owing, l.ID)
		out = b.add(out, spec{Kind: KindDoc, Op: OpUpdated, ID: l.ID, Version: l.Version, AtMs: it.atMs, Doc: &l})
	case storage.CmdPolicyPut, storage.CmdPolicyDelete:
		if it.meta == nil {
			break
		}
		c := spec{Kind: KindPolicy, Op: OpDeleted, ID: cmd.Policy.Name, AtMs: it.atMs}
		if cmd.Kind == storage.CmdPolicyPut {
			c.Op, c.Policy = OpCreated, it.meta.Policy
			if it.meta.Existed {
				c.Op = OpUpdated
			}
		}
		out = b.add(out, c)
	case storage.CmdMember:
		if it.meta == nil {
			break
		}
		c := spec{Kind: KindMember, Op: OpDeleted, ID: cmd.Member.ID, AtMs: it.atMs}
		if !cmd.Member.Remove {
			c.Op, c.Member = OpCreated, it.meta.Member
			if it.meta.Existed {
				c.Op = OpUpdated
			}
		}
		out = b.add(out, c)
	}
	return out
}

// settle emits the owing documents whose bucket is before bucket (but
// skip), in id order so that every node emits them alike.
func (b *builder) settle(out []*Change, bucket int64, skip string) []*Change {
	var due []*storage.Doc
	next := int64(-1)
	for id, o := range b.owing {
		bk := o.atMs / TextBucketMs
		if bk >= bucket {
			if next < 0 || bk < next {
				next = bk
			}
			continue
		}
		delete(b.owing, id)
		if id != skip {
			due = append(due, o.doc)
		}
	}
	b.minBucket = next
	sortDocs(due)
	for _, d := range due {
		// At the document's time, which a restored node knows too.
		out = b.add(out, spec{Kind: KindDoc, Op: OpUpdated, ID: d.ID, Version: d.Version, AtMs: d.UpdatedMs, Doc: d})
	}
	return out
}

func sortDocs(ds []*storage.Doc) {
	for i := 1; i < len(ds); i++ {
		for j := i; j > 0 && ds[j].ID < ds[j-1].ID; j-- {
			ds[j], ds[j-1] = ds[j-1], ds[j]
		}
	}
}

// userChange is a change of u, kept without its password hash or
// sessions.
func (b *builder) userChange(op Op, u *storage.User, atMs int64) spec {
	k := b.keepUser(u)
	return spec{Kind: KindUser, Op: op, ID: k.ID, Version: u.Version, AtMs: atMs, User: k}
}
