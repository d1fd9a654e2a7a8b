package main

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/troupe-db/troupe/transport/client"
)

// A refused call says what to give: the flag and the variable.
func TestCredentialHints(t *testing.T) {
	refused := &client.APIError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "a cluster secret or an admin's token is required"}
	for _, tc := range []struct {
		creds credentials
		err   error
		want  []string
	}{
		{credentials{}, refused, []string{"--cluster-secret-file", "TROUPE_CLUSTER_SECRET", "--token", "TROUPE_TOKEN"}},
		{credentials{secret: "s"}, refused, []string{"not accepted"}},
		{credentials{token: "t"}, &client.APIError{Status: http.StatusForbidden, Code: "forbidden"}, []string{"not an admin's"}},
		{credentials{}, &client.APIError{Status: http.StatusNotFound, Code: "not_found"}, nil},
		{credentials{}, errors.New("connection refused"), nil},
	} {
		got := tc.creds.explain(tc.err).Error()
		if !strings.HasPrefix(got, tc.err.Error()) {
			t.Fatalf("%q lost the original error %q", got, tc.err)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%q: no %q", got, w)
			}
		}
		if tc.want == nil && got != tc.err.Error() {
			t.Errorf("%q: a hint where none applies", got)
		}
	}
}
