package storage

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"testing"
)

// Benchmarks of the pure storage layer. Run with
//
//	go test -run '^$' -bench . ./storage/
//
// Fixtures are built before the timer starts; helpers are prefixed with
// bench so they never collide with the unit tests' helpers.

const benchT0 = int64(1_700_000_000_000)

const benchPHC = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"

// benchItem is the i-th user of a cluster with n shards: its id embeds the
// shard of its email, as the leader would decide it.
func benchItem(i, n int) BatchItem {
	email := "user" + strconv.Itoa(i) + "@example.com"
	return BatchItem{
		ID:   MakeUserID(StampAt(benchT0)+uint64(i), ShardOf(EmailKey(email), n)),
		User: NewUser{Name: "User Number " + strconv.Itoa(i), Email: email, Role: RoleUser},
	}
}

// benchShard returns one shard holding users 0..n-1 and their ids.
func benchShard(b *testing.B, n int) (*UserShard, []string) {
	b.Helper()
	s := NewUserShard()
	ids := make([]string, n)
	for i := range n {
		it := benchItem(i, 1)
		if _, err := s.Create(it.ID, &it.User, benchT0); err != nil {
			b.Fatal(err)
		}
		ids[i] = it.ID
	}
	return s, ids
}

func benchCommands() map[string]*Command {
	create := benchItem(1, 64)
	create.User.PasswordHash = benchPHC
	batch := make([]BatchItem, 100)
	for i := range batch {
		batch[i] = benchItem(i, 64)
	}
	return map[string]*Command{
		"create":   {Kind: CmdUserCreate, Stamp: StampAt(benchT0), RequestID: "idem-key-0123456789", Fingerprint: 42, Create: &create},
		"batch100": {Kind: CmdUserBatch, Stamp: StampAt(benchT0), Batch: batch},
		"patch": {Kind: CmdUserPatch, Stamp: StampAt(benchT0), Patch: &UserPatch{
			ID: create.ID, IfVersion: 3, Fields: PatchName | PatchEmail, Name: "New Name", Email: "new@example.com"}},
	}
}

var benchCommandOrder = []string{"create", "batch100", "patch"}

func BenchmarkEncodeCommand(b *testing.B) {
	cmds := benchCommands()
	for _, name := range benchCommandOrder {
		c := cmds[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			// A reused buffer: the cost of the encoding itself. Propose
			// allocates a fresh 128-byte buffer per command on top.
			buf := EncodeCommand(nil, c)
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				buf = EncodeCommand(buf[:0], c)
			}
		})
	}
}

