package storage

import (
	"bytes"
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"testing"
)

// Policies of command version 3 (testdata: what that build encoded) read
// with every field and no Envoy rule, and write again as the current
// version: the old bytes plus an absent rule.
func TestDecodePolicyCommandVersion3(t *testing.T) {
	for _, tc := range []struct {
		hex  string
		want Command
	}{
		{"030b0900026677e80700e8070002050c4575726f70652f5061726973", Command{Kind: CmdPolicyPut, Stamp: 9,
			Policy: &Policy{Name: "fw", Algorithm: FixedWindow, Limit: 1000, Burst: 1000, Window: UnitMonth, TimeZone: "Europe/Paris"}}},
		{"030b0a027232000000000000002b0273770ac0a9070a0101", Command{Kind: CmdPolicyPut, Stamp: 10, RequestID: "r2", Fingerprint: 43,
			Policy: &Policy{Name: "sw", Algorithm: SlidingWindow, Limit: 10, WindowMs: 60_000, Burst: 10, Shadow: true}}},
	} {
		b, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		c, err := DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*c, tc.want) {
			t.Fatalf("got %+v %+v\nwant %+v %+v", c, c.Policy, tc.want, tc.want.Policy)
		}
		again := EncodeCommand(nil, c)
		if again[0] != CommandVersion || !bytes.Equal(again[1:], append(b[1:], 0)) {
			t.Fatalf("re-encoded: %x", again)
		}
	}
}

// TestReadSnapshotVersion6Policies reads a snapshot written by a build
// before policies had an Envoy rule (testdata/snapshot-v6-policies.bin:
// richSnapshot with its first 40 documents and a policy of each
// algorithm): its policies have none.
func TestReadSnapshotVersion6Policies(t *testing.T) {
	readPoliciesGolden(t, "testdata/snapshot-v6-policies.bin")
}

// readPoliciesGolden reads a snapshot an earlier build wrote of
// richSnapshot with its first 40 documents and goldenPolicies, checks it
// holds that state (no Envoy rule: no build before version 8 wrote one)
// and that written again it reads back the same.
func readPoliciesGolden(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := richSnapshot(t)
	want.Docs = want.Docs[:40]
	want.Meta.Policies = goldenPolicies
	sameState(t, got, want)
	again, err := ReadSnapshot(bytes.NewReader(writeSnap(t, got)))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, again, want)
}

// goldenPolicies are the policies of the golden snapshots that hold one
// of each algorithm.
var goldenPolicies = []Policy{
	{Name: "a-gcra", Limit: 100, WindowMs: 1000, Burst: 20},
	{Name: "b-sliding", Algorithm: SlidingWindow, Limit: 50, WindowMs: 60_000, Burst: 50},
	{Name: "c-fixed", Algorithm: FixedWindow, Limit: 1_000_000, Burst: 1_000_000, Window: UnitDay, TimeZone: "America/New_York", Shadow: true},
	{Name: "e-sem", Algorithm: Concurrency, Limit: 16, Burst: 16},
}

func TestSnapshotPolicyEnvoy(t *testing.T) {
	s := richSnapshot(t)
	s.Docs = nil
	s.Meta.Policies = []Policy{
		{Name: "a", Limit: 100, WindowMs: 1000, Burst: 20,
			Envoy: &EnvoyRule{Domain: "edge", Descriptors: []EnvoyEntry{{Key: "remote_address"}}}},
		{Name: "b", Algorithm: FixedWindow, Limit: 5, Burst: 5, Window: UnitHour,
			Envoy: &EnvoyRule{Domain: "edge", Descriptors: []EnvoyEntry{{Key: "user"}, {Key: "path", Value: "/pay"}}}},
		{Name: "c", Limit: 1, WindowMs: 1, Burst: 1},
	}
	got, err := ReadSnapshot(bytes.NewReader(writeSnap(t, s)))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, s)
	if !reflect.DeepEqual(got.Meta.Policies, s.Meta.Policies) {
		t.Fatalf("policies: %+v", got.Meta.Policies)
	}
}

