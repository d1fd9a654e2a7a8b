package cluster

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// repeatFilter keeps a library's repeated warnings and errors from flooding
// the log: while a peer is down, raft logs "failed to heartbeat" (an ERROR)
// every few hundred milliseconds. An identical message — same component,
// level, text and arguments, numbers and durations aside (raft's backoff
// time changes on every line) — is written at most once per repeatEvery;
// the next one written after that carries "repeated", the number left out
// since. Loggers derived from one NewHclog share its filter.
type repeatFilter struct {
	mu    sync.Mutex
	now   func() time.Time
	every time.Duration
	seen  map[string]*repeatState
}

type repeatState struct {
	last    time.Time // when it was last written
	skipped int       // left out since
}

// repeatEvery is how often one identical warning or error is written.
const repeatEvery = 10 * time.Second

// repeatFilterMax bounds the messages remembered; past it, those not seen
// for repeatEvery are forgotten.
const repeatFilterMax = 1024

func newRepeatFilter() *repeatFilter {
	return &repeatFilter{now: time.Now, every: repeatEvery, seen: map[string]*repeatState{}}
}

// admit reports whether a message with this key is written now and, if
// so, how many identical ones were left out since the last written.
func (f *repeatFilter) admit(key string) (write bool, skipped int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	st := f.seen[key]
	if st == nil {
		if len(f.seen) >= repeatFilterMax {
			for k, s := range f.seen {
				if now.Sub(s.last) >= f.every {
					delete(f.seen, k)
				}
			}
		}
		f.seen[key] = &repeatState{last: now}
		return true, 0
	}
	if now.Sub(st.last) < f.every {
		st.skipped++
		return false, 0
	}
	skipped = st.skipped
	st.last, st.skipped = now, 0
	return true, skipped
}

// repeatKey is what makes two messages identical: component, level, text,
// and every argument but numbers, durations and times.
func repeatKey(name string, level slog.Level, msg string, args []any) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte(0)
	b.WriteString(level.String())
	b.WriteByte(0)
	b.WriteString(msg)
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i+1].(type) {
		case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64,
			time.Duration, time.Time:
			continue
		}
		b.WriteByte(0)
		fmt.Fprint(&b, args[i], "=", argValue(args[i+1]))
	}
	return b.String()
}
