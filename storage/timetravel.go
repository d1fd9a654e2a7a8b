package storage

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// Time travel: a document answers its text as it was at any version it
// still keeps, and lists its kept changes with who made them and when.
//
// The kept changes (doc.go) carry each change's ops as applied, which
// lead forward from one text to the next but not back (a delete does not
// record what it deleted). So a document also keeps checkpoints, the full
// text of some versions, and rebuilds version v from the newest
// checkpoint at or before v by applying the kept changes after it.
//
// Checkpoints are taken by the rules of the submit command
// (HistoryRules.CheckpointEvery, carried in the command so that every
// node takes the same): after a submit that produces version v, if the
// newest checkpoint is CheckpointEvery or more versions older than v, v
// is checkpointed; if there is none, the text before the submit (v-1) is,
// so that a document created or restored without any gains one at once.
// A text larger than half the history bytes is not checkpointed (it would
// push out the changes late submits need), and is tried again at the next
// submit. So consecutive checkpoints are at most CheckpointEvery versions
// apart while the text fits, and rebuilding a version applies at most
// CheckpointEvery-1 changes: with DocCheckpointEvery (64) and at most
// MaxOpsPerList ops a change, a bounded amount of rope edits, O(log n)
// each. After a text too large to checkpoint the gap is wider, but never
// more than the kept changes.
//
// A checkpoint counts its text's size plus 16 against the history bytes
// (the rope shares most of it with the newer texts, so this is what a
// snapshot writes rather than what memory holds: conservative). The
// oldest of changes and checkpoints are dropped first, a checkpoint of
// version v counting as older than change v+1; a checkpoint older than
// the oldest kept change is useless (the changes after it are gone) and
// goes with it. Invariant: every checkpoint's version is from OldestBase
// to Version, ascending.

// DocCheckpointEvery is how many versions apart a document's checkpoints
// are taken (the proposing node puts it in each submit command).
const DocCheckpointEvery = 64

// maxCheckpointEvery bounds the interval a command may carry.
const maxCheckpointEvery = 1 << 16

type checkpoint struct {
	version uint64
	text    Text
}

func checkpointBytes(t Text) int { return 16 + t.Size() }

// checkpoint takes the checkpoint r calls for after d's newest change,
// whose text before was prev.
func (d *Doc) checkpoint(prev Text, r HistoryRules) {
	every := uint64(min(max(r.CheckpointEvery, 0), maxCheckpointEvery))
	if every == 0 {
		return
	}
	if len(d.x().cps) == 0 {
		d.addCheckpoint(d.Version-1, prev, r)
	}
	if n := len(d.x().cps); n == 0 || d.Version-d.x().cps[n-1].version >= every {
		d.addCheckpoint(d.Version, d.Text, r)
	}
}

// addCheckpoint and dropCheckpoint write d.rest: d owns it (pushChange).
func (d *Doc) addCheckpoint(v uint64, t Text, r HistoryRules) {
	if r.MaxBytes > 0 && checkpointBytes(t) > r.MaxBytes/2 {
		return
	}
	d.rest.cps = append(slices.Clip(d.rest.cps), checkpoint{version: v, text: t})
	d.rest.cpBytes += checkpointBytes(t)
}

func (d *Doc) dropCheckpoint() {
	d.rest.cpBytes -= checkpointBytes(d.rest.cps[0].text)
	d.rest.cps = d.rest.cps[1:]
	if len(d.rest.cps) == 0 {
		d.rest.cps = nil
	}
}

// Checkpoints returns the versions of the kept checkpoints, oldest first,
// and what they count against the history bytes.
func (d *Doc) Checkpoints() (versions []uint64, bytes int) {
	for i := range d.x().cps {
		versions = append(versions, d.x().cps[i].version)
	}
	return versions, d.x().cpBytes
}

// OldestVersion is the oldest version TextAt can rebuild: the oldest
// checkpoint's, or the current version if there is none.
func (d *Doc) OldestVersion() uint64 {
	if len(d.x().cps) > 0 {
		return d.x().cps[0].version
	}
	return d.Version
}

// GoneError says that a version, or changes before a version, are no
// longer kept; Oldest is the oldest that is. Code "gone" (410). It is the
// answer of a read, never of a command, so it is not an Error kind.
type GoneError struct {
	Field   string // the parameter that asked ("version", "before")
	Version uint64
	Oldest  uint64
	what    string
}

func (e *GoneError) Error() string {
	return fmt.Sprintf("%s %d is no longer kept (the oldest kept is %d)", e.what, e.Version, e.Oldest)
}

