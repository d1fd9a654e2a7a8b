package cluster

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// idemFSM is an initialised FSM fed keyed no-op commands at chosen
// command times, to drive its idempotency window.
type idemFSM struct {
	fsm   *FSM
	index uint64
}

func newIdemFSM(tb testing.TB, retentionMs uint64, startMs int64) *idemFSM {
	tb.Helper()
	logger := slog.New(slog.DiscardHandler)
	set := metrics.NewSet()
	sys := actors.NewSystem(logger, set)
	f := NewFSM(sys, logger, set, func(err error) { tb.Errorf("fatal: %v", err) })
	tb.Cleanup(func() {
		f.Close()
		sys.Shutdown()
	})
	x := &idemFSM{fsm: f}
	stamp := storage.StampAt(startMs)
	email := "admin@troupe.local"
	p := x.apply(&storage.Command{Kind: storage.CmdInit, Stamp: stamp, Init: &storage.InitParams{
		ClusterID: "idem", UserShards: 2, IdempotencyRetention: retentionMs,
		Admin: storage.BatchItem{ID: storage.MakeUserID(stamp, storage.ShardOf(email, 2)),
			User: storage.NewUser{Name: "Admin", Email: email, Role: storage.RoleAdmin}},
	}})
	if res := wait(tb, p); res.Err != nil {
		tb.Fatal(res.Err)
	}
	return x
}

func (x *idemFSM) apply(c *storage.Command) *actors.Pending {
	x.index++
	l := &raft.Log{Index: x.index, Term: 1, Type: raft.LogCommand, Data: storage.EncodeCommand(nil, c)}
	return x.fsm.ApplyBatch([]*raft.Log{l})[0].(*actors.Pending)
}

// keyed applies a no-op carrying request id id at command time ms.
func (x *idemFSM) keyed(id string, fp uint64, ms int64) *actors.Pending {
	return x.apply(&storage.Command{Kind: storage.CmdNoop, Stamp: storage.StampAt(ms), RequestID: id, Fingerprint: fp})
}

func wait(tb testing.TB, p *actors.Pending) storage.Result {
	tb.Helper()
	<-p.Done()
	return p.Result()
}

// ids returns the request ids of a materialised window, in order.
func ids(es []storage.IdempotencyEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.RequestID
	}
	return out
}

func TestIdempotencyWindowQueue(t *testing.T) {
	w := newIdempotencyWindow()
	if got := w.view().entries(); got != nil {
		t.Fatalf("empty window: %v", got)
	}
	// Three and a half blocks, one entry per millisecond; the third
	// entry's command is still running (its result never comes here).
	n := 3*idemBlockLen + idemBlockLen/2
	slow := actors.NewPending()
	for i := range n {
		var p *actors.Pending
		switch i {
		case 2:
			p = slow
		case 5:
			p = actors.Resolved(storage.Result{Err: &storage.Error{Kind: storage.KindConflict, Message: "five"}})
		}
		w.add("k"+strconv.Itoa(i), uint64(i), int64(i), p, storage.Result{Err: &storage.Error{Kind: storage.KindConflict, Message: strconv.Itoa(i)}})
	}
	if w.size() != n || w.kept.Load() != int64(n) || w.index.len()+len(w.clash) != n {
		t.Fatalf("size %d, kept %d, index %d; want %d", w.size(), w.kept.Load(), w.index.len()+len(w.clash), n)
	}
	// The settle cursor waits at the running command; a repeat of it
	// waits for its result.
	if seq, _ := w.get("k2"); w.settleSeq != 2 || w.answer(seq) != slow {
		t.Fatalf("settled up to %d, want 2", w.settleSeq)
	}
	// Expire the first block and a half; the settle cursor, behind the
	// head, jumps to it.
	first := idemBlockLen + idemBlockLen/2
	w.expire(int64(first))
	if w.size() != n-first || w.settleSeq != w.headSeq || w.kept.Load() != int64(n-first) {
		t.Fatalf("size %d, settled %d, head %d", w.size(), w.settleSeq, w.headSeq)
	}
	if _, ok := w.get("k0"); ok {
		t.Fatal("an expired id is still known")
	}
	if seq, ok := w.get("k" + strconv.Itoa(first)); !ok || w.fingerprint(seq) != uint64(first) {
		t.Fatalf("the first id kept: %v %d", ok, seq)
	}
	// Adding settles the entries from the head on, two at a time.
	before := w.view()
	w.add("next", 1, int64(n), nil, storage.Result{})
	if w.settleSeq != w.headSeq+2 {
		t.Fatalf("settled to %d, head %d", w.settleSeq, w.headSeq)
	}
	// Expire everything, then grow again past a block.
	w.expire(1 << 40)
	if w.size() != 0 || w.index.len()+len(w.clash) != 0 || w.view().entries() != nil {
		t.Fatalf("after expiring all: size %d, index %d", w.size(), w.index.len()+len(w.clash))
	}
	for i := range idemBlockLen + 1 {
		w.add("again"+strconv.Itoa(i), 0, 1<<40+int64(i), nil, storage.Result{})
	}
	if got := w.view().entries(); len(got) != idemBlockLen+1 || got[0].RequestID != "again0" {
		t.Fatalf("after refilling: %d entries", len(got))
	}
	// The view taken before still reads every entry it covered.
	all := before.entries()
	if len(all) != n-first || all[0].RequestID != "k"+strconv.Itoa(first) || all[0].Result.Err.Message != strconv.Itoa(first) ||
		all[len(all)-1].RequestID != "k"+strconv.Itoa(n-1) || all[len(all)-1].AtMs != int64(n-1) {
		t.Fatalf("old view: %d entries, %+v", len(all), all[0])
	}
	// Settled results are answered as recorded.
	w.add("err", 0, 1<<41, actors.Resolved(storage.Result{Err: &storage.Error{Kind: storage.KindConflict, Message: "five"}}), storage.Result{})
	for range 3 {
		w.add(strconv.Itoa(w.size()), 0, 1<<41, nil, storage.Result{})
	}
	if seq, _ := w.get("err"); seq >= w.settleSeq || w.answer(seq).Result().Err.Message != "five" {
		t.Fatal("a settled result is not answered as recorded")
	}
}

