package storage

import (
	"fmt"
	"sync"
	"testing"
)

// TestDocHistoryFullIsConstantWork: once a document keeps its 1000
// changes, a submit must not walk or copy them. The kept changes are
// copied into a new array only when the array is full of dropped ones, so
// 5000 submits on a full history replace it a handful of times, not 5000.
func TestDocHistoryFullIsConstantWork(t *testing.T) {
	const H = 1000
	d := newTestDoc(t, "")
	for i := range H {
		d, _ = mustSubmit(t, d, fmt.Sprintf("c%d", i%7), uint64(1+i/7), d.Version, []Op{ins(0, "x")}, H)
	}
	arrays := 0
	last := d.x().histArr
	for i := range 5 * H {
		d, _ = mustSubmit(t, d, "w", uint64(1+i), d.Version, []Op{ins(0, "y")}, H)
		if d.x().histArr != last {
			arrays++
			last = d.x().histArr
		}
		if n, _ := d.KeptHistory(); n != H {
			t.Fatalf("%d kept", n)
		}
	}
	if arrays > 5*H/H+1 {
		t.Fatalf("5000 submits on a full history copied it %d times", arrays)
	}
}

// TestDocHistorySharedSafely: documents derived from one another share
// the history's array. An older document — a snapshot's view — reads its
// own changes while newer ones are appended (no race), and two submits
// from the same document each keep their own history.
func TestDocHistorySharedSafely(t *testing.T) {
	d := newTestDoc(t, "")
	for i := range 20 {
		d, _ = mustSubmit(t, d, "a", uint64(1+i), d.Version, []Op{ins(0, "a")}, 50)
	}
	view := d
	want := view.History()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			got := view.History()
			if len(got) != len(want) || got[len(got)-1].Version != want[len(want)-1].Version {
				t.Errorf("the view's history changed: %d changes", len(got))
				return
			}
		}
	})
	cur := d
	for i := range 500 {
		cur, _ = mustSubmit(t, cur, "b", uint64(1+i), cur.Version, []Op{ins(0, "b")}, 50)
	}
	close(stop)
	wg.Wait()

	// Two branches from the same document.
	b1, _ := mustSubmit(t, d, "x", 1, d.Version, []Op{ins(0, "1")}, 50)
	b2, _ := mustSubmit(t, d, "y", 1, d.Version, []Op{ins(0, "2")}, 50)
	h1, h2 := b1.History(), b2.History()
	if h1[len(h1)-1].ClientID != "x" || h2[len(h2)-1].ClientID != "y" {
		t.Fatalf("branches share a change: %q, %q", h1[len(h1)-1].ClientID, h2[len(h2)-1].ClientID)
	}
	if got := view.History(); len(got) != len(want) || got[len(got)-1].ClientID != "a" {
		t.Fatalf("the view changed under the branches")
	}
}

// BenchmarkDocSubmitFullHistory: a submit on a document that keeps its
// whole bound of 1000 changes.
func BenchmarkDocSubmitFullHistory(b *testing.B) {
	d, _ := NewDoc("d1", "Title", "owner", "", 1000)
	var err *Error
	for i := range 1000 {
		if d, _, err = d.SubmitBounded(fmt.Sprintf("c%d", i%7), uint64(1+i/7), d.Version, []Op{ins(0, "x")}, 1, 1000, 16<<20); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if d, _, err = d.SubmitBounded("w", uint64(1+i), d.Version, []Op{ins(0, "y")}, 1, 1000, 16<<20); err != nil {
			b.Fatal(err)
		}
	}
}
