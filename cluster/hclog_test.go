package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hclogBuffer is a concurrency-safe buffer collecting slog JSON output.
type hclogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *hclogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records decodes every JSON line written so far and resets the buffer.
func (b *hclogBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		if strings.Contains(line, "\x1b") {
			t.Errorf("ANSI escape in log output: %q", line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		delete(m, slog.TimeKey)
		out = append(out, m)
	}
	b.buf.Reset()
	return out
}

func newTestHclog(t *testing.T, level slog.Leveler, name string) (hclog.Logger, *hclogBuffer) {
	t.Helper()
	var buf hclogBuffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level})
	return NewHclog(slog.New(h), name), &buf
}

func oneRecord(t *testing.T, buf *hclogBuffer) map[string]any {
	t.Helper()
	recs := buf.records(t)
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1: %v", len(recs), recs)
	}
	return recs[0]
}

func TestHclogLevels(t *testing.T) {
	l, buf := newTestHclog(t, slog.LevelDebug, "")
	for i, tc := range []struct {
		emit func(string, ...any)
		want string
	}{
		{l.Trace, "DEBUG"},
		{l.Debug, "DEBUG"},
		{l.Info, "INFO"},
		{l.Warn, "WARN"},
		{l.Error, "ERROR"},
		{func(m string, a ...any) { l.Log(hclog.NoLevel, m, a...) }, "INFO"},
		{func(m string, a ...any) { l.Log(hclog.Trace, m, a...) }, "DEBUG"},
		{func(m string, a ...any) { l.Log(hclog.Warn, m, a...) }, "WARN"},
		{func(m string, a ...any) { l.Log(hclog.Error, m, a...) }, "ERROR"},
	} {
		// Each message its own: identical warnings and errors are
		// written once per 10 s (TestHclogRepeats).
		msg := "hello " + strconv.Itoa(i)
		tc.emit(msg)
		rec := oneRecord(t, buf)
		if rec[slog.LevelKey] != tc.want || rec[slog.MessageKey] != msg {
			t.Errorf("got %v, want level %s", rec, tc.want)
		}
		if _, ok := rec[componentKey]; ok {
			t.Errorf("unnamed logger emitted %q: %v", componentKey, rec)
		}
	}
	l.Log(hclog.Off, "never")
	if recs := buf.records(t); len(recs) != 0 {
		t.Errorf("Log(Off) emitted %v", recs)
	}
}

type panickyErr struct{ msg string }

func (e *panickyErr) Error() string { return e.msg }

func TestHclogArgs(t *testing.T) {
	l, buf := newTestHclog(t, slog.LevelDebug, "raft")
	var typedNil *panickyErr
	l.Info("msg",
		"str", "v",
		"int", 42,
		"err", errors.New("boom"),
		"nilerr", error(typedNil),
		"fmt", hclog.Fmt("%s-%03d", "x", 7),
		"badfmt", hclog.Format{1, 2},
		"emptyfmt", hclog.Format{},
		"hex", hclog.Hex(255),
		"oct", hclog.Octal(8),
		"bin", hclog.Binary(5),
		"quote", hclog.Quote("a\nb"),
		"nil", nil,
		7, "intkey",
		"odd",
	)
	rec := oneRecord(t, buf)
	want := map[string]any{
		slog.LevelKey:    "INFO",
		slog.MessageKey:  "msg",
		componentKey:     "raft",
		"str":            "v",
		"int":            float64(42),
		"err":            "boom",
		"fmt":            "x-007",
		"badfmt":         "1 2",
		"emptyfmt":       "",
		"hex":            "0xff",
		"oct":            "010",
		"bin":            "0b101",
		"quote":          "a\nb",
		"nil":            nil,
		"7":              "intkey",
		hclog.MissingKey: "odd",
	}
	nilErrVal, _ := rec["nilerr"].(string)
	if !strings.Contains(nilErrVal, "PANIC") {
		t.Errorf("typed nil error rendered as %q", nilErrVal)
	}
	delete(rec, "nilerr")
	if !reflect.DeepEqual(rec, want) {
		t.Errorf("got  %v\nwant %v", rec, want)
	}

	// A lone argument is an unpaired value.
	l.Warn("lone", "only")
	if rec := oneRecord(t, buf); rec[hclog.MissingKey] != "only" {
		t.Errorf("lone arg: %v", rec)
	}

	// Values without special handling are left to the slog handler.
	l.Info("any", "m", map[string]int{"a": 1})
	rec = oneRecord(t, buf)
	if !reflect.DeepEqual(rec["m"], map[string]any{"a": float64(1)}) {
		t.Errorf("any values: %v", rec)
	}
}

