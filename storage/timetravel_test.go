package storage

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// checkpointedDoc is sampleDoc's document with more changes, by two
// authors, under rules that keep checkpoints every 3 versions.
func checkpointedDoc(t testing.TB) *Doc {
	d := newTestDoc(t, "héllo")
	rules := HistoryRules{MaxChanges: 10, CheckpointEvery: 3}
	for i := range 14 {
		var err *Error
		d, _, err = d.SubmitAs(fmt.Sprint("user-", i%2), "c", uint64(i+1), d.Version, []Op{ins(i%3, "ü"), del(0, 1)}, int64(7000+i), rules)
		if err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// TestDocTimeTravelProperty: random submits from clients on older bases,
// under random history rules; after every submit, every version from the
// oldest the document claims to keep rebuilds to the text it had (a
// model keeps every text), every older one answers gone naming that
// oldest, the bytes stay within the bound, checkpoints stay at most
// CheckpointEvery apart, and the oldest rebuildable version is never
// more than CheckpointEvery past the oldest base.
func TestDocTimeTravelProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for round := range 30 {
		g := &opGen{r: r, next: 0x4E00}
		rules := HistoryRules{MaxChanges: 1 + r.IntN(60), CheckpointEvery: 1 + r.IntN(12)}
		if r.IntN(2) == 0 {
			rules.MaxBytes = 200 + r.IntN(2000)
		}
		d := newTestDoc(t, g.fresh(r.IntN(20)))
		texts := []string{d.Text.String()}
		seqs := map[string]uint64{}
		fits := true // every text so far could be checkpointed
		for step := range 250 {
			client := fmt.Sprint("c", r.IntN(4))
			lo := max(d.OldestBase(), d.Version-min(d.Version, uint64(r.IntN(4))))
			base := lo + uint64(r.IntN(int(d.Version-lo)+1))
			seqs[client]++
			next, _, err := d.SubmitAs("u-"+client, client, seqs[client], base, g.ops(len([]rune(texts[base])), 3), int64(step), rules)
			if err != nil {
				continue // a conflict of the client's own base: not what this test is about
			}
			d = next
			texts = append(texts, d.Text.String())
			if rules.MaxBytes > 0 && checkpointBytes(d.Text) > rules.MaxBytes/2 {
				fits = false
			}

			oldest := d.OldestVersion()
			if oldest < d.OldestBase() || oldest > d.Version {
				t.Fatalf("round %d: oldest %d outside %d..%d", round, oldest, d.OldestBase(), d.Version)
			}
			for v := oldest; v <= d.Version; v++ {
				got, err := d.TextAt(v)
				if err != nil || got.String() != texts[v] {
					t.Fatalf("round %d step %d: version %d: %q %v, want %q", round, step, v, got.String(), err, texts[v])
				}
			}
			if oldest > 0 {
				_, err := d.TextAt(oldest - 1)
				var gone *GoneError
				if !errors.As(err, &gone) || gone.Oldest != oldest || gone.Version != oldest-1 {
					t.Fatalf("version %d below the oldest %d: %v", oldest-1, oldest, err)
				}
			}
			changes, cb := d.KeptHistory()
			vs, pb := d.Checkpoints()
			if rules.MaxBytes > 0 && cb+pb > rules.MaxBytes && (changes > 1 || len(vs) > 0) {
				t.Fatalf("history %d + checkpoints %d bytes beyond %d", cb, pb, rules.MaxBytes)
			}
			if changes > rules.MaxChanges {
				t.Fatalf("%d changes kept, at most %d", changes, rules.MaxChanges)
			}
			if fits && rules.MaxBytes == 0 {
				every := uint64(rules.CheckpointEvery)
				for i := 1; i < len(vs); i++ {
					if vs[i]-vs[i-1] > every {
						t.Fatalf("checkpoints %v more than %d apart", vs, every)
					}
				}
				if len(vs) > 0 && d.Version-vs[len(vs)-1] >= every {
					t.Fatalf("checkpoints %v: version %d is %d past the newest", vs, d.Version, every)
				}
				if oldest-d.OldestBase() > every {
					t.Fatalf("oldest readable %d is more than %d past the oldest base %d", oldest, every, d.OldestBase())
				}
			}
		}
	}
}

func TestDocTimeTravelLimits(t *testing.T) {
	d := newTestDoc(t, "abc")
	if _, err := d.TextAt(1); !errors.Is(err, ErrBadRequest) || err.(*Error).Field != "version" {
		t.Fatalf("a version beyond the document: %v", err)
	}
	if got, err := d.TextAt(0); err != nil || got.String() != "abc" {
		t.Fatalf("current version: %q %v", got.String(), err)
	}
	// Without checkpoints (a command of an older version), only the
	// current version is readable.
	d, _, _ = d.SubmitAs("u", "c", 1, 0, []Op{ins(0, "x")}, 1, HistoryRules{MaxChanges: 100})
	var gone *GoneError
	if _, err := d.TextAt(0); !errors.As(err, &gone) || gone.Oldest != 1 || gone.Field != "version" {
		t.Fatalf("no checkpoint: %v", err)
	}
	// The first submit with checkpoints keeps the text before it.
	rules := HistoryRules{MaxChanges: 5, CheckpointEvery: 2}
	d, _, _ = d.SubmitAs("u", "c", 2, 1, []Op{ins(0, "y")}, 2, rules)
	if got, err := d.TextAt(1); err != nil || got.String() != "xabc" {
		t.Fatalf("version 1: %q %v", got.String(), err)
	}
	for i := range 10 {
		d, _, _ = d.SubmitAs("u", "c", uint64(3+i), d.Version, []Op{ins(0, "z")}, 3, rules)
	}
	// 12 versions, 5 changes kept: 7..12, checkpoints 2 apart.
	if d.OldestBase() != 7 || d.OldestVersion() < 7 || d.OldestVersion() > 8 {
		t.Fatalf("oldest base %d, oldest version %d", d.OldestBase(), d.OldestVersion())
	}
	if _, err := d.TextAt(3); !errors.As(err, &gone) || gone.Oldest != d.OldestVersion() {
		t.Fatalf("a dropped version: %v", err)
	}
	if _, _, err := d.HistoryPage(7, 10); !errors.As(err, &gone) || gone.Oldest != 8 || gone.Field != "before" {
		t.Fatalf("a history page before the kept changes: %v", err)
	}

	// A text beyond half the history bytes is not checkpointed; the
	// newest change is still kept.
	big := newTestDoc(t, strings.Repeat("a", 3000))
	brules := HistoryRules{MaxChanges: 100, MaxBytes: 4000, CheckpointEvery: 1}
	for i := range 5 {
		big, _, _ = big.SubmitAs("u", "c", uint64(1+i), big.Version, []Op{ins(0, "b")}, 1, brules)
	}
	if vs, _ := big.Checkpoints(); len(vs) != 0 {
		t.Fatalf("checkpoints %v of a text beyond half the bytes", vs)
	}
	if n, _ := big.KeptHistory(); n != 5 {
		t.Fatalf("%d changes kept", n)
	}
	// Checkpoints count against the bytes, and the oldest go first.
	small := newTestDoc(t, strings.Repeat("a", 900))
	srules := HistoryRules{MaxChanges: 100, MaxBytes: 2000, CheckpointEvery: 1}
	for i := range 6 {
		small, _, _ = small.SubmitAs("u", "c", uint64(1+i), small.Version, []Op{ins(0, "b")}, 1, srules)
		_, cb := small.KeptHistory()
		vs, pb := small.Checkpoints()
		if cb+pb > 2000 || len(vs) == 0 || len(vs) > 2 || vs[len(vs)-1] != small.Version {
			t.Fatalf("after %d submits: checkpoints %v, %d+%d bytes", i+1, vs, cb, pb)
		}
	}
	// Two checkpoints of ~917 bytes leave room for two changes: the
	// older ones went before the newer checkpoints.
	if n, _ := small.KeptHistory(); n != 2 || small.OldestBase() != 4 || small.OldestVersion() != 5 {
		t.Fatalf("%d changes kept, oldest base %d, oldest version %d", n, small.OldestBase(), small.OldestVersion())
	}
}

func TestDocHistoryPage(t *testing.T) {
	d := newTestDoc(t, "héllo")
	rules := HistoryRules{MaxChanges: 100, CheckpointEvery: 4}
	for i, ops := range [][]Op{{ins(0, "日本")}, {del(1, 2)}, {rep(0, 3, "wörld!")}, {ins(0, "a"), del(2, 1)}} {
		var err *Error
		d, _, err = d.SubmitAs(fmt.Sprint("u", i), fmt.Sprint("c", i), 1, d.Version, ops, int64(1000*(i+1)), rules)
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []struct {
		version           uint64
		author            string
		inserted, deleted int
	}{{4, "u3", 1, 1}, {3, "u2", 6, 3}, {2, "u1", 0, 2}, {1, "u0", 2, 0}}
	var got []Change
	before := d.Version + 1
	for pages := 0; before != 0; pages++ {
		page, next, err := d.HistoryPage(before, 3)
		if err != nil {
			t.Fatal(err)
		}
		if pages == 0 && (len(page) != 3 || next != 2) || pages == 1 && (len(page) != 1 || next != 0) {
			t.Fatalf("page %d: %d items, next %d", pages, len(page), next)
		}
		got = append(got, page...)
		before = next
	}
	if len(got) != len(want) {
		t.Fatalf("%d changes listed", len(got))
	}
	for i, w := range want {
		c := &got[i]
		ins, del := c.Counted()
		if c.Version != w.version || c.Author != w.author || c.ClientID != fmt.Sprint("c", w.version-1) || c.AtMs != int64(1000*w.version) || ins != w.inserted || del != w.deleted {
			t.Fatalf("item %d: %+v inserted %d deleted %d, want %+v", i, c, ins, del, w)
		}
	}
	if page, next, err := d.HistoryPage(1<<60, 2); err != nil || len(page) != 2 || page[0].Version != 4 || next != 3 {
		t.Fatalf("before beyond the version: %v %d %v", page, next, err)
	}
	if page, next, err := d.HistoryPage(1, 2); err != nil || len(page) != 0 || next != 0 {
		t.Fatalf("before the first change: %v %d %v", page, next, err)
	}
	if _, _, err := d.HistoryPage(0, 2); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("before 0: %v", err)
	}
}

// TestApplyDocRecordsAuthor: a submit command's caller and time are its
// change's author and time; a command's checkpoint interval is used.
func TestApplyDocRecordsAuthor(t *testing.T) {
	d := newTestDoc(t, "abc")
	c := &DocCommand{DocID: "d1", Caller: "owner", CheckpointEvery: 2,
		Submit: &DocSubmit{DocID: "d1", ClientID: "c", Seq: 1, Base: 0, Ops: []Op{ins(3, "!")}}}
	next, _, err := ApplyDoc(CmdDocSubmit, c, d, 4242, 10)
	if err != nil {
		t.Fatal(err)
	}
	h := next.History()
	if len(h) != 1 || h[0].Author != "owner" || h[0].AtMs != 4242 {
		t.Fatalf("history %+v", h)
	}
	if vs, _ := next.Checkpoints(); !reflect.DeepEqual(vs, []uint64{0}) {
		t.Fatalf("checkpoints %v", vs)
	}
}

// TestDocSubmitCommandVersions: a submit of command version 3 (written by
// the build before checkpoints) reads with no checkpoint interval; the
// current version carries it.
func TestDocSubmitCommandVersions(t *testing.T) {
	b, _ := hex.DecodeString("030e0902723900000000000000070264310275310002633103020101010368c3a9808040")
	c, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &DocCommand{DocID: "d1", Caller: "u1", HistoryBytes: 1 << 20,
		Submit: &DocSubmit{DocID: "d1", ClientID: "c1", Seq: 3, Base: 2, Ops: []Op{{Kind: OpInsert, Pos: 1, Text: "hé"}}}}
	if c.Kind != CmdDocSubmit || !reflect.DeepEqual(c.Doc, want) {
		t.Fatalf("got %+v %+v", c, c.Doc)
	}
	c.Doc.CheckpointEvery = DocCheckpointEvery
	again, err := DecodeCommand(EncodeCommand(nil, c))
	if err != nil || again.Doc.CheckpointEvery != DocCheckpointEvery {
		t.Fatalf("current version: %+v %v", again, err)
	}
}

// TestSnapshotKeepsHistory: a snapshot keeps every kept change's author
// and time and the checkpoints (written as the oldest checkpoint's text,
// the others rebuilt), so every version readable before reads the same
// after, and a snapshot of the restored state is the same bytes.
func TestSnapshotKeepsHistory(t *testing.T) {
	s := richSnapshot(t)
	s.Docs = append(s.Docs[:3:3], checkpointedDoc(t))
	s.Docs[3].ID = "doc-9999"
	got, err := ReadSnapshot(bytes.NewReader(writeSnap(t, s)))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, s)
	for i, want := range s.Docs {
		g := got.Docs[i]
		if !bytes.Equal(encodeDoc(g), encodeDoc(want)) || !reflect.DeepEqual(g.History(), want.History()) {
			t.Fatalf("document %s: history differs", want.ID)
		}
		wv, wb := want.Checkpoints()
		gv, gb := g.Checkpoints()
		if !reflect.DeepEqual(gv, wv) || gb != wb || g.OldestVersion() != want.OldestVersion() {
			t.Fatalf("document %s: checkpoints %v (%d bytes), want %v (%d)", want.ID, gv, gb, wv, wb)
		}
		for v := want.OldestVersion(); v <= want.Version; v++ {
			a, err1 := want.TextAt(v)
			b, err2 := g.TextAt(v)
			if err1 != nil || err2 != nil || a.String() != b.String() {
				t.Fatalf("document %s version %d: %q %v / %q %v", want.ID, v, a.String(), err1, b.String(), err2)
			}
		}
	}
	if d := got.Docs[3]; len(d.x().cps) < 2 || d.History()[0].Author == "" {
		t.Fatalf("the sample kept %d checkpoints, authors %+v", len(d.x().cps), d.History())
	}
	if !bytes.Equal(writeSnap(t, got), writeSnap(t, s)) {
		t.Fatal("a restored snapshot writes other bytes")
	}
}

