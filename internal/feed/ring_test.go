package feed

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/troupe-db/troupe/storage"
)

// TestCodecRoundTrip: a change reads back as it was built, users without
// their password hash or sessions, documents as their listing.
func TestCodecRoundTrip(t *testing.T) {
	user := &storage.User{ID: "u1", Name: "Zoë ✓", Email: "z@x.io", PasswordHash: "$argon2id$secret", Role: storage.RoleAdmin,
		Version: 7, CreatedMs: 1, UpdatedMs: math.MaxInt64, Auth: &storage.UserAuth{}}
	doc := &storage.Doc{ID: "d1", Title: strings.Repeat("t", 300), Owner: "u1", Editors: []string{"u2", "u3"}, Viewers: []string{"u4"},
		Version: math.MaxUint64, CreatedMs: -5, UpdatedMs: 9}
	pol := &storage.Policy{Name: "p", Limit: 3}
	mem := &storage.Member{ID: "n2", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	for _, tc := range []struct {
		p    Position
		v    spec
		want *Change
	}{
		{Position{1, 0}, spec{Kind: KindUser, Op: OpCreated, ID: "u1", Version: 7, AtMs: 42, User: user},
			&Change{Kind: KindUser, Op: OpCreated, ID: "u1", Version: 7, AtMs: 42,
				User: &storage.User{ID: "u1", Name: "Zoë ✓", Email: "z@x.io", Role: storage.RoleAdmin, Version: 7, CreatedMs: 1, UpdatedMs: math.MaxInt64}}},
		{Position{math.MaxUint64, math.MaxUint32 - 1}, spec{Kind: KindUser, Op: OpDeleted, ID: "u9", AtMs: -1},
			&Change{Kind: KindUser, Op: OpDeleted, ID: "u9", AtMs: -1}},
		{Position{2, 3}, spec{Kind: KindDoc, Op: OpUpdated, ID: "d1", Version: doc.Version, AtMs: 9, Doc: doc, LostReader: "u5"},
			&Change{Kind: KindDoc, Op: OpUpdated, ID: "d1", Version: doc.Version, AtMs: 9, LostReader: "u5",
				Doc: &storage.Doc{ID: "d1", Title: doc.Title, Owner: "u1", Editors: []string{"u2", "u3"}, Viewers: []string{"u4"}, Version: doc.Version, CreatedMs: -5, UpdatedMs: 9}}},
		{Position{3, 0}, spec{Kind: KindDoc, Op: OpCreated, ID: "d2", AtMs: 1, Doc: &storage.Doc{ID: "d2", Owner: "u1"}},
			&Change{Kind: KindDoc, Op: OpCreated, ID: "d2", AtMs: 1, Doc: &storage.Doc{ID: "d2", Owner: "u1"}}},
		{Position{4, 0}, spec{Kind: KindPolicy, Op: OpCreated, ID: "p", AtMs: 1, Policy: pol},
			&Change{Kind: KindPolicy, Op: OpCreated, ID: "p", AtMs: 1, Policy: pol}},
		{Position{5, 1}, spec{Kind: KindMember, Op: OpUpdated, ID: "n2", AtMs: 1, Member: mem},
			&Change{Kind: KindMember, Op: OpUpdated, ID: "n2", AtMs: 1, Member: mem}},
	} {
		b, side := encodeChange([]byte("prefix"), tc.p, &tc.v)
		got := decodeChange(b[len("prefix"):], side, &slabs{})
		tc.want.Position = tc.p
		if positionOf(b[len("prefix"):]) != tc.p || describe(got) != describe(tc.want) {
			t.Errorf("%v:\n got %s\nwant %s", tc.p, describe(got), describe(tc.want))
		}
	}
}

func describe(c *Change) string {
	s := fmt.Sprintf("%v %v %v %q v%d at=%d lost=%q", c.Position, c.Kind, c.Op, c.ID, c.Version, c.AtMs, c.LostReader)
	if c.User != nil {
		s += fmt.Sprintf(" user=%+v", *c.User)
	}
	if c.Doc != nil {
		d := c.Doc
		s += fmt.Sprintf(" doc=%s/%q/%s/%q/%q/%d/%d/%d", d.ID, d.Title, d.Owner, d.Editors, d.Viewers, d.Version, d.CreatedMs, d.UpdatedMs)
	}
	return s + fmt.Sprintf(" policy=%p member=%p", c.Policy, c.Member)
}

// TestRingSegments: across many segments, changes of all sizes (several
// to an entry, some with a record kept beside the arena) read back as
// pushed, from any position and in reads of any length, within the
// bounds; the decoded changes are shared while kept, and only the last
// few segments read keep theirs.
func TestRingSegments(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	const keep = 3000
	r := ring{maxChanges: keep, maxBytes: 1 << 30, floor: After(0)}
	var all []*Change // every change pushed, as it must read back
	pol := &storage.Policy{Name: "p"}
	for idx := uint64(1); len(all) < 5*segChanges+17; idx++ {
		for n := range uint32(rnd.IntN(3)) + 1 {
			c := &Change{Position: Position{idx, n}, Kind: KindUser, Op: OpCreated, ID: fmt.Sprint("u", idx, "-", n), Version: idx, AtMs: int64(idx)}
			v := spec{Kind: c.Kind, Op: c.Op, ID: c.ID, Version: c.Version, AtMs: c.AtMs}
			switch rnd.IntN(10) {
			case 0:
				c.Kind, c.Op, c.Policy = KindPolicy, OpUpdated, pol
				v.Kind, v.Op, v.Policy = c.Kind, c.Op, pol
			case 1:
				// Big enough that segments fill by bytes too.
				c.User = &storage.User{ID: c.ID, Name: strings.Repeat("n", rnd.IntN(20_000))}
				v.User = c.User
			}
			all = append(all, c)
			pushSpec(&r, c.Position, v)
		}
	}
	kept := all[len(all)-keep:]
	if r.len() != keep || r.floor != all[len(all)-keep-1].Position || r.last() != all[len(all)-1].Position {
		t.Fatalf("%d kept, floor %v, last %v", r.len(), r.floor, r.last())
	}
	if len(r.segs) < 3 {
		t.Fatalf("only %d segments", len(r.segs))
	}
	for range 200 {
		from := rnd.IntN(len(kept) + 1) // read after kept[from-1]
		p := r.floor
		if from > 0 {
			p = kept[from-1].Position
		}
		if rnd.IntN(4) == 0 && from > 0 {
			p = After(kept[from-1].Index) // after the whole entry
			for from < len(kept) && kept[from].Index == p.Index {
				from++
			}
		}
		max := 1 + rnd.IntN(2*segChanges)
		got, err := r.after(p, []*Change{nil}, max)
		if err != nil {
			t.Fatalf("after %v: %v", p, err)
		}
		got = got[1:]
		want := kept[from:min(len(kept), from+max)]
		if len(got) != len(want) {
			t.Fatalf("after %v, max %d: %d changes, want %d", p, max, len(got), len(want))
		}
		for i := range got {
			if describe(got[i]) != describe(want[i]) {
				t.Fatalf("after %v: change %d is\n%s, want\n%s", p, i, describe(got[i]), describe(want[i]))
			}
		}
		if len(r.decoded) > decodedSegs {
			t.Fatalf("%d segments hold decoded changes", len(r.decoded))
		}
	}
	a, _ := r.after(kept[len(kept)-3].Position, nil, 2)
	b, _ := r.after(kept[len(kept)-3].Position, nil, 2)
	if !reflect.DeepEqual(a, b) || a[0] != b[0] {
		t.Fatal("the newest changes were decoded twice")
	}
	if _, err := r.after(all[len(all)-keep-2].Position, nil, 1); err == nil {
		t.Fatal("a read from before the floor found changes")
	}
}

// TestRingUnreadDecodesNothing: with nobody reading, the history is
// arenas and offsets, nothing decoded.
func TestRingUnreadDecodesNothing(t *testing.T) {
	r := ring{maxChanges: 10_000, maxBytes: 1 << 30, floor: After(0)}
	u := &storage.User{ID: "u", Name: "n", Email: "e@x.io"}
	for i := uint64(1); i <= 5000; i++ {
		pushSpec(&r, Position{i, 0}, spec{Kind: KindUser, Op: OpCreated, ID: "u", User: u})
	}
	if len(r.decoded) != 0 {
		t.Fatalf("%d segments decoded", len(r.decoded))
	}
	for _, s := range r.segs {
		if s.dec != nil || len(s.side) != 0 {
			t.Fatal("a segment holds pointers")
		}
	}
}

// TestRingReusesUnreadSegments: a history nobody reads turns over
// without allocating; a change a reader was given keeps its strings
// after its segment is dropped (that segment is not reused).
func TestRingReusesUnreadSegments(t *testing.T) {
	r := ring{maxChanges: 3 * segChanges, maxBytes: 1 << 30, floor: After(0)}
	u := &storage.User{ID: "u", Name: "name", Email: "e@x.io"}
	i := uint64(0)
	push := func(n int) {
		for range n {
			i++
			pushSpec(&r, Position{i, 0}, spec{Kind: KindUser, Op: OpCreated, ID: fmt.Sprint("u", i), User: u})
		}
	}
	push(5 * segChanges)
	held, err := r.after(r.floor, nil, 1)
	if err != nil || len(held) != 1 {
		t.Fatal(len(held), err)
	}
	before := describe(held[0])
	enc, _ := encodeChange(nil, Position{}, &spec{Kind: KindUser, Op: OpCreated, ID: "u-same", User: u})
	allocs := testing.AllocsPerRun(10, func() {
		for range 2 * segChanges {
			i++
			binaryPutPosition(enc, Position{i, 0})
			r.push(enc, nil)
		}
	})
	// The slice of segments grows now and then; the arenas never.
	if allocs > 2 {
		t.Fatalf("%.1f allocations per %d changes pushed", allocs, 2*segChanges)
	}
	if after := describe(held[0]); after != before {
		t.Fatalf("a change read before its segment was dropped changed:\n%s\n%s", before, after)
	}
	push(1)
	if cs, err := r.after(After(i-2), nil, 10); err != nil || len(cs) != 2 || cs[1].ID != fmt.Sprint("u", i) || cs[0].ID != "u-same" {
		t.Fatalf("after reuse: %d changes, %v", len(cs), err)
	}
}

// binaryPutPosition rewrites an encoded change's position.
func binaryPutPosition(b []byte, p Position) {
	binary.LittleEndian.PutUint64(b, p.Index)
	binary.LittleEndian.PutUint32(b[8:], p.N)
}
