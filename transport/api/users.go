package api

import (
	"encoding/base64"
	"errors"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/replica"
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

type batchRequest struct {
	Users *[]createUserRequest `json:"users"`
}

type batchItemResult struct {
	Status int       `json:"status"`
	User   *userJSON `json:"user,omitempty"`
	Error  *apiError `json:"error,omitempty"`
}

type listResponse struct {
	Items []userJSON `json:"items"`
	Next  *string    `json:"next"`
}

// usersOrUnavailable returns the user shards or answers 503.
func (s *Server) usersOrUnavailable(ctx *fasthttp.RequestCtx) Users {
	u := s.users()
	if u == nil {
		writeError(ctx, errNotInitialised)
	}
	return u
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
	if err = storage.CheckLabel("name", *r.Name); err != nil {
		return nu, err
	}
	if nu.Name, err = storage.NormalizeName("name", *r.Name); err != nil {
		return nu, err
	}
	if err = storage.CheckLabel("email", *r.Email); err != nil {
		return nu, err
	}
	if nu.Email, err = storage.NormalizeEmail("email", *r.Email); err != nil {
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

// idempotency reads the Idempotency-Key header and fingerprints the
// request, so a key reused for a different request is refused.
func idempotency(ctx *fasthttp.RequestCtx) (string, uint64, *apiError) {
	key := ctx.Request.Header.Peek("Idempotency-Key")
	if len(key) == 0 {
		return "", 0, nil
	}
	if len(key) > 255 {
		return "", 0, badRequest("Idempotency-Key must be at most 255 characters", "Idempotency-Key")
	}
	for _, c := range key {
		if c < 0x21 || c > 0x7e {
			return "", 0, badRequest("Idempotency-Key must be printable ASCII without spaces", "Idempotency-Key")
		}
	}
	h := fnv.New64a()
	for _, part := range [][]byte{ctx.Method(), ctx.Path(), ctx.Request.Header.Peek("If-Match"), ctx.PostBody()} {
		h.Write(part)
		h.Write([]byte{0})
	}
	return string(key), h.Sum64(), nil
}

// writeRequest is what every write handler starts with: the user shards,
// the decoded body (when req is not nil) and the idempotency key. ok is
// false when it has already answered.
type writeRequest struct {
	users Users
	key   string
	fp    uint64
	// forward, if set, lets a follower send the command to the leader (the
	// handler runs here, not behind leaderOnly); it is the handler to
	// forward the request to the leader as HTTP instead, should the leader
	// not take commands.
	forward fasthttp.RequestHandler
}

func (s *Server) startWrite(ctx *fasthttp.RequestCtx, req any) (w writeRequest, ok bool) {
	if w.users = s.usersOrUnavailable(ctx); w.users == nil {
		return w, false
	}
	if req != nil {
		if e := decodeJSON(ctx.PostBody(), req); e != nil {
			writeError(ctx, e)
			return w, false
		}
	}
	var e *apiError
	if w.key, w.fp, e = idempotency(ctx); e != nil {
		writeError(ctx, e)
		return w, false
	}
	if w.key != "" {
		// Keys are scoped by caller: one user's key never answers
		// another's request.
		scope := "-"
		if c := callerOf(ctx); c.user != nil {
			scope = c.user.ID
		}
		w.key = scope + ":" + w.key
	}
	return w, true
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

// propose sends cmd through the cluster and writes the error response if
// it failed. It sets X-Troupe-Index whenever the index is known.
func (s *Server) propose(ctx *fasthttp.RequestCtx, cmd *storage.Command, deadline time.Time) (storage.Result, bool) {
	res, idx, err := s.node.Propose(cmd, deadline)
	return res, settled(ctx, res, idx, err)
}

// settled sets X-Troupe-Index (when idx is known) and writes the error
// response of a proposal that failed or was refused; true means it
// succeeded and the caller answers.
func settled(ctx *fasthttp.RequestCtx, res storage.Result, idx uint64, err error) bool {
	setIndex(ctx, idx)
	if err != nil {
		writeError(ctx, err)
		return false
	}
	if res.Err != nil {
		writeError(ctx, res.Err)
		return false
	}
	return true
}

// proposeVia proposes cmd here or, for a write that may be forwarded as a
// command and reached a follower, through the leader.
func (s *Server) proposeVia(ctx *fasthttp.RequestCtx, w writeRequest, cmd *storage.Command, deadline time.Time) (storage.Result, bool) {
	if w.forward == nil {
		return s.propose(ctx, cmd, deadline)
	}
	var res storage.Result
	var idx uint64
	var err error
	if s.node.IsLeader() {
		res, idx, err = s.node.Propose(cmd, deadline)
	} else {
		err = replica.ErrNotLeader
	}
	if errors.Is(err, replica.ErrNotLeader) {
		// Never entered the log here: the leader takes it.
		if cmd.RequestID == "" {
			cmd.RequestID = forwardedRequestID(ctx)
		}
		res, idx, err = s.forwardCommand(ctx, cmd, deadline)
		if errors.Is(err, errForwardUnsupported) {
			// Nothing was applied: the leader takes the request as HTTP.
			s.forward(ctx, w.forward)
			return res, false
		}
	}
	return res, settled(ctx, res, idx, err)
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

// createFrom creates the user a create or register request describes.
func (s *Server) createFrom(ctx *fasthttp.RequestCtx, w writeRequest, req *createUserRequest) {
	users, key, fp := w.users, w.key, w.fp
	nu, serr := validateNewUser(req, false)
	if serr != nil {
		writeError(ctx, serr)
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

// readOptions parses ?consistency= and ?min_index=.
func readOptions(ctx *fasthttp.RequestCtx) (replica.Consistency, uint64, *apiError) {
	args := ctx.QueryArgs()
	c := replica.Linearizable
	switch v := string(args.Peek("consistency")); v {
	case "", "linearizable":
	case "stale":
		c = replica.Stale
	default:
		return c, 0, badRequest("consistency must be \"linearizable\" or \"stale\"", "consistency")
	}
	var minIndex uint64
	if v := args.Peek("min_index"); len(v) > 0 {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return c, 0, badRequest("min_index must be an integer from 0 to "+maxUint64Text, "min_index")
		}
		minIndex = n
	}
	return c, minIndex, nil
}

// readGate applies the read's consistency; false means it answered.
func (s *Server) readGate(ctx *fasthttp.RequestCtx, deadline time.Time) bool {
	c, minIndex, e := readOptions(ctx)
	if e != nil {
		writeError(ctx, e)
		return false
	}
	if err := s.node.ReadBarrier(c, minIndex, deadline); err != nil {
		writeError(ctx, err)
		return false
	}
	return true
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
	u, err := users.Get(pathID(ctx), deadline)
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
		if serr = storage.CheckLabel("name", *req.Name); serr != nil {
			writeError(ctx, serr)
			return
		}
		if p.Name, serr = storage.NormalizeName("name", *req.Name); serr != nil {
			writeError(ctx, serr)
			return
		}
	}
	if req.Email != nil {
		p.Fields |= storage.PatchEmail
		if serr = storage.CheckLabel("email", *req.Email); serr != nil {
			writeError(ctx, serr)
			return
		}
		if p.Email, serr = storage.NormalizeEmail("email", *req.Email); serr != nil {
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
		ok, err := s.verifyPassword(*req.CurrentPassword, c.user.PasswordHash, deadline)
		if err != nil {
			writeError(ctx, err)
			return
		}
		if !ok || c.user.PasswordHash == "" {
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
	if !s.readGate(ctx, deadline) {
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
	if !s.readGate(ctx, deadline) {
		return
	}
	n, err := users.Count(q, deadline)
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusOK, map[string]int{"count": n})
}

// batchUsers creates up to MaxBatch users as one log entry. Items that
// fail validation get their error here and never enter the log; the rest
// are applied together, in order, and their results merged back.
func (s *Server) batchUsers(ctx *fasthttp.RequestCtx) {
	var req batchRequest
	w, ok := s.startWrite(ctx, &req)
	if !ok {
		return
	}
	users, key, fp := w.users, w.key, w.fp
	if req.Users == nil {
		writeError(ctx, badRequest("users is required", "users"))
		return
	}
	items := *req.Users
	if len(items) == 0 || len(items) > storage.MaxBatch {
		writeError(ctx, badRequest("users must hold 1 to 1000 items", "users"))
		return
	}
	results := make([]batchItemResult, len(items))
	valid := make([]storage.NewUser, 0, len(items))
	positions := make([]int, 0, len(items))
	var toHash []int // indexes into valid
	for i := range items {
		nu, serr := validateNewUser(&items[i], true)
		if serr != nil {
			if serr.Field != "" {
				serr.Field = "users[" + strconv.Itoa(i) + "]." + serr.Field
			}
			results[i] = batchItemResult{Status: http.StatusBadRequest, Error: storageError(serr)}
			continue
		}
		if items[i].Password != nil {
			toHash = append(toHash, len(valid))
		}
		valid = append(valid, nu)
		positions = append(positions, i)
	}
	deadline := s.deadline()
	if len(toHash) > 0 {
		// Hashing is the slow part of a batch with passwords: run it on all
		// the hashing slots at once. It gets its own time budget.
		hashDeadline := time.Now().Add(time.Duration(len(toHash)) * time.Second)
		var wg sync.WaitGroup
		var firstErr error
		var mu sync.Mutex
		for _, vi := range toHash {
			wg.Add(1)
			go func(vi int) {
				defer wg.Done()
				h, err := s.hasher.Hash(*items[positions[vi]].Password, hashDeadline)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				valid[vi].PasswordHash = h
			}(vi)
		}
		wg.Wait()
		if firstErr != nil {
			writeError(ctx, firstErr)
			return
		}
		deadline = s.deadline()
	}
	if len(valid) > 0 {
		stamp := s.node.Stamps(len(valid))
		cmd := &storage.Command{Kind: storage.CmdUserBatch, Stamp: stamp, RequestID: key, Fingerprint: fp,
			Batch: make([]storage.BatchItem, len(valid))}
		for i, nu := range valid {
			cmd.Batch[i] = storage.BatchItem{ID: storage.MakeUserID(stamp+uint64(i), users.HomeShardFor(nu.Email)), User: nu}
		}
		res, ok := s.propose(ctx, cmd, deadline)
		if !ok {
			return
		}
		if len(res.Items) != len(valid) {
			writeError(ctx, newError("internal", "batch result does not match the batch"))
			return
		}
		for i, r := range res.Items {
			pos := positions[i]
			if r.Err != nil {
				ae := storageError(r.Err)
				results[pos] = batchItemResult{Status: ae.Status, Error: ae}
				continue
			}
			uj := toUserJSON(r.User)
			results[pos] = batchItemResult{Status: http.StatusCreated, User: &uj}
		}
	}
	writeJSON(ctx, http.StatusOK, map[string][]batchItemResult{"results": results})
}