// TestReadSnapshotVersion6 reads a snapshot written by the build before
// checkpoints (testdata/snapshot-v6.bin: richSnapshot with its first 40
// documents): the documents have no checkpoints and their changes no
// author, and the first submit with checkpoints keeps the text before it.
func TestReadSnapshotVersion6(t *testing.T) {
	_, got := readGoldenSnapshot(t, 6)
	for _, d := range got.Docs {
		if vs, _ := d.Checkpoints(); len(vs) != 0 || d.OldestVersion() != d.Version {
			t.Fatalf("document %s: checkpoints %v", d.ID, vs)
		}
		for _, c := range d.History() {
			if c.Author != "" || c.AtMs != 0 {
				t.Fatalf("document %s: change %+v", d.ID, c)
			}
		}
	}
	d := got.Docs[4]
	before := d.Text.String()
	next, _, serr := d.SubmitAs("u1", "new", 1, d.Version, []Op{ins(0, "!")}, 1, HistoryRules{MaxChanges: 3, CheckpointEvery: DocCheckpointEvery})
	if serr != nil {
		t.Fatal(serr)
	}
	if at, err := next.TextAt(d.Version); err != nil || at.String() != before {
		t.Fatalf("version %d after the first submit: %v", d.Version, err)
	}
}

// BenchmarkDocTextAt rebuilds, on a 1 MiB document, the version furthest
// from its checkpoint: DocCheckpointEvery-1 changes of a few ops each,
// applied to the checkpoint's rope.
func BenchmarkDocTextAt(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	d, _ := NewDoc("d1", "Bench", "owner", strings.Repeat("lorem ipsum dolor sit amet, ", (1<<20)/28), 1)
	rules := HistoryRules{MaxChanges: DefaultDocHistory, MaxBytes: DefaultDocHistoryBytes, CheckpointEvery: DocCheckpointEvery}
	for i := range 3 * DocCheckpointEvery {
		n := d.Text.Len()
		ops := []Op{ins(r.IntN(n), "typed "), del(r.IntN(n-10), 3)}
		var err *Error
		if d, _, err = d.SubmitAs("u", "c", uint64(i+1), d.Version, ops, 2, rules); err != nil {
			b.Fatal(err)
		}
	}
	vs, _ := d.Checkpoints()
	v := vs[len(vs)-1] - 1 // the version just before a checkpoint
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := d.TextAt(v); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(v-vs[len(vs)-2]), "changes/op")
}

