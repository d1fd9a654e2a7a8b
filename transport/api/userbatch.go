package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
)

// POST /v1/users/batch: many users created in one command (API.md, Users).

type batchRequest struct {
	Users *[]createUserRequest `json:"users"`
}

type batchItemResult struct {
	Status int       `json:"status"`
	User   *userJSON `json:"user,omitempty"`
	Error  *apiError `json:"error,omitempty"`
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
	if len(valid) > 0 && !s.roomForUsers(ctx, users, len(valid)) {
		return
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
