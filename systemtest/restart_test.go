package systemtest

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

const defaultAdminEmail = "admin@troupe.local"

// TestRestartKeepsData writes users, changes and deletes some, stops the
// node with SIGTERM and checks that a restart on the same data dir serves
// exactly the same users, count and listing.
func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	n := startNode(t, newNodeConfig(t, "n1"))

	const created = 200
	var (
		order   []string              // ids in creation order
		bodies  = map[string][]byte{} // id → latest body
		lastIdx uint64
	)
	for i := range created {
		name := fmt.Sprintf("Restart User %03d", i)
		email := fmt.Sprintf("restart-%03d@example.com", i)
		r := n.do(t, http.MethodPost, "/v1/users", map[string]string{"name": name, "email": email}, nil)
		u := expectUser(t, r, http.StatusCreated)
		if u.Name != name || u.Email != email || u.Role != "user" {
			t.Fatalf("created user %d: want name %q, email %q, role user; got %s", i, name, email, r.Body)
		}
		if loc := r.Header.Get("Location"); !strings.HasSuffix(loc, userPath(u.ID)) {
			t.Fatalf("created user %s: Location %q does not end with %q", u.ID, loc, userPath(u.ID))
		}
		idx := writeIndex(t, r)
		if idx <= lastIdx {
			t.Fatalf("created user %d: X-Troupe-Index %d not above the previous write's %d", i, idx, lastIdx)
		}
		lastIdx = idx
		if _, dup := bodies[u.ID]; dup {
			t.Fatalf("created user %d: id %q was already given to another user", i, u.ID)
		}
		order = append(order, u.ID)
		bodies[u.ID] = r.Body
	}

	// Change one user, guarded by its ETag.
	patchedID := order[7]
	r := n.do(t, http.MethodGet, userPath(patchedID), nil, nil)
	before := expectUser(t, r, http.StatusOK)
	etag := r.Header.Get("ETag")
	if want := strconv.Quote(strconv.FormatInt(before.Version, 10)); etag != want {
		t.Fatalf("GET %s: ETag %q, want %q", userPath(patchedID), etag, want)
	}
	if !sameJSON(r.Body, bodies[patchedID]) {
		t.Fatalf("GET %s differs from the created user:\n got %s\nwant %s", userPath(patchedID), r.Body, bodies[patchedID])
	}
	r = n.do(t, http.MethodPatch, userPath(patchedID), map[string]string{"name": "Renamed Before Restart"}, map[string]string{"If-Match": etag})
	after := expectUser(t, r, http.StatusOK)
	lastIdx = max(lastIdx, writeIndex(t, r))
	if after.Name != "Renamed Before Restart" || after.ID != before.ID || after.Email != before.Email ||
		after.CreatedAt != before.CreatedAt || after.Version <= before.Version {
		t.Fatalf("PATCH %s: want the new name, same id/email/created_at and a higher version than %d; got %s",
			userPath(patchedID), before.Version, r.Body)
	}
	bodies[patchedID] = r.Body
	// The old version no longer matches.
	r = n.do(t, http.MethodPatch, userPath(patchedID), map[string]string{"name": "Stale Write"}, map[string]string{"If-Match": etag})
	expectError(t, r, http.StatusPreconditionFailed, "precondition_failed")

	// Delete one user.
	deletedID := order[13]
	r = n.do(t, http.MethodDelete, userPath(deletedID), nil, nil)
	expectStatus(t, r, http.StatusNoContent)
	lastIdx = max(lastIdx, writeIndex(t, r))
	delete(bodies, deletedID)
	expectError(t, n.do(t, http.MethodGet, userPath(deletedID), nil, nil), http.StatusNotFound, "not_found")

	// Everyone's body as served before the restart.
	served := map[string][]byte{}
	for _, id := range order {
		if id == deletedID {
			continue
		}
		r := n.do(t, http.MethodGet, userPath(id), nil, nil)
		expectUser(t, r, http.StatusOK)
		if !sameJSON(r.Body, bodies[id]) {
			t.Fatalf("GET %s before restart:\n got %s\nwant %s", userPath(id), r.Body, bodies[id])
		}
		served[id] = r.Body
	}
	wantCount := created - 1 + 1 // one deleted, plus the admin
	checkCount(t, n, wantCount)
	checkListing(t, n, served, wantCount)

	n.Stop(t)
	n = n.Restart(t)

	for _, id := range order {
		if id == deletedID {
			continue
		}
		r := n.do(t, http.MethodGet, userPath(id), nil, nil)
		expectUser(t, r, http.StatusOK)
		if !sameJSON(r.Body, served[id]) {
			t.Errorf("GET %s after restart:\n got %s\nwant %s", userPath(id), r.Body, served[id])
		}
	}
	expectError(t, n.do(t, http.MethodGet, userPath(deletedID), nil, nil), http.StatusNotFound, "not_found")
	checkCount(t, n, wantCount)
	checkListing(t, n, served, wantCount)

	// The log goes on where it stopped: a new write gets a higher index.
	r = n.do(t, http.MethodPost, "/v1/users", map[string]string{"name": "After Restart", "email": "after-restart@example.com"}, nil)
	expectUser(t, r, http.StatusCreated)
	if idx := writeIndex(t, r); idx <= lastIdx {
		t.Errorf("first write after restart has X-Troupe-Index %d, not above the last one before it (%d)", idx, lastIdx)
	}
	checkCount(t, n, wantCount+1)
}

