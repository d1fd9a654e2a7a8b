package systemtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// docClient follows a document through one node's event stream and
// rebuilds its text from the changes, as an editor would.
type docClient struct {
	id      string
	n       *node
	mu      sync.Mutex
	text    storage.Text
	version uint64
	seen    map[uint64]int // version → times seen
	changed chan struct{}  // signalled (non-blocking) on each change
	err     error
}

type changeEvent struct {
	Version uint64 `json:"version"`
	Ops     []struct {
		Op   string `json:"op"`
		Pos  int    `json:"pos"`
		Len  int    `json:"len"`
		Text string `json:"text"`
	} `json:"ops"`
}

func (c *docClient) follow(ctx context.Context, t *testing.T, url string) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Last-Event-ID", "0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("client %s: events: %v %v", c.id, err, resp)
		return
	}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = line[7:]
			case strings.HasPrefix(line, "data: ") && name == "change":
				var ev changeEvent
				if err := json.Unmarshal([]byte(line[6:]), &ev); err != nil {
					c.fail(err)
					return
				}
				ops := make([]storage.Op, len(ev.Ops))
				for i, o := range ev.Ops {
					ops[i] = storage.Op{Pos: o.Pos, Len: o.Len, Text: o.Text}
					switch o.Op {
					case "insert":
						ops[i].Kind = storage.OpInsert
					case "delete":
						ops[i].Kind = storage.OpDelete
					default:
						ops[i].Kind = storage.OpReplace
					}
				}
				c.mu.Lock()
				c.seen[ev.Version]++
				if ev.Version == c.version+1 {
					text, err := storage.Apply(c.text, ops)
					if err != nil {
						c.err = fmt.Errorf("change %d does not apply to the client's text: %v", ev.Version, err)
					}
					c.text, c.version = text, ev.Version
				} else if c.err == nil {
					c.err = fmt.Errorf("change %d after version %d: a gap or a duplicate", ev.Version, c.version)
				}
				c.mu.Unlock()
				select {
				case c.changed <- struct{}{}:
				default:
				}
			case strings.HasPrefix(line, "event: reset"):
				c.fail(fmt.Errorf("unexpected reset"))
			}
		}
	}()
}

func (c *docClient) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (c *docClient) state() (storage.Text, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.text, c.version
}

