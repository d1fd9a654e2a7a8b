package storage

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestTokenStateAgreesWithGet: for records of every shape (no auth
// state, an epoch without sessions, many sessions, long fields), the
// token state read in place is the one the whole record gives, for a
// session it has and for one it has not; a missing record or a bad id
// is not found.
func TestTokenStateAgreesWithGet(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	s := NewUserShard()
	var ids []string
	for i := range 300 {
		id := MakeUserID(StampAt(t0)+uint64(i), uint16(i%3))
		u := User{ID: id, Name: strings.Repeat("n", r.IntN(200)), Email: fmt.Sprintf("%d@example.com", i),
			PasswordHash: strings.Repeat("h", r.IntN(100)), Role: Role(r.IntN(3)), Version: uint64(i + 1), CreatedMs: t0, UpdatedMs: t0 + int64(i)}
		if r.IntN(4) > 0 {
			u.Auth = &UserAuth{Epoch: r.Uint64N(1 << 40)}
			for j := range r.IntN(6) {
				u.Auth.Sessions = append(u.Auth.Sessions, Session{Family: fmt.Sprintf("f%d-%d", i, j), Hash: [32]byte{byte(j)}, PrevHash: [32]byte{1, byte(i)}, RotatedMs: int64(j), ExpiresMs: t0 + int64(j)})
			}
		}
		s.Put(&u)
		ids = append(ids, id)
	}
	for i, id := range ids {
		u, _ := s.Get(id)
		asks := []string{"", "f0", fmt.Sprintf("f%d-0", i), fmt.Sprintf("f%d-4", i), fmt.Sprintf("f%d-9", i)}
		for _, sid := range asks {
			got, ok := s.TokenState(id, sid)
			want := TokenState{Role: u.Role, Epoch: u.TokenEpoch(), Session: u.HasSession(sid)}
			if !ok || got != want {
				t.Fatalf("%s session %q: %+v %v, want %+v", id, sid, got, ok, want)
			}
			if p, ok := s.GetProfile(id); !ok || p.Auth != nil || *p != (User{ID: u.ID, Name: u.Name, Email: u.Email, PasswordHash: u.PasswordHash, Role: u.Role, Version: u.Version, CreatedMs: u.CreatedMs, UpdatedMs: u.UpdatedMs}) {
				t.Fatalf("%s: GetProfile %+v, Get %+v", id, p, u)
			}
			if got.Holds(u.TokenEpoch()) != u.HasSession(sid) || u.Auth != nil && got.Holds(u.TokenEpoch()+1) {
				t.Fatalf("%s session %q: Holds disagrees", id, sid)
			}
		}
	}
	s.Remove(ids[0])
	for _, bad := range []string{ids[0], "", "not-an-id", strings.ToUpper(ids[1])} {
		if _, ok := s.GetProfile(bad); ok {
			t.Fatalf("GetProfile(%q) found a record", bad)
		}
		if _, ok := s.TokenState(bad, "f"); ok {
			t.Fatalf("TokenState(%q) found a record", bad)
		}
	}
	// A view answers as of when it was taken.
	v := s.View()
	u, _ := s.Get(ids[1])
	u.Auth = &UserAuth{Epoch: 7, Sessions: []Session{{Family: "new"}}}
	s.Put(u)
	if got, _ := s.TokenState(ids[1], "new"); !got.Holds(7) {
		t.Fatalf("after Put: %+v", got)
	}
	if got, _ := v.TokenState(ids[1], "new"); got.Session {
		t.Fatalf("the view sees a later Put: %+v", got)
	}
}

// TestTokenStateAllocatesNothing: the token check with every request
// leaves no garbage.
func TestTokenStateAllocatesNothing(t *testing.T) {
	s := NewUserShard()
	id := MakeUserID(StampAt(t0), 0)
	s.Put(&User{ID: id, Name: "Ada", Email: "ada@example.com", PasswordHash: "h", Auth: &UserAuth{Epoch: 2, Sessions: []Session{{Family: "a"}, {Family: "b"}}}})
	if n := testing.AllocsPerRun(100, func() {
		if st, ok := s.TokenState(id, "b"); !ok || !st.Holds(2) {
			t.Fatal("session b not found")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}

func BenchmarkUserTokenState(b *testing.B) {
	s := NewUserShard()
	id := MakeUserID(StampAt(t0), 0)
	s.Put(&User{ID: id, Name: "Ada", Email: "ada@example.com", PasswordHash: strings.Repeat("h", 90), Auth: &UserAuth{Epoch: 2, Sessions: []Session{{Family: "a"}, {Family: "b"}}}})
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if u, ok := s.Get(id); !ok || !u.HasSession("b") {
				b.Fatal("session b not found")
			}
		}
	})
	b.Run("token_state", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if st, ok := s.TokenState(id, "b"); !ok || !st.Holds(2) {
				b.Fatal("session b not found")
			}
		}
	})
}

// TestSkipVarint: skipping a varint passes over exactly the bytes
// decoding it would, and refuses what decoding refuses for length.
func TestSkipVarint(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 63, -64, 64, 1 << 40, t0, -t0, 1<<63 - 1, -1 << 63} {
		var e encoder
		e.varint(v)
		e.byte1(7)
		d := decoder{b: e.b}
		d.skipVarint()
		if d.err != nil || len(d.b) != 1 || d.b[0] != 7 {
			t.Fatalf("%d: left %v, err %v", v, d.b, d.err)
		}
	}
	for _, bad := range [][]byte{nil, {0x80}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}} {
		d := decoder{b: bad}
		if d.skipVarint(); d.err == nil {
			t.Fatalf("% x: skipped", bad)
		}
	}
}
