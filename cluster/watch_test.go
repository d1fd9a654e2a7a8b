package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/storage"
)

// feedDigest waits until f's feed has every change up to index and
// describes each change after p, one line each: what must be the same on
// every node.
func feedDigest(t *testing.T, f *FSM, p feed.Position, index uint64) []string {
	t.Helper()
	if err := f.Feed().WaitProcessed(index, time.Now().Add(30*time.Second)); err != nil {
		t.Fatalf("the feed never reached index %d: %v", index, err)
	}
	var out []string
	var buf []*feed.Change
	for {
		var err error
		buf, err = f.Feed().Since(p, buf[:0], 1000)
		if err != nil {
			t.Fatalf("changes after %v: %v", p, err)
		}
		if len(buf) == 0 {
			return out
		}
		for _, c := range buf {
			out = append(out, describeChange(c))
		}
		p = buf[len(buf)-1].Position
	}
}

func describeChange(c *feed.Change) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %v %v %s v%d at=%d lost=%q", c.Position, c.Kind, c.Op, c.ID, c.Version, c.AtMs, c.LostReader)
	if u := c.User; u != nil {
		fmt.Fprintf(&b, " user=%s/%s/%s/%v/%d/%d/%d hash=%q auth=%v", u.ID, u.Name, u.Email, u.Role, u.Version, u.CreatedMs, u.UpdatedMs, u.PasswordHash, u.Auth != nil)
	}
	if d := c.Doc; d != nil {
		fmt.Fprintf(&b, " doc=%s/%q/%s/%v/%v/%d/%d/%d text=%d", d.ID, d.Title, d.Owner, d.Editors, d.Viewers, d.Version, d.CreatedMs, d.UpdatedMs, d.Text.Len())
	}
	if p := c.Policy; p != nil {
		fmt.Fprintf(&b, " policy=%+v", *p)
	}
	if m := c.Member; m != nil {
		fmt.Fprintf(&b, " member=%+v", *m)
	}
	return b.String()
}

// compareFeeds checks that two feeds hold the same changes.
func compareFeeds(t *testing.T, a, b []string, what string) {
	t.Helper()
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			t.Fatalf("%s: change %d differs:\n%s\n%s", what, i, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		t.Fatalf("%s: %d changes vs %d", what, len(a), len(b))
	}
}

// checkFeedShape checks what every change must be: users without
// secrets, documents without text, positions in order.
func checkFeedShape(t *testing.T, digest []string, changes []*feed.Change) {
	t.Helper()
	for i, c := range changes {
		if i > 0 && !changes[i-1].Less(c.Position) {
			t.Fatalf("change %d at %v after %v", i, c.Position, changes[i-1].Position)
		}
		if c.User != nil && (c.User.PasswordHash != "" || c.User.Auth != nil) {
			t.Fatalf("change %s holds a password hash or sessions", digest[i])
		}
		if c.Doc != nil && c.Doc.Text.Len() != 0 {
			t.Fatalf("change %s holds the document's text", digest[i])
		}
	}
}

// checkFeedKinds checks that a varied log gave every kind of change, and
// that text changes were coalesced.
func checkFeedKinds(t *testing.T, f *FSM, digest []string) {
	t.Helper()
	changes, err := f.Feed().Since(feed.After(0), nil, len(digest)+1)
	if err != nil || len(changes) != len(digest) {
		t.Fatalf("%d changes, %v; want %d", len(changes), err, len(digest))
	}
	checkFeedShape(t, digest, changes)
	seen := map[string]int{}
	for _, c := range changes {
		seen[c.Kind.String()+":"+c.Op.String()]++
		if c.LostReader != "" {
			seen["lost_reader"]++
		}
	}
	for _, want := range []string{"user:created", "user:updated", "user:deleted", "doc:created", "doc:updated", "doc:deleted", "policy:created", "policy:deleted"} {
		if seen[want] == 0 {
			t.Errorf("the feed never had a %s change: %v", want, seen)
		}
	}
	t.Logf("feed: %d changes: %v", len(changes), seen)
}

