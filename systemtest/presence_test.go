package systemtest

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPresenceAcrossNodes: clients of one document on different nodes
// see each other arrive, and leave (also when a node dies: its reports
// expire), and a change made through one node streams on the others.
func TestPresenceAcrossNodes(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	nodes := startCluster(t)
	tok, path := userWithDoc(t, nodes[0], nodes[1], map[string]string{"title": "Shared"})

	type event struct{ name, data string }
	stream := func(n *node, client string) (<-chan event, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		var resp *http.Response
		eventually(t, "the document on "+n.cfg.ID, 10*time.Second, func() bool {
			req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+path+"/events?client_id="+client+"&access_token="+tok, nil)
			var err error
			resp, err = http.DefaultClient.Do(req)
			if err == nil && resp.StatusCode != 200 {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == 200
		})
		ch := make(chan event, 100)
		go func() {
			defer close(ch)
			sc := bufio.NewScanner(resp.Body)
			var ev event
			for sc.Scan() {
				line := sc.Text()
				switch {
				case line == "" && ev.name != "":
					ch <- ev
					ev = event{}
				case strings.HasPrefix(line, "event: "):
					ev.name = line[7:]
				case strings.HasPrefix(line, "data: "):
					ev.data = line[6:]
				}
			}
		}()
		return ch, func() { cancel(); resp.Body.Close() }
	}
	await := func(ch <-chan event, what string, match func(event) bool) {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("stream ended waiting for %s", what)
				}
				if match(ev) {
					return
				}
			case <-timeout:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	presence := func(client, state string) func(event) bool {
		return func(ev event) bool {
			return ev.name == "presence" && strings.Contains(ev.data, `"client_id":"`+client+`"`) && strings.Contains(ev.data, `"state":"`+state+`"`)
		}
	}

	onA, closeA := stream(nodes[0], "tab-a")
	defer closeA()
	_, closeB := stream(nodes[1], "tab-b")
	await(onA, "tab-b joining on another node", presence("tab-b", "join"))
	onC, closeC := stream(nodes[2], "tab-c")
	defer closeC()
	await(onC, "tab-a, already there", presence("tab-a", "join"))
	await(onA, "tab-c joining", presence("tab-c", "join"))

	// A change through node b streams on a and c.
	expectStatus(t, nodes[1].do(t, "POST", path+"/ops", map[string]any{"client_id": "w", "seq": 1, "base_version": 0,
		"ops": []map[string]any{{"op": "insert", "pos": 0, "text": "hi"}}}, bearer(tok)), 200)
	await(onA, "the change on a", func(ev event) bool { return ev.name == "change" && strings.Contains(ev.data, `"text":"hi"`) })
	await(onC, "the change on c", func(ev event) bool { return ev.name == "change" && strings.Contains(ev.data, `"text":"hi"`) })

	// tab-b closes: its node notices at the next keep-alive and tells
	// the others.
	closeB()
	await(onA, "tab-b leaving", presence("tab-b", "leave"))
	// Node c dies: its client's presence expires elsewhere.
	nodes[2].Kill(t)
	await(onA, "tab-c expiring with its node", presence("tab-c", "leave"))
}
