package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
)

// The /v1/docs routes (API.md, Documents). Writes become document
// commands carrying the caller; apply checks who may do what on every
// node. Reads check it here, on this node's state.

type docJSON struct {
	ID            string       `json:"id"`
	Title         string       `json:"title"`
	Content       *string      `json:"content,omitempty"`
	Version       uint64       `json:"version"`
	Owner         string       `json:"owner"`
	Editors       []string     `json:"editors"`
	Members       []memberJSON `json:"members"`
	Collaborators []string     `json:"collaborators"`
	CreatedAt     string       `json:"created_at"`
	UpdatedAt     string       `json:"updated_at"`
	// Access is the caller's own access to the document (accessName):
	// in the answers to one caller's reads and writes of it, not in
	// listings, streams or the change feed, which many callers share.
	Access string `json:"access,omitempty"`
}

// accessName names what storage.Doc.Access grants the request's caller
// on d: "owner", "admin" (an admin who is not the owner), "editor" or
// "viewer" (a member's role or a share link's, the higher), "" none.
func (s *Server) accessName(ctx *fasthttp.RequestCtx, d *storage.Doc) string {
	c := callerOf(ctx).docCaller(d.ID)
	switch d.Access(c, s.nowMs()) {
	case storage.AccessManage:
		if c.User != "" && c.User == d.Owner {
			return "owner"
		}
		return "admin"
	case storage.AccessWrite:
		return "editor"
	case storage.AccessRead:
		return "viewer"
	}
	return ""
}

// memberJSON is one of a document's members: {"user","role"}.
type memberJSON struct {
	User string `json:"user"`
	Role string `json:"role"`
}

func toDocJSON(d *storage.Doc, withContent bool, collaborators []string) docJSON {
	j := docJSON{ID: d.ID, Title: d.Title, Version: d.Version, Owner: d.Owner, Editors: d.Editors,
		Collaborators: collaborators, CreatedAt: formatTime(d.CreatedMs), UpdatedAt: formatTime(d.UpdatedMs)}
	ms := d.Members()
	j.Members = make([]memberJSON, len(ms))
	for i, m := range ms {
		j.Members[i] = memberJSON{User: m.User, Role: m.Role.String()}
	}
	if j.Editors == nil {
		j.Editors = []string{}
	}
	if j.Collaborators == nil {
		j.Collaborators = []string{}
	}
	if withContent {
		s := d.Text.String()
		j.Content = &s
	}
	return j
}

// opJSON is one op on the wire: {"op":"insert","pos","text"} |
// {"op":"delete","pos","len"} | {"op":"replace","pos","len","text"}.
type opJSON struct {
	Op   string  `json:"op"`
	Pos  int     `json:"pos"`
	Len  *int    `json:"len,omitempty"`
	Text *string `json:"text,omitempty"`
}

func opsToJSON(ops []storage.Op) []opJSON {
	out := make([]opJSON, len(ops))
	for i, op := range ops {
		j := opJSON{Op: op.Kind.String(), Pos: op.Pos}
		if op.Kind != storage.OpInsert {
			n := op.Len
			j.Len = &n
		}
		if op.Kind != storage.OpDelete {
			t := op.Text
			j.Text = &t
		}
		out[i] = j
	}
	return out
}

// opsFromJSON checks the shape of each op; ValidateOps (in apply) checks
// the rest.
func opsFromJSON(in []opJSON) ([]storage.Op, *apiError) {
	ops := make([]storage.Op, len(in))
	for i, j := range in {
		// field names op i in an error (built only for one).
		field := func() string { return "ops[" + strconv.Itoa(i) + "]" }
		op := storage.Op{Pos: j.Pos}
		switch j.Op {
		case "insert":
			op.Kind = storage.OpInsert
			if j.Text == nil || j.Len != nil {
				return nil, badRequest("an insert has pos and text", field())
			}
		case "delete":
			op.Kind = storage.OpDelete
			if j.Len == nil || j.Text != nil {
				return nil, badRequest("a delete has pos and len", field())
			}
		case "replace":
			op.Kind = storage.OpReplace
			if j.Len == nil || j.Text == nil {
				return nil, badRequest("a replace has pos, len and text", field())
			}
		default:
			return nil, badRequest(`op must be "insert", "delete" or "replace"`, field()+".op")
		}
		if j.Len != nil {
			op.Len = *j.Len
		}
		if j.Text != nil {
			op.Text = *j.Text
		}
		ops[i] = op
	}
	if err := storage.ValidateOps(ops); err != nil {
		return nil, storageError(err)
	}
	return ops, nil
}

type createDocRequest struct {
	Title   *string `json:"title"`
	Content *string `json:"content"`
}

type patchDocRequest struct {
	Title *string `json:"title"`
}

