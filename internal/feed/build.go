package feed

import (
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
	// pend holds the changes built since the worker last published them,
	// encoded (codec.go): building a change writes its bytes once, and
	// keeps nothing of the command or its result.
	pend pending
}

// pending is a run of encoded changes, back to back.
type pending struct {
	data []byte
	ends []int     // where each change ends in data
	side []sideRec // the policies and members, by change number
}

func (p *pending) len() int { return len(p.ends) }

// enc is change i, encoded, and its policy or member (nil if none).
func (p *pending) enc(i int, k *int) ([]byte, any) {
	start := 0
	if i > 0 {
		start = p.ends[i-1]
	}
	var side any
	if *k < len(p.side) && p.side[*k].i == i {
		side = p.side[*k].rec
		*k++
	}
	return p.data[start:p.ends[i]], side
}

func (p *pending) clear() {
	clear(p.side)
	p.data, p.ends, p.side = p.data[:0], p.ends[:0], p.side[:0]
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

// add builds a change at the next position of the current entry.
func (b *builder) add(v spec) {
	p := Position{Index: b.index, N: b.n}
	b.n++
	var side any
	b.pend.data, side = encodeChange(b.pend.data, p, &v)
	if side != nil {
		b.pend.side = append(b.pend.side, sideRec{i: len(b.pend.ends), rec: side})
	}
	b.pend.ends = append(b.pend.ends, len(b.pend.data))
}

// changes builds the changes of one applied command.
func (b *builder) changes(it *item) {
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
		b.settle(it.atMs/TextBucketMs, skip)
	}
	if res.Err != nil {
		return
	}
	switch cmd.Kind {
	case storage.CmdInit, storage.CmdUserCreate:
		if res.User != nil {
			b.add(b.userChange(OpCreated, res.User, it.atMs))
		}
	case storage.CmdUserBatch:
		for i := range res.Items {
			if u := res.Items[i].User; u != nil && res.Items[i].Err == nil {
				b.add(b.userChange(OpCreated, u, it.atMs))
			}
		}
	case storage.CmdUserPatch:
		if res.User != nil && cmd.Patch.Fields != 0 {
			b.add(b.userChange(OpUpdated, res.User, it.atMs))
		}
	case storage.CmdUserDelete:
		b.add(spec{Kind: KindUser, Op: OpDeleted, ID: cmd.Delete, AtMs: it.atMs})
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
		b.add(c)
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
		b.add(spec{Kind: KindDoc, Op: OpUpdated, ID: l.ID, Version: l.Version, AtMs: it.atMs, Doc: &l})
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
		b.add(c)
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
		b.add(c)
	}
}

// settle emits the owing documents whose bucket is before bucket (but
// skip), in id order so that every node emits them alike.
func (b *builder) settle(bucket int64, skip string) {
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
		b.add(spec{Kind: KindDoc, Op: OpUpdated, ID: d.ID, Version: d.Version, AtMs: d.UpdatedMs, Doc: d})
	}
}

func sortDocs(ds []*storage.Doc) {
	for i := 1; i < len(ds); i++ {
		for j := i; j > 0 && ds[j].ID < ds[j-1].ID; j-- {
			ds[j], ds[j-1] = ds[j-1], ds[j]
		}
	}
}

// userChange is a change of u (its encoding keeps no password hash or
// sessions).
func (b *builder) userChange(op Op, u *storage.User, atMs int64) spec {
	return spec{Kind: KindUser, Op: op, ID: u.ID, Version: u.Version, AtMs: atMs, User: u}
}
