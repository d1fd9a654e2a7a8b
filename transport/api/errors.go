package api

import (
	"errors"
	"maps"
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// apiError is the body of every error response (API.md):
// {"error":{"code","message","details"}}.
type apiError struct {
	Status  int            `json:"-"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

type errorBody struct {
	Error *apiError `json:"error"`
}

// Error codes and their statuses: the one table of API.md's conventions.
var codeStatus = map[string]int{
	"bad_request":         http.StatusBadRequest,
	"unauthenticated":     http.StatusUnauthorized,
	"link_expired":        http.StatusUnauthorized, // a share link past its expires_at
	"forbidden":           http.StatusForbidden,
	"not_found":           http.StatusNotFound,
	"method_not_allowed":  http.StatusMethodNotAllowed,
	"conflict":            http.StatusConflict,
	"version_too_old":     http.StatusConflict,
	"gone":                http.StatusGone,
	"precondition_failed": http.StatusPreconditionFailed,
	"payload_too_large":   http.StatusRequestEntityTooLarge,
	"quota_exceeded":      http.StatusForbidden,
	// A webhook target on a network webhooks may not reach (SSRF guard).
	"target_not_allowed": http.StatusBadRequest,
	"rate_limited":       http.StatusTooManyRequests,
	"internal":           http.StatusInternalServerError,
	"unavailable":        http.StatusServiceUnavailable,
	"timeout":            http.StatusGatewayTimeout,

	// Answered by parseError: the request line and headers were too big.
	"request_header_fields_too_large": http.StatusRequestHeaderFieldsTooLarge,
}

func newError(code, message string) *apiError {
	return &apiError{Status: codeStatus[code], Code: code, Message: message}
}

func badRequest(format string, field string) *apiError {
	e := newError("bad_request", format)
	if field != "" {
		e.Details = map[string]any{"field": field}
	}
	return e
}

// toAPIError maps every error the lower layers return to its API code.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var se *storage.Error
	if errors.As(err, &se) {
		return storageError(se)
	}
	var ge *storage.GoneError
	if errors.As(err, &ge) {
		e := newError("gone", ge.Error())
		e.Details = map[string]any{"field": ge.Field, "oldest": ge.Oldest}
		return e
	}
	if wf, ok := errors.AsType[*replica.WindowFullError](err); ok {
		e := newError("unavailable", wf.Error())
		e.Details = map[string]any{"limit": wf.Limit}
		return e
	}
	switch {
	case errors.Is(err, replica.ErrOutcomeUnknown):
		e := newError("unavailable", "the write may or may not have been applied; retry with the same Idempotency-Key")
		e.Details = map[string]any{"outcome": "unknown"}
		return e
	case errors.Is(err, replica.ErrNotLeader):
		return newError("unavailable", "no leader is reachable from this node now (an election, or a partition); retry, or send the request to the leader named in X-Troupe-Leader")
	case errors.Is(err, replica.ErrNotReady):
		return newError("unavailable", err.Error())
	case errors.Is(err, replica.ErrShutdown):
		return newError("unavailable", "the node is shutting down")
	case errors.Is(err, replica.ErrTimeout), errors.Is(err, actors.ErrTimeout):
		return newError("timeout", "the request did not complete in time")
	}
	return newError("internal", "internal error")
}

func storageError(se *storage.Error) *apiError {
	code := se.Kind.String()
	if _, ok := codeStatus[code]; !ok {
		code = "internal"
	}
	e := newError(code, se.Message)
	if se.Field != "" {
		e.Details = map[string]any{"field": se.Field}
	}
	if se.Limit != 0 {
		if e.Details == nil {
			e.Details = map[string]any{}
		}
		e.Details["limit"] = se.Limit
	}
	return e
}

// writeError writes err in the documented shape.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	e := toAPIError(err)
	if e.Status == 0 {
		e.Status = http.StatusInternalServerError
	}
	if e.Status == http.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	if e.Status >= 500 {
		// The operator finds the request's spans by this id.
		if id := requestTraceID(ctx); id != "" {
			c := *e
			c.Details = maps.Clone(e.Details)
			if c.Details == nil {
				c.Details = map[string]any{}
			}
			c.Details["trace_id"] = id
			e = &c
		}
	}
	writeJSON(ctx, e.Status, errorBody{Error: e})
}

func setIndex(ctx *fasthttp.RequestCtx, index uint64) {
	if index > 0 {
		ctx.Response.Header.Set("X-Troupe-Index", strconv.FormatUint(index, 10))
	}
}
