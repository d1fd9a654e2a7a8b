package storage

import (
	"errors"
	"fmt"
)

// Kind classifies a failed operation. The transport maps each kind to one
// HTTP status and error code (see API.md); storage never speaks HTTP.
type Kind uint8

// Kinds of failure. Their numeric values are part of the snapshot format
// (recorded idempotent results carry them): never renumber.
const (
	KindBadRequest         Kind = 1
	KindNotFound           Kind = 2
	KindConflict           Kind = 3
	KindPreconditionFailed Kind = 4
	KindForbidden          Kind = 5
	KindInternal           Kind = 6
	KindUnauthenticated    Kind = 7
	// KindPayloadTooLarge: a value would pass a size cap (a document's
	// text beyond MaxDocBytes); code "payload_too_large" (413).
	KindPayloadTooLarge Kind = 9
	// KindQuotaExceeded: the caller holds as many of something as it may
	// (documents per user); Error.Limit says how many. Code
	// "quota_exceeded" (403).
	KindQuotaExceeded Kind = 10
)

func (k Kind) String() string {
	switch k {
	case KindBadRequest:
		return "bad_request"
	case KindNotFound:
		return "not_found"
	case KindConflict:
		return "conflict"
	case KindPreconditionFailed:
		return "precondition_failed"
	case KindForbidden:
		return "forbidden"
	case KindInternal:
		return "internal"
	case KindUnauthenticated:
		return "unauthenticated"
	case KindVersionTooOld:
		return "version_too_old"
	case KindPayloadTooLarge:
		return "payload_too_large"
	case KindQuotaExceeded:
		return "quota_exceeded"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error is a deterministic, replicable failure: the same command applied to
// the same state yields the same Error on every node, so it can be recorded
// in the idempotency window and in snapshots.
type Error struct {
	Kind    Kind
	Message string
	// Field names the offending input field, if any ("email", "users[3].name").
	Field string
	// Limit is the limit a KindQuotaExceeded error met (details.limit).
	Limit uint64
}

func (e *Error) Error() string { return e.Kind.String() + ": " + e.Message }

// Is makes errors.Is(err, storage.ErrNotFound) and friends work for any
// *Error of the same kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Kind == e.Kind
}

// Sentinels for errors.Is matching by kind.
var (
	ErrBadRequest         = &Error{Kind: KindBadRequest}
	ErrNotFound           = &Error{Kind: KindNotFound}
	ErrConflict           = &Error{Kind: KindConflict}
	ErrPreconditionFailed = &Error{Kind: KindPreconditionFailed}
	ErrForbidden          = &Error{Kind: KindForbidden}
	ErrInternal           = &Error{Kind: KindInternal}
	ErrUnauthenticated    = &Error{Kind: KindUnauthenticated}
	ErrPayloadTooLarge    = &Error{Kind: KindPayloadTooLarge}
	ErrQuotaExceeded      = &Error{Kind: KindQuotaExceeded}
)

func badRequest(field, format string, args ...any) *Error {
	return &Error{Kind: KindBadRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

func errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// ErrUnsupportedVersion is wrapped when a command or snapshot was written
// by a newer build: the node must stop rather than guess.
var ErrUnsupportedVersion = errors.New("unsupported format version")
