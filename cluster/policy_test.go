package cluster

import (
	"bytes"
	"io"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/storage"
)

// TestFSMPolicyAlgorithms: policies of every algorithm are applied (and
// refused when invalid, with the field named) the same way on every
// state machine, kept in the snapshot and restored.
func TestFSMPolicyAlgorithms(t *testing.T) {
	g := newLogGen(7)
	put := func(p storage.Policy) *raft.Log {
		return g.log(&storage.Command{Kind: storage.CmdPolicyPut, Stamp: g.stamps(1), Policy: &p})
	}
	want := map[string]storage.Policy{
		"gcra":    {Name: "gcra", Limit: 10, WindowMs: 1000, Burst: 10},
		"sliding": {Name: "sliding", Algorithm: storage.SlidingWindow, Limit: 100, WindowMs: 60_000, Burst: 100},
		"monthly": {Name: "monthly", Algorithm: storage.FixedWindow, Limit: 5000, Burst: 5000, Window: storage.UnitMonth, TimeZone: "Europe/Paris"},
		"sem":     {Name: "sem", Algorithm: storage.Concurrency, Limit: 4, Burst: 4, Shadow: true},
	}
	logs := []*raft.Log{g.init(),
		put(storage.Policy{Name: "gcra", Limit: 10, WindowMs: 1000}),
		put(storage.Policy{Name: "sliding", Algorithm: storage.SlidingWindow, Limit: 100, WindowMs: 60_000}),
		put(storage.Policy{Name: "monthly", Algorithm: storage.FixedWindow, Limit: 5000, Window: storage.UnitMonth, TimeZone: "Europe/Paris"}),
		put(storage.Policy{Name: "sem", Algorithm: storage.Concurrency, Limit: 4, Shadow: true}),
		put(storage.Policy{Name: "bad", Algorithm: storage.FixedWindow, Limit: 5, Window: storage.UnitDay, TimeZone: "Nowhere/Else"}),
		put(storage.Policy{Name: "bad", Algorithm: storage.Concurrency, Limit: storage.MaxConcurrencyLimit + 1}),
	}
	f1, f2 := newDetFSM(t), newDetFSM(t)
	defer f1.close()
	defer f2.close()
	res := applyAll(t, logs, 1, f1, f2)
	compareResults(t, logs, res[0], res[1], "fsm 1 vs fsm 2")
	for i, field := range []string{"time_zone", "limit"} {
		if r := res[0][5+i]; r.Err == nil || r.Err.Kind != storage.KindBadRequest || r.Err.Field != field {
			t.Fatalf("bad policy %d: %s", i, describe(r))
		}
	}
	if got := f1.fsm.Policies(); !reflect.DeepEqual(got, want) {
		t.Fatalf("policies:\n got %+v\nwant %+v", got, want)
	}
	snap, h1 := f1.stateHash(t)
	f3 := newDetFSM(t)
	defer f3.close()
	if err := f3.fsm.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got := f3.fsm.Policies(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored policies:\n got %+v\nwant %+v", got, want)
	}
	if _, h3 := f3.stateHash(t); h3 != h1 {
		t.Fatalf("restored state hash %x, want %x", h3, h1)
	}
}
