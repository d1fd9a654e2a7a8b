package storage

import "fmt"

// Document commands: what the log carries for documents, and the rules
// apply checks on every node (who may do what is part of the replicated
// decision: the caller and whether it acts as an admin are decided on
// the receiving node and carried in the command).

// DocCommand is the payload of every document command.
type DocCommand struct {
	DocID  string
	Caller string // the acting user's id ("" for an anonymous --insecure admin)
	Admin  bool   // the caller acts as an admin

	Title   string     // CmdDocCreate, CmdDocTitle
	Content string     // CmdDocCreate
	Submit  *DocSubmit // CmdDocSubmit (its DocID is DocID)
	Editor  string     // CmdDocEditor, CmdDocMember: the user id
	Remove  bool       // CmdDocEditor, CmdDocMember, CmdDocLink: remove instead of add
	// Link, from version 6: the id of the share link the caller
	// presents ("" none); Access counts what it grants.
	Link string
	Role DocRole // CmdDocMember: the member's role; CmdDocLink: the new link's
	// CmdDocLink: the link's id (decided by the proposing node); to
	// create one, also its token's hash and lifetime (0: never expires).
	LinkID     string
	LinkHash   [32]byte
	ExpiresInS uint64

	// Limits decided by the proposing node (its flags) and carried in the
	// command, so that every node applies the same one; 0, as in commands
	// of version 1, means none.
	MaxDocs      uint64 // CmdDocCreate: documents the caller may own
	HistoryBytes uint64 // CmdDocSubmit: bound on the kept history's HistoryBytes
	// CmdDocSubmit, from version 4: take a checkpoint every this many
	// versions (HistoryRules.CheckpointEvery); 0, as in older commands,
	// takes none, so that nodes of older builds keep the same history.
	CheckpointEvery uint64
	// CmdDocMember: members a document may have; CmdDocLink (create):
	// links it may have (0: no bound).
	MaxMembers uint64
	MaxLinks   uint64

	// CmdDocVersion (named.go): the name to give, and the version named
	// (Current: the document's version when the command applies; else
	// Version), or with Remove the version whose name goes. MaxNamed
	// bounds the document's named versions, MaxNamedBytes its owner's
	// named-version bytes (0: no bound).
	VersionName   string
	Version       uint64
	Current       bool
	MaxNamed      uint64
	MaxNamedBytes uint64
}

// Document limits.
const (
	MaxDocTitleRunes = 200
	// MaxDocBytes bounds a document's text (UTF-8 bytes); a create or a
	// submit beyond it gets payload_too_large.
	MaxDocBytes = 8 << 20
	// DefaultDocHistoryBytes is the default bound on a document's kept
	// history by bytes (HistoryBytes), --document-history-bytes.
	DefaultDocHistoryBytes = 16 << 20
	// DefaultMaxDocsPerUser is the default of --max-documents-per-user.
	DefaultMaxDocsPerUser = 10_000
	// DefaultDocHistory is how many changes a document keeps for
	// transforms and replays unless the cluster was created with another.
	DefaultDocHistory = 1000
)

var (
	errDocForbidden   = &Error{Kind: KindForbidden, Message: "only the document's owner, its editors, editor links and admins may edit it (viewers may only read)"}
	errOwnerForbidden = &Error{Kind: KindForbidden, Message: "only the document's owner and admins may do this"}
)

// MayRead reports whether a user (no share link) may read d: Access.
func (d *Doc) MayRead(caller string, admin bool) bool {
	return d.Access(DocCaller{User: caller, Admin: admin}, 0) >= AccessRead
}

// Readers are the users MayRead admits without being admins: the owner,
// then the editors and the viewers (the owner may be one too). Indexes of
// who may read what are keyed by them; MayRead stays the rule they
// follow.
func (d *Doc) Readers() []string {
	out := make([]string, 0, 1+len(d.Editors)+len(d.Viewers))
	return append(append(append(out, d.Owner), d.Editors...), d.Viewers...)
}

// Listing returns what a listing shows of d: every field but the text,
// the history, the links and the named versions, so that what keeps a
// listing does not keep them alive. The members are shared (a Doc never changes them in place).
func (d *Doc) Listing() Doc {
	return Doc{ID: d.ID, Title: d.Title, Owner: d.Owner, Editors: d.Editors, Viewers: d.Viewers, Version: d.Version,
		CreatedMs: d.CreatedMs, UpdatedMs: d.UpdatedMs}
}

