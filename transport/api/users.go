package api

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
)

type createUserRequest struct {
	Name         *string `json:"name"`
	Email        *string `json:"email"`
	Password     *string `json:"password"`
	PasswordHash *string `json:"password_hash"` // batch items only
	Role         *string `json:"role"`
}

type patchUserRequest struct {
	Name            *string `json:"name"`
	Email           *string `json:"email"`
	Password        *string `json:"password"`
	CurrentPassword *string `json:"current_password"`
	Role            *string `json:"role"`
}

type listResponse struct {
	Items []userJSON `json:"items"`
	Next  *string    `json:"next"`
}

// usersOrUnavailable returns the user shards or answers 503.
func (s *Server) usersOrUnavailable(ctx *fasthttp.RequestCtx) Users {
	u := s.users()
	if u == nil {
		writeError(ctx, s.node.NotInitialised())
	}
	return u
}

// userName checks a user's name as a label (no invalid UTF-8, controls or
// bidi overrides) and normalises it: field "name".
func userName(s string) (string, *storage.Error) {
	if err := storage.CheckLabel("name", s); err != nil {
		return "", err
	}
	return storage.NormalizeName("name", s)
}

// userEmail does the same for an email address: field "email".
func userEmail(s string) (string, *storage.Error) {
	if err := storage.CheckLabel("email", s); err != nil {
		return "", err
	}
	return storage.NormalizeEmail("email", s)
}

// validateNewUser normalises a create request. allowHash says whether
// password_hash may be given (batch imports).
func validateNewUser(r *createUserRequest, allowHash bool) (storage.NewUser, *storage.Error) {
	var nu storage.NewUser
	if r.Name == nil {
		return nu, &storage.Error{Kind: storage.KindBadRequest, Field: "name", Message: "name is required"}
	}
	if r.Email == nil {
		return nu, &storage.Error{Kind: storage.KindBadRequest, Field: "email", Message: "email is required"}
	}
	var err *storage.Error
	if nu.Name, err = userName(*r.Name); err != nil {
		return nu, err
	}
	if nu.Email, err = userEmail(*r.Email); err != nil {
		return nu, err
	}
	nu.Role = storage.RoleUser
	if r.Role != nil {
		if nu.Role, err = storage.ParseRole(*r.Role); err != nil {
			return nu, err
		}
	}
	switch {
	case r.PasswordHash != nil && !allowHash:
		return nu, &storage.Error{Kind: storage.KindBadRequest, Field: "password_hash", Message: "password_hash is accepted only in batch imports"}
	case r.PasswordHash != nil && r.Password != nil:
		return nu, &storage.Error{Kind: storage.KindBadRequest, Field: "password_hash", Message: "give password or password_hash, not both"}
	case r.PasswordHash != nil:
		if _, perr := storage.ParsePHC(*r.PasswordHash); perr != nil {
			return nu, &storage.Error{Kind: storage.KindBadRequest, Field: "password_hash", Message: "password_hash: " + perr.Error()}
		}
		nu.PasswordHash = *r.PasswordHash
	case r.Password != nil:
		if err := storage.CheckPassword("password", *r.Password); err != nil {
			return nu, err
		}
	}
	return nu, nil
}

var errEmailTaken = &storage.Error{Kind: storage.KindConflict, Field: "email", Message: "a user with this email already exists"}

// emailTaken is the optimistic uniqueness check on this node's state: a
// conflict caught here costs no log entry (a retry under an
// Idempotency-Key skips it, to get the first answer). Apply makes the
// authoritative check, with the same error. It reads only shards that are
// idle, never waiting on a busy one: a busy shard, like a failed lookup,
// says "not taken" and leaves the decision to apply.
func emailTaken(users Users, email, exceptID string) bool {
	return users.EmailTakenIfIdle(email, exceptID)
}

// selfOrAdmin lets the caller act on user id only if it is that user or
// an admin; otherwise it answers 403.
func selfOrAdmin(ctx *fasthttp.RequestCtx, id string) (*caller, bool) {
	c := callerOf(ctx)
	if c.admin || c.is(id) {
		return c, true
	}
	writeError(ctx, newError("forbidden", "users may act only on themselves"))
	return c, false
}

func (s *Server) createUser(ctx *fasthttp.RequestCtx) {
	forwarded := len(ctx.Request.Header.Peek(forwardedHeader)) > 0
	if !forwarded && !s.node.IsLeader() && !s.canForwardCommands() {
		s.forward(ctx, s.createUser)
		return
	}
	var req createUserRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	if !forwarded {
		w.forward = s.createUser
	}
	s.createFrom(ctx, w, &req)
}

