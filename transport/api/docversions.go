package api

import (
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
)

// Named versions (API.md, "Named versions"): POST, GET
// /v1/docs/{id}/versions and DELETE /v1/docs/{id}/versions/{version}.
// Naming and deleting are CmdDocVersion commands; apply decides who may
// (storage.Doc.MayName) and checks the bounds the command carries. This
// node checks the same first, on the state it has applied, so that a
// request apply would refuse costs no log entry.

type nameVersionRequest struct {
	Name    *string `json:"name"`
	Version *uint64 `json:"version"`
}

type namedVersionJSON struct {
	Version uint64  `json:"version"`
	Name    string  `json:"name"`
	Author  string  `json:"author"`
	At      *string `json:"at"`
}

func toNamedJSON(nv *storage.NamedVersion) namedVersionJSON {
	at := formatTime(nv.AtMs)
	return namedVersionJSON{Version: nv.Version, Name: nv.Name, Author: nv.Author, At: &at}
}

var errNameForbidden = newError("forbidden", "only the document's owner, its editors and admins may name or delete its versions (viewers and share links may not)")

// nameVersion is POST /v1/docs/{id}/versions {"name","version"?}: 201
// with the named version.
func (s *Server) nameVersion(ctx *fasthttp.RequestCtx) {
	var req nameVersionRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	if req.Name == nil {
		writeError(ctx, badRequest("name is required", "name"))
		return
	}
	name, nerr := storage.NormalizeVersionName(*req.Name)
	if nerr != nil {
		writeError(ctx, nerr)
		return
	}
	d, ok := s.readableDoc(ctx, s.deadline())
	if !ok {
		return
	}
	c := callerOf(ctx).docCaller(d.ID)
	if !d.MayName(c) {
		writeError(ctx, errNameForbidden)
		return
	}
	dc := docCommand(ctx, d.ID)
	dc.VersionName = name
	dc.MaxNamed = uint64(s.cfg.MaxNamedVersionsPerDocument)
	dc.MaxNamedBytes = uint64(s.cfg.MaxNamedVersionBytesPerUser)
	v := d.Version
	if req.Version != nil {
		v, dc.Version = *req.Version, *req.Version
	} else {
		dc.Current = true
	}
	// The checks apply makes, here on this node's state. A repeated
	// Idempotency-Key skips them: its first answer is due.
	if w.key == "" {
		if d.Named(v) != nil {
			e := newError("conflict", "version "+strconv.FormatUint(v, 10)+" already has a name; delete it first")
			e.Details = map[string]any{"field": "version"}
			writeError(ctx, e)
			return
		}
		text, err := d.TextAt(v)
		if err != nil {
			writeError(ctx, err)
			return
		}
		nv := storage.NamedVersion{Name: name, Text: text}
		if n := len(d.NamedVersions()); dc.MaxNamed > 0 && uint64(n) >= dc.MaxNamed {
			err := &storage.Error{Kind: storage.KindQuotaExceeded, Limit: dc.MaxNamed, Field: "named_versions",
				Message: "the document has " + strconv.Itoa(n) + " named versions, the most it may; delete one first"}
			s.docLimits.count(err)
			writeError(ctx, err)
			return
		}
		if held := s.docs.NamedBytes(d.Owner); dc.MaxNamedBytes > 0 && uint64(held)+uint64(nv.Bytes()) > dc.MaxNamedBytes {
			err := &storage.Error{Kind: storage.KindQuotaExceeded, Limit: dc.MaxNamedBytes, Field: "named_version_bytes",
				Message: "the owner's named versions hold " + strconv.Itoa(held) + " bytes and this one " + strconv.Itoa(nv.Bytes()) +
					", beyond the " + strconv.FormatUint(dc.MaxNamedBytes, 10) + " an owner may keep; delete some first"}
			s.docLimits.count(err)
			writeError(ctx, err)
			return
		}
	}
	s.docWrite(ctx, w, storage.CmdDocVersion, dc, func(res storage.Result) {
		named := v
		if dc.Current && res.Doc != nil {
			named = res.Doc.Version // the version current when it applied
		}
		var nv *storage.NamedVersion
		if res.Doc != nil {
			nv = res.Doc.Named(named)
		}
		if nv == nil {
			// A repeat answered from a restored idempotency window, whose
			// document carries no named versions: the document has it.
			if cur := s.docs.Latest(dc.DocID); cur != nil {
				nv = cur.Named(named)
			}
		}
		if nv == nil {
			writeError(ctx, newError("not_found", "version "+strconv.FormatUint(named, 10)+" was named, and its name has been deleted since"))
			return
		}
		ctx.Response.Header.Set("Location", "/v1/docs/"+dc.DocID+"/versions/"+strconv.FormatUint(nv.Version, 10))
		writeJSON(ctx, http.StatusCreated, toNamedJSON(nv))
	})
}

// listVersions is GET /v1/docs/{id}/versions: the named versions, newest
// version first, for anyone who may read the document.
func (s *Server) listVersions(ctx *fasthttp.RequestCtx) {
	d, ok := s.readableDoc(ctx, s.deadline())
	if !ok {
		return
	}
	named := d.NamedVersions()
	items := make([]namedVersionJSON, len(named))
	for i := range named {
		items[len(named)-1-i] = toNamedJSON(&named[i])
	}
	writeJSON(ctx, http.StatusOK, struct {
		Items []namedVersionJSON `json:"items"`
	}{items})
}

// deleteVersion is DELETE /v1/docs/{id}/versions/{version}: the name goes
// (204), and with it the text unless the history still keeps it.
func (s *Server) deleteVersion(ctx *fasthttp.RequestCtx) {
	raw, _ := ctx.UserValue("version").(string)
	v, perr := strconv.ParseUint(raw, 10, 64)
	if perr != nil {
		writeError(ctx, badRequest("version must be an integer from 0 to "+maxUint64Text, "version"))
		return
	}
	w, ok := s.startWrite(ctx, nil)
	if !ok {
		return
	}
	d, ok := s.readableDoc(ctx, s.deadline())
	if !ok {
		return
	}
	if !d.MayName(callerOf(ctx).docCaller(d.ID)) {
		writeError(ctx, errNameForbidden)
		return
	}
	if w.key == "" && d.Named(v) == nil {
		writeError(ctx, newError("not_found", "version "+raw+" has no name"))
		return
	}
	dc := docCommand(ctx, d.ID)
	dc.Version, dc.Remove = v, true
	s.docWrite(ctx, w, storage.CmdDocVersion, dc, func(storage.Result) {
		ctx.SetStatusCode(http.StatusNoContent)
	})
}
