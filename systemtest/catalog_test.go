package systemtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

type docListing struct {
	Items []struct {
		ID      string   `json:"id"`
		Title   string   `json:"title"`
		Editors []string `json:"editors"`
	} `json:"items"`
	Next *string `json:"next"`
}

// doThrough503 is n.do, asked again while the answer is 503 (an
// election: these clusters run 400 ms raft timeouts, which a loaded
// machine can miss), for up to 20 s; what is checked is the answer after.
func doThrough503(t *testing.T, n *node, method, path string, body any, header map[string]string) response {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := n.do(t, method, path, body, header)
		if r.Status != 503 || time.Now().After(deadline) {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listDocs is one page of GET /v1/docs (linearizable, the default) on n.
func listDocs(t *testing.T, n *node, header map[string]string) docListing {
	t.Helper()
	r := doThrough503(t, n, "GET", "/v1/docs", nil, header)
	expectStatus(t, r, 200)
	var l docListing
	if err := json.Unmarshal(r.Body, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l docListing) titles() string {
	out := make([]string, len(l.Items))
	for i, it := range l.Items {
		out[i] = it.ID + ":" + it.Title
	}
	return strings.Join(out, ",")
}

// TestDocListingOnFollowers: on three processes, a title change made
// through a follower is in that follower's linearizable listing as soon
// as the write is acknowledged, and in the other follower's; so is an
// editor added or removed, in the editor's own listing.
func TestDocListingOnFollowers(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	nodes := startCluster(t)
	leader := status(t, nodes[0]).Leader
	if leader == nil {
		t.Fatal("no leader")
	}
	var followers []*node
	for _, n := range nodes {
		if n.cfg.ID != leader.ID {
			followers = append(followers, n)
		}
	}
	if len(followers) != 2 {
		t.Fatalf("leader %s: %d followers", leader.ID, len(followers))
	}
	f1, f2 := followers[0], followers[1]
	ada, path := userWithDoc(t, nodes[0], f1, map[string]string{"title": "Title 0"})
	docID := strings.TrimPrefix(path, "/v1/docs/")
	expectStatus(t, nodes[0].do(t, "POST", "/v1/auth/register", map[string]string{"name": "Bob", "email": "bob@example.com", "password": "correct horse"}, nil), 201)
	bob := login(t, nodes[0], "bob@example.com", "correct horse").AccessToken
	var me struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(nodes[0].do(t, "GET", "/v1/auth/me", nil, bearer(bob)).Body, &me); err != nil || me.ID == "" {
		t.Fatalf("bob's id: %v %q", err, me.ID)
	}

	for i := 1; i <= 30; i++ {
		title := fmt.Sprint("Title ", i)
		writer, reader := f1, f2
		if i%2 == 0 {
			writer, reader = f2, f1
		}
		expectStatus(t, doThrough503(t, writer, "PATCH", path, map[string]string{"title": title}, bearer(ada)), 200)
		want := docID + ":" + title
		if got := listDocs(t, writer, bearer(ada)).titles(); got != want {
			t.Fatalf("change %d: the writing follower %s lists %q, want %q", i, writer.cfg.ID, got, want)
		}
		if got := listDocs(t, reader, bearer(ada)).titles(); got != want {
			t.Fatalf("change %d: the other follower %s lists %q, want %q", i, reader.cfg.ID, got, want)
		}
		// Without a token an --insecure node lists as an admin: everything.
		if got := listDocs(t, writer, nil).titles(); got != want {
			t.Fatalf("change %d: the admin listing on %s is %q, want %q", i, writer.cfg.ID, got, want)
		}
	}

	editor := path + "/editors/" + me.ID
	for i := range 10 {
		writer, reader := followers[i%2], followers[(i+1)%2]
		expectStatus(t, doThrough503(t, writer, "PUT", editor, nil, bearer(ada)), 204)
		if got := listDocs(t, writer, bearer(bob)); len(got.Items) != 1 || got.Items[0].ID != docID {
			t.Fatalf("round %d: bob, just made an editor, lists %q on %s", i, got.titles(), writer.cfg.ID)
		}
		expectStatus(t, doThrough503(t, reader, "DELETE", editor, nil, bearer(ada)), 204)
		if got := listDocs(t, reader, bearer(bob)); len(got.Items) != 0 {
			t.Fatalf("round %d: bob, no longer an editor, lists %q on %s", i, got.titles(), reader.cfg.ID)
		}
	}
}
