package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// componentKey is the slog attribute key under which the hclog logger name
// (for example "raft" or "raft.net") is recorded.
const componentKey = "component"

// NewHclog returns an hclog.Logger that forwards every record to logger. It
// is meant for libraries such as hashicorp/raft that insist on an
// hclog.Logger, so that their output ends up in the node's structured slog
// pipeline (and never contains ANSI colour codes).
//
// Levels are mapped as follows: hclog Trace and Debug become slog Debug, Info
// becomes Info, Warn becomes Warn and Error becomes Error. Key/value arguments
// become slog attributes: an unpaired trailing value is recorded under the key
// hclog.MissingKey ("EXTRA_VALUE_AT_END"), hclog.Format values are rendered
// with fmt.Sprintf, errors are rendered as their Error() string, and
// hclog.Hex, hclog.Octal, hclog.Binary and hclog.Quote are rendered like
// hclog's own text output renders them.
//
// name, if not empty, is recorded as the attribute "component"; Named appends
// to it with a '.' separator ("raft" → "raft.net").
//
// Until SetLevel is called with a level other than hclog.NoLevel, filtering is
// left entirely to logger's handler and GetLevel reports the level that
// handler currently enables. SetLevel on the returned logger, or on any logger
// derived from it with Named, ResetNamed or With, changes the level of all of
// them.
//
// A nil logger discards everything.
func NewHclog(logger *slog.Logger, name string) hclog.Logger {
	h := slog.Handler(slog.DiscardHandler)
	if logger != nil {
		h = logger.Handler()
	}
	return newSlogHclog(h, name, nil, new(atomic.Int32), newRepeatFilter())
}

// slogHclog implements hclog.Logger on top of a slog.Handler.
type slogHclog struct {
	base    slog.Handler  // the caller's handler, without our attributes
	handler slog.Handler  // base with the component and implied attributes
	name    string        // hclog name, "" if none
	implied []any         // With arguments, deduplicated, as hclog key/value pairs
	level   *atomic.Int32 // hclog.Level shared by all related loggers
	repeats *repeatFilter // shared by all related loggers
}

var _ hclog.Logger = (*slogHclog)(nil)

func newSlogHclog(base slog.Handler, name string, implied []any, level *atomic.Int32, repeats *repeatFilter) *slogHclog {
	attrs := make([]slog.Attr, 0, 1+len(implied)/2)
	if name != "" {
		attrs = append(attrs, slog.String(componentKey, name))
	}
	attrs = appendArgs(attrs, implied)
	h := base
	if len(attrs) > 0 {
		h = base.WithAttrs(attrs)
	}
	return &slogHclog{base: base, handler: h, name: name, implied: implied, level: level, repeats: repeats}
}

// Log emits a message at the given level. hclog.NoLevel is treated as Info;
// hclog.Off discards the message.
func (l *slogHclog) Log(level hclog.Level, msg string, args ...any) { l.log(level, msg, args) }

// Trace emits a message at hclog Trace level (slog Debug).
func (l *slogHclog) Trace(msg string, args ...any) { l.log(hclog.Trace, msg, args) }

// Debug emits a message at hclog Debug level (slog Debug).
func (l *slogHclog) Debug(msg string, args ...any) { l.log(hclog.Debug, msg, args) }

// Info emits a message at Info level.
func (l *slogHclog) Info(msg string, args ...any) { l.log(hclog.Info, msg, args) }

// Warn emits a message at Warn level.
func (l *slogHclog) Warn(msg string, args ...any) { l.log(hclog.Warn, msg, args) }

// Error emits a message at Error level.
func (l *slogHclog) Error(msg string, args ...any) { l.log(hclog.Error, msg, args) }

// IsTrace reports whether Trace messages would be emitted.
func (l *slogHclog) IsTrace() bool { _, ok := l.enabled(hclog.Trace); return ok }

// IsDebug reports whether Debug messages would be emitted.
func (l *slogHclog) IsDebug() bool { _, ok := l.enabled(hclog.Debug); return ok }

// IsInfo reports whether Info messages would be emitted.
func (l *slogHclog) IsInfo() bool { _, ok := l.enabled(hclog.Info); return ok }

// IsWarn reports whether Warn messages would be emitted.
func (l *slogHclog) IsWarn() bool { _, ok := l.enabled(hclog.Warn); return ok }

// IsError reports whether Error messages would be emitted.
func (l *slogHclog) IsError() bool { _, ok := l.enabled(hclog.Error); return ok }

// ImpliedArgs returns a copy of the key/value pairs added with With.
func (l *slogHclog) ImpliedArgs() []any {
	return append([]any(nil), l.implied...)
}

