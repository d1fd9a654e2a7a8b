package systemtest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSessionRevocationAcrossCluster: ending one session (logout with its
// refresh token) through one node makes every node refuse that session's
// access token, and ends the event streams it holds open on every node
// with a "closed" event; another session of the same user keeps working.
func TestSessionRevocationAcrossCluster(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	nodes, _ := startSecureCluster(t)
	_, path := userWithDoc(t, nodes[0], nodes[1], map[string]string{"title": "Shared"})
	ended := login(t, nodes[1], "ada@example.com", "correct horse")
	kept := login(t, nodes[2], "ada@example.com", "correct horse")

	// A stream on every node, with the token of the session to end.
	closed := make([]chan string, len(nodes))
	for i, n := range nodes {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		var resp *http.Response
		eventually(t, "a stream on "+n.cfg.ID, 10*time.Second, func() bool {
			req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+path+"/events?access_token="+ended.AccessToken, nil)
			var err error
			resp, err = http.DefaultClient.Do(req)
			if err == nil && resp.StatusCode != 200 {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == 200
		})
		ch := make(chan string, 1)
		closed[i] = ch
		go func() {
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			name := ""
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.HasPrefix(line, "event: "):
					name = line[7:]
				case strings.HasPrefix(line, "data: ") && name == "closed":
					ch <- line[6:]
					return
				}
			}
			ch <- "ended without closed: " + fmt.Sprint(sc.Err())
		}()
	}

	expectStatus(t, nodes[2].do(t, "POST", "/v1/auth/logout", map[string]string{"refresh_token": ended.RefreshToken}, bearer(kept.AccessToken)), 204)
	for i, n := range nodes {
		select {
		case data := <-closed[i]:
			if data != `{"reason":"access_revoked"}` {
				t.Fatalf("stream on %s: %s", n.cfg.ID, data)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the stream on %s did not end", n.cfg.ID)
		}
		eventually(t, "the ended session's token refused on "+n.cfg.ID, 5*time.Second, func() bool {
			r, err := n.send(t.Context(), "GET", "/v1/auth/me", nil, bearer(ended.AccessToken))
			return err == nil && r.Status == 401
		})
		expectStatus(t, n.do(t, "GET", "/v1/auth/me", nil, bearer(kept.AccessToken)), 200)
	}
}