// TextAt returns the document's text as it was at version v: a bad
// request (field "version") if v is beyond the document's version, the
// kept text of a named version (named.go), a *GoneError if v is older
// than OldestVersion and not named. It applies at most the
// kept changes between the nearest checkpoint and v (see above) and never
// changes d, so it may run on any goroutine holding d.
func (d *Doc) TextAt(v uint64) (Text, error) {
	if v > d.Version {
		return Text{}, badRequest("version", "version %d is newer than the document (version %d)", v, d.Version)
	}
	if v == d.Version {
		return d.Text, nil
	}
	if nv := d.Named(v); nv != nil {
		return nv.Text, nil
	}
	i, found := slices.BinarySearchFunc(d.x().cps, v, func(c checkpoint, v uint64) int {
		switch {
		case c.version < v:
			return -1
		case c.version > v:
			return 1
		}
		return 0
	})
	if !found {
		i-- // the newest checkpoint before v
	}
	if i < 0 {
		return Text{}, &GoneError{Field: "version", Version: v, Oldest: d.OldestVersion(), what: "version"}
	}
	cp := &d.x().cps[i]
	t := cp.text
	first := len(d.x().hist) - int(d.Version-cp.version) // index of change cp.version+1
	for j := first; j < first+int(v-cp.version); j++ {
		var err *Error
		if t, err = Apply(t, d.x().hist[j].Ops); err != nil {
			return Text{}, &Error{Kind: KindInternal, Message: fmt.Sprintf("change %d does not apply to its text: %s", d.x().hist[j].Version, err.Message)}
		}
	}
	return t, nil
}

// HistoryPage returns the kept changes older than version before, newest
// first, at most limit of them, and the before of the next page (0 when
// no older change is kept). before must be at least 1; a before at or
// below the oldest base (changes before it were dropped) is a
// *GoneError whose Oldest is the oldest kept change's version.
func (d *Doc) HistoryPage(before uint64, limit int) ([]Change, uint64, error) {
	if before == 0 {
		return nil, 0, badRequest("before", "before must be at least 1")
	}
	if before <= d.OldestBase() {
		return nil, 0, &GoneError{Field: "before", Version: before, Oldest: d.OldestBase() + 1, what: "the history before version"}
	}
	top := min(before-1, d.Version) // newest version listed
	n := int(top - d.OldestBase())  // kept changes up to top
	k := min(n, max(limit, 0))
	out := make([]Change, k)
	for i := range out {
		out[i] = d.x().hist[n-1-i].Change
	}
	var next uint64
	if k < n {
		next = out[k-1].Version
	}
	return out, next, nil
}

// Counted returns the code points a change inserted and deleted.
func (c *Change) Counted() (inserted, deleted int) {
	for i := range c.Ops {
		op := &c.Ops[i]
		if op.Kind != OpDelete {
			inserted += utf8.RuneCountInString(op.Text)
		}
		if op.Kind != OpInsert {
			deleted += op.Len
		}
	}
	return inserted, deleted
}

// Encoding (snapshot version 7 on): after a document as doc.go encodes
// it, each kept change's author and time, oldest first, then the
// checkpoints: their number, their versions as offsets from the oldest
// base, ascending, and the oldest checkpoint's text. The newer ones are
// rebuilt when read by applying the kept changes, so a snapshot holds
// one text of history per document, and the rebuilt texts share their
// rope as the originals did.

func (e *encoder) docHistory(d *Doc, spill func()) {
	for i := range d.x().hist {
		c := &d.x().hist[i].Change
		e.str(c.Author)
		e.varint(c.AtMs)
	}
	e.uvarint(uint64(len(d.x().cps)))
	if len(d.x().cps) == 0 {
		return
	}
	for i := range d.x().cps {
		e.uvarint(d.x().cps[i].version - d.OldestBase())
	}
	t := d.x().cps[0].text
	e.uvarint(uint64(t.Size()))
	if spill == nil {
		e.b = t.AppendTo(e.b)
	} else {
		walkLeaves(t.root, func(s string) { e.b = append(e.b, s...); spill() })
	}
}

// docHistory reads what docHistory wrote into doc, which d.doc() has just
// read. It fails, never panics, on anything docHistory would not write:
// checkpoints out of order or outside the kept versions, a text that is
// not a document's, changes that do not apply to it.
func (d *decoder) docHistory(doc *Doc) {
	for i := range doc.x().hist {
		if d.err != nil {
			return
		}
		doc.x().hist[i].Author = d.str()
		doc.x().hist[i].AtMs = d.varint()
	}
	n := d.count(1)
	if d.err != nil || n == 0 {
		return
	}
	base, kept := doc.OldestBase(), uint64(len(doc.x().hist))
	versions := make([]uint64, n)
	for i := range versions {
		off := d.uvarint()
		if d.err == nil && (off > kept || (i > 0 && base+off <= versions[i-1])) {
			d.fail("checkpoint %d out of order or beyond the kept history", off)
		}
		if d.err != nil {
			return
		}
		versions[i] = base + off
	}
	text := d.raw()
	if d.err != nil {
		return
	}
	if CheckDocText("content", string(text)) != nil || len(text) > MaxDocBytes {
		d.fail("checkpoint text is not valid")
		return
	}
	t := NewText(string(text))
	doc.own().cps = make([]checkpoint, n)
	at := versions[0]
	for i, v := range versions {
		for ; at < v; at++ {
			var err *Error
			if t, err = Apply(t, doc.rest.hist[at-base].Ops); err != nil {
				d.fail("change %d does not apply to checkpoint %d", at+1, versions[0])
				doc.rest.cps = nil
				return
			}
		}
		doc.rest.cps[i] = checkpoint{version: v, text: t}
		doc.rest.cpBytes += checkpointBytes(t)
	}
}