func TestEnvoyRuleValidation(t *testing.T) {
	entries := func(e ...EnvoyEntry) []EnvoyEntry { return e }
	for _, tc := range []struct {
		p            Policy
		field, words string
	}{
		{Policy{Name: "p", Algorithm: Concurrency, Limit: 1, Envoy: &EnvoyRule{Domain: "d", Descriptors: entries(EnvoyEntry{Key: "k"})}}, "envoy", "never releases"},
		{Policy{Name: "p", Limit: 1, WindowMs: 1, Envoy: &EnvoyRule{Descriptors: entries(EnvoyEntry{Key: "k"})}}, "envoy.domain", "1 to 255 printable"},
		{Policy{Name: "p", Limit: 1, WindowMs: 1, Envoy: &EnvoyRule{Domain: strings.Repeat("d", 256), Descriptors: entries(EnvoyEntry{Key: "k"})}}, "envoy.domain", "1 to 255"},
		{Policy{Name: "p", Limit: 1, WindowMs: 1, Envoy: &EnvoyRule{Domain: "a\nb", Descriptors: entries(EnvoyEntry{Key: "k"})}}, "envoy.domain", "printable"},
		{Policy{Name: "p", Limit: 1, WindowMs: 1, Envoy: &EnvoyRule{Domain: "d"}}, "envoy.descriptors", "1 to 8 entries"},
		{Policy{Name: "p", Limit: 1, WindowMs: 1, Envoy: &EnvoyRule{Domain: "d", Descriptors: make([]EnvoyEntry, 9)}}, "envoy.descriptors", "1 to 8 entries"},
		{Policy{Name: "p", Limit: 1, WindowMs: 1, Envoy: &EnvoyRule{Domain: "d", Descriptors: entries(EnvoyEntry{Value: "v"})}}, "envoy.descriptors", "key must be 1 to 255"},
		{Policy{Name: "p", Limit: 1, WindowMs: 1, Envoy: &EnvoyRule{Domain: "d", Descriptors: entries(EnvoyEntry{Key: "k", Value: strings.Repeat("v", 256)})}}, "envoy.descriptors", "value must be at most 255"},
	} {
		p := tc.p
		e := p.Validate()
		if e == nil || e.Kind != KindBadRequest || e.Field != tc.field || !strings.Contains(e.Message, tc.words) {
			t.Errorf("%+v: %v, want field %s saying %q", tc.p.Envoy, e, tc.field, tc.words)
		}
	}
	ok := Policy{Name: "p", Algorithm: FixedWindow, Limit: 3, Window: UnitMinute,
		Envoy: &EnvoyRule{Domain: "edge", Descriptors: entries(EnvoyEntry{Key: "a"}, EnvoyEntry{Key: "b", Value: "x"})}}
	if e := ok.Validate(); e != nil {
		t.Fatal(e)
	}
}

func TestEnvoyRuleMatchAndKey(t *testing.T) {
	r := EnvoyRule{Domain: "d", Descriptors: []EnvoyEntry{{Key: "user"}, {Key: "path", Value: "/pay"}}}
	for _, tc := range []struct {
		entries []EnvoyPair
		spec    int
		ok      bool
	}{
		{[]EnvoyPair{{"user", "u1"}, {"path", "/pay"}}, 1, true},
		{[]EnvoyPair{{"user", "u1"}, {"path", "/other"}}, 0, false},
		{[]EnvoyPair{{"path", "/pay"}, {"user", "u1"}}, 0, false},
		{[]EnvoyPair{{"user", "u1"}}, 0, false},
		{[]EnvoyPair{{"user", "u1"}, {"path", "/pay"}, {"x", "y"}}, 0, false},
	} {
		spec, ok := r.Match(tc.entries)
		if spec != tc.spec || ok != tc.ok {
			t.Errorf("%v: %d %v", tc.entries, spec, ok)
		}
	}
	if k := EnvoyKey([]EnvoyPair{{"user", "u/1"}, {"path", "/pay"}}); k != "u%2F1/%2Fpay" {
		t.Fatalf("key %q", k)
	}
	// Values that would run together stay apart.
	if EnvoyKey([]EnvoyPair{{"a", "x/y"}}) == EnvoyKey([]EnvoyPair{{"a", "x"}, {"b", "y"}}) {
		t.Fatal("keys collide")
	}
	if k := EnvoyKey([]EnvoyPair{{"a", ""}}); k != "" {
		t.Fatalf("an empty value made key %q", k)
	}
	if k := EnvoyKey([]EnvoyPair{{"a", strings.Repeat("v", MaxEnvoyKey+1)}}); k != "" {
		t.Fatalf("an over-long key %d", len(k))
	}
}

// TestReadSnapshotVersion7 reads a snapshot written by the build before
// policies had an Envoy rule, the first with document checkpoints
// (testdata/snapshot-v7.bin: richSnapshot with its first 40 documents and
// a policy of each algorithm): its policies have none.
func TestReadSnapshotVersion7(t *testing.T) {
	readPoliciesGolden(t, "testdata/snapshot-v7.bin")
}