func TestHclogNamedAndWith(t *testing.T) {
	root, buf := newTestHclog(t, slog.LevelDebug, "")
	if root.Name() != "" {
		t.Fatalf("Name() = %q", root.Name())
	}
	raft := root.Named("raft")
	net := raft.Named("net")
	if raft.Name() != "raft" || net.Name() != "raft.net" {
		t.Fatalf("names %q %q", raft.Name(), net.Name())
	}
	if same := net.Named(""); same.Name() != "raft.net" {
		t.Errorf("Named(\"\") = %q", same.Name())
	}
	net.Info("x")
	if rec := oneRecord(t, buf); rec[componentKey] != "raft.net" {
		t.Errorf("net: %v", rec)
	}
	reset := net.ResetNamed("snap")
	reset.Info("x")
	if rec := oneRecord(t, buf); rec[componentKey] != "snap" || reset.Name() != "snap" {
		t.Errorf("reset: %v", rec)
	}

	w := raft.With("node", "n1", "term", 3)
	w2 := w.With("term", 4, "extra")
	if got, want := w2.ImpliedArgs(), []any{"node", "n1", "term", 4, hclog.MissingKey, "extra"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ImpliedArgs = %v, want %v", got, want)
	}
	if got, want := w.ImpliedArgs(), []any{"node", "n1", "term", 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("parent ImpliedArgs changed: %v", got)
	}
	// Named after With keeps the implied args; With after Named keeps the name.
	w2.Named("net").Info("hi", "k", "v")
	rec := oneRecord(t, buf)
	want := map[string]any{
		slog.LevelKey: "INFO", slog.MessageKey: "hi", componentKey: "raft.net",
		"node": "n1", "term": float64(4), hclog.MissingKey: "extra", "k": "v",
	}
	if !reflect.DeepEqual(rec, want) {
		t.Errorf("got  %v\nwant %v", rec, want)
	}
	// The parent is unaffected.
	raft.Info("plain")
	if rec := oneRecord(t, buf); len(rec) != 3 || rec[componentKey] != "raft" {
		t.Errorf("parent: %v", rec)
	}
	if root.With() != root {
		t.Errorf("With() without args should return the same logger")
	}
}

func TestHclogSetLevel(t *testing.T) {
	var lv slog.LevelVar
	lv.Set(slog.LevelInfo)
	root, buf := newTestHclog(t, &lv, "raft")
	child := root.Named("net").With("a", 1)

	// By default the handler decides.
	if got := root.GetLevel(); got != hclog.Info {
		t.Errorf("default GetLevel = %v, want Info", got)
	}
	if root.IsDebug() || root.IsTrace() || !root.IsInfo() || !root.IsWarn() || !root.IsError() {
		t.Errorf("Is* wrong at handler level Info")
	}
	child.Debug("dropped")
	if recs := buf.records(t); len(recs) != 0 {
		t.Errorf("debug passed handler at Info: %v", recs)
	}
	lv.Set(slog.LevelDebug)
	if got := root.GetLevel(); got != hclog.Trace || !root.IsTrace() {
		t.Errorf("GetLevel = %v, IsTrace = %v after handler at Debug", got, root.IsTrace())
	}
	lv.Set(slog.LevelError + 1)
	if got := root.GetLevel(); got != hclog.Off {
		t.Errorf("GetLevel = %v with everything disabled, want Off", got)
	}
	lv.Set(slog.LevelDebug)

	// SetLevel on a child applies to all related loggers.
	child.SetLevel(hclog.Warn)
	for _, l := range []hclog.Logger{root, child} {
		if l.GetLevel() != hclog.Warn || l.IsInfo() || !l.IsWarn() || !l.IsError() || l.IsDebug() {
			t.Errorf("%s: level %v after SetLevel(Warn)", l.Name(), l.GetLevel())
		}
	}
	root.Info("dropped")
	root.Debug("dropped")
	child.Log(hclog.Info, "dropped")
	child.Warn("kept")
	root.Error("kept")
	recs := buf.records(t)
	if len(recs) != 2 || recs[0][slog.LevelKey] != "WARN" || recs[1][slog.LevelKey] != "ERROR" {
		t.Errorf("after SetLevel(Warn): %v", recs)
	}

	root.SetLevel(hclog.Off)
	root.Error("dropped")
	if recs := buf.records(t); len(recs) != 0 || root.IsError() {
		t.Errorf("after SetLevel(Off): %v", recs)
	}

	// The handler still applies below the hclog level.
	root.SetLevel(hclog.Trace)
	lv.Set(slog.LevelInfo)
	if root.IsDebug() || root.GetLevel() != hclog.Trace {
		t.Errorf("IsDebug should honour the handler level")
	}
	root.SetLevel(hclog.NoLevel)
	if got := child.GetLevel(); got != hclog.Info {
		t.Errorf("GetLevel after SetLevel(NoLevel) = %v, want Info", got)
	}
}

