package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLargeDocumentsSurvive writes documents holding about 100 MiB of text
// and kept history in all — each one, with its history, beyond the 16 MiB
// that one frame of the snapshot format before version 5 could hold —
// through requests of about 1 MiB, then checks that the state comes back
// byte for byte (same state hash, same texts) after a restart from a
// snapshot, on a wiped follower that catches up by installing the
// leader's snapshot, and through a backup restored into a new node.
func TestLargeDocumentsSurvive(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	// Short log segments and few trailing entries: a snapshot truncates
	// the log, so a follower without data needs the snapshot. Entries of
	// a megabyte on two shared cores: with raft timeouts of 400 ms (a
	// lease of 200 ms) the leader may step down while followers sync.
	nodes := startCluster(t, "--snapshot-threshold", "16", "--raft-trailing-logs", "2", "--raft-wal-segment-size", strconv.Itoa(2<<20),
		"--raft-heartbeat-timeout", "3s", "--raft-election-timeout", "3s")
	lead := leaderOf(t, nodes)
	start := time.Now()

	expectStatus(t, lead.do(t, "POST", "/v1/auth/register", map[string]string{"name": "Ada", "email": "ada@example.com", "password": "correct horse"}, nil), 201)
	ada := bearer(login(t, lead, "ada@example.com", "correct horse").AccessToken)
	const (
		docs     = 5
		opBytes  = 1_000_000 // with its JSON, within the 1 MiB body limit
		inserts  = 6         // the text grows to 7 MB
		replaces = 10        // then changes in place: 16 changes of history
	)
	// One writer: entries of a megabyte each, so that the followers,
	// which append and sync each, keep answering the leader in time on
	// two shared cores (writers in parallel made batches of several
	// megabytes that outlasted the leader's lease).
	want := map[string]string{} // path → text
	total := 0
	for d := range docs {
		path, text, err := writeLargeDoc(lead, ada, d, opBytes, inserts, replaces)
		if err != nil {
			t.Fatal(err)
		}
		want[path] = text
		total += len(text) + (inserts+replaces)*opBytes
	}
	t.Logf("%d documents, %.1f MiB of text and history, written in %v", docs, float64(total)/(1<<20), time.Since(start).Round(time.Millisecond))

	sameHashes(t, nodes...)
	before := hashOf(t, lead)
	phase := time.Now()
	for _, n := range nodes {
		expectStatus(t, n.do(t, "POST", "/v1/cluster/snapshot", nil, nil), 200)
	}
	t.Logf("snapshots on three nodes: %v", time.Since(phase).Round(time.Millisecond))
	checkTexts(t, lead, want)
	phase = time.Now()

	// A restart reads the snapshot back.
	var followers []*node
	for _, n := range nodes {
		if n != lead {
			followers = append(followers, n)
		}
	}
	f := followers[0]
	f.Stop(t)
	followers[0] = f.Restart(t)
	checkTexts(t, followers[0], want)
	t.Logf("restart: %v", time.Since(phase).Round(time.Millisecond))
	phase = time.Now()

	// A follower that lost its data dir installs the leader's snapshot.
	w := followers[1]
	w.Stop(t)
	if err := os.RemoveAll(w.cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	cfg := w.cfg
	cfg.fresh = false
	followers[1] = startNode(t, cfg)
	checkTexts(t, followers[1], want)
	sameHashes(t, lead, followers[0], followers[1])
	if log, err := os.ReadFile(followers[1].logPath); err != nil || !strings.Contains(string(log), "Installed remote snapshot") {
		t.Fatalf("the wiped follower caught up without installing a snapshot (%v)", err)
	}
	if h := hashOf(t, followers[1]); h.Hash != before.Hash {
		t.Fatalf("state after catch-up %+v, before %+v", h, before)
	}
	t.Logf("catch-up of a wiped follower: %v", time.Since(phase).Round(time.Millisecond))
	phase = time.Now()

	// A backup, restored into a new node, holds the same state.
	file := filepath.Join(t.TempDir(), "troupe.backup")
	if out, err := exec.Command(troupeBin, "backup", "--addr", lead.URL, "--out", file).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	rcfg := newNodeConfig(t, "restored")
	if out, err := exec.Command(troupeBin, "restore", "--from", file, "--data", rcfg.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	restored := startNode(t, rcfg)
	if h := hashOf(t, restored); h.Hash != before.Hash {
		t.Fatalf("restored state %+v, before %+v", h, before)
	}
	checkTexts(t, restored, want)
	t.Logf("backup and restore: %v", time.Since(phase).Round(time.Millisecond))
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// writeLargeDoc creates document d with a text of opBytes, grows it by
// inserts more, then replaces its start replaces times, one request of
// opBytes each; it returns the document's path and its text.
func writeLargeDoc(n *node, auth map[string]string, d, opBytes, inserts, replaces int) (string, string, error) {
	ctx := context.Background()
	piece := func(k int) string { return strings.Repeat(string(rune('a'+(d*7+k)%26)), opBytes) }
	text := piece(0)
	r, err := n.send(ctx, "POST", "/v1/docs", map[string]string{"title": fmt.Sprint("Big ", d), "content": text}, auth)
	if err != nil || r.Status != 201 {
		return "", "", fmt.Errorf("create: %v %s", err, r)
	}
	var doc struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		return "", "", err
	}
	path := "/v1/docs/" + doc.ID
	for v := range inserts + replaces {
		op := map[string]any{"op": "insert", "pos": len(text), "text": piece(v + 1)}
		if v >= inserts {
			op = map[string]any{"op": "replace", "pos": 0, "len": opBytes, "text": piece(v + 1)}
		}
		r, err := n.send(ctx, "POST", path+"/ops", map[string]any{"client_id": "c", "seq": v + 1, "base_version": v, "ops": []any{op}}, auth)
		if err != nil || r.Status != 200 {
			return "", "", fmt.Errorf("submit %d to %s: %v %s", v+1, path, err, r)
		}
		if v < inserts {
			text += piece(v + 1)
		} else {
			text = piece(v+1) + text[opBytes:]
		}
	}
	return path, text, nil
}

// leaderOf returns the node that leads the cluster of nodes.
func leaderOf(t *testing.T, nodes []*node) *node {
	t.Helper()
	var lead *node
	eventually(t, "a leader", 30*time.Second, func() bool {
		st := status(t, nodes[0])
		for _, n := range nodes {
			if st.Leader != nil && n.cfg.ID == st.Leader.ID {
				lead = n
			}
		}
		return lead != nil
	})
	return lead
}

func hashOf(t *testing.T, n *node) stateHash {
	t.Helper()
	r := n.do(t, "GET", "/v1/cluster/hash", nil, nil)
	expectStatus(t, r, 200)
	var h stateHash
	if err := json.Unmarshal(r.Body, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// checkTexts reads every document from n (as an admin: the node is
// insecure) and compares its text with want.
func checkTexts(t *testing.T, n *node, want map[string]string) {
	t.Helper()
	for path, text := range want {
		r := n.do(t, "GET", path, nil, nil)
		expectStatus(t, r, 200)
		var doc struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(r.Body, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Content != text {
			t.Fatalf("%s on %s: %d bytes, want %d (equal: %v)", path, n.cfg.ID, len(doc.Content), len(text), doc.Content == text)
		}
	}
}