// ApplyDoc applies a document command to cur (nil if the document does
// not exist) at nowMs. It returns the new document (nil: deleted or
// unchanged failure), the submit's result for CmdDocSubmit, and an error.
// It never changes cur.
func ApplyDoc(kind CommandKind, c *DocCommand, cur *Doc, nowMs int64, maxHistory int) (*Doc, *SubmitResult, *Error) {
	if kind == CmdDocCreate {
		if cur != nil {
			return nil, nil, errorf(KindConflict, "document %s already exists", c.DocID)
		}
		title, err := NormalizeName("title", c.Title)
		if err != nil {
			return nil, nil, err
		}
		if err := CheckDocSize("content", len(c.Content)); err != nil {
			return nil, nil, err
		}
		d, err := NewDoc(c.DocID, title, c.Caller, c.Content, nowMs)
		return d, nil, err
	}
	if cur == nil {
		return nil, nil, &Error{Kind: KindNotFound, Message: "no document with id " + c.DocID}
	}
	access := cur.Access(DocCaller{User: c.Caller, Admin: c.Admin, Link: c.Link}, nowMs)
	owner := access >= AccessManage
	switch kind {
	case CmdDocSubmit:
		if access < AccessWrite {
			return nil, nil, errDocForbidden
		}
		s := c.Submit
		if s == nil {
			return nil, nil, badRequest("", "submit without ops")
		}
		rules := HistoryRules{MaxChanges: maxHistory, MaxBytes: int(min(c.HistoryBytes, 1<<40)),
			CheckpointEvery: int(min(c.CheckpointEvery, maxCheckpointEvery))}
		author := c.Caller
		if author == "" && c.Link != "" && !c.Admin {
			author = GuestAuthor(c.Link)
		}
		next, res, err := cur.SubmitAs(author, s.ClientID, s.Seq, s.Base, s.Ops, max(nowMs, cur.UpdatedMs), rules)
		if err != nil {
			return nil, nil, err
		}
		if next.Text.Size() > MaxDocBytes {
			return nil, nil, &Error{Kind: KindPayloadTooLarge, Field: "ops",
				Message: fmt.Sprintf("the document would hold %d bytes of text; at most %d", next.Text.Size(), MaxDocBytes)}
		}
		return next, &res, nil
	case CmdDocTitle:
		if access < AccessWrite {
			return nil, nil, errDocForbidden
		}
		title, err := NormalizeName("title", c.Title)
		if err != nil {
			return nil, nil, err
		}
		if title == cur.Title {
			return cur, nil, nil
		}
		return cur.WithTitle(title, max(nowMs, cur.UpdatedMs)), nil, nil
	case CmdDocEditor:
		if !owner {
			return nil, nil, errOwnerForbidden
		}
		if c.Remove {
			return cur.WithoutEditor(c.Editor), nil, nil
		}
		if _, _, ok := ParseUserID(c.Editor); !ok {
			return nil, nil, &Error{Kind: KindNotFound, Message: "no user with id " + c.Editor}
		}
		return cur.WithEditor(c.Editor), nil, nil
	case CmdDocDelete:
		if !owner {
			return nil, nil, errOwnerForbidden
		}
		return nil, nil, nil
	case CmdDocMember:
		if !owner {
			return nil, nil, errOwnerForbidden
		}
		next, err := applyMember(c, cur)
		return next, nil, err
	case CmdDocLink:
		if !owner {
			return nil, nil, errOwnerForbidden
		}
		next, err := applyLink(c, cur, nowMs)
		return next, nil, err
	case CmdDocVersion:
		// It needs the owner's named-version bytes: ApplyNamedVersion.
		return nil, nil, &Error{Kind: KindInternal, Message: "a named version is applied with its owner's named-version bytes"}
	}
	return nil, nil, badRequest("", "not a document command")
}

// CheckDocSize refuses a document text of n bytes beyond MaxDocBytes.
func CheckDocSize(field string, n int) *Error {
	if n > MaxDocBytes {
		return &Error{Kind: KindPayloadTooLarge, Field: field,
			Message: fmt.Sprintf("%s must be at most %d bytes of UTF-8, got %d", field, MaxDocBytes, n)}
	}
	return nil
}

// CheckDocQuota refuses a create by a caller who owns owned documents
// when the command's limit is max (0: none).
func CheckDocQuota(owned int, max uint64) *Error {
	if max > 0 && uint64(owned) >= max {
		return &Error{Kind: KindQuotaExceeded, Limit: max,
			Message: fmt.Sprintf("you own %d documents, the most a user may; delete one first", owned)}
	}
	return nil
}

