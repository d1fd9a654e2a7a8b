package systemtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
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
