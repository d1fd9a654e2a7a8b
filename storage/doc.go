package storage

import (
	"fmt"
	"slices"
	"unique"
)

// Documents: the replicated state of one collaborative document and the
// rule that accepts a submit (API.md, "Documents"). A *Doc is immutable: a
// change returns a new Doc sharing the text's rope, the history and the
// editors with the old one, so a snapshot can hold a version while the
// document actor goes on. Everything is decided by the command: the time
// is the command's, never a clock.

// KindVersionTooOld: a submit's base version, or the version a replay
// starts after, is older than the document's kept history; the client
// reloads. Its numeric value is part of the snapshot format, like the
// other kinds; its code is "version_too_old" (409).
const KindVersionTooOld Kind = 8

// ErrVersionTooOld matches, with errors.Is, any Error of KindVersionTooOld.
var ErrVersionTooOld = &Error{Kind: KindVersionTooOld}

// Limits of a submit besides those of ValidateOps.
const (
	MaxClientIDBytes = 128
	// MaxTransformWork bounds the primitive pairs (ops × ops of the
	// changes since the base, an estimate) that one submit may cost to
	// transform, so that a large list against a far base cannot stall the
	// document (≈ 30 ns a pair). A submit beyond it gets version_too_old:
	// against the current version it costs nothing.
	MaxTransformWork = 1 << 21
)

// Change is one accepted submit as the log applied it.
type Change struct {
	Version  uint64 // the version it produced
	ClientID string
	Seq      uint64
	Ops      []Op // as applied (transformed)
	// Author is the user id of the caller who submitted it ("" for an
	// anonymous --insecure admin); AtMs the command's time. Both come
	// from the command, so every node records the same.
	Author string
	AtMs   int64
}

// Doc is a document. Its fields must not be changed in place: use the
// methods, which return a new Doc.
type Doc struct {
	ID    string
	Title string
	Owner string // user id
	// Editors are user ids allowed to edit besides the owner, sorted and
	// without duplicates; Viewers, sorted too, may only read. A user is
	// in at most one of them (docaccess.go: members and their roles).
	Editors   []string
	Viewers   []string
	Text      Text
	Version   uint64 // 0 at creation, +1 per accepted submit
	CreatedMs int64  // command time, Unix milliseconds
	UpdatedMs int64

	// rest is what an idle document does not use: its kept changes,
	// checkpoints, share links and named versions. Nil while they are all
	// empty (a created or restored document that was never edited), so
	// that an idle document costs the directory 144 bytes rather than
	// 256. Docs derived from one another share it: a method that changes
	// any of its fields first gives its new Doc a copy (own); readers go
	// through x, which never returns nil.
	rest *docRest
}

// docRest holds a Doc's rarely used fields (Doc.rest). Once a Doc is
// returned, the docRest it points to is never written again.
type docRest struct {
	// The kept changes, oldest first. Documents derived from one another
	// share hist's backing array: a submit appends in place when its
	// document is the newest derived from the array (it ends where
	// histArr says the array's written part ends), else it copies the
	// kept part into a new array. An element, once written, never
	// changes, so an older Doc — a snapshot's view — reads its own part
	// while apply appends after it. Dropping the oldest reslices; the
	// array is replaced by a copy of the kept part when it is full or
	// holds more dropped changes than kept ones: O(1) per submit
	// amortised, whatever the bounds.
	hist      []histEntry
	histArr   *histArray
	histOff   int // where hist starts in its backing array
	histBytes int // HistoryBytes of the kept changes

	// Checkpoints: full texts of some kept versions, oldest first, so that
	// a version is rebuilt from the nearest one before it (timetravel.go).
	// The slice is copied when one is added, so Docs share it safely.
	cps     []checkpoint
	cpBytes int // what the checkpoints count against the history bytes

	// links are the share links, sorted by id (docaccess.go). The slice
	// is copied when one is added or removed, so Docs share it safely.
	links []ShareLink

	// named are the named versions, by version (named.go), kept outside
	// the history's bounds. The slice is copied when one is added or
	// removed, so Docs share it safely.
	named []NamedVersion
}

// noRest is the docRest of a Doc without one: empty, never written.
var noRest docRest

// x returns d's rarely used fields, for reading only.
func (d *Doc) x() *docRest {
	if d.rest == nil {
		return &noRest
	}
	return d.rest
}

