package storage

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// Named versions: a document keeps the text of a version a member named
// until the name is deleted (API.md, "Named versions"). They live beside
// the rolling history, never in it: pushChange's trim does not see them,
// so TextAt answers a named version however old it is.
//
// A named version's Text is the rope TextAt rebuilt, which shares its
// leaves with the checkpoints and the current text while the version is
// still in the history: in memory the text is held once. A snapshot
// writes the text only of a named version older than the oldest version
// the history rebuilds (OldestVersion); the newer ones are rebuilt from
// the history when read, so their text is written once too (see the
// encoding below).
//
// Named versions count against two bounds carried in the naming command
// (flags of the proposing node): their number per document, and the
// bytes of named versions (NamedBytes) of all the documents of one
// owner. What every version counts is its text's size plus its name's,
// whether or not it is still shared with the history, so that the
// figure is the same on every node and never changes while it is kept.

// NamedVersion is a version of a document kept by name.
type NamedVersion struct {
	Version uint64
	Name    string
	// Author is the user id of the member who named it ("" for an
	// anonymous --insecure admin); AtMs the command's time.
	Author string
	AtMs   int64
	Text   Text
}

// Bytes is what v counts against its owner's named-version bytes.
func (v *NamedVersion) Bytes() int { return v.Text.Size() + len(v.Name) }

// Limits of named versions. The bounds themselves are flags
// (--max-named-versions-per-document, --max-named-version-bytes-per-user)
// carried in the commands that name one.
const (
	MaxVersionNameRunes         = 100
	DefaultMaxNamedVersions     = 100
	DefaultMaxNamedVersionBytes = 64 << 20
)

// NamedVersions returns the document's named versions, oldest version
// first. The slice is shared: do not change it.
func (d *Doc) NamedVersions() []NamedVersion { return d.x().named }

// Named returns the named version v, or nil.
func (d *Doc) Named(v uint64) *NamedVersion {
	i, ok := d.namedIndex(v)
	if !ok {
		return nil
	}
	return &d.x().named[i]
}

func (d *Doc) namedIndex(v uint64) (int, bool) {
	return slices.BinarySearchFunc(d.x().named, v, func(n NamedVersion, v uint64) int {
		switch {
		case n.Version < v:
			return -1
		case n.Version > v:
			return 1
		}
		return 0
	})
}

// NamedBytes is what the document's named versions count against its
// owner's named-version bytes.
func (d *Doc) NamedBytes() int {
	n := 0
	for i := range d.x().named {
		n += d.x().named[i].Bytes()
	}
	return n
}

// NormalizeVersionName trims a version name and checks it: 1 to
// MaxVersionNameRunes characters, no control characters.
func NormalizeVersionName(s string) (string, *Error) {
	name, err := NormalizeName("name", s)
	if err != nil {
		return "", err
	}
	if utf8.RuneCountInString(name) > MaxVersionNameRunes {
		return "", badRequest("name", "name must be at most %d characters", MaxVersionNameRunes)
	}
	return name, nil
}

// MayName reports whether a caller may name a version of d or delete
// one: its own account must have write access (the owner, an editor
// member, an admin). A share link grants no such right: named versions
// are kept in the owner's quota, and a guest has no account to answer
// for them.
func (d *Doc) MayName(c DocCaller) bool {
	return d.Access(DocCaller{User: c.User, Admin: c.Admin}, 0) >= AccessWrite
}

var errNameForbidden = &Error{Kind: KindForbidden,
	Message: "only the document's owner, its editors and admins may name or delete its versions (viewers and share links may not)"}