func BenchmarkDecodeCommand(b *testing.B) {
	cmds := benchCommands()
	for _, name := range benchCommandOrder {
		data := EncodeCommand(nil, cmds[name])
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := DecodeCommand(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchSnapshot holds users 0..users-1 spread over shards by email, with
// their email index entries, as the FSM would.
func benchSnapshot(b *testing.B, shards, users int) *Snapshot {
	b.Helper()
	s := &Snapshot{Meta: Meta{
		Init:  &InitParams{ClusterID: "bench", UserShards: uint32(shards), IdempotencyRetention: 600_000, Admin: benchItem(0, shards)},
		Index: uint64(users), LastStamp: StampAt(benchT0) + uint64(users), LastMs: benchT0,
	}}
	s.Shards = make([]*UserShard, shards)
	for i := range s.Shards {
		s.Shards[i] = NewUserShard()
	}
	for i := range users {
		it := benchItem(i, shards)
		it.User.PasswordHash = benchPHC
		_, sh, _ := ParseUserID(it.ID)
		if _, err := s.Shards[sh].Create(it.ID, &it.User, benchT0); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func BenchmarkSnapshot10k(b *testing.B) {
	const users = 10_000
	snap := benchSnapshot(b, 64, users)
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, snap); err != nil {
		b.Fatal(err)
	}
	data := bytes.Clone(buf.Bytes())
	report := func(b *testing.B) {
		b.ReportMetric(float64(users)*float64(b.N)/b.Elapsed().Seconds(), "users/s")
	}
	b.Run("write", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := WriteSnapshot(io.Discard, snap); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := ReadSnapshot(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("write+read", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		var w bytes.Buffer
		for b.Loop() {
			w.Reset()
			if err := WriteSnapshot(&w, snap); err != nil {
				b.Fatal(err)
			}
			if _, err := ReadSnapshot(&w); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
}

func BenchmarkUserShardCreate(b *testing.B) {
	b.ReportAllocs()
	// Distinct users, prepared before the timer; the shard grows with b.N
	// as a live shard would.
	items := make([]BatchItem, b.N)
	for i := range items {
		items[i] = benchItem(i, 1)
	}
	s := NewUserShard()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Create(items[i].ID, &items[i].User, benchT0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUserShardGet(b *testing.B) {
	s, ids := benchShard(b, 10_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := s.Get(ids[i%len(ids)]); !ok {
			b.Fatal("missing")
		}
		i += 7919 // a prime: jump around the tree
	}
}

func BenchmarkEmailIndex(b *testing.B) {
	b.Run("IndexEmail", func(b *testing.B) {
		b.ReportAllocs()
		keys := make([]string, b.N)
		for i := range keys {
			keys[i] = "user" + strconv.Itoa(i) + "@example.com"
		}
		s := NewUserShard()
		id := MakeUserID(StampAt(benchT0), 0)
		b.ResetTimer()
		for i := range b.N {
			if err := s.IndexEmail(keys[i], id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("EmailOwner", func(b *testing.B) {
		s, ids := benchShard(b, 10_000)
		keys := make([]string, len(ids))
		for i := range keys {
			keys[i] = "user" + strconv.Itoa(i) + "@example.com"
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := s.EmailOwner(keys[i%len(keys)]); !ok {
				b.Fatal("missing")
			}
			i += 7919
		}
	})
}

func BenchmarkUserShardList50(b *testing.B) {
	s, ids := benchShard(b, 10_000)
	for _, bc := range []struct {
		name string
		q    ListQuery
	}{
		{"first", ListQuery{Limit: 50}},
		{"after", ListQuery{After: ids[5000], Limit: 50}},
		// "number 9" matches 1 user in 10: a page scans ≈500 records.
		{"query", ListQuery{Q: "number 9", Limit: 50}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			dst := make([]*User, 0, 64)
			for b.Loop() {
				dst = s.List(dst[:0], bc.q)
				if len(dst) != 50 {
					b.Fatalf("page of %d", len(dst))
				}
			}
		})
	}
}

func BenchmarkUserShardCount10k(b *testing.B) {
	s, _ := benchShard(b, 10_000)
	for _, q := range []string{"number 12", "EXAMPLE.ORG"} {
		lq := bytes.ToLower([]byte(q))
		b.Run(q, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Count(string(lq))
			}
			b.ReportMetric(10_000*float64(b.N)/b.Elapsed().Seconds(), "users/s")
		})
	}
}

func BenchmarkUserID(b *testing.B) {
	stamp := StampAt(benchT0)
	b.Run("MakeUserID", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			stamp++
			_ = MakeUserID(stamp, 17)
		}
	})
	b.Run("ParseUserID", func(b *testing.B) {
		id := MakeUserID(stamp, 17)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := ParseUserID(id); !ok {
				b.Fatal("bad id")
			}
		}
	})
}

func BenchmarkShardOf(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("someone.%d@example.com", i)
	}
	b.ReportAllocs()
	i := 0
	var sink uint16
	for b.Loop() {
		sink += ShardOf(keys[i&1023], 64)
		i++
	}
	_ = sink
}

// BenchmarkCollect200kUsers is one full garbage collection with 200k
// users in 64 shards (records, B-trees, email indexes): what every
// collection of a node holding them must mark, and what requests wait
// behind on two cores. ms/op is the figure; it grows with the users.
// It also reports the live heap the users take, per user, beyond the
// bytes of their id, name and email (heap-B/user-beyond-raw).
func BenchmarkCollect200kUsers(b *testing.B) {
	const n, shards = 200_000, 64
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	ss := make([]*UserShard, shards)
	for i := range ss {
		ss[i] = NewUserShard()
	}
	raw := 0
	for i := range n {
		email := "user" + strconv.Itoa(i) + "@example.com"
		home := ShardOf(email, shards)
		in := NewUser{Name: "Name " + strconv.Itoa(i), Email: email, Role: RoleUser}
		if _, err := ss[home].Create(MakeUserID(StampAt(benchT0)+uint64(i), home), &in, benchT0); err != nil {
			b.Fatal(err)
		}
		raw += UserIDLen + len(in.Name) + len(in.Email)
	}
	perUser := (float64(heap()) - float64(before) - float64(raw)) / n
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
	b.StopTimer()
	runtime.KeepAlive(ss)
	b.ReportMetric(perUser, "heap-B/user-beyond-raw") // after the loop: ResetTimer drops metrics
}

// BenchmarkUserShardWriteAfterView is what a shard's actor pays per write
// when readers read every state it publishes: take a view, then change the
// shard (the change copies the tree nodes and email index segment it
// touches). "put" rewrites a record, "create" adds a user; "*-no-view"
// are the same writes with no view taken. 16k users: a shard's share of a
// million at 64 shards.
func BenchmarkUserShardWriteAfterView(b *testing.B) {
	const n = 16_000
	for _, view := range []bool{true, false} {
		suffix := ""
		if !view {
			suffix = "-no-view"
		}
		b.Run("put"+suffix, func(b *testing.B) {
			s, ids := benchShard(b, n)
			recs := make([]*User, len(ids))
			for i, id := range ids {
				recs[i], _ = s.Get(id)
			}
			var sink *UserShard
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if view {
					sink = s.View()
				}
				u := *recs[i%n]
				u.Version++
				s.Put(&u)
				i += 7919
			}
			_ = sink
		})
		b.Run("create"+suffix, func(b *testing.B) {
			s, _ := benchShard(b, n)
			items := make([]BatchItem, b.N)
			for i := range items {
				items[i] = benchItem(n+i, 1)
			}
			var sink *UserShard
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if view {
					sink = s.View()
				}
				if _, err := s.Create(items[i].ID, &items[i].User, benchT0); err != nil {
					b.Fatal(err)
				}
			}
			_ = sink
		})
	}
}