type submitRequest struct {
	ClientID    *string   `json:"client_id"`
	Seq         *uint64   `json:"seq"`
	BaseVersion *uint64   `json:"base_version"`
	Ops         *[]opJSON `json:"ops"`
}

type submitResponse struct {
	Version uint64   `json:"version"`
	Ops     []opJSON `json:"ops"`
}

type changeJSON struct {
	Version  uint64   `json:"version"`
	ClientID string   `json:"client_id"`
	Seq      uint64   `json:"seq"`
	Ops      []opJSON `json:"ops"`
}

func toChangeJSON(c *storage.Change) changeJSON {
	return changeJSON{Version: c.Version, ClientID: c.ClientID, Seq: c.Seq, Ops: opsToJSON(c.Ops)}
}

// docCommand starts a document command from the caller.
func docCommand(ctx *fasthttp.RequestCtx, id string) *storage.DocCommand {
	dc := callerOf(ctx).docCaller(id)
	return &storage.DocCommand{DocID: id, Caller: dc.User, Admin: dc.Admin, Link: dc.Link}
}

func docID(ctx *fasthttp.RequestCtx) string {
	id, _ := ctx.UserValue("id").(string)
	return id
}

func (s *Server) createDoc(ctx *fasthttp.RequestCtx) {
	var req createDocRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	if req.Title == nil {
		writeError(ctx, badRequest("title is required", "title"))
		return
	}
	dc := docCommand(ctx, "")
	if dc.Caller == "" {
		writeError(ctx, newError("unauthenticated", "a document needs an owner: log in (--insecure without a token has no user)"))
		return
	}
	if err := storage.CheckLabel("title", *req.Title); err != nil {
		writeError(ctx, err)
		return
	}
	dc.Title = *req.Title
	if req.Content != nil {
		err := storage.CheckDocSize("content", len(*req.Content))
		if err == nil {
			err = storage.CheckDocText("content", *req.Content)
		}
		if err != nil {
			s.docLimits.count(err)
			writeError(ctx, err)
			return
		}
		dc.Content = *req.Content
	}
	dc.MaxDocs = uint64(s.cfg.MaxDocumentsPerUser)
	// Checked here first so that a refusal costs no log entry; apply
	// checks again, in log order.
	if err := storage.CheckDocQuota(s.docs.Owned(dc.Caller), dc.MaxDocs); err != nil {
		s.docLimits.count(err)
		writeError(ctx, err)
		return
	}
	stamp := s.node.Stamps(1)
	dc.DocID = storage.MakeDocID(stamp)
	res, ok := s.propose(ctx, &storage.Command{Kind: storage.CmdDocCreate, Stamp: stamp, RequestID: w.key, Fingerprint: w.fp, Doc: dc}, s.deadline())
	if !ok {
		s.docLimits.count(res.Err)
		return
	}
	ctx.Response.Header.Set("Location", "/v1/docs/"+res.Doc.ID)
	ctx.Response.Header.Set("ETag", etag(res.Doc.Version))
	j := toDocJSON(res.Doc, true, nil)
	j.Access = s.accessName(ctx, res.Doc)
	writeJSON(ctx, http.StatusCreated, j)
}

// readableDoc reads a document the caller may read, or answers.
func (s *Server) readableDoc(ctx *fasthttp.RequestCtx, deadline time.Time) (*storage.Doc, bool) {
	if !s.readGate(ctx, deadline) {
		return nil, false
	}
	d, err := s.docs.Get(docID(ctx), deadline)
	if err != nil {
		writeError(ctx, err)
		return nil, false
	}
	if s.access(ctx, d) < storage.AccessRead {
		writeError(ctx, newError("forbidden", "only the document's owner, its members, its share links and admins may read it"))
		return nil, false
	}
	return d, true
}

func (s *Server) getDoc(ctx *fasthttp.RequestCtx) {
	if ctx.QueryArgs().Has("version") {
		s.getDocVersion(ctx)
		return
	}
	deadline := s.deadline()
	d, ok := s.readableDoc(ctx, deadline)
	if !ok {
		return
	}
	ctx.Response.Header.Set("ETag", etag(d.Version))
	j := toDocJSON(d, true, s.docs.Collaborators(d.ID, deadline))
	j.Access = s.accessName(ctx, d)
	writeJSON(ctx, http.StatusOK, j)
}

