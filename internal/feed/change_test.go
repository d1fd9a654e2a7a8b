package feed

import (
	"math"
	"strings"
	"testing"

	"github.com/troupe-db/troupe/storage"
)

func TestParsePosition(t *testing.T) {
	for in, want := range map[string]Position{
		"0": After(0), "42": After(42), "42-0": {42, 0}, "42-7": {42, 7},
		"18446744073709551615":            After(math.MaxUint64),
		"18446744073709551615-4294967294": {math.MaxUint64, math.MaxUint32 - 1},
	} {
		got, err := ParsePosition(in)
		if err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
		if again, err := ParsePosition(got.String()); err != nil || again != got {
			t.Errorf("%q: %v does not read back (%v, %v)", in, got, again, err)
		}
	}
	for _, in := range []string{"", "-", "1-", "-1", "+1", "1-+2", " 1", "1 ", "0x10", "1e3", "1.5", "1-2-3",
		"18446744073709551616", "1-4294967295", "1-99999999999", "000000000000000000001"} {
		if p, err := ParsePosition(in); err == nil {
			t.Errorf("%q read as %v", in, p)
		}
	}
}

func TestParseKinds(t *testing.T) {
	for in, want := range map[string]Kind{
		"users": KindUser, "docs,users": KindUser | KindDoc, "policies,members": KindPolicy | KindMember,
		"user,doc,policy,member": AllKinds,
	} {
		got, err := ParseKinds(in)
		if err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", ",", "users,", "Users", "users,users", "user,users", "all", strings.Repeat("x", 1000)} {
		if k, err := ParseKinds(in); err == nil {
			t.Errorf("%q read as %v", in, k)
		} else if len(err.Error()) > 200 {
			t.Errorf("%q: an error of %d bytes", in, len(err.Error()))
		}
	}
}

func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"0", "1-0", "18446744073709551615-4294967294", "1-4294967295", "-", "1--1", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			return
		}
		if again, err := ParsePosition(p.String()); err != nil || again != p {
			t.Fatalf("%q → %v → %q → %v, %v", s, p, p.String(), again, err)
		}
		if i, err := ParseIndex(s); err == nil && After(i) != p {
			t.Fatalf("%q: index %d, position %v", s, i, p)
		}
	})
}

func FuzzParseKinds(f *testing.F) {
	for _, s := range []string{"users", "docs,policies", "members,users,docs", ",,", "users,users"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKinds(s)
		if err != nil {
			return
		}
		if k == 0 || k&^AllKinds != 0 {
			t.Fatalf("%q → %b", s, k)
		}
		if again, err := ParseKinds(strings.Join(k.Names(), ",")); err != nil || again != k {
			t.Fatalf("%q → %v does not read back: %v %v", s, k, again, err)
		}
	})
}

// pushSpec encodes v at p and pushes it into r.
func pushSpec(r *ring, p Position, v spec) {
	b, side := encodeChange(nil, p, &v)
	r.push(b, side)
}

// TestRingBounds: the ring keeps the newest changes within both bounds
// (the newest always), and says what it no longer has.
func TestRingBounds(t *testing.T) {
	r := ring{maxChanges: 100, maxBytes: 1 << 20, floor: After(0)}
	for i := uint64(1); i <= 1000; i++ {
		pushSpec(&r, Position{i, 0}, spec{ID: "x"})
	}
	if r.len() != 100 || r.floor != (Position{900, 0}) || r.last() != (Position{1000, 0}) {
		t.Fatalf("%d kept, floor %v, last %v", r.len(), r.floor, r.last())
	}
	cs, err := r.after(After(900), nil, 10)
	if err != nil || len(cs) != 10 || cs[0].Index != 901 {
		t.Fatalf("after 900: %d, %v", len(cs), err)
	}
	if _, err := r.after(Position{899, 5}, nil, 10); err == nil {
		t.Fatal("after 899-5: no error")
	}
	// By bytes: big users push the older out; one bigger than the bound
	// stays alone.
	big := &storage.User{Name: strings.Repeat("n", 100_000)}
	r.maxBytes = 350_000
	for i := uint64(1001); i <= 1010; i++ {
		pushSpec(&r, Position{i, 0}, spec{User: big})
	}
	if r.len() != 3 || r.bytes > 350_000 {
		t.Fatalf("%d kept, %d bytes", r.len(), r.bytes)
	}
	r.maxBytes = 1000
	pushSpec(&r, Position{1011, 0}, spec{User: big})
	if r.len() != 1 || r.floor != (Position{1010, 0}) || len(r.segs) != 1 {
		t.Fatalf("%d kept in %d segments, floor %v", r.len(), len(r.segs), r.floor)
	}
	r.reset(After(2000))
	if r.len() != 0 || r.bytes != 0 || r.last() != After(2000) {
		t.Fatalf("after a reset: %d kept, %d bytes, last %v", r.len(), r.bytes, r.last())
	}
	if cs, err := r.after(After(2000), nil, 10); err != nil || len(cs) != 0 {
		t.Fatalf("after a reset: %d changes, %v", len(cs), err)
	}
}
