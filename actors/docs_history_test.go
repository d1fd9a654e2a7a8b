package actors

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// TestDocPastVersionsWhileSubmitting: a reader rebuilds past versions and
// lists the history of the documents Get answers while the actor goes on
// applying submits that append to the same history array and add and
// drop checkpoints (run with -race: a Doc once answered never changes).
func TestDocPastVersionsWhileSubmitting(t *testing.T) {
	d := newTestDocs(t, time.Hour) // 5 changes kept
	if r := waitResult(t, d.Apply(storage.CmdDocCreate, &storage.DocCommand{DocID: "d1", Caller: "owner", Title: "Past", Content: "x"}, 1000)); r.Err != nil {
		t.Fatal(r.Err)
	}
	const N = 300
	texts := make([]string, N+1)
	texts[0] = "x"
	for i := 1; i <= N; i++ {
		texts[i] = fmt.Sprint(i%10) + texts[i-1]
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			doc, err := d.Get("d1", time.Now().Add(5*time.Second))
			if err != nil {
				errs <- err
				return
			}
			for v := doc.OldestVersion(); v <= doc.Version; v++ {
				got, err := doc.TextAt(v)
				if err != nil || got.String() != texts[v] {
					errs <- fmt.Errorf("version %d of a document at %d: %q %v", v, doc.Version, got.String(), err)
					return
				}
			}
			if _, _, err := doc.HistoryPage(doc.Version+1, 3); err != nil {
				errs <- err
				return
			}
		}
	}()
	for i := 1; i <= N; i++ {
		r := waitResult(t, d.Apply(storage.CmdDocSubmit, &storage.DocCommand{DocID: "d1", Caller: "owner", CheckpointEvery: 2,
			Submit: &storage.DocSubmit{DocID: "d1", ClientID: "c", Seq: uint64(i), Base: uint64(i - 1), Ops: []storage.Op{ins(0, fmt.Sprint(i%10))}}}, int64(1000+i)))
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	doc, err := d.Get("d1", time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if h := doc.History(); len(h) != 5 || h[4].Author != "owner" || h[4].AtMs != 1000+N || doc.OldestVersion() < N-5 {
		t.Fatalf("history %+v, oldest %d", h, doc.OldestVersion())
	}
}
