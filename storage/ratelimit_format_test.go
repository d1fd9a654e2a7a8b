package storage

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

// Policies written before they had an algorithm read as GCRA, with every
// field as it was written.
func TestDecodePolicyCommandVersion2(t *testing.T) {
	for _, tc := range []struct {
		hex  string
		want Command
	}{
		// What the build of command version 2 encoded.
		{"020b07000361706964d00f1400", Command{Kind: CmdPolicyPut, Stamp: 7,
			Policy: &Policy{Name: "api", Limit: 100, WindowMs: 1000, Burst: 20}}},
		{"020b08027231000000000000002a056c6f67696e05c0a9070501", Command{Kind: CmdPolicyPut, Stamp: 8, RequestID: "r1", Fingerprint: 42,
			Policy: &Policy{Name: "login", Limit: 5, WindowMs: 60000, Burst: 5, Shadow: true}}},
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
		if c.Policy.Algorithm != GCRA {
			t.Fatalf("a version 2 policy is %v", c.Policy.Algorithm)
		}
		// Written again, it is the current version: the old bytes plus
		// the algorithm and no Envoy rule.
		again := EncodeCommand(nil, c)
		if again[0] != CommandVersion || !bytes.Equal(again[1:], append(b[1:], byte(GCRA), 0)) {
			t.Fatalf("re-encoded: %x", again)
		}
		if c2, err := DecodeCommand(again); err != nil || !reflect.DeepEqual(c2, c) {
			t.Fatalf("version %d: %+v %v", CommandVersion, c2, err)
		}
	}
}

// TestReadSnapshotVersion5 reads a snapshot written by the build before
// policies had an algorithm (testdata/snapshot-v5.bin: richSnapshot with
// its first 40 documents): its policies are GCRA.
func TestReadSnapshotVersion5(t *testing.T) {
	readGoldenSnapshot(t, 5)
}

func TestSnapshotPolicyAlgorithms(t *testing.T) {
	s := richSnapshot(t)
	s.Docs = nil
	s.Meta.Policies = []Policy{
		{Name: "a-gcra", Limit: 100, WindowMs: 1000, Burst: 20},
		{Name: "b-sliding", Algorithm: SlidingWindow, Limit: 50, WindowMs: 60_000, Burst: 50},
		{Name: "c-fixed", Algorithm: FixedWindow, Limit: 1_000_000, Burst: 1_000_000, Window: UnitDay, TimeZone: "America/New_York", Shadow: true},
		{Name: "d-fixed-utc", Algorithm: FixedWindow, Limit: 3, Burst: 3, Window: UnitSecond},
		{Name: "e-sem", Algorithm: Concurrency, Limit: 16, Burst: 16},
	}
	b := writeSnap(t, s)
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, s)
	// A policy that does not validate is refused, as before.
	bad := bytes.Replace(b, []byte("America/New_York"), []byte("America/Nowhere!"), 1)
	if _, err := ReadSnapshot(bytes.NewReader(bad)); err == nil {
		t.Fatal("a snapshot with a bad time zone was read")
	}
}

