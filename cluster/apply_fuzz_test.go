package cluster

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// FuzzApply applies arbitrary commands — anything that decodes is a
// command a leader could have proposed, or a damaged log could hold — to a
// state machine populated with users, sessions, documents and policies.
// Nothing may panic: not the FSM goroutine (the fuzzer would see it) and
// not an actor (recovered and counted: a recovered panic answers internal
// on every node, which is safe, but is still a bug).
func FuzzApply(f *testing.F) {
	g := newLogGen(11)
	g.init()
	for range 64 {
		f.Add(g.next().Data)
	}
	var (
		once sync.Once
		st   *fuzzFSM
	)
	f.Cleanup(func() {
		if st != nil {
			st.d.close()
		}
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		once.Do(func() { st = populatedFSM() })
		if st.populatePanics != 0 {
			t.Fatalf("populating the state machine panicked in an actor")
		}
		if _, err := storage.DecodeCommand(data); err != nil {
			return
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		before := st.panics.Get()
		st.index++
		resp := st.d.fsm.ApplyBatch([]*raft.Log{{Index: st.index, Term: 1, Type: raft.LogCommand, Data: data}})
		var pending []*actors.Pending
		switch x := resp[0].(type) {
		case *actors.Pending:
			pending = append(pending, x)
		case []*actors.Pending:
			pending = x
		default:
			t.Fatalf("apply answered %T", resp[0])
		}
		deadline := time.After(30 * time.Second)
		for _, p := range pending {
			select {
			case <-p.Done():
			case <-deadline:
				t.Fatalf("the result of command %x never came", data)
			}
		}
		if st.fatal != nil {
			t.Fatalf("a decodable command stopped the node: %v", st.fatal)
		}
		if n := st.panics.Get(); n != before {
			t.Fatalf("applying command %x panicked in an actor (%d recovered)", data, n-before)
		}
	})
}

// fuzzFSM is one state machine per fuzzing process, populated once; the
// inputs apply on top of each other, which only makes the state richer.
type fuzzFSM struct {
	mu             sync.Mutex
	d              *detFSM
	index          uint64
	panics         *metrics.Counter
	populatePanics uint64
	fatal          error
}

// populatedFSM makes a state machine holding users, sessions, documents
// and policies, from a generated log.
func populatedFSM() *fuzzFSM {
	st := &fuzzFSM{}
	logger := slog.New(slog.DiscardHandler)
	set := metrics.NewSet()
	sys := actors.NewSystem(logger, set)
	st.panics = set.GetOrCreateCounter(`troupe_actor_panics_total`)
	st.d = &detFSM{fsm: NewFSM(sys, logger, set, func(err error) { st.fatal = err }), sys: sys}
	g := newLogGen(3)
	logs := append([]*raft.Log{g.init()}, g.logs(600)...)
	for _, p := range st.d.fsm.ApplyBatch(logs) {
		waitAll(p)
	}
	st.index = g.index
	st.populatePanics = st.panics.Get()
	return st
}

// waitAll waits for an apply response's results.
func waitAll(resp any) {
	switch x := resp.(type) {
	case *actors.Pending:
		<-x.Done()
	case []*actors.Pending:
		for _, p := range x {
			<-p.Done()
		}
	}
}
