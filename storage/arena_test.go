package storage

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// shardModel is what a UserShard (or a view of one) should hold.
type shardModel map[string]User

func checkShard(t *testing.T, what string, s *UserShard, m shardModel) {
	t.Helper()
	if s.Len() != len(m) {
		t.Fatalf("%s: %d records, want %d", what, s.Len(), len(m))
	}
	for id, want := range m {
		got, ok := s.Get(id)
		if !ok || !usersEqual(got, &want) {
			t.Fatalf("%s: %s is %+v, want %+v", what, id, got, want)
		}
	}
	want := slices.Sorted(maps.Keys(m))
	if got := ids(s.List(nil, ListQuery{Limit: len(m) + 1})); !slices.Equal(got, want) {
		t.Fatalf("%s: list %v, want %v", what, got, want)
	}
}

func usersEqual(a, b *User) bool {
	x, y := *a, *b
	x.Auth, y.Auth = nil, nil
	if x != y || (a.Auth == nil) != (b.Auth == nil) {
		return false
	}
	return a.Auth == nil || a.Auth.Epoch == b.Auth.Epoch && slices.Equal(a.Auth.Sessions, b.Auth.Sessions)
}

// TestUserShardArenaModel changes a shard and views of it at random,
// records of every size included, and checks each against a model after
// every step: views and their owner never see each other's writes, and
// compaction (which many rewrites of few records force) loses nothing.
func TestUserShardArenaModel(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	type copyOf struct {
		s *UserShard
		m shardModel
	}
	live := copyOf{NewUserShard(), shardModel{}}
	var views []copyOf
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = MakeUserID(StampAt(t0)+uint64(r.IntN(1000)), uint16(r.IntN(3)))
	}
	record := func(id string, n int) User {
		u := User{ID: id, Name: strings.Repeat("n", r.IntN(300)), Email: fmt.Sprintf("%d-%s@example.com", n, id),
			Role: RoleUser, Version: uint64(n + 1), CreatedMs: t0, UpdatedMs: t0 + int64(n)}
		switch r.IntN(4) {
		case 0:
			u.PasswordHash = strings.Repeat("h", 3000) // larger than a first chunk
		case 1:
			u.Auth = &UserAuth{Epoch: uint64(n), Sessions: []Session{{Family: "f" + id, Hash: [32]byte{byte(n)}, ExpiresMs: int64(n)}}}
		}
		return u
	}
	for step := range 20_000 {
		c := &live
		if len(views) > 0 && r.IntN(4) == 0 {
			c = &views[r.IntN(len(views))]
		}
		id := ids[r.IntN(len(ids))]
		switch op := r.IntN(20); {
		case op == 0 && len(views) < 4:
			views = append(views, copyOf{live.s.View(), maps.Clone(live.m)})
		case op == 1 && len(views) > 0:
			views = slices.Delete(views, 0, 1)
		case op < 5:
			c.s.Remove(id)
			delete(c.m, id)
		default:
			u := record(id, step)
			c.s.Put(&u)
			c.m[id] = u
		}
		if step%500 == 0 || step > 19_900 {
			checkShard(t, fmt.Sprintf("step %d: live", step), live.s, live.m)
			for i, v := range views {
				checkShard(t, fmt.Sprintf("step %d: view %d", step, i), v.s, v.m)
			}
		}
	}
	// Rewrites of 40 records cannot have grown the arena beyond about
	// twice the live bytes, plus the chunk being filled.
	if a := live.s.arena; a.used > 2*a.live+32*minChunk+maxChunk {
		t.Fatalf("arena holds %d bytes for %d live: not compacted", a.used, a.live)
	}
}

// TestUserShardViewReadsWhileOwnerWrites reads a view from other
// goroutines while the owner rewrites and compacts: under -race this
// proves that the two never touch the same bytes.
func TestUserShardViewReadsWhileOwnerWrites(t *testing.T) {
	s, all := listShard(t, 200)
	v := s.View()
	want := v.List(nil, ListQuery{Limit: 1000})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for range 20 {
				if got := v.List(nil, ListQuery{Limit: 1000}); len(got) != len(want) {
					t.Errorf("view has %d records, want %d", len(got), len(want))
					return
				}
				for _, u := range want {
					if got, ok := v.Get(u.ID); !ok || *got != *u {
						t.Errorf("view's %s changed", u.ID)
						return
					}
				}
			}
		})
	}
	for i := range 5000 {
		u, _ := s.Get(all[i%len(all)])
		next := *u
		next.Name, next.Version = fmt.Sprint("Renamed ", i), u.Version+1
		s.Put(&next)
	}
	wg.Wait()
}

func TestArenaEntries(t *testing.T) {
	var a arena
	var locs []uint64
	var recs [][]byte
	for i, n := range []int{0, 1, 127, 128, minChunk, 3 * maxChunk, 10, maxChunk - 3, 5} {
		rec := []byte(strings.Repeat(string(rune('a'+i)), n))
		locs = append(locs, a.add(rec))
		recs = append(recs, rec)
	}
	for i, loc := range locs {
		if got := a.record(loc); string(got) != string(recs[i]) || cap(got) != len(got) {
			t.Fatalf("entry %d: %d bytes, want %d (cap %d)", i, len(got), len(recs[i]), cap(got))
		}
	}
	if a.live != a.used {
		t.Fatal("live != used before any free")
	}
	a.free(locs[5])
	if a.used-a.live != 3*maxChunk+uvarintLen(3*maxChunk) {
		t.Fatalf("freed %d bytes", a.used-a.live)
	}
	for _, v := range []uint64{0, 127, 128, 1<<14 - 1, 1 << 14, 1<<63 + 5} {
		if got := uvarintLen(v); got != len(binaryAppendUvarint(v)) {
			t.Errorf("uvarintLen(%d) = %d", v, got)
		}
	}
}

func binaryAppendUvarint(v uint64) []byte {
	var e encoder
	e.uvarint(v)
	return e.b
}

// Two shards that take over the same view and then change share nothing
// they write: each reads its own records, and the view keeps its own.
// (The view has no email index, which would be theirs to share.)
func TestUserShardTakeOver(t *testing.T) {
	src, all := listShard(t, 120)
	v := src.View()
	var a, b UserShard
	a.TakeOver(v)
	b.TakeOver(v)
	for i, s := range []*UserShard{&a, &b} {
		u, _ := s.Get(all[i])
		next := *u
		next.Name = fmt.Sprint("changed by ", i)
		s.Put(&next)
		s.Put(&User{ID: MakeUserID(StampAt(t0)+100_000, 0), Name: fmt.Sprint("new in ", i), Email: "new@example.com", Role: RoleUser, Version: 1})
	}
	for i, s := range []*UserShard{&a, &b} {
		if u, _ := s.Get(all[i]); u.Name != fmt.Sprint("changed by ", i) {
			t.Fatalf("shard %d reads %q", i, u.Name)
		}
		if u, _ := s.Get(MakeUserID(StampAt(t0)+100_000, 0)); u == nil || u.Name != fmt.Sprint("new in ", i) {
			t.Fatalf("shard %d reads another's record: %+v", i, u)
		}
		if u, _ := s.Get(all[1-i]); u.Name != fmt.Sprint("User ", 1-i) {
			t.Fatalf("shard %d sees the other's change", i)
		}
	}
	if v.Len() != 120 {
		t.Fatalf("view has %d records", v.Len())
	}
	for i := range 2 {
		if u, _ := v.Get(all[i]); u.Name != fmt.Sprint("User ", i) {
			t.Fatalf("the view changed: %q", u.Name)
		}
	}
}