// roomForUsers answers 403 quota_exceeded (details.field "users") and
// returns false if n more users would take the cluster past --max-users,
// as far as this node has applied it: checked before a create is hashed
// or proposed, so a refusal costs nothing.
func (s *Server) roomForUsers(ctx *fasthttp.RequestCtx, users Users, n int) bool {
	if users.Total()+int64(n) <= s.cfg.MaxUsers {
		return true
	}
	s.usersRefused.Inc()
	writeError(ctx, &storage.Error{Kind: storage.KindQuotaExceeded, Field: "users", Limit: uint64(s.cfg.MaxUsers),
		Message: fmt.Sprintf("the cluster holds its maximum of %d users (--max-users)", s.cfg.MaxUsers)})
	return false
}

// createFrom creates the user a create or register request describes.
func (s *Server) createFrom(ctx *fasthttp.RequestCtx, w writeRequest, req *createUserRequest) {
	users, key, fp := w.users, w.key, w.fp
	nu, serr := validateNewUser(req, false)
	if serr != nil {
		writeError(ctx, serr)
		return
	}
	if !s.roomForUsers(ctx, users, 1) {
		return
	}
	deadline := s.deadline()
	if key == "" && emailTaken(users, nu.Email, "") {
		writeError(ctx, errEmailTaken)
		return
	}
	if req.Password != nil {
		h, err := s.hasher.Hash(*req.Password, deadline)
		if err != nil {
			writeError(ctx, err)
			return
		}
		nu.PasswordHash = h
	}
	stamp := s.node.Stamps(1)
	cmd := &storage.Command{Kind: storage.CmdUserCreate, Stamp: stamp, RequestID: key, Fingerprint: fp,
		Create: &storage.BatchItem{ID: storage.MakeUserID(stamp, users.HomeShardFor(nu.Email)), User: nu}}
	res, ok := s.proposeVia(ctx, w, cmd, deadline)
	if !ok {
		return
	}
	var loc [64]byte
	ctx.Response.Header.SetBytesV("Location", append(append(loc[:0], "/v1/users/"...), res.User.ID...))
	writeUser(ctx, http.StatusCreated, res.User)
}

func pathID(ctx *fasthttp.RequestCtx) string {
	id, _ := ctx.UserValue("id").(string)
	return id
}

func (s *Server) getUser(ctx *fasthttp.RequestCtx) {
	if _, ok := selfOrAdmin(ctx, pathID(ctx)); !ok {
		return
	}
	users := s.usersOrUnavailable(ctx)
	if users == nil {
		return
	}
	deadline := s.deadline()
	if !s.readGate(ctx, deadline) {
		return
	}
	u, err := users.GetProfile(pathID(ctx), deadline)
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeUser(ctx, http.StatusOK, u)
}

// parseIfMatch turns an If-Match header into the version it requires:
// 0 for none or "*", math.MaxUint64 (matches nothing) for a tag that is
// not one of ours.
func parseIfMatch(v []byte) uint64 {
	s := strings.TrimSpace(string(v))
	if s == "" || s == "*" {
		return 0
	}
	if strings.HasPrefix(s, "W/") {
		return math.MaxUint64 // If-Match compares strongly (RFC 9110): a weak tag never matches
	}
	s = strings.Trim(s, `"`)
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return math.MaxUint64
	}
	return n
}

func (s *Server) patchUser(ctx *fasthttp.RequestCtx) {
	id := pathID(ctx)
	c, ok := selfOrAdmin(ctx, id)
	if !ok {
		return
	}
	var req patchUserRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	users, key, fp := w.users, w.key, w.fp
	if _, _, ok := storage.ParseUserID(id); !ok {
		writeError(ctx, &storage.Error{Kind: storage.KindNotFound, Message: "no user with id " + id})
		return
	}
	p := &storage.UserPatch{ID: id, IfVersion: parseIfMatch(ctx.Request.Header.Peek("If-Match"))}
	var serr *storage.Error
	if req.Name != nil {
		p.Fields |= storage.PatchName
		if p.Name, serr = userName(*req.Name); serr != nil {
			writeError(ctx, serr)
			return
		}
	}
	if req.Email != nil {
		p.Fields |= storage.PatchEmail
		if p.Email, serr = userEmail(*req.Email); serr != nil {
			writeError(ctx, serr)
			return
		}
	}
	if req.Role != nil && !c.admin {
		writeError(ctx, newError("forbidden", "users may not change their own role"))
		return
	}
	if req.Role != nil {
		p.Fields |= storage.PatchRole
		if p.Role, serr = storage.ParseRole(*req.Role); serr != nil {
			writeError(ctx, serr)
			return
		}
	}
	if req.Password != nil {
		if serr = storage.CheckPassword("password", *req.Password); serr != nil {
			writeError(ctx, serr)
			return
		}
	}
	deadline := s.deadline()
	if req.CurrentPassword != nil && req.Password == nil {
		writeError(ctx, badRequest("current_password goes with password", "current_password"))
		return
	}
	if req.Password != nil && c.is(id) {
		// Changing one's own password needs the current one: a stolen
		// access token alone cannot take the account over.
		if req.CurrentPassword == nil {
			writeError(ctx, badRequest("current_password is required to change your own password", "current_password"))
			return
		}
		self, err := users.Get(c.uid, deadline)
		if err != nil {
			writeError(ctx, err)
			return
		}
		ok, err := s.verifyPassword(*req.CurrentPassword, self.PasswordHash, deadline)
		if err != nil {
			writeError(ctx, err)
			return
		}
		if !ok || self.PasswordHash == "" {
			writeError(ctx, newError("forbidden", "current_password is wrong"))
			return
		}
	}
	if p.Fields&storage.PatchEmail != 0 && key == "" && emailTaken(users, p.Email, id) {
		writeError(ctx, errEmailTaken)
		return
	}
	if req.Password != nil {
		h, err := s.hasher.Hash(*req.Password, deadline)
		if err != nil {
			writeError(ctx, err)
			return
		}
		p.Fields |= storage.PatchPassword
		p.PasswordHash = h
	}
	cmd := &storage.Command{Kind: storage.CmdUserPatch, Stamp: s.node.Stamps(1), RequestID: key, Fingerprint: fp, Patch: p}
	res, ok := s.propose(ctx, cmd, deadline)
	if !ok {
		return
	}
	ctx.Response.Header.Set("ETag", etag(res.User.Version))
	writeJSON(ctx, http.StatusOK, toUserJSON(res.User))
}