// With returns a logger that adds args to every message. As with hclog, a key
// given again replaces the earlier value, and an unpaired trailing value is
// recorded under hclog.MissingKey.
func (l *slogHclog) With(args ...any) hclog.Logger {
	if len(args) == 0 {
		return l
	}
	implied := append([]any(nil), l.implied...)
	for i := 0; i < len(args); i += 2 {
		var key string
		var val any
		if i+1 < len(args) {
			key, val = argKey(args[i]), args[i+1]
		} else {
			key, val = hclog.MissingKey, args[i]
		}
		replaced := false
		for j := 0; j+1 < len(implied); j += 2 {
			if implied[j] == key {
				implied[j+1] = val
				replaced = true
				break
			}
		}
		if !replaced {
			implied = append(implied, key, val)
		}
	}
	return newSlogHclog(l.base, l.name, implied, l.level, l.repeats)
}

// Name returns the logger's name ("" if it has none).
func (l *slogHclog) Name() string { return l.name }

// Named returns a logger whose name is the current name and name joined by
// '.', or just name if the current name is empty.
func (l *slogHclog) Named(name string) hclog.Logger {
	switch {
	case name == "":
		return l
	case l.name != "":
		name = l.name + "." + name
	}
	return newSlogHclog(l.base, name, l.implied, l.level, l.repeats)
}

// ResetNamed returns a logger whose name is exactly name.
func (l *slogHclog) ResetNamed(name string) hclog.Logger {
	return newSlogHclog(l.base, name, l.implied, l.level, l.repeats)
}

// SetLevel sets the minimum hclog level for this logger and every logger
// related to it. hclog.NoLevel restores the default of deferring entirely to
// the slog handler; hclog.Off discards everything. The slog handler's own
// level still applies on top of this one.
func (l *slogHclog) SetLevel(level hclog.Level) { l.level.Store(int32(level)) }

// GetLevel returns the level set with SetLevel or, if none was set, the
// lowest level the slog handler currently enables (hclog.Trace when it
// enables slog Debug, hclog.Off when it enables nothing up to Error).
func (l *slogHclog) GetLevel() hclog.Level {
	if lv := hclog.Level(l.level.Load()); lv != hclog.NoLevel {
		return lv
	}
	ctx := context.Background()
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Info, hclog.Warn, hclog.Error} {
		if l.handler.Enabled(ctx, slogLevel(lv)) {
			return lv
		}
	}
	return hclog.Off
}

// StandardLogger returns a *log.Logger whose output is sent to this logger
// as described for StandardWriter.
func (l *slogHclog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter returns an io.Writer that logs each write as one message.
// Trailing blanks and newlines are trimmed. With opts.ForceLevel set, that
// level is used and any "[LEVEL]" prefix is stripped; otherwise with
// opts.InferLevels the level is taken from a leading "[TRACE]", "[DEBUG]",
// "[INFO]", "[WARN]", "[ERR]" or "[ERROR]" (after a leading timestamp if
// opts.InferLevelsWithTimestamp is set), defaulting to Info; otherwise Info
// is used. A nil opts is treated as the zero value.
func (l *slogHclog) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &stdlogWriter{l: l}
	if opts != nil {
		w.opts = *opts
	}
	return w
}

// enabled reports whether a message at level would be emitted and, if so,
// the slog level to emit it at.
func (l *slogHclog) enabled(level hclog.Level) (slog.Level, bool) {
	switch level {
	case hclog.Off:
		return 0, false
	case hclog.NoLevel:
		level = hclog.Info
	}
	if floor := hclog.Level(l.level.Load()); floor != hclog.NoLevel && (floor == hclog.Off || level < floor) {
		return 0, false
	}
	sl := slogLevel(level)
	return sl, l.handler.Enabled(context.Background(), sl)
}

