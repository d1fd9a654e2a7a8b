package storage

import (
	"fmt"
	"testing"
)

// goldenV9 is the state of testdata/snapshot-v9.bin, written by the build
// before named versions: richSnapshot with its first 40 documents and
// goldenPolicies, some documents with a viewer and a share link.
func goldenV9(t testing.TB) *Snapshot {
	s := richSnapshot(t)
	s.Docs = s.Docs[:40]
	s.Meta.Policies = goldenPolicies
	for i, d := range s.Docs {
		if i%4 != 1 {
			continue
		}
		d = d.WithMember(fmt.Sprintf("viewer-%02d", i), DocViewer)
		next, err := applyLink(&DocCommand{LinkID: fmt.Sprintf("%016x", i), LinkHash: ShareTokenHash(d.ID, "tok"),
			Role: DocViewer, Caller: "u1", ExpiresInS: 3600}, d, t0)
		if err != nil {
			t.Fatal(err)
		}
		s.Docs[i] = next
	}
	return s
}

// goldenV10 is the state of testdata/snapshot-v10.bin, written by the
// build before webhooks: goldenV9 with a named version on some documents,
// each then typed on until the rolling history no longer holds it.
func goldenV10(t testing.TB) *Snapshot {
	s := goldenV9(t)
	for i, d := range s.Docs {
		if i%5 != 2 {
			continue
		}
		d = nameVersion(t, d, d.Version, fmt.Sprintf("named %d", i))
		s.Docs[i] = typed(t, d, 4, HistoryRules{MaxChanges: 2, CheckpointEvery: 2})
	}
	return s
}
