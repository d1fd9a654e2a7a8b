package systemtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-db/troupe/transport/client"
)

// rawWatch reads GET /v1/watch?from=… of one node into events ("<id>
// <data>" each) until ctx ends or the stream does.
type rawWatch struct {
	mu     sync.Mutex
	events []string
	done   chan struct{}
	err    error
}

func startRawWatch(ctx context.Context, t *testing.T, n *node, from string) *rawWatch {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+"/v1/watch?kinds=users,docs&from="+from, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		t.Fatalf("watch on %s: %d", n.cfg.ID, resp.StatusCode)
	}
	w := &rawWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var id string
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				w.mu.Lock()
				w.events = append(w.events, id+" "+line[6:])
				w.mu.Unlock()
			}
		}
		w.err = sc.Err()
	}()
	return w
}

func (w *rawWatch) snapshot() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.events...)
}

// TestWatchSameSequenceOnEveryNode: watchers on all three nodes of a
// cluster under writes see the same changes in the same order, with the
// same ids; a watcher (the Go client's) whose node is killed -9 goes on
// on another node with no gap and no duplicate.
func TestWatchSameSequenceOnEveryNode(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	nodes := startCluster(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	r, err := nodes[0].send(ctx, "GET", "/v1/users", nil, nil)
	if err != nil || r.Status != 200 || r.Header.Get("X-Troupe-Index") == "" {
		t.Fatalf("listing: %v %v", r, err)
	}
	from := r.Header.Get("X-Troupe-Index")
	var raws []*rawWatch
	for _, n := range nodes {
		raws = append(raws, startRawWatch(ctx, t, n, from))
	}

	// The client's watcher reads first from a follower, the one killed.
	leader := status(t, nodes[0]).Leader
	if leader == nil {
		t.Fatal("no leader")
	}
	var victim *node
	var others []*node
	for _, n := range nodes {
		if victim == nil && n.cfg.HTTPAddr != leader.HTTPAddr {
			victim = n
		} else {
			others = append(others, n)
		}
	}
	cfg := client.DefaultConfig()
	cfg.Nodes = []string{victim.URL, others[0].URL, others[1].URL}
	cfg.BackoffBase, cfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	index, err := strconv.ParseUint(from, 10, 64)
	if err != nil {
		t.Fatalf("X-Troupe-Index %q: %v", from, err)
	}

	// Writers: users created through the survivors, documents edited.
	const users = 300
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < users; i += 4 {
				n := others[i%2]
				r, err := n.send(ctx, "POST", "/v1/users", map[string]string{"name": "Watched", "email": fmt.Sprintf("watch-%03d@example.com", i)}, nil)
				if ctx.Err() != nil {
					return
				}
				if err != nil || r.Status != 201 {
					t.Errorf("create %d: %v %v", i, r, err)
					return
				}
			}
		})
	}

	var got []client.Change
	killed := false
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	for ch, err := range c.Watch(wctx, index, "users", "docs") {
		if err != nil {
			t.Fatalf("the client's watch after %d changes: %v", len(got), err)
		}
		got = append(got, ch)
		if len(got) == users/3 && !killed {
			victim.Kill(t)
			killed = true
		}
		if len(got) == users {
			break
		}
	}
	wg.Wait()

	// The survivors' raw watchers saw the same as the client, and the
	// victim's a prefix of it.
	want := make([]string, len(got))
	for i, ch := range got {
		want[i] = ch.EventID()
	}
	for i, w := range raws {
		n := nodes[i]
		if n == victim {
			continue
		}
		eventually(t, "node "+n.cfg.ID+"'s watcher sees every change", 30*time.Second, func() bool { return len(w.snapshot()) >= users })
	}
	var ref []string
	for i, w := range raws {
		evs := w.snapshot()
		ids := make([]string, len(evs))
		for j, e := range evs {
			ids[j], _, _ = strings.Cut(e, " ")
		}
		if nodes[i] == victim {
			// Killed once the client's watch had users/3 changes: its own
			// watcher, on another connection, may have been a little behind.
			if len(ids) == 0 || len(ids) > users {
				t.Fatalf("the killed node's watcher saw %d changes", len(ids))
			}
			compareIDs(t, ids, want[:len(ids)], "the killed node's watcher vs the client's")
			continue
		}
		compareIDs(t, ids[:users], want, "node "+nodes[i].cfg.ID+"'s watcher vs the client's")
		if ref == nil {
			ref = evs[:users]
		} else if strings.Join(ref, "\n") != strings.Join(evs[:users], "\n") {
			t.Fatal("two nodes' watchers saw different change data")
		}
	}
	seen := map[string]bool{}
	for _, ch := range got {
		var u struct {
			Email string `json:"email"`
		}
		if err := json.Unmarshal(ch.Data, &u); err != nil || ch.Kind != "user" || ch.Op != "created" || seen[u.Email] {
			t.Fatalf("change %s: %s %s %s (%v)", ch.EventID(), ch.Kind, ch.Op, ch.Data, err)
		}
		seen[u.Email] = true
	}
}

func compareIDs(t *testing.T, got, want []string, what string) {
	t.Helper()
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("%s: change %d is %s, want %s", what, i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d changes, want %d", what, len(got), len(want))
	}
}
