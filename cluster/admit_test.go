package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/troupe-db/troupe/cluster/clustertest"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// A full idempotency window refuses keyed commands before they are
// proposed — alone or among forwarded ones, whose others go on — and
// counts the refusals.
func TestAdmitKeyedWhenWindowFull(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.RaftAddr, cfg.UserShards, cfg.MaxIdempotencyKeys = t.TempDir(), clustertest.FreeAddr(t), 4, 2
	n, stop := openTestNode(t, cfg)
	defer stop()
	if err := n.WaitInitialised(time.Now().Add(10*time.Second), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready", func() bool { return n.Ready() == nil })
	create := func(i int, key string) *storage.Command {
		stamp := n.Stamps(1)
		email := fmt.Sprintf("u%d@example.com", i)
		return &storage.Command{Kind: storage.CmdUserCreate, Stamp: stamp, RequestID: key,
			Create: &storage.BatchItem{ID: storage.MakeUserID(stamp, n.Users().HomeShardFor(email)), User: storage.NewUser{Name: "U", Email: email, Role: storage.RoleUser}}}
	}
	deadline := time.Now().Add(5 * time.Second)
	full := false
	for i := range 4 {
		_, _, err := n.Propose(context.Background(), create(i, fmt.Sprintf("k%d", i)), deadline)
		if full = errors.Is(err, replica.ErrIdempotencyFull); full {
			var wf *replica.WindowFullError
			if !errors.As(err, &wf) || wf.Limit != 2 || i == 0 {
				t.Fatalf("refusal %v after %d keys", err, i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatal("a window of 2 took 4 keys")
	}
	out := n.ProposeRestamped(context.Background(), []*storage.Command{create(10, "k10"), create(11, ""), create(12, "k12")}, deadline)
	if !errors.Is(out[0].Err, replica.ErrIdempotencyFull) || !errors.Is(out[2].Err, replica.ErrIdempotencyFull) {
		t.Fatalf("keyed forwarded commands admitted: %+v", out)
	}
	if out[1].Err != nil || out[1].Result.Err != nil || out[1].Index == 0 {
		t.Fatalf("the command without a key: %+v", out[1])
	}
	if got := n.admit.refused.Get(); got != 3 {
		t.Fatalf("troupe_idempotency_refused_total %d, want 3", got)
	}
}
