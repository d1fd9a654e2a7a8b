package tracing

import (
	"log/slog"
	"sync"
	"time"
)

// ErrorLog reports the SDK's errors (an export that failed: the receiver
// is down or refuses) as warnings on logger, at most one per every: an
// unreachable receiver fails every batch, every few seconds, for as long
// as it is down. The next line written carries "repeated", the number
// left out since. It is meant for otel.SetErrorHandler, whose handler is
// the process's: cmd/troupe sets it once for its one node.
type ErrorLog struct {
	Logger *slog.Logger
	Every  time.Duration
	Now    func() time.Time // nil: time.Now

	mu      sync.Mutex
	last    time.Time
	skipped int
}

// Handle implements otel.ErrorHandler.
func (e *ErrorLog) Handle(err error) {
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	e.mu.Lock()
	t := now()
	if !e.last.IsZero() && t.Sub(e.last) < e.Every {
		e.skipped++
		e.mu.Unlock()
		return
	}
	skipped := e.skipped
	e.last, e.skipped = t, 0
	e.mu.Unlock()
	attrs := []any{slog.Any("err", err)}
	if skipped > 0 {
		attrs = append(attrs, slog.Int("repeated", skipped))
	}
	e.Logger.Warn("tracing: spans could not be exported (they are dropped; requests are not affected)", attrs...)
}
