package api

import (
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
)

// A document's past (API.md, "History and time travel"): GET
// /v1/docs/{id}?version=N and GET /v1/docs/{id}/history. Both read the
// document as GET /v1/docs/{id} does — the same read gate and rights,
// the state its actor holds after the barrier — and then work on that
// immutable value in the request's goroutine, so rebuilding an old
// version never holds up the document's submits.

// getDocVersion answers the document as it was at ?version=N: its text
// and N; the title, owner, editors and times are the current ones.
func (s *Server) getDocVersion(ctx *fasthttp.RequestCtx) {
	v, err := strconv.ParseUint(string(ctx.QueryArgs().Peek("version")), 10, 64)
	if err != nil {
		writeError(ctx, badRequest("version must be an integer from 0 to the document's version", "version"))
		return
	}
	d, ok := s.readableDoc(ctx, s.deadline())
	if !ok {
		return
	}
	text, terr := d.TextAt(v)
	if terr != nil {
		writeError(ctx, terr)
		return
	}
	j := toDocJSON(d, false, nil)
	j.Access = s.accessName(ctx, d)
	content := text.String()
	j.Content, j.Version = &content, v
	ctx.Response.Header.Set("ETag", etag(v)) // the version of the content answered
	writeJSON(ctx, http.StatusOK, j)
}

type historyItemJSON struct {
	Version  uint64  `json:"version"`
	Author   *string `json:"author"`
	ClientID string  `json:"client_id"`
	At       *string `json:"at"`
	Inserted int     `json:"inserted"`
	Deleted  int     `json:"deleted"`
}

type historyPageJSON struct {
	Items  []historyItemJSON `json:"items"`
	Next   *uint64           `json:"next"`
	Oldest uint64            `json:"oldest"`
}

func (s *Server) docHistory(ctx *fasthttp.RequestCtx) {
	limit, ok := listLimit(ctx)
	if !ok {
		return
	}
	var before uint64 // 0: from the newest
	if b := ctx.QueryArgs().Peek("before"); len(b) > 0 {
		n, err := strconv.ParseUint(string(b), 10, 64)
		if err != nil || n == 0 {
			writeError(ctx, badRequest("before must be an integer from 1 to "+maxUint64Text, "before"))
			return
		}
		before = n
	}
	d, ok := s.readableDoc(ctx, s.deadline())
	if !ok {
		return
	}
	if before == 0 {
		before = d.Version + 1
	}
	changes, next, err := d.HistoryPage(before, limit)
	if err != nil {
		writeError(ctx, err)
		return
	}
	page := historyPageJSON{Items: make([]historyItemJSON, len(changes)), Oldest: d.OldestVersion()}
	for i := range changes {
		c := &changes[i]
		it := historyItemJSON{Version: c.Version, ClientID: c.ClientID}
		it.Inserted, it.Deleted = c.Counted()
		// A change kept from a build before changes recorded them has
		// no time and no author.
		if c.AtMs != 0 {
			at := formatTime(c.AtMs)
			it.At = &at
			author := c.Author
			it.Author = &author
		}
		page.Items[i] = it
	}
	if next != 0 {
		page.Next = &next
	}
	writeJSON(ctx, http.StatusOK, page)
}

type restoreRequest struct {
	Version *uint64 `json:"version"`
}

type restoreResponse struct {
	Version  uint64 `json:"version"`
	Restored uint64 `json:"restored"`
}

// restoreDoc commits one change, by the caller, that turns the current
// text into version N's: the ops are storage.DiffOps of the two texts,
// based on the version read, so that what did not change keeps its place
// and edits committed meanwhile are transformed as any submit's. A text
// already equal to version N's commits nothing and answers the current
// version.
func (s *Server) restoreDoc(ctx *fasthttp.RequestCtx) {
	var req restoreRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	if req.Version == nil {
		writeError(ctx, badRequest("version is required", "version"))
		return
	}
	d, ok := s.readableDoc(ctx, s.deadline())
	if !ok {
		return
	}
	if s.access(ctx, d) < storage.AccessWrite {
		writeError(ctx, newError("forbidden", "only the document's owner, its editors, editor links and admins may restore it"))
		return
	}
	target, err := d.TextAt(*req.Version)
	if err != nil {
		writeError(ctx, err)
		return
	}
	ops := storage.DiffOps(d.Text.String(), target.String())
	if ops == nil {
		writeJSON(ctx, http.StatusOK, restoreResponse{Version: d.Version, Restored: *req.Version})
		return
	}
	if n := insertedBytes(ops); n > storage.MaxOpsText {
		e := newError("payload_too_large", "restoring version "+strconv.FormatUint(*req.Version, 10)+" would insert "+
			strconv.Itoa(n)+" bytes in one change; at most "+strconv.Itoa(storage.MaxOpsText))
		e.Details = map[string]any{"field": "version"}
		writeError(ctx, e)
		return
	}
	dc := docCommand(ctx, d.ID)
	clientID := "restore:" + strconv.FormatUint(s.node.Stamps(1), 36)
	dc.Submit = &storage.DocSubmit{DocID: d.ID, ClientID: clientID, Seq: 1, Base: d.Version, Ops: ops}
	s.docWrite(ctx, w, storage.CmdDocSubmit, dc, func(res storage.Result) {
		writeJSON(ctx, http.StatusOK, restoreResponse{Version: res.Submit.Version, Restored: *req.Version})
	})
}

func insertedBytes(ops []storage.Op) int {
	n := 0
	for i := range ops {
		n += len(ops[i].Text)
	}
	return n
}