// log must be called directly by the exported logging methods so that the
// recorded source location is their caller.
func (l *slogHclog) log(level hclog.Level, msg string, args []any) {
	sl, ok := l.enabled(level)
	if !ok {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // skip runtime.Callers, log and the exported method
	l.emit(sl, msg, args, pcs[0])
}

func (l *slogHclog) emit(level slog.Level, msg string, args []any, pc uintptr) {
	skipped := 0
	if level >= slog.LevelWarn {
		var write bool
		if write, skipped = l.repeats.admit(repeatKey(l.name, level, msg, l.implied) + "\x00" + repeatKey("", 0, "", args)); !write {
			return
		}
	}
	r := slog.NewRecord(time.Now(), level, msg, pc)
	if len(args) > 0 {
		r.AddAttrs(appendArgs(make([]slog.Attr, 0, (len(args)+1)/2), args)...)
	}
	if skipped > 0 {
		r.AddAttrs(slog.Int("repeated", skipped))
	}
	// A handler error has nowhere better to go; hclog drops write errors too.
	_ = l.handler.Handle(context.Background(), r)
}

// slogLevel maps an hclog level to the slog level it is emitted at.
func slogLevel(level hclog.Level) slog.Level {
	switch {
	case level <= hclog.Debug:
		return slog.LevelDebug
	case level == hclog.Info:
		return slog.LevelInfo
	case level == hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// appendArgs converts hclog key/value pairs to slog attributes.
func appendArgs(attrs []slog.Attr, args []any) []slog.Attr {
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			attrs = append(attrs, slog.Attr{Key: hclog.MissingKey, Value: argValue(args[i])})
			break
		}
		attrs = append(attrs, slog.Attr{Key: argKey(args[i]), Value: argValue(args[i+1])})
	}
	return attrs
}

// argKey renders an hclog key; keys should be strings but hclog tolerates
// anything.
func argKey(k any) string {
	if s, ok := k.(string); ok {
		return s
	}
	return fmt.Sprint(k)
}

// argValue renders an hclog value the way hclog itself would for the types
// it treats specially, and leaves everything else to the slog handler.
func argValue(v any) slog.Value {
	switch x := v.(type) {
	case hclog.Format:
		return slog.StringValue(formatValue(x))
	case hclog.Hex:
		return slog.StringValue("0x" + strconv.FormatUint(uint64(x), 16))
	case hclog.Octal:
		return slog.StringValue("0" + strconv.FormatUint(uint64(x), 8))
	case hclog.Binary:
		return slog.StringValue("0b" + strconv.FormatUint(uint64(x), 2))
	case hclog.Quote:
		return slog.StringValue(string(x))
	case hclog.CapturedStacktrace:
		return slog.StringValue(string(x))
	case error:
		return slog.StringValue(errorString(x))
	default:
		return slog.AnyValue(v)
	}
}

// formatValue renders an hclog.Format, tolerating a malformed one instead of
// panicking like hclog does.
func formatValue(f hclog.Format) string {
	if len(f) == 0 {
		return ""
	}
	if format, ok := f[0].(string); ok {
		return fmt.Sprintf(format, f[1:]...)
	}
	return fmt.Sprint(f...)
}

// errorString returns err.Error(), guarding against typed nil errors whose
// Error method panics.
func errorString(err error) (s string) {
	defer func() {
		if r := recover(); r != nil {
			s = "!(PANIC=Error method: " + fmt.Sprint(r) + ")"
		}
	}()
	return err.Error()
}

// stdlogWriter adapts the output of a *log.Logger to a slogHclog.
type stdlogWriter struct {
	l    *slogHclog
	opts hclog.StandardLoggerOptions
}

// Write logs p as a single message and always reports success.
func (w *stdlogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), " \t\r\n")
	level := hclog.Info
	switch {
	case w.opts.ForceLevel != hclog.NoLevel:
		level = w.opts.ForceLevel
		_, msg = pickLevel(msg)
	case w.opts.InferLevels:
		if w.opts.InferLevelsWithTimestamp {
			msg = trimTimestamp(msg)
		}
		level, msg = pickLevel(msg)
	}
	if sl, ok := w.l.enabled(level); ok {
		w.l.emit(sl, msg, nil, 0)
	}
	return len(p), nil
}

// pickLevel detects and strips a conventional "[LEVEL]" prefix.
func pickLevel(s string) (hclog.Level, string) {
	for _, p := range []struct {
		prefix string
		level  hclog.Level
	}{
		{"[TRACE]", hclog.Trace},
		{"[DEBUG]", hclog.Debug},
		{"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn},
		{"[ERROR]", hclog.Error},
		{"[ERR]", hclog.Error},
	} {
		if rest, ok := strings.CutPrefix(s, p.prefix); ok {
			return p.level, strings.TrimSpace(rest)
		}
	}
	return hclog.Info, s
}

// trimTimestamp strips characters commonly found in a leading timestamp
// (digits, blanks, ':', '/', '.', '+', '-', 'T' and 'Z').
func trimTimestamp(s string) string {
	return strings.TrimLeftFunc(s, func(r rune) bool {
		switch {
		case r >= '0' && r <= '9':
			return true
		case r == ' ', r == '\t', r == ':', r == '/', r == '.', r == '+', r == '-', r == 'T', r == 'Z':
			return true
		}
		return false
	})
}
