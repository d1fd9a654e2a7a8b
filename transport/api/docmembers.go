package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
)

// A document's members and share links (API.md, "Roles and share
// links"): PUT/DELETE /v1/docs/{id}/members/{user_id} and the older
// /editors/{user_id}; POST/GET /v1/docs/{id}/links and DELETE
// /v1/docs/{id}/links/{link_id}. Owner or admin only: apply checks it
// (Doc.Access: manage) on every node, and the listing of links here.

type docMemberRequest struct {
	Role *string `json:"role"`
}

// docMember gives a user a role (PUT /members/{user_id} {"role"}), or
// removes it (DELETE).
func (s *Server) docMember(remove bool) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		var req docMemberRequest
		var body any
		if !remove {
			body = &req
		}
		w, ok := s.startWrite(ctx, body)
		if !ok {
			return
		}
		role := storage.DocRole(0)
		if !remove {
			r, ok := storage.ParseDocRole(stringOf(req.Role))
			if !ok {
				writeError(ctx, badRequest(`role is required: "viewer" or "editor"`, "role"))
				return
			}
			role = r
		}
		s.setMember(ctx, w, role, remove)
	}
}

// docEditor is PUT/DELETE /v1/docs/{id}/editors/{user_id}: the member
// routes with role editor (a DELETE removes the member whatever its
// role).
func (s *Server) docEditor(remove bool) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		w, ok := s.startWrite(ctx, nil)
		if !ok {
			return
		}
		s.setMember(ctx, w, storage.DocEditor, remove)
	}
}

func (s *Server) setMember(ctx *fasthttp.RequestCtx, w writeRequest, role storage.DocRole, remove bool) {
	dc := docCommand(ctx, docID(ctx))
	dc.Editor, _ = ctx.UserValue("user_id").(string)
	dc.Role, dc.Remove = role, remove
	dc.MaxMembers = uint64(s.cfg.MaxMembersPerDocument)
	// Checked here first so that a refusal costs no log entry; apply
	// checks again, in log order.
	if _, _, valid := storage.ParseUserID(dc.Editor); valid && !remove && !s.memberQuotaLeft(ctx, dc) {
		return
	}
	s.docWrite(ctx, w, storage.CmdDocMember, dc, func(storage.Result) {
		ctx.SetStatusCode(http.StatusNoContent)
	})
}

// memberQuotaLeft answers quota_exceeded and returns false if the
// document holds as many members as it may and dc would add one (to a
// caller that may manage it: others get apply's forbidden).
func (s *Server) memberQuotaLeft(ctx *fasthttp.RequestCtx, dc *storage.DocCommand) bool {
	d := s.docs.Latest(dc.DocID)
	if d == nil || d.RoleOf(dc.Editor) != 0 || d.Access(callerOf(ctx).docCaller(d.ID), s.nowMs()) < storage.AccessManage {
		return true
	}
	if err := storage.CheckMemberQuota(d.MemberCount(), dc.MaxMembers); err != nil {
		s.docLimits.count(err)
		writeError(ctx, err)
		return false
	}
	return true
}

type linkRequest struct {
	Role       *string `json:"role"`
	ExpiresInS *uint64 `json:"expires_in_s"`
}

// linkJSON is a share link as answered: its token only in the answer
// to the POST that created it.
type linkJSON struct {
	ID        string  `json:"id"`
	Token     *string `json:"token,omitempty"`
	Role      string  `json:"role"`
	ExpiresAt *string `json:"expires_at"`
	CreatedAt string  `json:"created_at"`
	CreatedBy string  `json:"created_by"`
}

func toLinkJSON(l *storage.ShareLink) linkJSON {
	j := linkJSON{ID: l.ID, Role: l.Role.String(), CreatedAt: formatTime(l.CreatedMs), CreatedBy: l.CreatedBy}
	if l.ExpiresMs != 0 {
		at := formatTime(l.ExpiresMs)
		j.ExpiresAt = &at
	}
	return j
}

