package storage

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// A Doc's rarely used fields live behind one pointer (Doc.rest) that Docs
// derived from one another share; these tests check that no method
// writes through it into a Doc other than the one it returns.

// docPrint is everything observable of a Doc: its encoding (text,
// history with authors, checkpoints, links, named versions) and what the
// encoding leaves out.
type docPrint struct {
	enc                 []byte
	changes, histBytes  int
	cps                 []uint64
	cpBytes, namedBytes int
	rest                docRest // a shallow copy: slices compared by content
	editors, viewers    []string
	title               string
	version, oldest     uint64
}

func printOf(d *Doc) docPrint {
	p := docPrint{enc: encodeDoc(d), rest: *d.x(), editors: d.Editors, viewers: d.Viewers, title: d.Title,
		version: d.Version, oldest: d.OldestVersion(), namedBytes: d.NamedBytes()}
	p.changes, p.histBytes = d.KeptHistory()
	p.cps, p.cpBytes = d.Checkpoints()
	return p
}

func (p docPrint) same(q docPrint) bool {
	return bytes.Equal(p.enc, q.enc) && p.changes == q.changes && p.histBytes == q.histBytes &&
		reflect.DeepEqual(p.cps, q.cps) && p.cpBytes == q.cpBytes && p.namedBytes == q.namedBytes &&
		reflect.DeepEqual(p.rest, q.rest) && reflect.DeepEqual(p.editors, q.editors) &&
		reflect.DeepEqual(p.viewers, q.viewers) && p.title == q.title && p.version == q.version && p.oldest == q.oldest
}

// docStep applies one random method to d at nowMs; it returns the new Doc
// (nil when the method refused) and what it did.
func docStep(r *rand.Rand, d *Doc, nowMs int64) (*Doc, string) {
	user := MakeUserID(StampAt(t0)+uint64(1+r.IntN(4)), 0)
	switch k := r.IntN(10); k {
	case 0, 1, 2: // a submit, based on the version or an older kept one
		base := d.Version - uint64(r.IntN(int(d.Version-d.OldestBase())+1))
		ops := []Op{{Kind: OpInsert, Pos: 0, Text: fmt.Sprintf("v%d;", d.Version)}}
		if r.IntN(3) == 0 && d.Text.Len() > 2 {
			ops = []Op{{Kind: OpDelete, Pos: 0, Len: 1}}
		}
		rules := HistoryRules{MaxChanges: 1 + r.IntN(8), MaxBytes: r.IntN(3) * 200, CheckpointEvery: r.IntN(4)}
		n, _, err := d.SubmitAs(user, fmt.Sprintf("c%d", r.IntN(3)), uint64(nowMs), base, ops, nowMs, rules)
		if err != nil {
			return nil, "submit"
		}
		return n, "submit"
	case 3:
		return d.WithTitle(fmt.Sprintf("t%d", nowMs), nowMs), "title"
	case 4:
		if r.IntN(2) == 0 {
			return d.WithMember(user, DocRole(1+r.IntN(2))), "member"
		}
		return d.WithoutMember(user), "unmember"
	case 5:
		if r.IntN(2) == 0 {
			return d.WithEditor(user), "editor"
		}
		return d.WithoutEditor(user), "uneditor"
	case 6, 7: // a share link made or revoked (expired ones dropped)
		c := &DocCommand{DocID: d.ID, Caller: d.Owner, LinkID: fmt.Sprintf("%016x", 0xa0+r.IntN(4)), Role: DocViewer,
			Remove: r.IntN(3) == 0, ExpiresInS: uint64(r.IntN(2))}
		n, _, err := ApplyDoc(CmdDocLink, c, d, nowMs, 8)
		if err != nil {
			return nil, "link"
		}
		return n, "link"
	default: // a named version made or deleted
		v := d.OldestVersion() + uint64(r.IntN(int(d.Version-d.OldestVersion())+1))
		c := &DocCommand{DocID: d.ID, Caller: d.Owner, VersionName: fmt.Sprintf("n%d", v), Version: v, Remove: r.IntN(3) == 0}
		n, _, err := ApplyNamedVersion(c, d, nowMs, 0)
		if err != nil {
			return nil, "named"
		}
		return n, "named"
	}
}