func (e *encoder) docCommand(kind CommandKind, c *DocCommand) {
	e.str(c.DocID)
	e.str(c.Caller)
	e.boolean(c.Admin)
	e.str(c.Link) // from version 6
	switch kind {
	case CmdDocCreate:
		e.str(c.Title)
		e.str(c.Content)
		e.uvarint(c.MaxDocs) // from version 2
	case CmdDocTitle:
		e.str(c.Title)
	case CmdDocSubmit:
		s := c.Submit
		if s == nil {
			s = &DocSubmit{}
		}
		e.str(s.ClientID)
		e.uvarint(s.Seq)
		e.uvarint(s.Base)
		e.ops(s.Ops)
		e.uvarint(c.HistoryBytes)    // from version 2
		e.uvarint(c.CheckpointEvery) // from version 4
	case CmdDocEditor:
		e.str(c.Editor)
		e.boolean(c.Remove)
	case CmdDocMember:
		e.str(c.Editor)
		if c.Remove {
			e.byte1(0)
		} else {
			e.byte1(byte(c.Role))
		}
		e.uvarint(c.MaxMembers)
	case CmdDocLink:
		e.str(c.LinkID)
		e.boolean(c.Remove)
		if !c.Remove {
			e.b = append(e.b, c.LinkHash[:]...)
			e.byte1(byte(c.Role))
			e.uvarint(c.ExpiresInS)
			e.uvarint(c.MaxLinks)
		}
	case CmdDocVersion: // from cmdVersionNamed
		e.boolean(c.Remove)
		e.uvarint(c.Version)
		if !c.Remove {
			e.str(c.VersionName)
			e.boolean(c.Current)
			e.uvarint(c.MaxNamed)
			e.uvarint(c.MaxNamedBytes)
		}
	}
}

// docCommand reads a document command of command version v.
func (d *decoder) docCommand(kind CommandKind, v byte) *DocCommand {
	c := &DocCommand{DocID: d.str(), Caller: d.str(), Admin: d.boolean()}
	if v >= 6 {
		c.Link = d.str()
	}
	switch kind {
	case CmdDocCreate:
		c.Title = d.str()
		c.Content = d.str()
		if v >= 2 {
			c.MaxDocs = d.uvarint()
		}
	case CmdDocTitle:
		c.Title = d.str()
	case CmdDocSubmit:
		c.Submit = &DocSubmit{DocID: c.DocID, ClientID: d.str(), Seq: d.uvarint(), Base: d.uvarint(), Ops: d.ops()}
		if v >= 2 {
			c.HistoryBytes = d.uvarint()
		}
		if v >= 4 {
			c.CheckpointEvery = d.uvarint()
		}
	case CmdDocEditor:
		c.Editor = d.str()
		c.Remove = d.boolean()
	case CmdDocMember:
		c.Editor = d.str()
		c.Role = DocRole(d.byte1())
		c.Remove = c.Role == 0
		c.MaxMembers = d.uvarint()
		if d.err == nil && !c.Remove && !c.Role.Valid() {
			d.fail("member role %d", c.Role)
		}
	case CmdDocLink:
		c.LinkID = d.str()
		c.Remove = d.boolean()
		if !c.Remove {
			d.hash(&c.LinkHash)
			c.Role = DocRole(d.byte1())
			c.ExpiresInS = d.uvarint()
			c.MaxLinks = d.uvarint()
			if d.err == nil && (!c.Role.Valid() || c.ExpiresInS > MaxLinkExpiresInS) {
				d.fail("share link role %d, lifetime %d s", c.Role, c.ExpiresInS)
			}
		}
	case CmdDocVersion:
		if v < cmdVersionNamed {
			d.fail("named versions in a command of version %d", v)
			break
		}
		c.Remove = d.boolean()
		c.Version = d.uvarint()
		if !c.Remove {
			c.VersionName = d.str()
			c.Current = d.boolean()
			c.MaxNamed = d.uvarint()
			c.MaxNamedBytes = d.uvarint()
		}
	}
	return c
}

func (e *encoder) submitResult(r *SubmitResult) {
	e.uvarint(r.Version)
	e.ops(r.Ops)
	e.boolean(r.Repeated)
}

func (d *decoder) submitResult() *SubmitResult {
	return &SubmitResult{Version: d.uvarint(), Ops: d.ops(), Repeated: d.boolean()}
}