func TestHclogStandardLogger(t *testing.T) {
	l, buf := newTestHclog(t, slog.LevelDebug, "raft")
	infer := l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	for _, tc := range []struct{ line, level, msg string }{
		{"[DEBUG] raft: dbg", "DEBUG", "raft: dbg"},
		{"[TRACE] trc", "DEBUG", "trc"},
		{"[INFO] inf", "INFO", "inf"},
		{"[WARN]  wrn\n", "WARN", "wrn"},
		{"[ERR] e1", "ERROR", "e1"},
		{"[ERROR] e2", "ERROR", "e2"},
		{"no prefix", "INFO", "no prefix"},
		{"2024/01/02 03:04:05 [WARN] not stripped without timestamp option", "INFO", "2024/01/02 03:04:05 [WARN] not stripped without timestamp option"},
	} {
		infer.Print(tc.line)
		rec := oneRecord(t, buf)
		if rec[slog.LevelKey] != tc.level || rec[slog.MessageKey] != tc.msg || rec[componentKey] != "raft" {
			t.Errorf("%q: got %v", tc.line, rec)
		}
	}

	ts := l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true})
	if _, err := fmt.Fprintln(ts, "2024/01/02 03:04:05.123 [WARN] wrn2"); err != nil {
		t.Fatal(err)
	}
	if rec := oneRecord(t, buf); rec[slog.LevelKey] != "WARN" || rec[slog.MessageKey] != "wrn2" {
		t.Errorf("timestamp: %v", rec)
	}

	forced := l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true, ForceLevel: hclog.Error})
	forced.Print("[DEBUG] forced")
	if rec := oneRecord(t, buf); rec[slog.LevelKey] != "ERROR" || rec[slog.MessageKey] != "forced" {
		t.Errorf("forced: %v", rec)
	}

	plain := l.StandardLogger(nil)
	plain.Print("[ERR] kept verbatim")
	if rec := oneRecord(t, buf); rec[slog.LevelKey] != "INFO" || rec[slog.MessageKey] != "[ERR] kept verbatim" {
		t.Errorf("plain: %v", rec)
	}

	w := l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	p := []byte("[DEBUG] dropped\n")
	l.SetLevel(hclog.Info)
	if n, err := w.Write(p); n != len(p) || err != nil {
		t.Errorf("Write = %d, %v", n, err)
	}
	if recs := buf.records(t); len(recs) != 0 {
		t.Errorf("standard writer ignored SetLevel: %v", recs)
	}
}

func TestHclogSource(t *testing.T) {
	var buf hclogBuffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{AddSource: true})
	l := NewHclog(slog.New(h), "")
	l.Info("a")
	l.Log(hclog.Error, "b")
	recs := buf.records(t)
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	for _, rec := range recs {
		src, _ := rec[slog.SourceKey].(map[string]any)
		if file, _ := src["file"].(string); filepath.Base(file) != "hclog_test.go" {
			t.Errorf("source = %v, want hclog_test.go", src)
		}
	}
}

func TestHclogNilLogger(t *testing.T) {
	l := NewHclog(nil, "x")
	l.Error("discarded", "k", "v")
	l.StandardLogger(nil).Print("discarded")
	if l.IsError() || l.GetLevel() != hclog.Off {
		t.Errorf("nil logger should discard everything")
	}
}

func TestHclogConcurrent(t *testing.T) {
	root, buf := newTestHclog(t, slog.LevelDebug, "raft")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			l := root.Named(fmt.Sprint("g", i)).With("i", i)
			std := l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
			for j := range 50 {
				l.Info("m", "j", j)
				std.Printf("[WARN] w %d", j)
				if j%10 == 0 {
					l.SetLevel(hclog.Trace)
					_ = l.GetLevel()
				}
			}
		})
	}
	wg.Wait()
	if n := len(buf.records(t)); n != 8*50*2 {
		t.Errorf("got %d records, want %d", n, 8*50*2)
	}
}

// Identical warnings and errors (numbers and durations aside) are written
// at most once per repeatEvery; the next one says how many were left out.
// Other messages, other arguments and lower levels are not held back.
func TestHclogRepeats(t *testing.T) {
	l, buf := newTestHclog(t, slog.LevelDebug, "raft")
	now := time.Unix(1000, 0)
	l.(*slogHclog).repeats.now = func() time.Time { return now }
	down := errors.New("dial tcp 127.0.0.1:7081: connect: connection refused")
	beat := func(peer string, backoff time.Duration) {
		l.Error("failed to heartbeat to", "peer", peer, "backoff time", backoff, "error", down)
	}
	beat("n2", 10*time.Millisecond)
	if rec := oneRecord(t, buf); rec["repeated"] != nil {
		t.Fatalf("first: %v", rec)
	}
	for i := range 15 {
		now = now.Add(600 * time.Millisecond)
		beat("n2", time.Duration(i)*time.Millisecond)
	}
	// Another peer, and the same text at another level, are their own.
	beat("n3", 0)
	l.Warn("failed to heartbeat to", "peer", "n2", "error", down)
	l.Info("heartbeat", "peer", "n2")
	l.Info("heartbeat", "peer", "n2")
	if recs := buf.records(t); len(recs) != 4 {
		t.Fatalf("within 10 s: %d records, want 4 (n3, the warning, two infos): %v", len(recs), recs)
	}
	now = now.Add(2 * time.Second) // 11 s after the first was written
	beat("n2", time.Second)
	if rec := oneRecord(t, buf); rec["repeated"] != float64(15) || rec["peer"] != "n2" {
		t.Fatalf("after 10 s: %v", rec)
	}
	now = now.Add(repeatEvery)
	beat("n2", time.Second)
	if rec := oneRecord(t, buf); rec["repeated"] != nil {
		t.Fatalf("none left out since: %v", rec)
	}
}
