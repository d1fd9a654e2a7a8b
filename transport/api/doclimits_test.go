package api

import (
	"fmt"
	"strings"
	"testing"

	"github.com/troupe-db/troupe/storage"
)

func TestDocLimitsOverHTTP(t *testing.T) {
	ts := startServer(t, secure, func(c *Config) {
		c.MaxDocumentsPerUser = 2
		c.MaxBodyBytes = 10 << 20 // to send a text beyond the cap in one body
	})
	ts.register("Ada", "ada@example.com", "correct horse")
	ada := bearer(ts.login("ada@example.com", "correct horse").AccessToken)

	// A text beyond 8 MiB: 413 before anything is proposed.
	big := strings.Repeat("a", storage.MaxDocBytes)
	ts.expect(ts.do("POST", "/v1/docs", fmt.Sprintf(`{"title":"Big","content":%q}`, big+"a"), ada, true), 413, "payload_too_large")
	r := ts.do("POST", "/v1/docs", fmt.Sprintf(`{"title":"Big","content":%q}`, big), ada, true)
	ts.expect(r, 201, "")
	var d docResp
	r.json(t, &d)
	// A submit that would grow it past the cap: 413, the document unchanged.
	r = ts.do("POST", "/v1/docs/"+d.ID+"/ops", `{"client_id":"c","seq":1,"base_version":0,"ops":[{"op":"insert","pos":0,"text":"b"}]}`, ada, true)
	ts.expect(r, 413, "payload_too_large")
	ts.expect(ts.do("POST", "/v1/docs/"+d.ID+"/ops", `{"client_id":"c","seq":1,"base_version":0,"ops":[{"op":"replace","pos":0,"len":1,"text":"b"}]}`, ada, true), 200, "")

	// The second document is the last this user may own.
	ts.expect(ts.do("POST", "/v1/docs", `{"title":"Two"}`, ada, true), 201, "")
	r = ts.do("POST", "/v1/docs", `{"title":"Three"}`, ada, true)
	ts.expect(r, 403, "quota_exceeded")
	if r.detailsLimit(t) != 2 {
		t.Fatalf("details: %s", r.body)
	}
	// Deleting one makes room.
	ts.expect(ts.do("DELETE", "/v1/docs/"+d.ID, "", ada, true), 204, "")
	ts.expect(ts.do("POST", "/v1/docs", `{"title":"Three"}`, ada, true), 201, "")

	m := string(ts.do("GET", "/metrics", "", nil, false).body)
	for _, want := range []string{`troupe_doc_limit_refusals_total{limit="text_bytes"} 2`, `troupe_doc_limit_refusals_total{limit="documents_per_user"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestDocLimitsConfig(t *testing.T) {
	for _, tc := range []struct {
		docs, hist int
		want       string
	}{
		{0, 16 << 20, "--max-documents-per-user"},
		{10_000_001, 16 << 20, "--max-documents-per-user"},
		{10, 1<<20 - 1, "--document-history-bytes"},
		{10, 1<<30 + 1, "--document-history-bytes"},
	} {
		c := DefaultConfig()
		c.MaxDocumentsPerUser, c.DocumentHistoryBytes = tc.docs, tc.hist
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d, %d: %v", tc.docs, tc.hist, err)
		}
	}
	if c := DefaultConfig(); c.Validate() != nil {
		t.Fatal(c.Validate())
	}
}