// A snapshot's view of the window stays valid while apply goes on adding
// and expiring (run under -race: the view is read from another goroutine,
// as Persist reads it).
func TestIdempotencySnapshotViewUnderApply(t *testing.T) {
	const retention = 1000
	x := newIdemFSM(t, retention, 1_000_000)
	ms := int64(1_000_000)
	for i := range 3000 {
		x.keyed("a"+strconv.Itoa(i), uint64(i), ms+int64(i)/3)
	}
	want := x.fsm.capture().Meta.Idempotency
	snap, err := x.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var got []storage.IdempotencyEntry
	var wg sync.WaitGroup
	wg.Go(func() { got = snap.(*fsmSnapshot).idem.entries() })
	// Meanwhile: enough commands, later in time, to expire every entry
	// the view holds and fill new blocks.
	for i := range 3000 {
		wait(t, x.keyed("b"+strconv.Itoa(i), uint64(i), ms+2*retention+int64(i)))
	}
	wg.Wait()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the view read %d entries, the window held %d", len(got), len(want))
	}
	if now := x.fsm.capture().Meta.Idempotency; len(now) == 0 || now[0].RequestID[0] != 'b' {
		t.Fatalf("the window now holds %d entries", len(now))
	}
	snap.Release()
}

// Restore rebuilds the same window: the same snapshot, the same answers to
// repeats, and the same expiry after.
func TestIdempotencyRestore(t *testing.T) {
	const retention = 1000
	a := newIdemFSM(t, retention, 1_000_000)
	for i := range 1000 {
		a.keyed("k"+strconv.Itoa(i), uint64(i), 1_000_000+int64(i))
	}
	var enc bytes.Buffer
	if err := storage.WriteSnapshot(&enc, a.fsm.capture()); err != nil {
		t.Fatal(err)
	}
	b := newIdemFSM(t, retention, 1_000_000)
	if err := b.fsm.Restore(readCloser{bytes.NewReader(enc.Bytes())}); err != nil {
		t.Fatal(err)
	}
	b.index = a.index
	var again bytes.Buffer
	if err := storage.WriteSnapshot(&again, b.fsm.capture()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc.Bytes(), again.Bytes()) {
		t.Fatal("the restored window encodes differently")
	}
	if got := b.fsm.idemKept.Load().kept.Load(); got != 1000 {
		t.Fatalf("kept gauge %d after restore", got)
	}
	// Both go on alike: a repeat with another fingerprint is refused,
	// and time moving on expires the same entries.
	for _, x := range []*idemFSM{a, b} {
		if res := wait(t, x.keyed("k999", 1, 1_000_000+1500)); res.Err == nil || res.Err.Kind != storage.KindConflict {
			t.Fatalf("a reused key: %+v", res)
		}
		x.keyed("late", 0, 1_000_000+1700)
	}
	ea, eb := a.fsm.capture().Meta.Idempotency, b.fsm.capture().Meta.Idempotency
	if !reflect.DeepEqual(ea, eb) || len(ea) != 301 || ea[0].RequestID != "k700" || ea[300].RequestID != "late" {
		t.Fatalf("after restore: %d and %d entries, first %v", len(ea), len(eb), ids(ea[:1]))
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// fillWindow puts n settled entries into x's window directly, one every
// stepMs from startMs (as a restore would), and returns the time after.
func fillWindow(x *idemFSM, n int, startMs int64, stepMs float64) {
	for i := range n {
		x.fsm.idem.add("fill-"+strconv.Itoa(i), uint64(i), startMs+int64(float64(i)*stepMs), nil, storage.Result{})
	}
}

// The old window copied the rest of its queue on every expiry: bytes
// allocated per apply grew with the window. Now a keyed apply that expires
// an entry costs the same with 1k and with 200k entries kept.
func TestIdempotencyExpiryDoesNoWindowWork(t *testing.T) {
	const retention = 100_000 // ms
	perApply := func(kept int) float64 {
		start := int64(1_000_000_000)
		x := newIdemFSM(t, retention, start)
		step := float64(retention) / float64(kept)
		fillWindow(x, kept, start, step)
		const ops = 20_000
		logs := make([]*raft.Log, ops)
		for i := range logs {
			ms := start + retention + int64(float64(i)*step)
			x.index++
			logs[i] = &raft.Log{Index: x.index, Term: 1, Type: raft.LogCommand, Data: storage.EncodeCommand(nil,
				&storage.Command{Kind: storage.CmdNoop, Stamp: storage.StampAt(ms), RequestID: "op-" + strconv.Itoa(i)})}
		}
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for i := range logs {
			x.fsm.ApplyBatch(logs[i : i+1])
		}
		runtime.ReadMemStats(&m1)
		if size := x.fsm.idem.size(); size < kept*9/10 || size > kept*11/10 {
			t.Fatalf("window of %d: %d entries kept after the run", kept, size)
		}
		return float64(m1.TotalAlloc-m0.TotalAlloc) / ops
	}
	small, large := perApply(1000), perApply(200_000)
	t.Logf("bytes allocated per keyed apply: %.0f with 1k kept, %.0f with 200k kept", small, large)
	// The old expiry alone copied 8 bytes per kept entry: 1.6 MB here.
	if large > small+256 {
		t.Fatalf("a keyed apply allocates %.0f bytes with 200k entries kept, %.0f with 1k", large, small)
	}
	// And no allocation per apply in the window itself (a new block
	// every idemBlockLen entries).
	w := newIdempotencyWindow()
	for i := range 200_000 {
		w.add(strconv.Itoa(i), 0, int64(i), nil, storage.Result{})
	}
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = "new-" + strconv.Itoa(i)
	}
	i := 0
	allocs := testing.AllocsPerRun(len(keys)-1, func() {
		w.expire(int64(i + 1))
		w.add(keys[i], 0, int64(200_000+i), nil, storage.Result{})
		i++
	})
	if allocs >= 0.1 || w.size() != 200_000 {
		t.Fatalf("%.2f allocations per expiry and add, %d kept", allocs, w.size())
	}
}

// bytesPerKey measures the heap a window of n settled entries holds per
// key, each with a key of keyLen bytes and a result holding a small user
// record: all of it, the window's copies of the key and the encoded
// result included.
func bytesPerKey(tb testing.TB, n, keyLen int) float64 {
	shared := &storage.User{ID: "0000000000000000"}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%0*d", keyLen, i)
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	w := newIdempotencyWindow()
	for i, k := range keys {
		w.add(k, uint64(i), int64(i), nil, storage.Result{User: shared})
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.KeepAlive(w)
	runtime.KeepAlive(keys)
	return float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n)
}

// storedBytes is what bytesPerKey's entries store of their own: the key
// and the encoded result.
func storedBytes(keyLen int) float64 {
	return float64(keyLen + len(storage.AppendResult(nil, &storage.Result{User: &storage.User{ID: "0000000000000000"}})))
}

// A kept key costs ~100 bytes beyond what it stores (its key and its
// result, encoded): the slot (hash, fingerprint, time, where the key and
// result are) and its index entry.
func TestIdempotencyBytesPerKey(t *testing.T) {
	const n, keyLen = 200_000, 36
	perKey := bytesPerKey(t, n, keyLen)
	beyond := perKey - storedBytes(keyLen)
	t.Logf("window of %d keys: %.0f bytes per key, %.0f beyond its key and encoded result", n, perKey, beyond)
	if beyond > 100 {
		t.Fatalf("a kept key costs %.0f bytes beyond its key and result", beyond)
	}
}

// The window against a plain map, with a hash that makes many keys clash:
// random adds, expiries, lookups and views agree with the model.
func TestIdempotencyWindowModel(t *testing.T) {
	defer func(h func(maphash.Seed, string) uint64) { idemHash = h }(idemHash)
	idemHash = func(_ maphash.Seed, s string) uint64 { return uint64(len(s) % 7) }
	rng := rand.New(rand.NewPCG(1, 2))
	w := newIdempotencyWindow()
	type kept struct {
		id string
		fp uint64
		at int64
	}
	var model []kept // in add order
	now := int64(0)
	for step := range 20_000 {
		switch r := rng.IntN(100); {
		case r < 60:
			id := strconv.Itoa(rng.IntN(5000))
			now += int64(rng.IntN(3))
			if _, ok := w.get(id); ok {
				continue
			}
			fp := rng.Uint64()
			w.add(id, fp, now, nil, storage.Result{Err: &storage.Error{Kind: storage.KindConflict, Message: id}})
			model = append(model, kept{id, fp, now})
		case r < 70:
			cut := now - int64(rng.IntN(200))
			w.expire(cut)
			i := 0
			for i < len(model) && model[i].at < cut {
				i++
			}
			model = model[i:]
		default:
			id := strconv.Itoa(rng.IntN(5000))
			want := -1
			for i, k := range model {
				if k.id == id {
					want = i
				}
			}
			seq, ok := w.get(id)
			if ok != (want >= 0) {
				t.Fatalf("step %d: get(%q) = %v, model has it: %v", step, id, ok, want >= 0)
			}
			if ok {
				if w.fingerprint(seq) != model[want].fp {
					t.Fatalf("step %d: %q has fingerprint %d, want %d", step, id, w.fingerprint(seq), model[want].fp)
				}
				if res := w.answer(seq).Result(); res.Err == nil || res.Err.Message != id {
					t.Fatalf("step %d: %q answers %+v", step, id, res)
				}
			}
		}
		if w.size() != len(model) {
			t.Fatalf("step %d: size %d, model %d", step, w.size(), len(model))
		}
		if step%1000 == 0 {
			es := w.view().entries()
			for i, e := range es {
				if e.RequestID != model[i].id || e.AtMs != model[i].at || e.Fingerprint != model[i].fp || e.Result.Err.Message != e.RequestID {
					t.Fatalf("step %d: view entry %d is %+v, want %+v", step, i, e, model[i])
				}
			}
		}
	}
	if len(w.clash) == 0 {
		t.Fatal("no key clashed: the test did not test clashes")
	}
}

// Results that hold a document are kept as values, not encoded (that would
// copy the text), whether given when added or settled later.
func TestIdempotencyDocumentResultsHeld(t *testing.T) {
	w := newIdempotencyWindow()
	doc := &storage.Doc{ID: "d1", Title: "a title"}
	w.add("given", 1, 1, nil, storage.Result{Doc: doc})
	// Settled by the add that records it (its result is known).
	w.add("later", 2, 2, actors.Resolved(storage.Result{Doc: doc}), storage.Result{})
	w.add("user", 3, 3, nil, storage.Result{User: &storage.User{ID: "u1", Name: "Ann"}})
	view := w.view()
	w.add("next", 4, 4, nil, storage.Result{})
	if w.settleSeq != 4 {
		t.Fatalf("settled up to %d", w.settleSeq)
	}
	for _, id := range []string{"given", "later"} {
		seq, ok := w.get(id)
		if !ok {
			t.Fatalf("%s: not kept", id)
		}
		if _, s := w.slot(seq); s.state != idemHeld {
			t.Fatalf("%s: state %d, want held", id, s.state)
		}
		if got := w.answer(seq).Result().Doc; got != doc {
			t.Fatalf("%s: answered %+v", id, got)
		}
	}
	es := view.entries()
	if len(es) != 3 || es[0].Result.Doc != doc || es[1].Result.Doc != doc || es[2].Result.User.Name != "Ann" {
		t.Fatalf("view entries: %+v", es)
	}
}