// own gives d a docRest of its own, a copy of the one it shares, and
// returns it: a method that changes one of those fields calls it on its
// new Doc first, so that the Docs it was derived from never see the
// change. The slices inside are shared, as before: each is copied, or
// appended to past every other Doc's end, when changed.
func (d *Doc) own() *docRest {
	r := new(docRest)
	if d.rest != nil {
		*r = *d.rest
	}
	d.rest = r
	return r
}

type histEntry struct {
	Change
	size int // HistoryBytes(&Change)
}

// histArray is how many elements of a history's backing array have been
// written. Only the goroutine that applies the document's commands
// touches it.
type histArray struct{ written int }

// HistoryBytes is what a change counts against a document's history
// bytes: its client id and the text of its ops, plus 16 for the change
// (versions) and each op (positions, lengths). Its author (a 16-byte user
// id) and time are not counted, so that the bound keeps the changes it
// kept before changes recorded them, on nodes of either build.
func HistoryBytes(c *Change) int {
	n := 16 + len(c.ClientID)
	for i := range c.Ops {
		n += 16 + len(c.Ops[i].Text)
	}
	return n
}

// KeptHistory is the number of changes kept and what they count in
// HistoryBytes.
func (d *Doc) KeptHistory() (changes, bytes int) { return len(d.x().hist), d.x().histBytes }

// ownerID returns the one copy of a document owner's id that every Doc
// of that owner holds (unique's interning), rather than a copy per
// document: a user owns many, and an idle document's bytes count.
func ownerID(id string) string { return unique.Make(id).Value() }

// NewDoc returns a document at version 0. Content must pass CheckDocText.
func NewDoc(id, title, owner, content string, nowMs int64) (*Doc, *Error) {
	if err := CheckDocText("content", content); err != nil {
		return nil, err
	}
	return &Doc{ID: id, Title: title, Owner: ownerID(owner), Text: NewText(content), CreatedMs: nowMs, UpdatedMs: nowMs}, nil
}

// WithTitle returns the document retitled at nowMs. A title is not part
// of the text's version.
func (d *Doc) WithTitle(title string, nowMs int64) *Doc {
	n := *d
	n.Title, n.UpdatedMs = title, nowMs
	return &n
}

// WithEditor returns the document with userID among its editors (d itself
// if it already was).
// A viewer becomes an editor.
func (d *Doc) WithEditor(userID string) *Doc { return d.WithMember(userID, DocEditor) }

// WithoutEditor returns the document without userID among its editors (d
// itself if it was not).
func (d *Doc) WithoutEditor(userID string) *Doc {
	i, found := slices.BinarySearch(d.Editors, userID)
	if !found {
		return d
	}
	n := *d
	n.Editors = slices.Delete(slices.Clone(d.Editors), i, i+1)
	if len(n.Editors) == 0 {
		n.Editors = nil
	}
	return &n
}

// CanEdit says whether userID is the owner or an editor (admins are the
// caller's business).
func (d *Doc) CanEdit(userID string) bool {
	if userID == d.Owner {
		return true
	}
	_, found := slices.BinarySearch(d.Editors, userID)
	return found
}

// OldestBase is the oldest version a submit may be based on, or a replay
// start after: every change after it is kept.
func (d *Doc) OldestBase() uint64 { return d.Version - uint64(len(d.x().hist)) }

// History returns the kept changes, oldest first.
func (d *Doc) History() []Change {
	cs, _ := d.ChangesSince(d.OldestBase())
	return cs
}

// ChangesSince returns the changes after version v, oldest first: an
// error of KindVersionTooOld if some of them are no longer kept, a bad
// request if v is beyond the document's version.
func (d *Doc) ChangesSince(v uint64) ([]Change, *Error) {
	if v > d.Version {
		return nil, badRequest("since", "version %d is newer than the document (version %d)", v, d.Version)
	}
	if v < d.OldestBase() {
		return nil, tooOld(v, d.OldestBase())
	}
	kept := d.x().hist[len(d.x().hist)-int(d.Version-v):]
	cs := make([]Change, len(kept))
	for i := range kept {
		cs[i] = kept[i].Change
	}
	return cs, nil
}

