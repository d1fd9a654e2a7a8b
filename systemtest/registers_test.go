package systemtest

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

// registers treats users' names as registers: writes set a name, reads
// return it. It records every operation's call and return for porcupine.
// Safe for concurrent use.
type registers struct {
	start    time.Time
	mu       sync.Mutex
	history  []porcupine.Operation
	acked    atomic.Int64
	unknowns atomic.Int64
}

func newRegisters() *registers { return &registers{start: time.Now()} }

func (h *registers) now() int64 { return int64(time.Since(h.start)) }

// sender sends one request to a node (each test has its own timeouts).
type sender func(method, path string, body any) (response, error)

// write sets key to value through send. A write without a 200 answer has
// an unknown outcome: it may take effect at any time after its call.
func (h *registers) write(client int, send sender, key, value string) {
	op := porcupine.Operation{ClientId: client, Call: h.now(), Input: clustertest.RegOp{Key: key, Write: true, Value: value}}
	r, err := send("PATCH", userPath(key), map[string]string{"name": value})
	if err == nil && r.Status == 200 {
		op.Return = h.now()
		h.acked.Add(1)
	} else {
		op.Return = math.MaxInt64
		h.unknowns.Add(1)
	}
	op.Output = ""
	h.record(op)
}

// read reads key through send; a failed read says nothing and is dropped.
func (h *registers) read(client int, send sender, key string) {
	op := porcupine.Operation{ClientId: client, Call: h.now(), Input: clustertest.RegOp{Key: key}}
	r, err := send("GET", userPath(key), nil)
	if err != nil || r.Status != 200 {
		return
	}
	var u user
	if json.Unmarshal(r.Body, &u) != nil {
		return
	}
	op.Return, op.Output = h.now(), u.Name
	h.record(op)
}

func (h *registers) record(op porcupine.Operation) {
	h.mu.Lock()
	h.history = append(h.history, op)
	h.mu.Unlock()
}

// check has porcupine check the history, failing the test (with a
// visualization kept after it) if it is not linearizable or if no write
// was acknowledged. what names the run in the message.
func (h *registers) check(t *testing.T, what string) {
	t.Helper()
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(clustertest.RegisterModel, h.history, 60*time.Second)
	t.Logf("checked %d operations in %v (%d acknowledged writes, %d writes with unknown outcome): %v",
		len(h.history), time.Since(checkStart).Round(time.Millisecond), h.acked.Load(), h.unknowns.Load(), res)
	if res != porcupine.Ok {
		if res == porcupine.Illegal {
			// Kept after the test, unlike t.TempDir.
			if dir, err := os.MkdirTemp("", "troupe-linearizability-"); err == nil {
				path := filepath.Join(dir, "linearizability.html")
				if err := porcupine.VisualizePath(clustertest.RegisterModel, info, path); err == nil {
					t.Logf("visualization: %s", path)
				}
			}
		}
		t.Fatalf("history is not linearizable (%v); %s", res, what)
	}
	if h.acked.Load() == 0 {
		t.Fatal("no write was acknowledged: the test checked nothing")
	}
}
