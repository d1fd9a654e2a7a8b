package client

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
)

// APIError is a non-2xx answer of a node, parsed from the documented
// body {"error":{"code","message","details"}}. A body that is not in
// that shape (a proxy's HTML page, say) still gives an APIError: Code is
// then the contract's code for the status, if it has one, and Message
// the start of the body or the status text.
type APIError struct {
	Status  int            // HTTP status
	Code    string         // API.md's error code, e.g. "not_found"
	Message string         // human-readable
	Details map[string]any // e.g. {"field":"email"} or {"outcome":"unknown"}
	Node    string         // base URL of the node that answered
	// RetryAfter is the wait the node asked for with Retry-After; 0 when
	// it did not.
	RetryAfter time.Duration
}

// Error renders the status, code, message and node.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("troupe: ")
	b.WriteString(strconv.Itoa(e.Status))
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if f := e.Field(); f != "" {
		b.WriteString(" (field ")
		b.WriteString(f)
		b.WriteString(")")
	}
	if e.Node != "" {
		b.WriteString(" [")
		b.WriteString(e.Node)
		b.WriteString("]")
	}
	return b.String()
}

// Field returns details.field, the offending input field, or "".
func (e *APIError) Field() string {
	s, _ := e.Details["field"].(string)
	return s
}

// errorBody is the documented error envelope.
type errorBody struct {
	Error *struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
}

// statusCode is the contract's code for each status (API.md).
var statusCode = map[int]string{
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthenticated",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusConflict:              "conflict",
	http.StatusPreconditionFailed:    "precondition_failed",
	http.StatusRequestEntityTooLarge: "payload_too_large",
	http.StatusTooManyRequests:       "rate_limited",
	http.StatusInternalServerError:   "internal",
	http.StatusServiceUnavailable:    "unavailable",
	http.StatusGatewayTimeout:        "timeout",
}

// parseAPIError builds the APIError of a non-2xx answer.
func parseAPIError(status int, body []byte, node string, retryAfter time.Duration) *APIError {
	e := &APIError{Status: status, Node: node, RetryAfter: retryAfter}
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		e.Code, e.Message, e.Details = eb.Error.Code, eb.Error.Message, eb.Error.Details
		return e
	}
	e.Code = statusCode[status]
	e.Message = bodyExcerpt(body)
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// bodyExcerpt returns the start of a body as valid, single-line text.
func bodyExcerpt(body []byte) string {
	const max = 200
	s := strings.TrimSpace(string(body))
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) && len(s) > 0 {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return strings.Join(strings.Fields(s), " ")
}

func asAPIError(err error) (*APIError, bool) {
	var e *APIError
	ok := errors.As(err, &e)
	return e, ok
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.Status == http.StatusNotFound
}

// IsConflict reports whether err is a 409 "conflict" answer (a duplicate
// email, the last admin, an Idempotency-Key reused for another request),
// not a 409 "version_too_old".
func IsConflict(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.Status == http.StatusConflict && (e.Code == "conflict" || e.Code == "")
}

// IsPreconditionFailed reports whether err is a 412 answer: the If-Match
// version is not the current one.
func IsPreconditionFailed(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.Status == http.StatusPreconditionFailed
}

// IsUnavailable reports whether err is a 503 answer (no leader, not
// ready, shutting down, or a write of unknown outcome).
func IsUnavailable(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.Status == http.StatusServiceUnavailable
}

// OutcomeUnknown reports whether err is the server's statement that a
// write may or may not have been applied: 503 with details.outcome
// "unknown". Repeating the write with the same Idempotency-Key (which
// this client does by itself until MaxAttempts) settles it. A write that
// ended in a connection error or a client-side timeout is just as
// uncertain, but is not reported here: the server said nothing.
func OutcomeUnknown(err error) bool {
	e, ok := asAPIError(err)
	if !ok || e.Status != http.StatusServiceUnavailable {
		return false
	}
	o, _ := e.Details["outcome"].(string)
	return o == "unknown"
}

// ErrClosed is returned by calls on a closed Client, and by calls that
// were waiting when it closed.
var ErrClosed = errors.New("troupe client: closed")

// ErrBodyTooLarge is returned, without sending anything, for a request
// body over Config.MaxRequestBodySize.
var ErrBodyTooLarge = errors.New("troupe client: request body too large")