func tooOld(v, oldest uint64) *Error {
	return &Error{Kind: KindVersionTooOld, Field: "base_version",
		Message: fmt.Sprintf("version %d is older than the kept history (oldest %d); reload the document", v, oldest)}
}

// lastOf returns the newest kept change of clientID, or nil.
func (d *Doc) lastOf(clientID string) *Change {
	for i := len(d.x().hist) - 1; i >= 0; i-- {
		if d.x().hist[i].ClientID == clientID {
			return &d.x().hist[i].Change
		}
	}
	return nil
}

// SubmitResult answers a submit.
type SubmitResult struct {
	Version uint64 // the version the submit produced
	Ops     []Op   // as applied
	// Repeated: this (client_id, seq) had been accepted before; the
	// result is the first one and nothing changed.
	Repeated bool
}

// Submit applies a client's op list written against version base (API.md,
// "Submits"), keeping at most maxHistory changes (values below 1 count as
// 1). It returns the new document, or d itself for a repeated submit, and
// never changes d. In order:
//
//   - the same seq as the client's last accepted submit: that result,
//     Repeated, no change; a lower seq: conflict;
//   - the ops must pass ValidateOps;
//   - base beyond the version: bad request; base older than the kept
//     history, or too far behind for this many ops (MaxTransformWork):
//     version_too_old;
//   - base older than the version the client's own last change produced:
//     conflict;
//   - the ops are transformed against every change after base and applied
//     all or nothing (out of range: bad request).
//
// Per-client state is the client's newest change still in the history: a
// client is remembered exactly as long as its last change is kept, so it
// takes no room of its own and at most maxHistory clients are known. That
// is as long as it is needed: a repeat or an older submit of a forgotten
// client has a base older than its forgotten change, so older than the
// history, and is refused with version_too_old rather than applied again.
func (d *Doc) Submit(clientID string, seq, base uint64, ops []Op, nowMs int64, maxHistory int) (*Doc, SubmitResult, *Error) {
	return d.SubmitBounded(clientID, seq, base, ops, nowMs, maxHistory, 0)
}

// SubmitBounded is Submit keeping, besides at most maxHistory changes,
// only the newest changes whose HistoryBytes sum to at most
// maxHistoryBytes (0: no bound by bytes). The newest change is always
// kept; older ones drop out, and a client based on them gets
// version_too_old as with the bound by count.
func (d *Doc) SubmitBounded(clientID string, seq, base uint64, ops []Op, nowMs int64, maxHistory, maxHistoryBytes int) (*Doc, SubmitResult, *Error) {
	return d.SubmitAs("", clientID, seq, base, ops, nowMs, HistoryRules{MaxChanges: maxHistory, MaxBytes: maxHistoryBytes})
}

// HistoryRules bound what a document keeps of its past: at most
// MaxChanges changes (values below 1 count as 1), only the newest whose
// HistoryBytes and checkpoints sum to at most MaxBytes (0: no bound by
// bytes), and a checkpoint every CheckpointEvery versions (0: none; see
// timetravel.go).
type HistoryRules struct {
	MaxChanges      int
	MaxBytes        int
	CheckpointEvery int
}