// Every policy field's error names the field and what it accepts.
func TestPolicyAlgorithmValidation(t *testing.T) {
	for _, tc := range []struct {
		p            Policy
		field, words string
	}{
		{Policy{Name: "p", Algorithm: 4, Limit: 1, WindowMs: 1}, "algorithm", "gcra, sliding_window, fixed_window, concurrency"},
		{Policy{Name: "p", Algorithm: SlidingWindow, Limit: 1}, "window_ms", "from 1 to 86400000"},
		{Policy{Name: "p", Algorithm: SlidingWindow, Limit: 1, WindowMs: MaxWindowMs + 1}, "window_ms", "from 1 to 86400000"},
		{Policy{Name: "p", Algorithm: SlidingWindow, Limit: 0, WindowMs: 1}, "limit", "from 1 to 1000000000"},
		{Policy{Name: "p", Algorithm: SlidingWindow, Limit: 5, WindowMs: 1, Burst: 4}, "burst", "gcra policies only"},
		{Policy{Name: "p", Algorithm: SlidingWindow, Limit: 5, WindowMs: 1, Window: UnitDay}, "window", "fixed_window policies only"},
		{Policy{Name: "p", Algorithm: GCRA, Limit: 5, WindowMs: 1, TimeZone: "UTC"}, "time_zone", "fixed_window policies only"},
		{Policy{Name: "p", Algorithm: FixedWindow, Limit: 5}, "window", "second, minute, hour, day, month"},
		{Policy{Name: "p", Algorithm: FixedWindow, Limit: 5, Window: 6}, "window", "second, minute, hour, day, month"},
		{Policy{Name: "p", Algorithm: FixedWindow, Limit: 5, Window: UnitDay, WindowMs: 1000}, "window_ms", "give window"},
		{Policy{Name: "p", Algorithm: FixedWindow, Limit: 5, Window: UnitDay, TimeZone: "Mars/Olympus"}, "time_zone", "IANA time zone"},
		{Policy{Name: "p", Algorithm: FixedWindow, Limit: 5, Window: UnitDay, TimeZone: "Local"}, "time_zone", "IANA time zone"},
		{Policy{Name: "p", Algorithm: FixedWindow, Limit: 5, Window: UnitDay, TimeZone: strings.Repeat("A", 65)}, "time_zone", "at most 64"},
		{Policy{Name: "p", Algorithm: FixedWindow, Limit: MaxPolicyLimit + 1, Window: UnitDay}, "limit", "from 1 to 1000000000"},
		{Policy{Name: "p", Algorithm: Concurrency, Limit: MaxConcurrencyLimit + 1}, "limit", "from 1 to 10000 for a concurrency policy"},
		{Policy{Name: "p", Algorithm: Concurrency, Limit: 5, WindowMs: 1000}, "window_ms", "lease_ms"},
		{Policy{Name: "p", Algorithm: Concurrency, Limit: 5, Burst: 6}, "burst", "gcra policies only"},
	} {
		p := tc.p
		e := p.Validate()
		if e == nil || e.Kind != KindBadRequest || e.Field != tc.field || !strings.Contains(e.Message, tc.words) {
			t.Errorf("%+v: %v, want field %s saying %q", tc.p, e, tc.field, tc.words)
		}
	}
	for _, p := range []Policy{
		{Name: "s", Algorithm: SlidingWindow, Limit: MaxPolicyLimit, WindowMs: 1},
		{Name: "f", Algorithm: FixedWindow, Limit: 7, Window: UnitMonth, TimeZone: "Australia/Lord_Howe"},
		{Name: "f2", Algorithm: FixedWindow, Limit: 7, Window: UnitSecond, TimeZone: "UTC"},
		{Name: "c", Algorithm: Concurrency, Limit: MaxConcurrencyLimit},
	} {
		if e := p.Validate(); e != nil || p.Burst != p.Limit {
			t.Errorf("%+v: %v", p, e)
		}
		if loc, err := p.Location(); err != nil || loc == nil {
			t.Errorf("%+v: location %v", p, err)
		}
	}
	gcra := Policy{Name: "g", Limit: 5, WindowMs: 1000}
	sem := Policy{Name: "c", Algorithm: Concurrency, Limit: 5}
	for _, tc := range []struct {
		p       *Policy
		cost    uint32
		leaseMs int64
		field   string
	}{
		{&gcra, 1, 0, ""}, {&gcra, 0, 0, "cost"}, {&gcra, 1, 10, "lease_ms"},
		{&sem, 1, 10, ""}, {&sem, 1, 0, "lease_ms"}, {&sem, 1, MaxLeaseMs + 1, "lease_ms"}, {&sem, 1, -1, "lease_ms"},
	} {
		e := tc.p.ValidateCheck(tc.cost, tc.leaseMs)
		if (e == nil) != (tc.field == "") || (e != nil && e.Field != tc.field) {
			t.Errorf("%v cost %d lease %d: %v", tc.p.Algorithm, tc.cost, tc.leaseMs, e)
		}
	}
}

func TestPolicyShare(t *testing.T) {
	g := Policy{Name: "g", Limit: 100, WindowMs: 1000, Burst: 30}
	if s := g.Share(3); s.Limit != 33 || s.Burst != 10 || s.WindowMs != 1000 {
		t.Fatalf("gcra share: %+v", s)
	}
	if s := g.Share(1000); s.Limit != 1 || s.Burst != 1 {
		t.Fatalf("gcra share of many: %+v", s)
	}
	f := Policy{Name: "f", Algorithm: FixedWindow, Limit: 10, Burst: 10, Window: UnitDay}
	if s := f.Share(4); s.Limit != 2 || s.Burst != 2 || s.Window != UnitDay {
		t.Fatalf("fixed share: %+v", s)
	}
	for _, p := range []Policy{g, f, {Name: "c", Algorithm: Concurrency, Limit: 3, Burst: 3}} {
		s := p.Share(5)
		if e := s.Validate(); e != nil {
			t.Fatalf("%+v: %v", s, e)
		}
	}
}

func FuzzDecodePolicy(f *testing.F) {
	for _, c := range sampleCommands() {
		if c.Kind == CmdPolicyPut {
			var e encoder
			e.policy(c.Policy)
			f.Add(e.b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := decoder{b: b}
		p := d.policy(policyV3)
		if d.err != nil {
			return
		}
		var e encoder
		e.policy(p)
		d2 := decoder{b: e.b}
		if p2 := d2.policy(policyV3); d2.err != nil || !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip: %+v %+v %v", p, p2, d2.err)
		}
		if p.Validate() == nil {
			// A valid policy decides without panicking.
			now := int64(1_700_000_000) * 1e9
			switch p.Algorithm {
			case GCRA:
				p.Decide(&Bucket{}, 1, now)
			case SlidingWindow:
				p.DecideSliding(&SlidingCount{}, 1, now)
			case FixedWindow:
				loc, err := p.Location()
				if err != nil {
					t.Fatal(err)
				}
				p.DecideFixed(&WindowCount{}, CalendarWindowAt(p.Window, loc, now), 1, now)
			case Concurrency:
				p.Acquire(&Semaphore{}, 1, 1000, 1, now)
			}
		}
	})
}