// ropeBytes adds to seen every node of n not in it yet and answers the
// bytes they hold: the node and its chunk.
func ropeBytes(n *rnode, seen map[*rnode]bool) int {
	if n == nil || seen[n] {
		return 0
	}
	seen[n] = true
	return int(unsafe.Sizeof(*n)) + len(n.chunk) + ropeBytes(n.left, seen) + ropeBytes(n.right, seen)
}

// TestCheckpointsPinBoundedMemory: a document edited one letter at a time
// at random places keeps, besides its current text, only the older rope
// nodes its checkpoints share with nothing newer — at most one leaf and
// one root-to-leaf path a kept change, and never more than what the
// checkpoints count against the history bytes. So a long-lived document
// holds a bounded amount of older text however many edits it takes
// (docs/OPERATIONS.md, "Documents").
func TestCheckpointsPinBoundedMemory(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	d, _ := NewDoc("d1", "Soak", "owner", strings.Repeat("lorem ipsum dolor sit amet, ", (64<<10)/28), 1)
	rules := HistoryRules{MaxChanges: DefaultDocHistory, MaxBytes: DefaultDocHistoryBytes, CheckpointEvery: DocCheckpointEvery}
	const length = 64 << 10
	maxPinned := 0
	for i := range 4 * DefaultDocHistory {
		n := d.Text.Len()
		op := ins(r.IntN(n+1), "x")
		if n >= length { // held at a steady length, as make soak does
			op = del(r.IntN(n), 1)
		}
		var err *Error
		if d, _, err = d.SubmitAs("u", "c", uint64(i+1), d.Version, []Op{op}, 2, rules); err != nil {
			t.Fatal(err)
		}
		if i%250 != 249 {
			continue
		}
		seen := map[*rnode]bool{}
		ropeBytes(d.Text.root, seen)
		pinned := 0
		for _, cp := range d.x().cps {
			pinned += ropeBytes(cp.text.root, seen)
		}
		changes, _ := d.KeptHistory()
		_, counted := d.Checkpoints()
		path := (d.Text.root.height + 2) * int(unsafe.Sizeof(rnode{}))
		if bound := changes * (maxLeaf + path); pinned > bound || pinned > counted {
			t.Fatalf("after %d edits: checkpoints pin %d B beyond the text; at most %d B (%d kept changes) and the %d B they count", i+1, pinned, bound, changes, counted)
		}
		maxPinned = max(maxPinned, pinned)
	}
	if maxPinned == 0 {
		t.Fatal("the checkpoints pinned nothing: the walk measured nothing")
	}
	t.Logf("at most %d B pinned beyond a text of %d B", maxPinned, d.Text.Size())
}