// SubmitAs is Submit by author (recorded in the change with nowMs) under
// the history rules r.
func (d *Doc) SubmitAs(author, clientID string, seq, base uint64, ops []Op, nowMs int64, r HistoryRules) (*Doc, SubmitResult, *Error) {
	if clientID == "" || len(clientID) > MaxClientIDBytes {
		return nil, SubmitResult{}, badRequest("client_id", "client_id must be 1 to %d bytes", MaxClientIDBytes)
	}
	last := d.lastOf(clientID)
	if last != nil {
		switch {
		case seq == last.Seq:
			return d, SubmitResult{Version: last.Version, Ops: last.Ops, Repeated: true}, nil
		case seq < last.Seq:
			return nil, SubmitResult{}, &Error{Kind: KindConflict, Field: "seq",
				Message: fmt.Sprintf("seq %d is below this client's last accepted seq %d", seq, last.Seq)}
		}
	}
	if err := ValidateOps(ops); err != nil {
		return nil, SubmitResult{}, err
	}
	if base > d.Version {
		return nil, SubmitResult{}, badRequest("base_version", "base_version %d is newer than the document (version %d)", base, d.Version)
	}
	changes, err := d.ChangesSince(base)
	if err != nil {
		return nil, SubmitResult{}, err
	}
	if last != nil && base < last.Version {
		return nil, SubmitResult{}, &Error{Kind: KindConflict, Field: "base_version",
			Message: fmt.Sprintf("base_version %d is older than this client's last change (version %d)", base, last.Version)}
	}
	var applied []Op
	if len(changes) > 0 {
		committed := make([][]Op, len(changes))
		for i := range changes {
			committed[i] = changes[i].Ops
		}
		if transformWork(ops, committed) > MaxTransformWork {
			return nil, SubmitResult{}, &Error{Kind: KindVersionTooOld, Field: "base_version",
				Message: fmt.Sprintf("too many changes since base_version %d for %d ops; reload the document", base, len(ops))}
		}
		applied = TransformAgainst(ops, committed)
	} else {
		applied = slices.Clone(ops) // the caller's slice is not ours to keep
	}
	text, err := Apply(d.Text, applied)
	if err != nil {
		if len(changes) > 0 {
			err.Field = "ops" // indexes of the transformed list mean nothing to the client
		}
		return nil, SubmitResult{}, err
	}
	n := *d
	n.Text = text
	n.Version = d.Version + 1
	n.UpdatedMs = nowMs
	n.pushChange(Change{Version: n.Version, ClientID: clientID, Seq: seq, Ops: applied, Author: author, AtMs: nowMs}, d.Text, r)
	return &n, SubmitResult{Version: n.Version, Ops: applied}, nil
}

// pushChange adds c as the newest change of d (a fresh copy) whose text
// before c was prev, takes a checkpoint if one is due, and drops the
// oldest changes and checkpoints beyond r's bounds; the newest change is
// always kept. O(1) amortised: the oldest are dropped one by one.
func (d *Doc) pushChange(c Change, prev Text, r HistoryRules) {
	d.own() // the helpers below write d.rest
	e := histEntry{Change: c, size: HistoryBytes(&c)}
	end := d.rest.histOff + len(d.rest.hist)
	if d.rest.histArr != nil && end == d.rest.histArr.written && len(d.rest.hist) < cap(d.rest.hist) && d.rest.histOff <= len(d.rest.hist) {
		d.rest.hist = append(d.rest.hist, e) // in place: no Doc sees past end
		d.rest.histArr.written++
	} else {
		kept := make([]histEntry, len(d.rest.hist), 2*len(d.rest.hist)+4)
		copy(kept, d.rest.hist)
		d.rest.hist = append(kept, e)
		d.rest.histArr, d.rest.histOff = &histArray{written: len(d.rest.hist)}, 0
	}
	d.rest.histBytes += e.size
	d.checkpoint(prev, r)
	maxChanges := max(r.MaxChanges, 1)
	for {
		over := len(d.rest.hist) > maxChanges
		overBytes := r.MaxBytes > 0 && d.rest.histBytes+d.rest.cpBytes > r.MaxBytes
		if !over && !overBytes {
			break
		}
		// Oldest first: a checkpoint of version v is older than change
		// v+1, and useless once that change is gone.
		if len(d.rest.cps) > 0 && (d.rest.cps[0].version <= d.OldestBase() || (!over && len(d.rest.hist) == 1)) {
			d.dropCheckpoint()
			continue
		}
		if !over && len(d.rest.hist) == 1 {
			break
		}
		d.rest.histBytes -= d.rest.hist[0].size
		d.rest.hist = d.rest.hist[1:]
		d.rest.histOff++
	}
}

// Encoding, for snapshots and commands (see wire.go). A Doc is its fields,
// the text as one length-prefixed UTF-8 string, then the kept changes
// oldest first, each without its version (they are consecutive and end at
// the document's).

func (e *encoder) doc(d *Doc) { e.docSpilling(d, nil) }

