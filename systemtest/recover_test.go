package systemtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestRecoverFromQuorumLoss loses two of three nodes for good, then uses
// `troupe recover` on the survivor to make it a one-node cluster that
// holds every acknowledged write and takes new ones.
func TestRecoverFromQuorumLoss(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	timing := []string{"--raft-heartbeat-timeout", "300ms", "--raft-election-timeout", "300ms", "--request-timeout", "2s"}
	ca := newNodeConfig(t, "a")
	ca.ExtraArgs = append(append(ca.ExtraArgs, "--bootstrap"), timing...)
	a := startNode(t, ca)
	var others []*node
	for _, id := range []string{"b", "c"} {
		c := newNodeConfig(t, id)
		c.ExtraArgs = append(append(c.ExtraArgs, "--join", "http://"+ca.HTTPAddr), timing...)
		others = append(others, startNode(t, c))
	}
	var ids []string
	for i := range 10 {
		ids = append(ids, expectUser(t, a.do(t, "POST", "/v1/users", map[string]string{"name": "U", "email": fmt.Sprintf("q%d@example.com", i)}, nil), 201).ID)
	}
	for _, n := range others {
		n.Kill(t)
	}
	// Without a quorum nothing is written.
	eventually(t, "writes to fail without a quorum", 20*time.Second, func() bool {
		r, err := a.send(t.Context(), "POST", "/v1/users", map[string]string{"name": "N", "email": "none@example.com"}, nil)
		return err == nil && r.Status == 503
	})
	a.Stop(t)

	peers := filepath.Join(t.TempDir(), "peers.json")
	if err := os.WriteFile(peers, []byte(`[{"id":"a","address":"`+ca.RaftAddr+`","non_voter":false}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(troupeBin, "recover", "--data", ca.DataDir, "--peers", peers).CombinedOutput()
	if err != nil {
		t.Fatalf("troupe recover: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	a = a.Restart(t)
	st := status(t, a)
	if len(st.Members) != 1 || st.Leader == nil || st.Leader.ID != "a" {
		t.Fatalf("after recovery: %+v", st)
	}
	for _, id := range ids {
		expectStatus(t, a.do(t, "GET", userPath(id), nil, nil), 200)
	}
	expectStatus(t, a.do(t, "POST", "/v1/users", map[string]string{"name": "After", "email": "after-recovery@example.com"}, nil), 201)
	// A peers file that leaves this node out is refused.
	bad := filepath.Join(t.TempDir(), "bad.json")
	_ = os.WriteFile(bad, []byte(`[{"id":"z","address":"127.0.0.1:1","non_voter":false}]`), 0o600)
	a.Stop(t)
	if out, err := exec.Command(troupeBin, "recover", "--data", ca.DataDir, "--peers", bad).CombinedOutput(); err == nil {
		t.Fatalf("recover without this node succeeded: %s", out)
	}
}
