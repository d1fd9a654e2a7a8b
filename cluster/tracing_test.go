package cluster

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
)

// TestTracedPropose: a proposal in a sampled trace gets the commit, apply
// and actor spans, parent to child, and leaves nothing in the registry;
// one outside a trace registers nothing.
func TestTracedPropose(t *testing.T) {
	n, stop := testNode(t, t.TempDir())
	defer stop()
	rec := tracetest.NewSpanRecorder()
	p := tracing.NewWithProcessor(tracing.Config{SampleRatio: 1}, rec)
	defer func() { _ = p.Shutdown(context.Background()) }()

	createUser(t, n, "Ada", "ada@example.com") // untraced
	if got := n.fsm.traced.n.Load(); got != 0 {
		t.Fatalf("an untraced proposal registered %d commands", got)
	}

	ctx, root := p.Tracer().Start(context.Background(), "request")
	stamp := n.Stamps(1)
	email := "bo@example.com"
	res, index, err := n.Propose(ctx, &storage.Command{Kind: storage.CmdUserCreate, Stamp: stamp,
		Create: &storage.BatchItem{ID: storage.MakeUserID(stamp, n.Users().HomeShardFor(email)), User: storage.NewUser{Name: "Bo", Email: email, Role: storage.RoleUser}}},
		time.Now().Add(5*time.Second))
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	if err := n.ReadBarrier(ctx, replica.Linearizable, 0, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	root.End()
	if got := n.fsm.traced.n.Load(); got != 0 {
		t.Fatalf("%d commands left in the registry", got)
	}

	want := []string{"request", "wait for commit", "raft apply", "actor user_create"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		byName := map[string]int{}
		spans := rec.Ended()
		for i, s := range spans {
			byName[s.Name()] = i
		}
		_, ok := byName["actor user_create"]
		if ok {
			for i := 1; i < len(want); i++ {
				child, parent := spans[byName[want[i]]], spans[byName[want[i-1]]]
				if child.Parent().SpanID() != parent.SpanContext().SpanID() {
					t.Fatalf("%q is not a child of %q", want[i], want[i-1])
				}
			}
			commit := spans[byName["wait for commit"]]
			for _, a := range commit.Attributes() {
				if a.Key == "raft.index" && a.Value.AsInt64() != int64(index) {
					t.Fatalf("commit span index %d, proposal's %d", a.Value.AsInt64(), index)
				}
			}
			rb, ok := byName["read barrier"]
			if !ok || spans[rb].Parent().SpanID() != root.SpanContext().SpanID() {
				t.Fatal("no read barrier span below the request")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans: %v", byName)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
