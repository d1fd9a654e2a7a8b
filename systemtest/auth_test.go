package systemtest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

func login(t *testing.T, n *node, email, password string) tokenPair {
	t.Helper()
	// A login records a session through the leader: while an election
	// runs (a loaded machine can make a leader step down), the node
	// answers 503 unavailable, and a client logs in again, as here.
	var r response
	eventually(t, "a login answered", 15*time.Second, func() bool {
		r = n.do(t, "POST", "/v1/auth/login", map[string]string{"email": email, "password": password}, nil)
		return r.Status != 503
	})
	expectStatus(t, r, 200)
	var tp tokenPair
	if err := json.Unmarshal(r.Body, &tp); err != nil {
		t.Fatal(err)
	}
	return tp
}

// TestTokensAcrossCluster runs a secure three-process cluster: a token
// issued through one node works on every node, a refresh on another node
// rotates it, and a logout everywhere is refused by every node.
func TestTokensAcrossCluster(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	nodes, peer := startSecureCluster(t)
	// Anonymous requests are refused everywhere.
	for _, n := range nodes {
		expectError(t, n.do(t, "GET", "/v1/users/count", nil, nil), 401, "unauthenticated")
	}

	// Register and log in through different nodes (followers forward).
	expectStatus(t, nodes[2].do(t, "POST", "/v1/auth/register", map[string]string{"name": "Ada", "email": "ada@example.com", "password": "correct horse"}, nil), 201)
	ada := login(t, nodes[1], "ada@example.com", "correct horse")
	admin := login(t, nodes[2], "admin@troupe.local", adminPassword)
	for _, n := range nodes {
		// A node may not yet have applied the login: read-your-writes.
		r := n.do(t, "GET", "/v1/auth/me", nil, bearer(ada.AccessToken))
		expectStatus(t, r, 200)
		expectStatus(t, n.do(t, "GET", "/v1/users/count", nil, bearer(admin.AccessToken)), 200)
		expectError(t, n.do(t, "GET", "/v1/users/count", nil, bearer(ada.AccessToken)), 403, "forbidden")
	}

	// Refresh on one node; the same refresh repeated at once on another
	// gets the same successor (grace period); the successor works.
	body := map[string]string{"refresh_token": ada.RefreshToken}
	r := nodes[0].do(t, "POST", "/v1/auth/refresh", body, nil)
	expectStatus(t, r, 200)
	var next, again tokenPair
	if err := json.Unmarshal(r.Body, &next); err != nil {
		t.Fatal(err)
	}
	r = nodes[2].do(t, "POST", "/v1/auth/refresh", body, nil)
	expectStatus(t, r, 200)
	if err := json.Unmarshal(r.Body, &again); err != nil {
		t.Fatal(err)
	}
	if again.RefreshToken != next.RefreshToken || next.RefreshToken == ada.RefreshToken {
		t.Fatalf("a repeat within the grace period got another successor")
	}

	// A key rotation keeps old tokens valid and signs new ones.
	expectStatus(t, nodes[1].do(t, "POST", "/v1/auth/keys/rotate", nil, bearer(admin.AccessToken)), 200)
	fresh := login(t, nodes[0], "ada@example.com", "correct horse")
	for _, n := range nodes {
		for _, tok := range []string{next.AccessToken, fresh.AccessToken} {
			eventually(t, "the token accepted on "+n.cfg.ID, 5*time.Second, func() bool {
				r, err := n.send(t.Context(), "GET", "/v1/auth/me", nil, bearer(tok))
				return err == nil && r.Status == 200
			})
		}
	}

	// Logout everywhere through one node: every node refuses every one of
	// Ada's access tokens once it has applied the logout.
	expectStatus(t, nodes[2].do(t, "POST", "/v1/auth/logout", map[string]bool{"all": true}, bearer(fresh.AccessToken)), 204)
	for _, n := range nodes {
		for i, tok := range []string{ada.AccessToken, next.AccessToken, fresh.AccessToken} {
			eventually(t, fmt.Sprintf("token %d refused on %s", i, n.cfg.ID), 5*time.Second, func() bool {
				r, err := n.send(t.Context(), "GET", "/v1/auth/me", nil, bearer(tok))
				return err == nil && r.Status == 401
			})
		}
	}
	expectError(t, nodes[1].do(t, "POST", "/v1/auth/refresh", map[string]string{"refresh_token": fresh.RefreshToken}, nil), 401, "unauthenticated")
	sameHashesWith(t, peer, nodes...)
}
