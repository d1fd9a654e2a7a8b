package storage

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
	Editor  string     // CmdDocEditor: the user id
	Remove  bool       // CmdDocEditor: remove instead of add
}

// Document limits.
const (
	MaxDocTitleRunes = 200
	// MaxDocBytes bounds a document's text (UTF-8 bytes): a snapshot
	// frame holds a whole document.
	MaxDocBytes = 8 << 20
	// DefaultDocHistory is how many changes a document keeps for
	// transforms and replays unless the cluster was created with another.
	DefaultDocHistory = 1000
)

var (
	errDocForbidden   = &Error{Kind: KindForbidden, Message: "only the document's owner, its editors and admins may edit it"}
	errOwnerForbidden = &Error{Kind: KindForbidden, Message: "only the document's owner and admins may do this"}
)

// MayRead reports whether a caller may read d.
func (d *Doc) MayRead(caller string, admin bool) bool { return admin || d.CanEdit(caller) }

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
		if len(c.Content) > MaxDocBytes {
			return nil, nil, badRequest("content", "content must be at most %d bytes", MaxDocBytes)
		}
		d, err := NewDoc(c.DocID, title, c.Caller, c.Content, nowMs)
		return d, nil, err
	}
	if cur == nil {
		return nil, nil, &Error{Kind: KindNotFound, Message: "no document with id " + c.DocID}
	}
	owner := c.Admin || c.Caller == cur.Owner
	switch kind {
	case CmdDocSubmit:
		if !c.Admin && !cur.CanEdit(c.Caller) {
			return nil, nil, errDocForbidden
		}
		s := c.Submit
		if s == nil {
			return nil, nil, badRequest("", "submit without ops")
		}
		next, res, err := cur.Submit(s.ClientID, s.Seq, s.Base, s.Ops, max(nowMs, cur.UpdatedMs), maxHistory)
		if err != nil {
			return nil, nil, err
		}
		if next.Text.Size() > MaxDocBytes {
			return nil, nil, badRequest("ops", "the document would exceed %d bytes", MaxDocBytes)
		}
		return next, &res, nil
	case CmdDocTitle:
		if !c.Admin && !cur.CanEdit(c.Caller) {
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
	}
	return nil, nil, badRequest("", "not a document command")
}

func (e *encoder) docCommand(kind CommandKind, c *DocCommand) {
	e.str(c.DocID)
	e.str(c.Caller)
	e.boolean(c.Admin)
	switch kind {
	case CmdDocCreate:
		e.str(c.Title)
		e.str(c.Content)
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
	case CmdDocEditor:
		e.str(c.Editor)
		e.boolean(c.Remove)
	}
}

func (d *decoder) docCommand(kind CommandKind) *DocCommand {
	c := &DocCommand{DocID: d.str(), Caller: d.str(), Admin: d.boolean()}
	switch kind {
	case CmdDocCreate:
		c.Title = d.str()
		c.Content = d.str()
	case CmdDocTitle:
		c.Title = d.str()
	case CmdDocSubmit:
		c.Submit = &DocSubmit{DocID: c.DocID, ClientID: d.str(), Seq: d.uvarint(), Base: d.uvarint(), Ops: d.ops()}
	case CmdDocEditor:
		c.Editor = d.str()
		c.Remove = d.boolean()
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
