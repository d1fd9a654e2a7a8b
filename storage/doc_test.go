package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

func newTestDoc(t testing.TB, content string) *Doc {
	t.Helper()
	d, err := NewDoc("d1", "Title", "owner", content, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustSubmit(t *testing.T, d *Doc, client string, seq, base uint64, ops []Op, maxHistory int) (*Doc, SubmitResult) {
	t.Helper()
	n, res, err := d.Submit(client, seq, base, ops, 2000+int64(d.Version), maxHistory)
	if err != nil {
		t.Fatalf("submit %s/%d base %d %v: %v", client, seq, base, ops, err)
	}
	return n, res
}

func wantKind(t *testing.T, err *Error, kind Kind, what string) {
	t.Helper()
	if err == nil || err.Kind != kind {
		t.Fatalf("%s: got %v, want kind %d", what, err, kind)
	}
}

// TestDocSubmitRules has a case for each sentence of API.md's Submits
// paragraph.
func TestDocSubmitRules(t *testing.T) {
	d0 := newTestDoc(t, "hello")
	if d0.Version != 0 {
		t.Fatal("a new document has version 0")
	}
	// Each accepted submit adds 1; the reply is the version and the ops.
	d1, r1 := mustSubmit(t, d0, "a", 1, 0, []Op{ins(5, " world")}, 10)
	if d1.Version != 1 || r1.Version != 1 || !reflect.DeepEqual(r1.Ops, []Op{ins(5, " world")}) || r1.Repeated {
		t.Fatalf("first submit: %d %+v", d1.Version, r1)
	}
	if d0.Version != 0 || d0.Text.String() != "hello" {
		t.Fatal("Submit changed the old document")
	}
	// seq increases, not necessarily by 1; ops against an older base are
	// transformed against the changes since it; the reply has the ops as
	// applied.
	d2, r2 := mustSubmit(t, d1, "b", 7, 0, []Op{ins(5, "!")}, 10)
	if d2.Text.String() != "hello world!" || r2.Version != 2 || !reflect.DeepEqual(r2.Ops, []Op{ins(11, "!")}) {
		t.Fatalf("transformed submit: %q %+v", d2.Text.String(), r2)
	}
	// The same seq again returns the first result and changes nothing.
	same, r, err := d2.Submit("b", 7, 0, []Op{ins(0, "other")}, 5000, 10)
	if err != nil || same != d2 || !r.Repeated || r.Version != 2 || !reflect.DeepEqual(r.Ops, r2.Ops) {
		t.Fatalf("repeat: %v %+v", err, r)
	}
	// A lower seq gets conflict.
	_, _, err = d2.Submit("b", 6, 2, []Op{ins(0, "x")}, 5000, 10)
	wantKind(t, err, KindConflict, "lower seq")
	// A submit whose base is older than the version this client's own last
	// change produced gets conflict.
	_, _, err = d2.Submit("b", 8, 1, []Op{ins(0, "x")}, 5000, 10)
	wantKind(t, err, KindConflict, "base before own last change")
	// ... while another client may use that base.
	d3, _ := mustSubmit(t, d2, "c", 1, 1, []Op{ins(0, "x")}, 10)
	// A base newer than the version is a bad request.
	_, _, err = d3.Submit("b", 8, 4, []Op{ins(0, "x")}, 5000, 10)
	wantKind(t, err, KindBadRequest, "future base")
	// Ops out of range after transform are a bad request, and a rejected
	// submit uses no seq number: the same seq then succeeds.
	_, _, err = d3.Submit("b", 8, 3, []Op{del(0, 100)}, 5000, 10)
	wantKind(t, err, KindBadRequest, "out of range")
	if err.Message != "ops out of range" {
		t.Fatalf("message %q", err.Message)
	}
	d4, _ := mustSubmit(t, d3, "b", 8, 3, []Op{del(0, 1)}, 10)
	if d4.Text.String() != "hello world!" || d4.UpdatedMs != 2003 || d4.CreatedMs != 1000 {
		t.Fatalf("got %q updated %d", d4.Text.String(), d4.UpdatedMs)
	}
	// Invalid input.
	_, _, err = d4.Submit("", 1, 4, []Op{ins(0, "x")}, 5000, 10)
	wantKind(t, err, KindBadRequest, "empty client id")
	_, _, err = d4.Submit("z", 1, 4, nil, 5000, 10)
	wantKind(t, err, KindBadRequest, "no ops")
	_, _, err = d4.Submit("z", 1, 4, []Op{ins(0, "\xff")}, 5000, 10)
	wantKind(t, err, KindBadRequest, "invalid UTF-8")
}

func TestDocHistoryBounded(t *testing.T) {
	const H = 4
	d := newTestDoc(t, "")
	for i := range 50 {
		d, _ = mustSubmit(t, d, fmt.Sprintf("c%d", i%3), uint64(1+i/3), d.Version, []Op{ins(0, "x")}, H)
		if len(d.x().hist) != min(i+1, H) || cap(d.x().hist)+d.x().histOff > 3*H+4 {
			t.Fatalf("after %d: %d kept, in an array of %d", i+1, len(d.x().hist), cap(d.x().hist)+d.x().histOff)
		}
	}
	if d.OldestBase() != 50-H {
		t.Fatalf("oldest base %d", d.OldestBase())
	}
	cs, err := d.ChangesSince(47)
	if err != nil || len(cs) != 3 || cs[0].Version != 48 || cs[2].Version != 50 || cs[2].ClientID != "c1" {
		t.Fatalf("changes since 47: %v %+v", err, cs)
	}
	_, err = d.ChangesSince(45)
	wantKind(t, err, KindVersionTooOld, "replay from before the history")
	if !errors.Is(err, ErrVersionTooOld) {
		t.Fatal("errors.Is(ErrVersionTooOld)")
	}
	_, _, err = d.Submit("z", 1, 45, []Op{ins(0, "y")}, 1, H)
	wantKind(t, err, KindVersionTooOld, "submit before the history")
	if cs, err := d.ChangesSince(50); err != nil || len(cs) != 0 {
		t.Fatalf("changes since now: %v %v", cs, err)
	}
	// A client whose last change left the history is forgotten; a retry
	// of that change has an older base, so it is refused, not reapplied.
	// c0's last change is version 49 (kept); c2's is 48 (kept)...
	d2 := d
	for i := range H {
		d2, _ = mustSubmit(t, d2, "other", uint64(i+1), d2.Version, []Op{ins(0, "o")}, H)
	}
	if d2.lastOf("c0") != nil {
		t.Fatal("c0 still remembered")
	}
	_, _, err = d2.Submit("c0", 17, 48, []Op{ins(0, "x")}, 1, H)
	wantKind(t, err, KindVersionTooOld, "retry of a forgotten change")
}

// TestDocMaxTransformWork: a large list against a far base is refused
// (the client reloads); against the current version it is accepted.
func TestDocMaxTransformWork(t *testing.T) {
	d := newTestDoc(t, strings.Repeat("x", 4000))
	big := make([]Op, MaxOpsPerList)
	for i := range big {
		big[i] = ins(i*3, "y")
	}
	for i := range 3 {
		d, _ = mustSubmit(t, d, "a", uint64(i+1), d.Version, big, 100)
	}
	_, _, err := d.Submit("b", 1, 0, big, 1, 100)
	wantKind(t, err, KindVersionTooOld, "too much transform work")
	mustSubmit(t, d, "b", 1, d.Version, big, 100)
	mustSubmit(t, d, "b", 1, 1, big[:10], 100)
}

// TestDocConvergence is the server model: clients submit against older
// bases, the document transforms each submit against the changes since
// its base and applies them in log order. Checks: every replica fed the
// same submits ends in the same state; replaying the changes as applied
// gives the same text; each submit keeps its effects (its inserted text
// is there, the text it deleted is gone, nothing else is deleted); the
// errors of the rules come where they should.
func TestDocConvergence(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for round := range 40 {
		H := 1 + r.IntN(12)
		g := &opGen{r: r, next: 0x4E00}
		initial := g.fresh(r.IntN(20))
		leader, replica := newTestDoc(t, initial), newTestDoc(t, initial)
		texts := []string{initial} // by version
		type client struct {
			id   string
			seq  uint64
			last uint64 // version of its last accepted change
		}
		clients := make([]*client, 1+r.IntN(5))
		for i := range clients {
			clients[i] = &client{id: fmt.Sprintf("client-%d", i)}
		}
		var log []Change
		for step := range 300 {
			c := clients[r.IntN(len(clients))]
			lo := max(leader.OldestBase(), c.last)
			base := lo + uint64(r.IntN(int(leader.Version-lo)+1))
			wantErr := Kind(0)
			switch k := r.IntN(20); {
			case k == 0 && leader.OldestBase() > 0:
				base = uint64(r.IntN(int(leader.OldestBase())))
				wantErr = KindVersionTooOld
			case k == 1 && c.last > leader.OldestBase():
				base = leader.OldestBase() + uint64(r.IntN(int(c.last-leader.OldestBase())))
				wantErr = KindConflict
			}
			ops := g.ops(len([]rune(texts[base])), 4)
			seq := c.seq + 1 + uint64(r.IntN(3))
			before := leader
			next, res, err := leader.Submit(c.id, seq, base, ops, int64(step), H)
			rnext, rres, rerr := replica.Submit(c.id, seq, base, ops, int64(step), H)
			if !reflect.DeepEqual(res, rres) || !reflect.DeepEqual(err, rerr) {
				t.Fatalf("replica answered differently: %+v %v / %+v %v", res, err, rres, rerr)
			}
			if wantErr != 0 {
				wantKind(t, err, wantErr, "round error")
				continue
			}
			if err != nil {
				t.Fatalf("round %d step %d: base %d of version %d (oldest %d): %v", round, step, base, leader.Version, leader.OldestBase(), err)
			}
			leader, replica = next, rnext
			texts = append(texts, leader.Text.String())
			log = append(log, Change{Version: res.Version, ClientID: c.id, Seq: seq, Ops: res.Ops, AtMs: int64(step)})
			c.seq, c.last = seq, res.Version

			// Effects: against the client's base text, its inserted text
			// survives, what it deleted is gone, and nothing else present
			// before this submit disappeared.
			mine := mustApply(t, NewText(texts[base]), ops).String()
			inserted, deleted := runeSet(opsText(ops)), runeSet(texts[base])
			for _, ch := range mine {
				delete(deleted, ch)
			}
			now := runeSet(leader.Text.String())
			for ch := range inserted {
				if runeSet(mine)[ch] && !now[ch] {
					t.Fatalf("inserted %q lost", ch)
				}
			}
			for ch := range runeSet(before.Text.String()) {
				if now[ch] == deleted[ch] {
					t.Fatalf("%q: present %v, deleted by this submit %v", ch, now[ch], deleted[ch])
				}
			}

			// A retry of this submit returns the same result.
			if r.IntN(10) == 0 {
				same, again, err := leader.Submit(c.id, seq, base, ops, 0, H)
				if err != nil || same != leader || !again.Repeated || again.Version != res.Version || !reflect.DeepEqual(again.Ops, res.Ops) {
					t.Fatalf("retry: %v %+v", err, again)
				}
			}
		}
		if a, b := encodeDoc(leader), encodeDoc(replica); !bytes.Equal(a, b) {
			t.Fatal("replicas differ")
		}
		x := NewText(initial)
		for _, ch := range log {
			x = mustApply(t, x, ch.Ops)
		}
		if x.String() != leader.Text.String() {
			t.Fatal("replaying the log gives another text")
		}
		if h := leader.History(); !reflect.DeepEqual(h, log[len(log)-len(h):]) {
			t.Fatal("history is not the end of the log")
		}
	}
}

// encodeDoc and decodeDoc use a snapshot's form of a document: its
// fields and changes, then their authors, times and checkpoints.
func encodeDoc(d *Doc) []byte {
	var e encoder
	e.doc(d)
	e.docHistory(d, nil)
	e.docAccess(d)
	e.docNamed(d, nil)
	return e.b
}

func decodeDoc(b []byte) (*Doc, error) {
	d := decoder{b: b}
	doc := d.doc()
	d.docHistory(doc)
	d.docAccess(doc)
	d.docNamed(doc)
	if err := d.end(); err != nil {
		return nil, err
	}
	return doc, nil
}

func sampleDoc(t testing.TB) *Doc {
	d := newTestDoc(t, "héllo wörld")
	d = d.WithEditor("u2").WithEditor("u1").WithEditor("u3").WithoutEditor("u3")
	steps := []struct {
		client string
		base   uint64
		ops    []Op
	}{
		{"a", 0, []Op{ins(0, "¡"), rep(1, 5, "hi")}},
		{"b", 0, []Op{del(6, 5)}},
		{"a", 1, []Op{ins(3, "!")}},
		{"c", 3, []Op{rep(0, 2, "")}},
	}
	for i, s := range steps {
		var err *Error
		d, _, err = d.Submit(s.client, uint64(i+1), s.base, s.ops, int64(5000+i), 3)
		if err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestDocEncodingRoundTrip(t *testing.T) {
	for _, d := range []*Doc{newTestDoc(t, ""), sampleDoc(t), sampleDoc(t).WithTitle("Другое", 9)} {
		b := encodeDoc(d)
		got, err := decodeDoc(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Text.String() != d.Text.String() || !reflect.DeepEqual(got.History(), d.History()) ||
			got.ID != d.ID || got.Title != d.Title || got.Owner != d.Owner || !reflect.DeepEqual(got.Editors, d.Editors) ||
			got.Version != d.Version || got.CreatedMs != d.CreatedMs || got.UpdatedMs != d.UpdatedMs || got.OldestBase() != d.OldestBase() {
			t.Fatalf("round trip differs:\n%+v\n%+v", d, got)
		}
		if !bytes.Equal(encodeDoc(got), b) {
			t.Fatal("encoding not stable")
		}
		// A decoded document goes on like the original.
		n1, r1, e1 := d.Submit("z", 1, d.OldestBase(), []Op{ins(0, "z")}, 1, 3)
		n2, r2, e2 := got.Submit("z", 1, d.OldestBase(), []Op{ins(0, "z")}, 1, 3)
		if e1 != nil || e2 != nil || !reflect.DeepEqual(r1, r2) || !bytes.Equal(encodeDoc(n1), encodeDoc(n2)) {
			t.Fatalf("decoded doc diverges: %v %v", e1, e2)
		}
	}
	if d := sampleDoc(t); !d.CanEdit("owner") || !d.CanEdit("u1") || d.CanEdit("u3") || !reflect.DeepEqual(d.Editors, []string{"u1", "u2"}) {
		t.Fatalf("editors %v", d.Editors)
	}
	// Truncations and damage fail without panicking.
	b := encodeDoc(sampleDoc(t))
	for i := range b {
		if _, err := decodeDoc(b[:i]); err == nil {
			t.Fatalf("truncated at %d decodes", i)
		}
	}
}

func TestDocSubmitEncoding(t *testing.T) {
	s := &DocSubmit{DocID: "d", ClientID: "c", Seq: 3, Base: 9, Ops: []Op{ins(1, "x"), del(0, 2), rep(4, 1, "ü"), rep(2, 2, "")}}
	var e encoder
	e.docSubmit(s)
	d := decoder{b: e.b}
	got := d.docSubmit()
	if err := d.end(); err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("%v %+v", err, got)
	}
}

// TestDocMemory measures the bytes an idle document with an empty history
// takes beyond its text: the Doc value and its id string (title and owner
// are shared here, as an owner's id would be).
func TestDocMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100k documents")
	}
	const n = 100_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("doc-%016x", i) // 20 bytes, like a generated id
	}
	docs := make([]*Doc, n)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.GC() // a second cycle frees what sync.Pool victim caches held
	runtime.ReadMemStats(&m0)
	for i := range docs {
		docs[i], _ = NewDoc(ids[i], "Meeting notes", "user-0001", "", 1)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	// TotalAlloc counts what was allocated in between, unlike HeapAlloc
	// which frees of earlier garbage would lower.
	per := float64(m1.TotalAlloc-m0.TotalAlloc) / n
	runtime.KeepAlive(docs)
	t.Logf("idle document, empty text and history: %.0f bytes beyond its id (the Doc struct is %d bytes)", per, unsafe.Sizeof(Doc{}))
	if per > 256 {
		t.Fatalf("%.0f bytes per idle document", per)
	}
}