// Every method applied to any Doc, the newest or an older one of the
// same line, leaves every Doc made before it as it was.
func TestDocMethodsNeverChangeTheirReceiver(t *testing.T) {
	for seed := range uint64(16) {
		r := rand.New(rand.NewPCG(seed, 7))
		first, err := NewDoc(MakeDocID(StampAt(t0)), "doc", accOwner, "hello", t0)
		if err != nil {
			t.Fatal(err)
		}
		docs := []*Doc{first}
		prints := []docPrint{printOf(first)}
		// check compares Doc i with its print when it was made.
		check := func(step int, what string, i int) {
			if got := printOf(docs[i]); !got.same(prints[i]) {
				t.Fatalf("seed %d step %d: %s changed Doc %d (version %d)", seed, step, what, i, docs[i].Version)
			}
		}
		for step := range 200 {
			at := len(docs) - 1
			if r.IntN(4) == 0 {
				at = r.IntN(len(docs)) // an older Doc: the shared arrays' other path
			}
			from := docs[at]
			now := t0 + int64(step+1)*1000
			n, what := docStep(r, from, now)
			// The receiver and the newest Docs (which share the most
			// with it) at once; every Doc at the end of the line.
			check(step, what, at)
			for i := max(len(docs)-4, 0); i < len(docs); i++ {
				check(step, what, i)
			}
			if !reflect.DeepEqual(noRest, docRest{}) {
				t.Fatalf("seed %d step %d: %s wrote the shared empty docRest", seed, step, what)
			}
			if n != nil && n != from {
				if n.rest != nil && n.rest == from.rest && !reflect.DeepEqual(*n.rest, *from.rest) {
					t.Fatalf("seed %d step %d: %s shares a docRest it changed", seed, step, what)
				}
				docs, prints = append(docs, n), append(prints, printOf(n))
			}
		}
		for i := range docs {
			check(200, "the line", i)
		}
	}
}

// An idle document, created or restored, has no docRest: it costs a Doc
// without its past.
func TestIdleDocHasNoRest(t *testing.T) {
	d, err := NewDoc(MakeDocID(StampAt(t0)), "doc", accOwner, "hello", t0)
	if err != nil {
		t.Fatal(err)
	}
	back, derr := decodeDoc(encodeDoc(d))
	if derr != nil {
		t.Fatal(derr)
	}
	if d.rest != nil || back.rest != nil || d.WithTitle("x", t0+1).rest != nil {
		t.Fatal("an idle document holds a docRest")
	}
	n, _, serr := d.Submit("c", 1, 0, []Op{{Kind: OpInsert, Pos: 0, Text: "x"}}, t0+1, 4)
	if serr != nil || n.rest == nil || d.rest != nil {
		t.Fatalf("a submit: %v, rest %v, the original's %v", serr, n.rest, d.rest)
	}
}

// Documents of one owner hold one copy of its id, created or restored,
// whatever string the id came in.
func TestDocsShareTheirOwnersID(t *testing.T) {
	owner := func() string { return strings.Clone(accOwner) } // a string of its own each time
	a, err := NewDoc(MakeDocID(StampAt(t0)), "a", owner(), "x", t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewDoc(MakeDocID(StampAt(t0)+1), "b", owner(), "y", t0)
	if err != nil {
		t.Fatal(err)
	}
	back, derr := decodeDoc(encodeDoc(b))
	if derr != nil {
		t.Fatal(derr)
	}
	if a.Owner != accOwner || unsafe.StringData(a.Owner) != unsafe.StringData(b.Owner) || unsafe.StringData(a.Owner) != unsafe.StringData(back.Owner) {
		t.Fatal("documents of one owner hold copies of its id")
	}
}