// createLink is POST /v1/docs/{id}/links {"role","expires_in_s"?}. The
// token (128 random bits) and the link's id are made here; only the
// token's hash enters the log, and the token is answered once.
func (s *Server) createLink(ctx *fasthttp.RequestCtx) {
	var req linkRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	role, ok := storage.ParseDocRole(stringOf(req.Role))
	if !ok {
		writeError(ctx, badRequest(`role is required: "viewer" or "editor"`, "role"))
		return
	}
	dc := docCommand(ctx, docID(ctx))
	if req.ExpiresInS != nil {
		if *req.ExpiresInS < 1 || *req.ExpiresInS > storage.MaxLinkExpiresInS {
			writeError(ctx, badRequest("expires_in_s must be from 1 to "+strconv.Itoa(storage.MaxLinkExpiresInS)+" (366 days), or left out for a link that does not expire", "expires_in_s"))
			return
		}
		dc.ExpiresInS = *req.ExpiresInS
	}
	var secret [storage.ShareTokenBytes]byte
	if _, err := rand.Read(secret[:]); err != nil {
		writeError(ctx, newError("internal", "no randomness for a share token"))
		return
	}
	token := hex.EncodeToString(secret[:])
	dc.Role, dc.LinkID, dc.LinkHash = role, linkID(dc.DocID, w.key), storage.ShareTokenHash(dc.DocID, token)
	dc.MaxLinks = uint64(s.cfg.MaxLinksPerDocument)
	// (Not for a repeat, which names a link that exists: its first answer
	// is due.)
	if d := s.docs.Latest(dc.DocID); d != nil && d.Link(dc.LinkID) == nil && d.Access(callerOf(ctx).docCaller(d.ID), s.nowMs()) >= storage.AccessManage {
		live := 0
		for _, l := range d.Links() {
			if !l.Expired(s.nowMs()) {
				live++
			}
		}
		if err := storage.CheckLinkQuota(live, dc.MaxLinks); err != nil {
			s.docLimits.count(err)
			writeError(ctx, err)
			return
		}
	}
	s.docWrite(ctx, w, storage.CmdDocLink, dc, func(res storage.Result) {
		l := res.Doc.Link(dc.LinkID)
		if l == nil {
			writeError(ctx, newError("internal", "the link is missing from the result"))
			return
		}
		j := toLinkJSON(l)
		// A repeated Idempotency-Key answers the first request's link,
		// whose token was answered then and is kept nowhere: without it.
		if l.Hash == dc.LinkHash {
			j.Token = &token
		}
		ctx.Response.Header.Set("Location", "/v1/docs/"+dc.DocID+"/links/"+l.ID)
		writeJSON(ctx, http.StatusCreated, j)
	})
}

// listLinks is GET /v1/docs/{id}/links: the links not expired, without
// their tokens.
func (s *Server) listLinks(ctx *fasthttp.RequestCtx) {
	deadline := s.deadline()
	if !s.readGate(ctx, deadline) {
		return
	}
	d, err := s.docs.Get(docID(ctx), deadline)
	if err != nil {
		writeError(ctx, err)
		return
	}
	if s.access(ctx, d) < storage.AccessManage {
		writeError(ctx, newError("forbidden", "only the document's owner and admins may list its share links"))
		return
	}
	now := s.nowMs()
	items := []linkJSON{}
	for _, l := range d.Links() {
		if !l.Expired(now) {
			items = append(items, toLinkJSON(&l))
		}
	}
	writeJSON(ctx, http.StatusOK, map[string][]linkJSON{"items": items})
}

// revokeLink is DELETE /v1/docs/{id}/links/{link_id}: streams opened
// with the link end within a second (package stream).
func (s *Server) revokeLink(ctx *fasthttp.RequestCtx) {
	w, ok := s.startWrite(ctx, nil)
	if !ok {
		return
	}
	dc := docCommand(ctx, docID(ctx))
	dc.LinkID, _ = ctx.UserValue("link_id").(string)
	dc.Remove = true
	s.docWrite(ctx, w, storage.CmdDocLink, dc, func(storage.Result) {
		ctx.SetStatusCode(http.StatusNoContent)
	})
}

// linkID is a new link's id: derived from the request's (scoped)
// Idempotency-Key when it has one, so that a repeat names the same link,
// else random. Link ids are not secrets.
func linkID(docID, key string) string {
	var id [storage.LinkIDBytes / 2]byte
	if key == "" {
		_, _ = rand.Read(id[:])
	} else {
		h := sha256.Sum256([]byte("troupe-link-id\x00" + docID + "\x00" + key))
		copy(id[:], h[:])
	}
	return hex.EncodeToString(id[:])
}

func stringOf(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