// docSpilling encodes d as doc does, calling spill (if set) after each
// piece of the text and each change, so that a writer can hand the bytes
// on in chunks instead of holding a large document in one buffer.
func (e *encoder) docSpilling(d *Doc, spill func()) {
	e.str(d.ID)
	e.str(d.Title)
	e.str(d.Owner)
	e.uvarint(uint64(len(d.Editors)))
	for _, u := range d.Editors {
		e.str(u)
	}
	e.uvarint(uint64(d.Text.Size()))
	if spill == nil {
		e.b = d.Text.AppendTo(e.b)
	} else {
		walkLeaves(d.Text.root, func(s string) { e.b = append(e.b, s...); spill() })
	}
	e.uvarint(d.Version)
	e.varint(d.CreatedMs)
	e.varint(d.UpdatedMs)
	e.uvarint(uint64(len(d.x().hist)))
	for i := range d.x().hist {
		c := &d.x().hist[i].Change
		e.str(c.ClientID)
		e.uvarint(c.Seq)
		e.ops(c.Ops)
		if spill != nil {
			spill()
		}
	}
}

func (d *decoder) doc() *Doc {
	doc := &Doc{ID: d.str(), Title: d.str(), Owner: ownerID(d.str())}
	if n := d.count(1); n > 0 {
		doc.Editors = make([]string, n)
		for i := range doc.Editors {
			doc.Editors[i] = d.str()
			if i > 0 && doc.Editors[i] <= doc.Editors[i-1] {
				d.fail("editors not sorted")
			}
		}
	}
	// One copy of the text, checked and then held (a conversion in each
	// call copied it twice: a fifth of a restart's snapshot read).
	text := string(d.raw())
	if d.err == nil && CheckDocText("content", text) != nil {
		d.fail("document text is not valid")
	}
	doc.Text = NewText(text)
	doc.Version = d.uvarint()
	doc.CreatedMs = d.varint()
	doc.UpdatedMs = d.varint()
	n := d.count(3)
	if uint64(n) > doc.Version {
		d.fail("history of %d changes at version %d", n, doc.Version)
		return doc
	}
	if n == 0 {
		return doc // an idle document's past: none (Doc.rest nil)
	}
	doc.own()
	first := doc.Version - uint64(n) + 1
	for i := 0; i < n && d.err == nil; i++ {
		c := Change{Version: first + uint64(i), ClientID: d.str(), Seq: d.uvarint(), Ops: d.ops()}
		e := histEntry{Change: c, size: HistoryBytes(&c)}
		doc.rest.hist = append(doc.rest.hist, e)
		doc.rest.histBytes += e.size
	}
	doc.rest.histArr = &histArray{written: len(doc.rest.hist)}
	return doc
}

// ops writes an op list: per op its kind, position, then the length of a
// delete or replace and the text of an insert or replace.
func (e *encoder) ops(ops []Op) {
	e.uvarint(uint64(len(ops)))
	for i := range ops {
		op := &ops[i]
		e.byte1(byte(op.Kind))
		e.uvarint(uint64(op.Pos))
		if op.Kind != OpInsert {
			e.uvarint(uint64(op.Len))
		}
		if op.Kind != OpDelete {
			e.str(op.Text)
		}
	}
}

// ops reads an op list and fails unless each op is well formed (checkOp),
// so that nothing decoded can upset a transform.
func (d *decoder) ops() []Op {
	n := d.count(3)
	if n == 0 {
		return nil
	}
	ops := make([]Op, n)
	for i := range ops {
		op := &ops[i]
		op.Kind = OpKind(d.byte1())
		op.Pos = d.opInt()
		if op.Kind != OpInsert {
			op.Len = d.opInt()
		}
		if op.Kind != OpDelete {
			op.Text = d.str()
		}
		if d.err != nil {
			return nil
		}
		if err := checkOp(i, op); err != nil {
			d.fail("%s", err.Error())
			return nil
		}
	}
	return ops
}

func (d *decoder) opInt() int {
	v := d.uvarint()
	if v > MaxOpPos {
		d.fail("op position or length %d", v)
		return 0
	}
	return int(v)
}

// DocSubmit is the payload of a submit command: what a client sent, after
// the transport's checks.
type DocSubmit struct {
	DocID    string
	ClientID string
	Seq      uint64
	Base     uint64
	Ops      []Op
}

func (e *encoder) docSubmit(s *DocSubmit) {
	e.str(s.DocID)
	e.str(s.ClientID)
	e.uvarint(s.Seq)
	e.uvarint(s.Base)
	e.ops(s.Ops)
}

func (d *decoder) docSubmit() *DocSubmit {
	return &DocSubmit{DocID: d.str(), ClientID: d.str(), Seq: d.uvarint(), Base: d.uvarint(), Ops: d.ops()}
}
