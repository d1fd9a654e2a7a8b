package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-db/troupe/transport/client"
)

// webhookReceiver records the positions of the changes delivered to it,
// in the order received, after checking each delivery's signature. While
// hold is set, the next delivery is held unanswered until release: so a
// delivery is in flight when the leader is killed. Every third request
// before that answers 500, so retries happen too.
type webhookReceiver struct {
	t        *testing.T
	secret   string
	mu       sync.Mutex
	got      []string
	requests int
	badSigs  int
	holdAt   int           // hold the first request that comes once got has this many
	held     chan struct{} // closed when a request is being held
	release  chan struct{}
}

func (r *webhookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests++
	if err := client.VerifyWebhook(r.secret, req.Header, body, time.Now(), 0); err != nil {
		r.badSigs++
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	hold := r.holdAt > 0 && len(r.got) >= r.holdAt
	if hold {
		r.holdAt = 0
		close(r.held)
	}
	fail := r.requests%3 == 0 && !hold
	r.mu.Unlock()
	if hold {
		<-r.release
		http.Error(w, "the receiver was held while the leader died", http.StatusServiceUnavailable)
		return
	}
	if fail {
		http.Error(w, "try again", http.StatusInternalServerError)
		return
	}
	var msg struct {
		Changes []struct {
			Index uint64 `json:"index"`
			N     uint32 `json:"n"`
			Kind  string `json:"kind"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(body, &msg); err != nil || len(msg.Changes) == 0 || len(msg.Changes) > 100 {
		r.t.Errorf("delivery %q: %v", body, err)
	}
	if id := req.Header.Get("webhook-id"); len(msg.Changes) > 0 && id != fmt.Sprintf("%d-%d", msg.Changes[0].Index, msg.Changes[0].N) {
		r.t.Errorf("webhook-id %s, first change %d-%d", id, msg.Changes[0].Index, msg.Changes[0].N)
	}
	r.mu.Lock()
	for _, c := range msg.Changes {
		r.got = append(r.got, fmt.Sprintf("%d-%d", c.Index, c.N))
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *webhookReceiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// TestWebhookAcrossLeaderKill: a receiver gets every change at least
// once and in order, with valid signatures, while the leader that
// delivers is killed -9 with a delivery in flight; the new leader resumes
// from the replicated acknowledged position. Checked against the full
// list of changes read from /v1/watch.
func TestWebhookAcrossLeaderKill(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	nodes := startCluster(t, "--webhook-allow-private", "--webhook-timeout", "5s")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	rcv := &webhookReceiver{t: t, held: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(rcv.serve))
	defer srv.Close()
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(rcv.release) }) }
	defer release()

	leader := leaderOf(t, nodes)
	r, err := leader.send(ctx, "POST", "/v1/webhooks", map[string]any{"url": srv.URL + "/hook", "kinds": []string{"users"}}, nil)
	if err != nil || r.Status != 201 {
		t.Fatalf("create the webhook: %v %v", r, err)
	}
	var hook struct {
		ID         string `json:"id"`
		Secret     string `json:"secret"`
		AckedIndex uint64 `json:"acked_index"`
	}
	if err := json.Unmarshal(r.Body, &hook); err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	rcv.secret, rcv.holdAt = hook.Secret, 60
	rcv.mu.Unlock()

	// Writers: users created through every node, with a key each so a
	// retry across the failover creates nobody twice.
	const users = 240
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := w; i < users; i += 3 {
				key := map[string]string{"Idempotency-Key": "hook-user-" + strconv.Itoa(i)}
				body := map[string]string{"name": "Hooked", "email": fmt.Sprintf("hook-%03d@example.com", i)}
				for attempt := 0; ; attempt++ {
					n := nodes[(i+attempt)%3]
					if n.exited() {
						continue
					}
					r, err := n.send(ctx, "POST", "/v1/users", body, key)
					if err == nil && r.Status == 201 {
						break
					}
					if ctx.Err() != nil {
						t.Errorf("create %d: %v %v", i, r, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}

	// Kill the leader while it holds a delivery open.
	select {
	case <-rcv.held:
	case <-ctx.Done():
		t.Fatalf("no delivery was held; received %d changes", len(rcv.received()))
	}
	leader = leaderOf(t, nodes)
	leader.Kill(t)
	release()
	t.Logf("killed the leader %s with a delivery in flight, after %d changes received", leader.cfg.ID, len(rcv.received()))
	wg.Wait()

	// The full list of changes, from a survivor's feed.
	var survivor *node
	for _, n := range nodes {
		if !n.exited() {
			survivor = n
			break
		}
	}
	all := watchIDs(ctx, t, survivor, hook.AckedIndex, users)
	eventually(t, "every change delivered", 90*time.Second, func() bool {
		got := rcv.received()
		return len(got) > 0 && got[len(got)-1] == all[len(all)-1]
	})
	got := rcv.received()
	// In order and contiguous: each change is the one after the last
	// acknowledged one, or a replay of an earlier suffix (a failover).
	pos := map[string]int{}
	for i, id := range all {
		pos[id] = i
	}
	next, high, dups, replays := 0, 0, 0, 0
	for _, id := range got {
		i, ok := pos[id]
		switch {
		case !ok:
			t.Fatalf("delivered %s, which is not a users change after the webhook's creation", id)
		case i == next:
			next++
		case i < next:
			replays++
			t.Logf("a replay from %s (after %s)", id, all[next-1])
			next = i + 1
		default:
			t.Fatalf("delivered %s after %s: a gap", id, all[next-1])
		}
		if i < high {
			dups++
		}
		high = max(high, i+1)
	}
	if next != len(all) {
		t.Fatalf("delivered up to %d of %d changes", next, len(all))
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.badSigs != 0 {
		t.Fatalf("%d deliveries with a bad signature", rcv.badSigs)
	}
	t.Logf("%d changes delivered in %d requests; %d replay(s), %d changes delivered twice", len(all), rcv.requests, replays, dups)
}

// watchIDs reads the ids of the users changes after index from n's feed
// until it has want of them.
func watchIDs(ctx context.Context, t *testing.T, n *node, index uint64, want int) []string {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(wctx, "GET", n.URL+"/v1/watch?kinds=users&from="+strconv.FormatUint(index, 10), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("watch on %s: %v %v", n.cfg.ID, resp, err)
	}
	defer resp.Body.Close()
	var ids []string
	buf := make([]byte, 64<<10)
	var rest string
	for len(ids) < want {
		k, err := resp.Body.Read(buf)
		rest += string(buf[:k])
		for {
			line, more, ok := strings.Cut(rest, "\n")
			if !ok {
				break
			}
			rest = more
			if id, ok := strings.CutPrefix(line, "id: "); ok {
				ids = append(ids, id)
			}
		}
		if err != nil {
			t.Fatalf("the watch ended after %d changes: %v", len(ids), err)
		}
	}
	return ids
}