// checkCount checks GET /v1/users/count.
func checkCount(t testing.TB, n *node, want int) {
	t.Helper()
	r := n.do(t, http.MethodGet, "/v1/users/count", nil, nil)
	expectStatus(t, r, http.StatusOK)
	var c struct {
		Count *int64 `json:"count"`
	}
	if err := decodeStrict(r.Body, &c); err != nil || c.Count == nil {
		t.Fatalf("%s: not a count body (%v)", r, err)
	}
	if *c.Count != int64(want) {
		t.Fatalf("%s: want count %d", r, want)
	}
}

// checkListing walks GET /v1/users?limit=50 along its cursors and checks that
// it returns every user in want exactly once, in id order, with the bodies
// GET returns, plus only the admin, total users in all.
func checkListing(t testing.TB, n *node, want map[string][]byte, total int) {
	t.Helper()
	const limit = 50
	var (
		ids    []string
		seen   = map[string]bool{}
		admins int
		after  *string
	)
	for page := 0; ; page++ {
		if page > total/limit+2 {
			t.Fatalf("listing did not end after %d pages of %d (%d users listed)", page, limit, len(ids))
		}
		path := "/v1/users?limit=" + strconv.Itoa(limit)
		if after != nil {
			path += "&after=" + url.QueryEscape(*after)
		}
		r := n.do(t, http.MethodGet, path, nil, nil)
		expectStatus(t, r, http.StatusOK)
		var p userPage
		if err := decodeStrict(r.Body, &p); err != nil || p.Items == nil {
			t.Fatalf("%s: not a user page (%v)", r, err)
		}
		if len(p.Items) > limit {
			t.Fatalf("GET %s: %d items, more than the limit %d", path, len(p.Items), limit)
		}
		for _, raw := range p.Items {
			u, err := parseUser(raw)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			if seen[u.ID] {
				t.Fatalf("GET %s: user %s listed twice", path, u.ID)
			}
			if len(ids) > 0 && u.ID <= ids[len(ids)-1] {
				t.Fatalf("GET %s: user %s listed after %s, not in id order", path, u.ID, ids[len(ids)-1])
			}
			seen[u.ID] = true
			ids = append(ids, u.ID)
			body, ok := want[u.ID]
			switch {
			case ok && !sameJSON(raw, body):
				t.Errorf("GET %s: listed user differs from GET %s:\n got %s\nwant %s", path, userPath(u.ID), raw, body)
			case !ok && u.Role == "admin" && u.Email == defaultAdminEmail:
				admins++
			case !ok:
				t.Errorf("GET %s: unexpected user listed: %s", path, raw)
			}
		}
		if p.Next == nil {
			break
		}
		if len(p.Items) == 0 {
			t.Fatalf("GET %s: an empty page with a next cursor %q", path, *p.Next)
		}
		after = p.Next
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("user %s missing from the listing", id)
		}
	}
	if admins != 1 {
		t.Errorf("listing holds %d admin users with email %s, want 1", admins, defaultAdminEmail)
	}
	if len(ids) != total {
		t.Errorf("listing holds %d users, want %d", len(ids), total)
	}
}