// TestDocConvergence: six clients, two on each of three nodes, submit
// random ops against the version they last saw (stale by the time they
// apply); every stream sees every version exactly once, every client's
// rebuilt text equals every node's, and the replicas' state hashes agree.
func TestDocConvergence(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	nodes := startCluster(t)
	const initial = "Once upon a time, in a replicated log."
	tok, path := userWithDoc(t, nodes[0], nodes[0], map[string]string{"title": "Story", "content": initial})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var clients []*docClient
	for i := range 6 {
		n := nodes[i%3]
		c := &docClient{id: fmt.Sprint("client-", i), n: n, text: storage.NewText(initial), seen: map[uint64]int{}, changed: make(chan struct{}, 1)}
		clients = append(clients, c)
		var url string
		eventually(t, "the document on "+n.cfg.ID, 10*time.Second, func() bool {
			rr, err := n.send(t.Context(), "GET", path, nil, bearer(tok))
			return err == nil && rr.Status == 200
		})
		url = n.URL + path + "/events?access_token=" + tok
		c.follow(ctx, t, url)
	}

	const perClient = 15
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			var lastAck uint64
			for seq := 1; seq <= perClient; seq++ {
				// Wait until this client has seen its own last change.
				deadline := time.Now().Add(15 * time.Second)
				for {
					if _, v := c.state(); v >= lastAck {
						break
					}
					if time.Now().After(deadline) {
						c.fail(fmt.Errorf("never saw its own version %d", lastAck))
						return
					}
					select {
					case <-c.changed:
					case <-time.After(20 * time.Millisecond):
					}
				}
				text, base := c.state()
				ops := randomOps(rng, text.Len(), c.id, seq)
				body := map[string]any{"client_id": c.id, "seq": seq, "base_version": base, "ops": ops}
				time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
				rr, err := c.n.send(t.Context(), "POST", path+"/ops", body, bearer(tok))
				if err != nil || rr.Status != 200 {
					c.fail(fmt.Errorf("submit %d on %s: %v %v", seq, c.n.cfg.ID, err, rr))
					return
				}
				var res struct {
					Version uint64 `json:"version"`
				}
				if err := json.Unmarshal(rr.Body, &res); err != nil {
					c.fail(err)
					return
				}
				lastAck = res.Version
			}
		}()
	}
	wg.Wait()
	final := uint64(len(clients) * perClient)
	for _, c := range clients {
		eventually(t, c.id+" at the final version", 20*time.Second, func() bool { _, v := c.state(); return v == final || c.err != nil })
		if c.err != nil {
			t.Fatalf("%s: %v", c.id, c.err)
		}
	}
	want, _ := clients[0].state()
	for _, c := range clients {
		text, _ := c.state()
		if text.String() != want.String() {
			t.Fatalf("%s's text differs:\n%q\n%q", c.id, text.String(), want.String())
		}
		for v := uint64(1); v <= final; v++ {
			if c.seen[v] != 1 {
				t.Fatalf("%s saw version %d %d times", c.id, v, c.seen[v])
			}
		}
	}
	for _, n := range nodes {
		r := n.do(t, "GET", path+"?consistency=stale&min_index="+strconv.FormatUint(writeIndexOf(t, nodes[0], path, tok), 10), nil, bearer(tok))
		var d struct {
			Content string `json:"content"`
			Version uint64 `json:"version"`
		}
		if err := json.Unmarshal(r.Body, &d); err != nil {
			t.Fatal(err)
		}
		if d.Content != want.String() || d.Version != final {
			t.Fatalf("node %s holds version %d %q, clients %q", n.cfg.ID, d.Version, d.Content, want.String())
		}
	}
	sameHashes(t, nodes...)
	t.Logf("%d submits from %d clients on 3 nodes converged on %d code points", final, len(clients), want.Len())
}

// writeIndexOf returns a log index at least as new as every write so
// far: that of a title change made now.
func writeIndexOf(t *testing.T, n *node, path, tok string) uint64 {
	t.Helper()
	r := n.do(t, "PATCH", path, map[string]string{"title": "Story, finished"}, bearer(tok))
	expectStatus(t, r, 200)
	return writeIndex(t, r)
}

// randomOps makes 1-3 ops valid on a text of n code points (each applied
// to the text the previous one left), with the client's marks.
func randomOps(rng *rand.Rand, n int, client string, seq int) []map[string]any {
	var ops []map[string]any
	for range 1 + rng.IntN(3) {
		mark := fmt.Sprintf("[%s.%d]", strings.TrimPrefix(client, "client-"), seq)
		switch k := rng.IntN(3); {
		case k == 0 || n < 3:
			ops = append(ops, map[string]any{"op": "insert", "pos": rng.IntN(n + 1), "text": mark})
			n += len(mark)
		case k == 1:
			p, l := rng.IntN(n-1), 1+rng.IntN(2)
			ops = append(ops, map[string]any{"op": "delete", "pos": p, "len": min(l, n-p)})
			n -= min(l, n-p)
		default:
			p := rng.IntN(n - 1)
			ops = append(ops, map[string]any{"op": "replace", "pos": p, "len": 1, "text": "é" + mark})
			n += len(mark)
		}
	}
	return ops
}

// userWithDoc registers Ada through reg, and through at creates a
// document with body as her; it returns her access token and the
// document's path. (--insecure without a token has no user to own a
// document.)
func userWithDoc(t *testing.T, reg, at *node, body map[string]string) (token, path string) {
	t.Helper()
	expectStatus(t, reg.do(t, "POST", "/v1/auth/register", map[string]string{"name": "Ada", "email": "ada@example.com", "password": "correct horse"}, nil), 201)
	token = login(t, reg, "ada@example.com", "correct horse").AccessToken
	r := at.do(t, "POST", "/v1/docs", body, bearer(token))
	expectStatus(t, r, 201)
	var doc struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	return token, "/v1/docs/" + doc.ID
}
