package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// TestDocHistorySurvivesRestart: a document's past versions, its
// changes' authors and times and its checkpoints read the same after a
// restart that restores a snapshot and replays the log after it.
func TestDocHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	n, stop := testNode(t, dir)
	author := createUser(t, n, "Ada", "ada@example.com").User.ID
	propose := func(kind storage.CommandKind, dc *storage.DocCommand) storage.Result {
		t.Helper()
		res, _, err := n.Propose(context.Background(), &storage.Command{Kind: kind, Stamp: n.Stamps(1), Doc: dc}, time.Now().Add(5*time.Second))
		if err != nil || res.Err != nil {
			t.Fatalf("%v %v", err, res.Err)
		}
		return res
	}
	docID := storage.MakeDocID(n.Stamps(1))
	propose(storage.CmdDocCreate, &storage.DocCommand{DocID: docID, Caller: author, Title: "Past", Content: "start"})
	texts := []string{"start"}
	submit := func(i int) {
		s := fmt.Sprintf("<%d>", i)
		propose(storage.CmdDocSubmit, &storage.DocCommand{DocID: docID, Caller: author, CheckpointEvery: 4, HistoryBytes: storage.DefaultDocHistoryBytes,
			Submit: &storage.DocSubmit{DocID: docID, ClientID: "c", Seq: uint64(i), Base: uint64(i - 1), Ops: []storage.Op{{Kind: storage.OpInsert, Pos: i % 3, Text: s}}}})
		texts = append(texts, storage.NewText(texts[i-1]).Insert(i%3, s).String())
	}
	for i := 1; i <= 10; i++ {
		submit(i)
	}
	if err := n.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	for i := 11; i <= 17; i++ {
		submit(i) // in the log after the snapshot
	}
	read := func() *storage.Doc {
		t.Helper()
		if err := n.ReadBarrier(context.Background(), replica.Linearizable, 0, time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		d, err := n.Docs().Get(docID, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := read()
	wantCps, _ := before.Checkpoints()
	applied := n.FSM().AppliedIndex()
	stop()

	n, stop = testNode(t, dir)
	defer stop()
	if err := n.ReadBarrier(context.Background(), replica.Linearizable, applied, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	d := read()
	if cps, _ := d.Checkpoints(); fmt.Sprint(cps) != fmt.Sprint(wantCps) || len(cps) < 4 || cps[0] != 0 {
		t.Fatalf("checkpoints %v, before the restart %v", cps, wantCps)
	}
	for v := uint64(0); v <= d.Version; v++ {
		got, err := d.TextAt(v)
		if err != nil || got.String() != texts[v] {
			t.Fatalf("version %d after the restart: %q %v, want %q", v, got.String(), err, texts[v])
		}
	}
	h := d.History()
	if len(h) != 17 {
		t.Fatalf("%d changes kept", len(h))
	}
	for i, c := range h {
		if c.Author != author || c.AtMs != before.History()[i].AtMs || c.AtMs == 0 {
			t.Fatalf("change %d: %+v, before the restart %+v", c.Version, c, before.History()[i])
		}
	}
}