// ApplyNamedVersion applies a CmdDocVersion to cur at nowMs, when the
// document's owner holds ownerBytes of named versions (over all its
// documents): name a version (c.Current: the current one, else
// c.Version, which must still be kept) or, with c.Remove, delete the
// name of c.Version. It returns the new document and how the owner's
// named-version bytes change, and never changes cur.
func ApplyNamedVersion(c *DocCommand, cur *Doc, nowMs int64, ownerBytes int) (*Doc, int, *Error) {
	if cur == nil {
		return nil, 0, &Error{Kind: KindNotFound, Message: "no document with id " + c.DocID}
	}
	if !cur.MayName(DocCaller{User: c.Caller, Admin: c.Admin}) {
		return nil, 0, errNameForbidden
	}
	if c.Remove {
		i, ok := cur.namedIndex(c.Version)
		if !ok {
			return nil, 0, &Error{Kind: KindNotFound, Message: fmt.Sprintf("version %d has no name", c.Version)}
		}
		n := *cur
		n.own().named = slices.Delete(slices.Clone(cur.x().named), i, i+1)
		if len(n.x().named) == 0 {
			n.rest.named = nil
		}
		return &n, -cur.x().named[i].Bytes(), nil
	}
	name, err := NormalizeVersionName(c.VersionName)
	if err != nil {
		return nil, 0, err
	}
	v := c.Version
	if c.Current {
		v = cur.Version
	}
	if cur.Named(v) != nil {
		return nil, 0, &Error{Kind: KindConflict, Field: "version",
			Message: fmt.Sprintf("version %d already has a name; delete it first", v)}
	}
	text, terr := cur.TextAt(v)
	if terr != nil {
		if e, ok := terr.(*Error); ok {
			return nil, 0, e
		}
		// The version left the history after the proposing node checked
		// it: a command cannot answer gone, so it conflicts.
		return nil, 0, &Error{Kind: KindConflict, Field: "version",
			Message: fmt.Sprintf("version %d is no longer kept (the oldest kept is %d)", v, cur.OldestVersion())}
	}
	nv := NamedVersion{Version: v, Name: name, Author: c.Caller, AtMs: nowMs, Text: text}
	if c.MaxNamed > 0 && uint64(len(cur.x().named)) >= c.MaxNamed {
		return nil, 0, &Error{Kind: KindQuotaExceeded, Limit: c.MaxNamed, Field: "named_versions",
			Message: fmt.Sprintf("the document has %d named versions, the most it may; delete one first", len(cur.x().named))}
	}
	if c.MaxNamedBytes > 0 && uint64(ownerBytes)+uint64(nv.Bytes()) > c.MaxNamedBytes {
		return nil, 0, &Error{Kind: KindQuotaExceeded, Limit: c.MaxNamedBytes, Field: "named_version_bytes",
			Message: fmt.Sprintf("the owner's named versions hold %d bytes and this one %d, beyond the %d an owner may keep; delete some first",
				ownerBytes, nv.Bytes(), c.MaxNamedBytes)}
	}
	i, _ := cur.namedIndex(v)
	n := *cur
	n.own().named = slices.Insert(slices.Clone(cur.x().named), i, nv)
	return &n, nv.Bytes(), nil
}

// Encoding (snapshot version snapVersionNamed on, after a document's
// access): the number of named versions, then each one's version,
// name, author and time, and its text only if it is older than the
// oldest version the kept history rebuilds (a flag says which); a newer
// one is rebuilt from the history when read, sharing its rope.

func (e *encoder) docNamed(d *Doc, spill func()) {
	e.uvarint(uint64(len(d.x().named)))
	oldest := d.OldestVersion()
	for i := range d.x().named {
		nv := &d.x().named[i]
		e.uvarint(nv.Version)
		e.str(nv.Name)
		e.str(nv.Author)
		e.varint(nv.AtMs)
		inHistory := nv.Version >= oldest
		e.boolean(!inHistory)
		if inHistory {
			continue
		}
		e.uvarint(uint64(nv.Text.Size()))
		if spill == nil {
			e.b = nv.Text.AppendTo(e.b)
		} else {
			walkLeaves(nv.Text.root, func(s string) { e.b = append(e.b, s...); spill() })
		}
	}
}

// docNamed reads what docNamed wrote into doc, whose history has been
// read. It fails, never panics, on versions out of order or beyond the
// document, a name that NormalizeVersionName would change, a text that
// is not a document's, or a version said to be in the history that the
// history does not rebuild.
func (d *decoder) docNamed(doc *Doc) {
	n := d.count(5)
	if d.err != nil || n == 0 {
		return
	}
	doc.own().named = make([]NamedVersion, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		nv := NamedVersion{Version: d.uvarint(), Name: d.str(), Author: d.str(), AtMs: d.varint()}
		own := d.boolean()
		if d.err != nil {
			return
		}
		if nv.Version > doc.Version || i > 0 && nv.Version <= doc.x().named[i-1].Version || len(nv.Author) > UserIDLen {
			d.fail("named version %d out of order or beyond the document", nv.Version)
			return
		}
		if name, err := NormalizeVersionName(nv.Name); err != nil || name != nv.Name {
			d.fail("named version %d has a bad name", nv.Version)
			return
		}
		if own {
			text := d.raw()
			if d.err == nil && (len(text) > MaxDocBytes || CheckDocText("content", string(text)) != nil) {
				d.fail("named version %d text is not valid", nv.Version)
			}
			nv.Text = NewText(string(text))
		} else {
			t, err := doc.TextAt(nv.Version)
			if err != nil {
				d.fail("named version %d is not in the kept history", nv.Version)
				return
			}
			nv.Text = t
		}
		doc.rest.named = append(doc.rest.named, nv)
	}
}
