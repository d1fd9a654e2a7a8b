package systemtest

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// TestBatchAndErrorsOverProcess checks a batch with a bad item, the
// documented error answers over a real socket, and that batch-created users
// survive a restart.
func TestBatchAndErrorsOverProcess(t *testing.T) {
	t.Parallel()
	n := startNode(t, newNodeConfig(t, "n1"))

	items := []map[string]string{
		{"name": "Batch One", "email": "batch-one@example.com"},
		{"name": "Batch Bad", "email": "not-an-email"},
		{"name": "Batch Three", "email": "batch-three@example.com"},
	}
	r := n.do(t, http.MethodPost, "/v1/users/batch", map[string]any{"users": items}, nil)
	expectStatus(t, r, http.StatusOK)
	writeIndex(t, r)
	var br batchResults
	if err := decodeStrict(r.Body, &br); err != nil {
		t.Fatalf("%s: not a batch result (%v)", r, err)
	}
	if len(br.Results) != len(items) {
		t.Fatalf("%s: want %d results", r, len(items))
	}
	created := map[string][]byte{} // id → body
	for i, res := range br.Results {
		if i == 1 {
			if res.Status != http.StatusBadRequest || res.Error == nil || res.User != nil ||
				res.Error.Code != "bad_request" || res.Error.Message == "" {
				t.Fatalf("%s: result %d: want status 400 with a bad_request error and no user", r, i)
			}
			continue
		}
		if res.Status != http.StatusCreated || res.User == nil || res.Error != nil {
			t.Fatalf("%s: result %d: want status 201 with a user and no error", r, i)
		}
		u, err := parseUser(*res.User)
		if err != nil {
			t.Fatalf("%s: result %d: %v", r, i, err)
		}
		if u.Name != items[i]["name"] || u.Email != items[i]["email"] || u.Role != "user" {
			t.Fatalf("%s: result %d: want name %q, email %q, role user", r, i, items[i]["name"], items[i]["email"])
		}
		if _, dup := created[u.ID]; dup {
			t.Fatalf("%s: id %s given twice", r, u.ID)
		}
		created[u.ID] = *res.User
	}
	// The bad item created nothing; the others are readable.
	for id, body := range created {
		r := n.do(t, http.MethodGet, userPath(id), nil, nil)
		expectUser(t, r, http.StatusOK)
		if !sameJSON(r.Body, body) {
			t.Fatalf("GET %s differs from the batch result:\n got %s\nwant %s", userPath(id), r.Body, body)
		}
	}
	checkCount(t, n, len(created)+1)

	// Emails are unique, case-insensitively.
	r = n.do(t, http.MethodPost, "/v1/users", map[string]string{"name": "Dup", "email": "batch-one@example.com"}, nil)
	expectError(t, r, http.StatusConflict, "conflict")
	r = n.do(t, http.MethodPost, "/v1/users", map[string]string{"name": "Dup", "email": "Batch-ONE@Example.com"}, nil)
	expectError(t, r, http.StatusConflict, "conflict")

	// Unknown fields are rejected.
	r = n.do(t, http.MethodPost, "/v1/users", map[string]string{"name": "X", "email": "x@example.com", "nickname": "x"}, nil)
	expectError(t, r, http.StatusBadRequest, "bad_request")

	// Bodies over 1 MiB are rejected.
	big := []byte(`{"name":"` + strings.Repeat("a", 1<<20) + `","email":"big@example.com"}`)
	r = n.sendRaw(t, http.MethodPost, "/v1/users", big)
	expectError(t, r, http.StatusRequestEntityTooLarge, "payload_too_large")
	bigBatch := bytes.Repeat([]byte(`{"name":"big batch","email":"big@example.com"},`), (1<<20)/40)
	bigBatch = append(append([]byte(`{"users":[`), bigBatch...), []byte(`{"name":"last","email":"last@example.com"}]}`)...)
	r = n.sendRaw(t, http.MethodPost, "/v1/users/batch", bigBatch)
	expectError(t, r, http.StatusRequestEntityTooLarge, "payload_too_large")

	// None of the rejected requests created anything.
	checkCount(t, n, len(created)+1)

	n.Stop(t)
	n = n.Restart(t)

	for id, body := range created {
		r := n.do(t, http.MethodGet, userPath(id), nil, nil)
		expectUser(t, r, http.StatusOK)
		if !sameJSON(r.Body, body) {
			t.Errorf("GET %s after restart:\n got %s\nwant %s", userPath(id), r.Body, body)
		}
	}
	checkCount(t, n, len(created)+1)
}