func (s *Server) deleteUser(ctx *fasthttp.RequestCtx) {
	id := pathID(ctx)
	if _, ok := selfOrAdmin(ctx, id); !ok {
		return
	}
	w, ok := s.startWrite(ctx, nil)
	if !ok {
		return
	}
	key, fp := w.key, w.fp
	if _, _, ok := storage.ParseUserID(id); !ok {
		writeError(ctx, &storage.Error{Kind: storage.KindNotFound, Message: "no user with id " + id})
		return
	}
	cmd := &storage.Command{Kind: storage.CmdUserDelete, Stamp: s.node.Stamps(1), RequestID: key, Fingerprint: fp, Delete: id}
	if _, ok := s.propose(ctx, cmd, s.deadline()); !ok {
		return
	}
	ctx.SetStatusCode(http.StatusNoContent)
}

// Cursors are opaque to clients: the base64url form of the last id.
func encodeCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func decodeCursor(c string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", false
	}
	if _, _, ok := storage.ParseUserID(string(b)); !ok {
		return "", false
	}
	return string(b), true
}

// listLimit reads ?limit= (default 50, at most 1000), or answers 400.
func listLimit(ctx *fasthttp.RequestCtx) (int, bool) {
	v := ctx.QueryArgs().Peek("limit")
	if len(v) == 0 {
		return defaultListLimit, true
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 || n > maxListLimit {
		writeError(ctx, badRequest("limit must be an integer from 1 to 1000", "limit"))
		return 0, false
	}
	return n, true
}

// Listing limits (API.md).
const (
	defaultListLimit = 50
	maxListLimit     = 1000
	maxQueryRunes    = 200
)

func (s *Server) listUsers(ctx *fasthttp.RequestCtx) {
	users := s.usersOrUnavailable(ctx)
	if users == nil {
		return
	}
	args := ctx.QueryArgs()
	limit, ok := listLimit(ctx)
	if !ok {
		return
	}
	after := ""
	if v := args.Peek("after"); len(v) > 0 {
		id, ok := decodeCursor(string(v))
		if !ok {
			writeError(ctx, badRequest("after is not a valid cursor", "after"))
			return
		}
		after = id
	}
	q, e := queryText(ctx)
	if e != nil {
		writeError(ctx, e)
		return
	}
	deadline := s.deadline()
	if !s.listGate(ctx, deadline) {
		return
	}
	list, more, err := users.List(after, q, limit, deadline)
	if err != nil {
		writeError(ctx, err)
		return
	}
	resp := listResponse{Items: make([]userJSON, len(list))}
	for i, u := range list {
		resp.Items[i] = toUserJSON(u)
	}
	if more {
		next := encodeCursor(list[len(list)-1].ID)
		resp.Next = &next
	}
	writeJSON(ctx, http.StatusOK, resp)
}

func queryText(ctx *fasthttp.RequestCtx) (string, *apiError) {
	q := string(ctx.QueryArgs().Peek("q"))
	if len([]rune(q)) > maxQueryRunes {
		return "", badRequest("q must be at most 200 characters", "q")
	}
	return q, nil
}

func (s *Server) countUsers(ctx *fasthttp.RequestCtx) {
	users := s.usersOrUnavailable(ctx)
	if users == nil {
		return
	}
	q, e := queryText(ctx)
	if e != nil {
		writeError(ctx, e)
		return
	}
	deadline := s.deadline()
	if !s.listGate(ctx, deadline) {
		return
	}
	n, err := users.Count(q, deadline)
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusOK, map[string]int{"count": n})
}
