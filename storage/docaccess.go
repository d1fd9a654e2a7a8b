package storage

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Who may do what with a document: its members' roles, its share links,
// and Access, the one rule every route, stream and apply follows (API.md,
// "Roles and share links"). Members and links are replicated state, part
// of the immutable Doc: a change returns a new Doc.

// DocRole is a member's or a share link's role in a document. Its values
// are part of the command and snapshot formats: never renumber.
type DocRole uint8

const (
	// DocViewer may read the document, stream it and show presence.
	DocViewer DocRole = 1
	// DocEditor may also submit changes, retitle and restore it.
	DocEditor DocRole = 2
)

func (r DocRole) String() string {
	switch r {
	case DocViewer:
		return "viewer"
	case DocEditor:
		return "editor"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Valid reports whether r is a role.
func (r DocRole) Valid() bool { return r == DocViewer || r == DocEditor }

// ParseDocRole reads "viewer" or "editor".
func ParseDocRole(s string) (DocRole, bool) {
	switch s {
	case "viewer":
		return DocViewer, true
	case "editor":
		return DocEditor, true
	}
	return 0, false
}

// DocMember is a user with a role in a document (the owner aside).
type DocMember struct {
	User string
	Role DocRole
}

// Limits of members and share links. The caps themselves are flags
// (--max-members-per-document, --max-links-per-document) carried in the
// commands that add one, so that every node applies the same.
const (
	DefaultMaxMembersPerDoc = 1000
	DefaultMaxLinksPerDoc   = 100
	// MaxLinkExpiresInS bounds a share link's lifetime: 366 days.
	MaxLinkExpiresInS = 366 * 24 * 3600
	// LinkIDBytes is the length of a link id: 16 hex digits.
	LinkIDBytes = 16
	// ShareTokenBytes is the random part of a share token: 128 bits.
	ShareTokenBytes = 16
)

// ShareLink is a document's share link. Only the hash of its token is
// kept (ShareTokenHash); the token is shown once, to its creator.
type ShareLink struct {
	ID        string // LinkIDBytes hex digits, unique in the document
	Hash      [32]byte
	Role      DocRole
	CreatedBy string // the user id of who created it ("" for an anonymous --insecure admin)
	CreatedMs int64
	ExpiresMs int64 // 0: never
}

// Expired reports whether the link has expired at nowMs.
func (l *ShareLink) Expired(nowMs int64) bool { return l.ExpiresMs != 0 && nowMs >= l.ExpiresMs }

// ShareTokenHash is what a document keeps of a share token: the SHA-256
// of the document's id and the token, so that a token (or its hash) of
// one document is nothing on another.
func ShareTokenHash(docID, token string) [32]byte {
	h := sha256.New()
	h.Write([]byte("troupe-share\x00"))
	h.Write([]byte(docID))
	h.Write([]byte{0})
	h.Write([]byte(token))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ValidLinkID reports whether id has the form of a link id.
func ValidLinkID(id string) bool {
	if len(id) != LinkIDBytes {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// Members returns the document's members, editors and viewers, sorted
// by user id.
func (d *Doc) Members() []DocMember {
	out := make([]DocMember, 0, len(d.Editors)+len(d.Viewers))
	i, j := 0, 0
	for i < len(d.Editors) || j < len(d.Viewers) {
		if j == len(d.Viewers) || i < len(d.Editors) && d.Editors[i] < d.Viewers[j] {
			out = append(out, DocMember{User: d.Editors[i], Role: DocEditor})
			i++
		} else {
			out = append(out, DocMember{User: d.Viewers[j], Role: DocViewer})
			j++
		}
	}
	return out
}

// MemberCount is the number of members (editors and viewers).
func (d *Doc) MemberCount() int { return len(d.Editors) + len(d.Viewers) }

// RoleOf returns userID's role as a member (0: not a member).
func (d *Doc) RoleOf(userID string) DocRole {
	if _, ok := slices.BinarySearch(d.Editors, userID); ok {
		return DocEditor
	}
	if _, ok := slices.BinarySearch(d.Viewers, userID); ok {
		return DocViewer
	}
	return 0
}

// WithMember returns the document with userID a member of role (d itself
// if it already was one of that role).
func (d *Doc) WithMember(userID string, role DocRole) *Doc {
	if d.RoleOf(userID) == role {
		return d
	}
	n := d.WithoutMember(userID)
	if n == d {
		c := *d
		n = &c
	}
	if role == DocEditor {
		i, _ := slices.BinarySearch(n.Editors, userID)
		n.Editors = slices.Insert(slices.Clip(n.Editors), i, userID)
	} else {
		i, _ := slices.BinarySearch(n.Viewers, userID)
		n.Viewers = slices.Insert(slices.Clip(n.Viewers), i, userID)
	}
	return n
}

// WithoutMember returns the document without userID among its members
// (d itself if it was not one).
func (d *Doc) WithoutMember(userID string) *Doc {
	switch d.RoleOf(userID) {
	case DocEditor:
		return d.WithoutEditor(userID)
	case DocViewer:
		i, _ := slices.BinarySearch(d.Viewers, userID)
		n := *d
		n.Viewers = slices.Delete(slices.Clone(d.Viewers), i, i+1)
		if len(n.Viewers) == 0 {
			n.Viewers = nil
		}
		return &n
	}
	return d
}

// Links returns the document's share links, sorted by id (expired ones
// included until a link command drops them).
func (d *Doc) Links() []ShareLink { return d.x().links }

// Link returns the link with id, or nil.
func (d *Doc) Link(id string) *ShareLink {
	i, ok := slices.BinarySearchFunc(d.x().links, id, func(l ShareLink, id string) int { return strings.Compare(l.ID, id) })
	if !ok {
		return nil
	}
	return &d.x().links[i]
}

// LinkByToken returns the link whose token is token, or nil. Every
// link's hash is compared, each in constant time, so the answer's timing
// says nothing of the hashes kept.
func (d *Doc) LinkByToken(token string) *ShareLink {
	h := ShareTokenHash(d.ID, token)
	var found *ShareLink
	for i := range d.x().links {
		if subtle.ConstantTimeCompare(h[:], d.x().links[i].Hash[:]) == 1 {
			found = &d.x().links[i]
		}
	}
	return found
}

// withLinks returns the document with its links replaced.
func (d *Doc) withLinks(links []ShareLink) *Doc {
	n := *d
	if len(links) == 0 {
		links = nil
	}
	n.own().links = links
	return &n
}

// withoutExpiredLinks drops the links expired at nowMs (d itself if
// none is).
func (d *Doc) withoutExpiredLinks(nowMs int64) *Doc {
	if !slices.ContainsFunc(d.x().links, func(l ShareLink) bool { return l.Expired(nowMs) }) {
		return d
	}
	return d.withLinks(slices.DeleteFunc(slices.Clone(d.x().links), func(l ShareLink) bool { return l.Expired(nowMs) }))
}

// DocCaller is who acts on a document: a user (or none), whether it acts
// as an admin, and the share link it presents (its id, or "").
type DocCaller struct {
	User  string
	Admin bool
	Link  string
}

// DocAccess is how far a caller may go with a document; each level
// includes the ones below.
type DocAccess uint8

const (
	AccessNone DocAccess = iota
	// AccessRead: read it, its history and past versions, stream it and
	// show presence (viewers, viewer links).
	AccessRead
	// AccessWrite: also submit changes, retitle and restore (editors,
	// editor links).
	AccessWrite
	// AccessManage: also delete it and manage its members and links
	// (its owner and admins; never a link).
	AccessManage
)

// Access is THE rule of who may read, write or manage a document: every
// route and stream asks it (on the node's state, at the node's time) and
// apply asks it again (on the replicated state, at the command's time),
// so what a caller may do is decided in this one place. It is the most
// of what the caller's user is granted (admin or owner: manage; an
// editor member: write; a viewer member: read) and what its share link
// grants (its role, while it exists and has not expired at nowMs). A
// link id that is not the document's grants nothing.
func (d *Doc) Access(c DocCaller, nowMs int64) DocAccess {
	if c.Admin || c.User != "" && c.User == d.Owner {
		return AccessManage
	}
	a := AccessNone
	if c.User != "" {
		a = roleAccess(d.RoleOf(c.User))
	}
	if c.Link != "" && a < AccessWrite {
		if l := d.Link(c.Link); l != nil && !l.Expired(nowMs) {
			a = max(a, roleAccess(l.Role))
		}
	}
	return a
}

func roleAccess(r DocRole) DocAccess {
	switch r {
	case DocEditor:
		return AccessWrite
	case DocViewer:
		return AccessRead
	}
	return AccessNone
}

// GuestAuthor is the author recorded for a change made through share
// link id by a caller without an account.
func GuestAuthor(linkID string) string { return "guest:" + linkID }

// Encoding (snapshot version 9, after a document's history): the
// viewers, then the links. A document of an older snapshot has neither:
// its editors are its members, all with role editor.

func (e *encoder) docAccess(d *Doc) {
	e.uvarint(uint64(len(d.Viewers)))
	for _, u := range d.Viewers {
		e.str(u)
	}
	e.uvarint(uint64(len(d.x().links)))
	for i := range d.x().links {
		e.shareLink(&d.x().links[i])
	}
}

func (e *encoder) shareLink(l *ShareLink) {
	e.str(l.ID)
	e.b = append(e.b, l.Hash[:]...)
	e.byte1(byte(l.Role))
	e.str(l.CreatedBy)
	e.varint(l.CreatedMs)
	e.varint(l.ExpiresMs)
}

func (d *decoder) shareLink(l *ShareLink) {
	l.ID = d.str()
	d.hash(&l.Hash)
	l.Role = DocRole(d.byte1())
	l.CreatedBy = d.str()
	l.CreatedMs = d.varint()
	l.ExpiresMs = d.varint()
	if d.err == nil && (!ValidLinkID(l.ID) || !l.Role.Valid() || len(l.CreatedBy) > UserIDLen || l.ExpiresMs < 0) {
		d.fail("share link %q is not valid", l.ID)
	}
}

// docAccess reads what docAccess wrote into doc, which d.doc() has just
// read: viewers sorted, none of them an editor; links sorted by id.
func (d *decoder) docAccess(doc *Doc) {
	if n := d.count(1); n > 0 {
		doc.Viewers = make([]string, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			u := d.str()
			if d.err == nil && (i > 0 && u <= doc.Viewers[i-1] || u == "" || len(u) > UserIDLen) {
				d.fail("viewers not sorted")
			}
			if _, editor := slices.BinarySearch(doc.Editors, u); d.err == nil && editor {
				d.fail("user %q is both editor and viewer", u)
			}
			doc.Viewers = append(doc.Viewers, u)
		}
	}
	if n := d.count(LinkIDBytes + 32 + 5); n > 0 {
		doc.own().links = make([]ShareLink, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			var l ShareLink
			d.shareLink(&l)
			if d.err == nil && i > 0 && l.ID <= doc.x().links[i-1].ID {
				d.fail("share links not sorted")
			}
			doc.rest.links = append(doc.rest.links, l)
		}
	}
}

// applyMember applies a CmdDocMember (the caller may manage cur): give
// a user a role, or (Remove) take its membership away. A new member
// beyond the command's MaxMembers gets quota_exceeded.
func applyMember(c *DocCommand, cur *Doc) (*Doc, *Error) {
	if c.Remove {
		return cur.WithoutMember(c.Editor), nil
	}
	if !c.Role.Valid() {
		return nil, badRequest("role", `role must be "viewer" or "editor"`)
	}
	if _, _, ok := ParseUserID(c.Editor); !ok {
		return nil, &Error{Kind: KindNotFound, Message: "no user with id " + c.Editor}
	}
	if cur.RoleOf(c.Editor) == 0 {
		if err := CheckMemberQuota(cur.MemberCount(), c.MaxMembers); err != nil {
			return nil, err
		}
	}
	return cur.WithMember(c.Editor, c.Role), nil
}

// CheckMemberQuota refuses a new member of a document that has n when
// the command's limit is max (0: none). Its Field, "members", tells it
// from the other quotas.
func CheckMemberQuota(n int, max uint64) *Error {
	if max > 0 && uint64(n) >= max {
		return &Error{Kind: KindQuotaExceeded, Limit: max, Field: "members",
			Message: fmt.Sprintf("the document has %d members, the most it may; remove one first", n)}
	}
	return nil
}

// CheckLinkQuota refuses a new share link of a document that has n live
// ones when the command's limit is max (0: none); Field "links".
func CheckLinkQuota(n int, max uint64) *Error {
	if max > 0 && uint64(n) >= max {
		return &Error{Kind: KindQuotaExceeded, Limit: max, Field: "links",
			Message: fmt.Sprintf("the document has %d share links, the most it may; revoke one first", n)}
	}
	return nil
}

// applyLink applies a CmdDocLink (the caller may manage cur) at nowMs:
// create a link or (Remove) revoke one. Links expired by nowMs are
// dropped first, so they hold no room.
func applyLink(c *DocCommand, cur *Doc, nowMs int64) (*Doc, *Error) {
	next := cur.withoutExpiredLinks(nowMs)
	if c.Remove {
		if next.Link(c.LinkID) == nil {
			return nil, &Error{Kind: KindNotFound, Message: "no share link with id " + c.LinkID}
		}
		return next.withLinks(slices.DeleteFunc(slices.Clone(next.x().links), func(l ShareLink) bool { return l.ID == c.LinkID })), nil
	}
	switch {
	case !ValidLinkID(c.LinkID):
		return nil, badRequest("", "a share link id is %d hex digits", LinkIDBytes)
	case !c.Role.Valid():
		return nil, badRequest("role", `role must be "viewer" or "editor"`)
	case c.ExpiresInS > MaxLinkExpiresInS:
		return nil, badRequest("expires_in_s", "expires_in_s must be from 1 to %d", MaxLinkExpiresInS)
	case next.Link(c.LinkID) != nil:
		return nil, errorf(KindConflict, "share link %s already exists", c.LinkID)
	}
	if err := CheckLinkQuota(len(next.x().links), c.MaxLinks); err != nil {
		return nil, err
	}
	l := ShareLink{ID: c.LinkID, Hash: c.LinkHash, Role: c.Role, CreatedBy: c.Caller, CreatedMs: nowMs}
	if c.ExpiresInS > 0 {
		l.ExpiresMs = nowMs + int64(c.ExpiresInS)*1000
	}
	links := slices.Clone(next.x().links)
	i, _ := slices.BinarySearchFunc(links, l.ID, func(x ShareLink, id string) int { return strings.Compare(x.ID, id) })
	return next.withLinks(slices.Insert(links, i, l)), nil
}
