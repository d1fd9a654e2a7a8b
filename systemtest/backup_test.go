package systemtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBackupRestore backs a node up with `troupe backup`, restores the
// file with `troupe restore` into an empty data dir, boots it under
// another node id, and finds the same data (same state hash, same users).
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	src := startNode(t, newNodeConfig(t, "src"))
	var ids []string
	for i := range 25 {
		ids = append(ids, expectUser(t, src.do(t, "POST", "/v1/users", map[string]string{"name": "U", "email": fmt.Sprintf("b%d@example.com", i)}, nil), 201).ID)
	}
	expectStatus(t, src.do(t, "PATCH", userPath(ids[3]), map[string]string{"name": "Changed"}, nil), 200)
	expectStatus(t, src.do(t, "DELETE", userPath(ids[4]), nil, nil), 204)
	var before stateHash
	if err := json.Unmarshal(src.do(t, "GET", "/v1/cluster/hash", nil, nil).Body, &before); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "troupe.backup")
	run := func(args ...string) string {
		cmd := exec.Command(troupeBin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("troupe %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	t.Log(run("backup", "--addr", src.URL, "--out", file))
	cfg := newNodeConfig(t, "restored")
	t.Log(run("restore", "--from", file, "--data", cfg.DataDir))
	dst := startNode(t, cfg)

	var after stateHash
	if err := json.Unmarshal(dst.do(t, "GET", "/v1/cluster/hash", nil, nil).Body, &after); err != nil {
		t.Fatal(err)
	}
	if after.Hash != before.Hash {
		t.Fatalf("restored state differs: before %+v, after %+v", before, after)
	}
	for i, id := range ids {
		a, b := src.do(t, "GET", userPath(id), nil, nil), dst.do(t, "GET", userPath(id), nil, nil)
		if a.Status != b.Status || !sameJSON(a.Body, b.Body) {
			t.Fatalf("user %d: %s vs %s", i, a, b)
		}
	}
	st := status(t, dst)
	if len(st.Members) != 1 || st.Leader == nil || st.Leader.ID != "restored" {
		t.Fatalf("restored cluster: %+v", st)
	}
	// It is a live cluster: it takes writes.
	expectStatus(t, dst.do(t, "POST", "/v1/users", map[string]string{"name": "New", "email": "new@example.com"}, nil), 201)
	// A data dir that a node has used is never overwritten by a restore.
	cmd := exec.Command(troupeBin, "restore", "--from", file, "--data", cfg.DataDir)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("restore into a used data dir succeeded: %s", out)
	}
}

// TestScheduledBackups: a node started with --backup-dir writes a backup
// every --backup-every once it has something new, keeps --backup-keep of
// them, each passes `troupe backup verify`, and the newest restores to the
// same state.
func TestScheduledBackups(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	dir := filepath.Join(t.TempDir(), "backups")
	cfg := newNodeConfig(t, "sched")
	cfg.ExtraArgs = append(cfg.ExtraArgs, "--backup-dir", dir, "--backup-every", "1s", "--backup-keep", "2")
	src := startNode(t, cfg)
	backups := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "troupe-*.backup"))
		slices.Sort(m)
		return m
	}
	// Three rounds of writes, each waited for in a new backup.
	var want stateHash
	seen := map[string]bool{}
	for round := range 3 {
		for i := range 10 {
			expectUser(t, src.do(t, "POST", "/v1/users", map[string]string{"name": "U", "email": fmt.Sprintf("s%d-%d@example.com", round, i)}, nil), 201)
		}
		if err := json.Unmarshal(src.do(t, "GET", "/v1/cluster/hash", nil, nil).Body, &want); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			b := backups()
			if len(b) > 0 && !seen[b[len(b)-1]] && strings.Contains(b[len(b)-1], fmt.Sprintf("-i%012d.backup", want.Index)) {
				seen[b[len(b)-1]] = true
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no backup of index %d: %v", round, want.Index, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// A new backup is in place before the oldest is pruned: three may
	// lie there for a moment.
	var b []string
	eventually(t, "the newest 2 backups kept", 10*time.Second, func() bool {
		b = backups()
		return len(b) == 2
	})
	if v := metric(t, src, "troupe_backup_last_success_timestamp_seconds"); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("last success %v", v)
	}
	out, err := exec.Command(troupeBin, append([]string{"backup", "verify"}, b...)...).CombinedOutput()
	if err != nil || strings.Count(string(out), "checksum matches") != 2 {
		t.Fatalf("troupe backup verify: %v\n%s", err, out)
	}
	newest := b[len(b)-1]
	rcfg := newNodeConfig(t, "from-schedule")
	if out, err := exec.Command(troupeBin, "restore", "--from", newest, "--data", rcfg.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("troupe restore: %v\n%s", err, out)
	}
	dst := startNode(t, rcfg)
	var got stateHash
	if err := json.Unmarshal(dst.do(t, "GET", "/v1/cluster/hash", nil, nil).Body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Hash != want.Hash {
		t.Fatalf("restored from %s: %+v, the node had %+v", newest, got, want)
	}
}