// TestFeedCoalescesTextChanges: a burst of submits to a document within
// one 100 ms bucket is announced by its first submit and, once a command
// of a later bucket is applied, by one change with the burst's last
// version; a node restored from a snapshot taken mid-burst announces the
// same. Removing an editor names the reader it loses.
func TestFeedCoalescesTextChanges(t *testing.T) {
	g := newLogGen(7)
	at := func(ms int64) uint64 { return storage.StampAt(1_800_000_000_000 + ms) }
	doc := func(kind storage.CommandKind, ms int64, dc *storage.DocCommand) *raft.Log {
		dc.DocID = "doc1"
		return g.log(&storage.Command{Kind: kind, Stamp: at(ms), Doc: dc})
	}
	submit := func(ms int64, seq uint64) *raft.Log {
		return doc(storage.CmdDocSubmit, ms, &storage.DocCommand{Caller: "owner", Submit: &storage.DocSubmit{DocID: "doc1", ClientID: "c", Seq: seq, Base: seq - 1,
			Ops: []storage.Op{{Kind: storage.OpInsert, Pos: 0, Text: "x"}}}})
	}
	noop := func(ms int64) *raft.Log { return g.log(&storage.Command{Kind: storage.CmdNoop, Stamp: at(ms)}) }
	editor := "0000000000000000"
	before := []*raft.Log{g.init(),
		doc(storage.CmdDocCreate, 0, &storage.DocCommand{Caller: "owner", Title: "notes"}),
		doc(storage.CmdDocEditor, 1, &storage.DocCommand{Caller: "owner", Editor: editor}),
		submit(1000, 1), // first of its bucket: announced
		submit(1010, 2), // held back
		submit(1020, 3), // held back
	}
	after := []*raft.Log{
		doc(storage.CmdDocTitle, 1030, &storage.DocCommand{Caller: "owner", Title: "renamed"}),
		noop(1050),      // same bucket: nothing owed is due
		noop(1100),      // a later bucket: version 3 is announced, renamed
		submit(1101, 4), // first of its bucket
		submit(1102, 5), // held back
		submit(1200, 6), // a later bucket: announced; version 5 is not
		doc(storage.CmdDocEditor, 1201, &storage.DocCommand{Caller: "owner", Editor: editor, Remove: true}),
		doc(storage.CmdDocDelete, 1300, &storage.DocCommand{Caller: "owner"}),
	}
	f1 := newDetFSM(t)
	defer f1.close()
	applyAll(t, before, 1, f1)
	snap, _ := f1.stateHash(t)
	applyAll(t, after, 2, f1)
	f2 := newDetFSM(t)
	defer f2.close()
	if err := f2.fsm.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	applyAll(t, after, 3, f2)

	last := after[len(after)-1].Index
	all := feedDigest(t, f1.fsm, feed.After(0), last)
	var docs []string
	for _, d := range all {
		if strings.Contains(d, " doc ") {
			docs = append(docs, d)
		}
	}
	want := []string{
		"2-0 doc created doc1 v0", "3-0 doc updated doc1 v0", "4-0 doc updated doc1 v1",
		`7-0 doc updated doc1 v3`, // the title change: version 3 still owed
		"9-0 doc updated doc1 v3", "10-0 doc updated doc1 v4", "12-0 doc updated doc1 v6",
		`13-0 doc updated doc1 v6 at=1800000001201 lost="` + editor + `"`, "14-0 doc deleted doc1 v6",
	}
	if len(docs) != len(want) {
		t.Fatalf("document changes:\n%s\nwant %d", strings.Join(docs, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(docs[i], want[i]) {
			t.Fatalf("change %d: %s\nwant %s…\nall:\n%s", i, docs[i], want[i], strings.Join(docs, "\n"))
		}
	}
	if !strings.Contains(docs[4], `"renamed"`) || !strings.Contains(docs[4], "at=1800000001030") {
		t.Fatalf("the owed change does not show the document as it is when announced: %s", docs[4])
	}
	from := feed.After(before[len(before)-1].Index)
	compareFeeds(t, feedDigest(t, f1.fsm, from, last), feedDigest(t, f2.fsm, from, last), "after a snapshot taken mid-burst")
}

// TestFeedRing: the history keeps the newest changes within its bounds;
// reading from before them is gone, with the oldest index to read from.
func TestFeedRing(t *testing.T) {
	d := newDetFSM(t)
	defer d.close()
	d.fsm.SetWatchHistory(feed.Config{MaxChanges: 50})
	g := newLogGen(3)
	logs := []*raft.Log{g.init()}
	for range 200 {
		stamp := g.stamps(1)
		email := fmt.Sprint(rand.Uint64(), "@x.io")
		logs = append(logs, g.log(&storage.Command{Kind: storage.CmdUserCreate, Stamp: stamp, Create: &storage.BatchItem{
			ID: storage.MakeUserID(stamp, storage.ShardOf(storage.EmailKey(email), detShards)), User: storage.NewUser{Name: "n", Email: email, Role: storage.RoleUser}}}))
	}
	applyAll(t, logs, 1, d)
	last := logs[len(logs)-1].Index
	if err := d.fsm.Feed().WaitProcessed(last, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	oldest := d.fsm.Feed().Oldest()
	if oldest != last-50 {
		t.Fatalf("oldest %d, want %d", oldest, last-50)
	}
	if cs, err := d.fsm.Feed().Since(feed.After(oldest), nil, 1000); err != nil || len(cs) != 50 || cs[0].Index != oldest+1 {
		t.Fatalf("from the oldest: %d changes, %v", len(cs), err)
	}
	var gone *feed.GoneError
	if _, err := d.fsm.Feed().Since(feed.After(oldest-1), nil, 1000); !errors.As(err, &gone) || gone.Oldest != oldest {
		t.Fatalf("from before the oldest: %v", err)
	}
}

// TestFeedSinceReader: a reader that keeps its own position (as a
// webhook deliverer will) and reads "every change after X" with Since
// while the log is applied gets every change once, in log order, the
// same as reading the whole feed afterwards.
func TestFeedSinceReader(t *testing.T) {
	d := newDetFSM(t)
	defer d.close()
	g := newLogGen(11)
	logs := append([]*raft.Log{g.init()}, g.logs(3000)...)
	last := logs[len(logs)-1].Index
	f := d.fsm.Feed()
	got := make(chan []string, 1)
	go func() {
		var out []string
		var buf []*feed.Change
		p := feed.After(0)
		for {
			// Taken before reading: once processed covers the last
			// entry, a read that finds nothing new has read everything.
			done := f.Processed() >= last
			var err error
			buf, err = f.Since(p, buf[:0], 17)
			if err != nil {
				t.Errorf("after %v: %v", p, err)
				got <- out
				return
			}
			for _, c := range buf {
				out = append(out, describeChange(c))
			}
			if len(buf) > 0 {
				p = buf[len(buf)-1].Position
				continue
			}
			if done {
				got <- out
				return
			}
			// Nothing new yet: wait for the next entries.
			_ = f.WaitProcessed(f.Processed()+1, time.Now().Add(time.Second))
		}
	}()
	applyAll(t, logs, 5, d)
	read := <-got
	compareFeeds(t, read, feedDigest(t, d.fsm, feed.After(0), last), "read while applied vs read after")
	if len(read) < 1000 {
		t.Fatalf("only %d changes", len(read))
	}
}

// TestFeedRestoreEndsSubscriptions: a snapshot installed under a live
// subscription leaves a gap in what it read, so its next read is gone;
// a new one starts after the snapshot's index.
func TestFeedRestoreEndsSubscriptions(t *testing.T) {
	src := newDetFSM(t)
	defer src.close()
	g := newLogGen(5)
	logs := append([]*raft.Log{g.init()}, g.logs(300)...)
	applyAll(t, logs, 1, src)
	snap, _ := src.stateHash(t)

	d := newDetFSM(t)
	defer d.close()
	early := append([]*raft.Log{}, logs[:50]...)
	applyAll(t, early, 2, d)
	sub, err := d.fsm.Feed().Subscribe(feed.After(0))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := d.fsm.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if err := d.fsm.Feed().WaitProcessed(uint64(len(logs)), time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	var gone *feed.GoneError
	if _, err := sub.Next(nil, 10); !errors.As(err, &gone) || gone.Oldest != uint64(len(logs)) {
		t.Fatalf("after the restore: %v", err)
	}
	again, err := d.fsm.Feed().Subscribe(feed.After(uint64(len(logs))))
	if err != nil {
		t.Fatalf("from the snapshot's index: %v", err)
	}
	again.Close()
}

// TestFeedMemberChanges: adding a member, changing its role and removing
// it are changes to the document; the removal names the reader it loses,
// a change of role keeps the reader.
func TestFeedMemberChanges(t *testing.T) {
	g := newLogGen(11)
	at := func(ms int64) uint64 { return storage.StampAt(1_800_000_000_000 + ms) }
	doc := func(kind storage.CommandKind, ms int64, dc *storage.DocCommand) *raft.Log {
		dc.DocID = "doc1"
		return g.log(&storage.Command{Kind: kind, Stamp: at(ms), Doc: dc})
	}
	member := "0000000000000000"
	logs := []*raft.Log{g.init(),
		doc(storage.CmdDocCreate, 0, &storage.DocCommand{Caller: "owner", Title: "notes"}),
		doc(storage.CmdDocMember, 1, &storage.DocCommand{Caller: "owner", Editor: member, Role: storage.DocViewer, MaxMembers: 10}),
		doc(storage.CmdDocMember, 2, &storage.DocCommand{Caller: "owner", Editor: member, Role: storage.DocEditor, MaxMembers: 10}),
		doc(storage.CmdDocMember, 3, &storage.DocCommand{Caller: "owner", Editor: member, Remove: true}),
	}
	f := newDetFSM(t)
	defer f.close()
	applyAll(t, logs, 1, f)
	var docs []string
	for _, d := range feedDigest(t, f.fsm, feed.After(0), logs[len(logs)-1].Index) {
		if strings.Contains(d, " doc ") {
			docs = append(docs, d)
		}
	}
	want := []string{"2-0 doc created doc1", "3-0 doc updated doc1 v0 at=1800000000001 lost=\"\"",
		"4-0 doc updated doc1 v0 at=1800000000002 lost=\"\"", `5-0 doc updated doc1 v0 at=1800000000003 lost="` + member + `"`}
	if len(docs) != len(want) {
		t.Fatalf("document changes:\n%s\nwant %d", strings.Join(docs, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(docs[i], want[i]) {
			t.Fatalf("change %d: %s\nwant %s…", i, docs[i], want[i])
		}
	}
	if !strings.Contains(docs[1], member) {
		t.Fatalf("the viewer's change does not list the member: %s", docs[1])
	}
}