func (s *Server) listDocs(ctx *fasthttp.RequestCtx) {
	limit, ok := listLimit(ctx)
	if !ok {
		return
	}
	after := string(ctx.QueryArgs().Peek("after"))
	deadline := s.deadline()
	if !s.listGate(ctx, deadline) {
		return
	}
	c := callerOf(ctx)
	uid := ""
	if c.signedIn() {
		uid = c.uid
	}
	docs, more, err := s.docs.List(uid, c.admin, after, limit, deadline)
	if err != nil {
		writeError(ctx, err)
		return
	}
	resp := struct {
		Items []docJSON `json:"items"`
		Next  *string   `json:"next"`
	}{Items: make([]docJSON, len(docs))}
	for i, d := range docs {
		resp.Items[i] = toDocJSON(d, false, nil)
	}
	if more {
		next := docs[len(docs)-1].ID
		resp.Next = &next
	}
	writeJSON(ctx, http.StatusOK, resp)
}

// docWrite proposes a document command and answers with fn on success.
func (s *Server) docWrite(ctx *fasthttp.RequestCtx, w writeRequest, kind storage.CommandKind, dc *storage.DocCommand, ok func(storage.Result)) {
	if kind == storage.CmdDocSubmit || kind == storage.CmdDocTitle {
		// A caller that may only read is refused here, at no log entry
		// (this is the leader, which has applied every change it
		// acknowledged); apply decides, on every node, for the others.
		if d := s.docs.Latest(dc.DocID); d != nil && s.access(ctx, d) == storage.AccessRead {
			writeError(ctx, newError("forbidden", "viewers may read the document but not change it"))
			return
		}
	}
	if kind == storage.CmdDocSubmit {
		dc.HistoryBytes = uint64(s.cfg.DocumentHistoryBytes)
		dc.CheckpointEvery = storage.DocCheckpointEvery
	}
	res, done := s.propose(ctx, &storage.Command{Kind: kind, Stamp: s.node.Stamps(1), RequestID: w.key, Fingerprint: w.fp, Doc: dc}, s.deadline())
	if done {
		ok(res)
	} else {
		s.docLimits.count(res.Err)
	}
}

func (s *Server) patchDoc(ctx *fasthttp.RequestCtx) {
	var req patchDocRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	if req.Title == nil {
		writeError(ctx, badRequest("title is required", "title"))
		return
	}
	if err := storage.CheckLabel("title", *req.Title); err != nil {
		writeError(ctx, err)
		return
	}
	dc := docCommand(ctx, docID(ctx))
	dc.Title = *req.Title
	s.docWrite(ctx, w, storage.CmdDocTitle, dc, func(res storage.Result) {
		ctx.Response.Header.Set("ETag", etag(res.Doc.Version))
		j := toDocJSON(res.Doc, true, nil)
		j.Access = s.accessName(ctx, res.Doc)
		writeJSON(ctx, http.StatusOK, j)
	})
}

func (s *Server) deleteDoc(ctx *fasthttp.RequestCtx) {
	w, ok := s.startWrite(ctx, nil)
	if !ok {
		return
	}
	s.docWrite(ctx, w, storage.CmdDocDelete, docCommand(ctx, docID(ctx)), func(storage.Result) {
		ctx.SetStatusCode(http.StatusNoContent)
	})
}

func (s *Server) submitOps(ctx *fasthttp.RequestCtx) {
	var req submitRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	if req.ClientID == nil || req.Seq == nil || req.BaseVersion == nil || req.Ops == nil {
		writeError(ctx, badRequest("client_id, seq, base_version and ops are required", ""))
		return
	}
	ops, e := opsFromJSON(*req.Ops)
	if e != nil {
		writeError(ctx, e)
		return
	}
	dc := docCommand(ctx, docID(ctx))
	dc.Submit = &storage.DocSubmit{DocID: dc.DocID, ClientID: *req.ClientID, Seq: *req.Seq, Base: *req.BaseVersion, Ops: ops}
	s.docWrite(ctx, w, storage.CmdDocSubmit, dc, func(res storage.Result) {
		writeJSON(ctx, http.StatusOK, submitResponse{Version: res.Submit.Version, Ops: opsToJSON(res.Submit.Ops)})
	})
}

func (s *Server) docChanges(ctx *fasthttp.RequestCtx) {
	since := uint64(0)
	if v := ctx.QueryArgs().Peek("since"); len(v) > 0 {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			writeError(ctx, badRequest("since must be an integer from 0 to the document's version", "since"))
			return
		}
		since = n
	}
	deadline := s.deadline()
	d, ok := s.readableDoc(ctx, deadline)
	if !ok {
		return
	}
	if since > d.Version {
		writeError(ctx, badRequest("since must be from 0 to the document's version, "+strconv.FormatUint(d.Version, 10), "since"))
		return
	}
	changes, err := d.ChangesSince(since)
	if err != nil {
		writeError(ctx, err)
		return
	}
	out := make([]changeJSON, len(changes))
	for i := range changes {
		out[i] = toChangeJSON(&changes[i])
	}
	writeJSON(ctx, http.StatusOK, map[string][]changeJSON{"changes": out})
}
