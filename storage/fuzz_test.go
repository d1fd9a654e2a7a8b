package storage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		b := EncodeCommand(nil, c)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{CommandVersion})
	f.Add([]byte{CommandVersion + 1, byte(CmdNoop), 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 512 {
			return // keeps the minimiser (quadratic in the length) fast; big batches are unit-tested
		}
		c, err := DecodeCommand(b)
		if err != nil {
			if c != nil {
				t.Fatal("a command and an error")
			}
			return
		}
		b2 := EncodeCommand(nil, c)
		c2, err := DecodeCommand(b2)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v\n%+v", err, c)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip differs:\n%+v\n%+v", c, c2)
		}
		if b3 := EncodeCommand(nil, c2); !bytes.Equal(b2, b3) {
			t.Fatal("encoding is not stable")
		}
	})
}

// tinySnapshot has a bit of everything in few bytes: the fuzzer's
// minimiser is quadratic in the input length.
func tinySnapshot(shards int, users int) *Snapshot {
	s := &Snapshot{Meta: Meta{Init: &InitParams{ClusterID: "c", UserShards: uint32(shards), IdempotencyRetention: 1000},
		Index: 3, LastStamp: 9, LastMs: 1}}
	for range shards {
		s.Shards = append(s.Shards, NewUserShard())
	}
	var last *User
	for i := range users {
		email := fmt.Sprintf("%d@b.c", i)
		home := ShardOf(email, shards)
		u, err := s.Shards[home].Create(MakeUserID(uint64(i), home), &NewUser{Name: "A", Email: email, Role: RoleUser}, 1)
		if err != nil {
			panic(err)
		}
		last = u
	}
	s.Meta.Idempotency = []IdempotencyEntry{
		{RequestID: "r", Fingerprint: 1, Result: Result{User: last}},
		{RequestID: "s", Result: Result{Items: []Result{{Err: &Error{Kind: KindConflict, Message: "m", Field: "f"}}, {}}}},
	}
	return s
}

func FuzzReadSnapshot(f *testing.F) {
	b := writeSnap(f, tinySnapshot(2, 3))
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add(writeSnap(f, tinySnapshot(1, 1)))
	f.Add(writeSnap(f, &Snapshot{}))
	withPolicies := tinySnapshot(1, 1)
	withPolicies.Meta.Policies = []Policy{
		{Name: "c", Algorithm: Concurrency, Limit: 2, Burst: 2},
		{Name: "f", Algorithm: FixedWindow, Limit: 3, Burst: 3, Window: UnitDay, TimeZone: "Asia/Tokyo"},
		{Name: "g", Limit: 3, WindowMs: 10, Burst: 1},
		{Name: "s", Algorithm: SlidingWindow, Limit: 3, WindowMs: 10, Burst: 3,
			Envoy: &EnvoyRule{Domain: "d", Descriptors: []EnvoyEntry{{Key: "k"}, {Key: "v", Value: "x"}}}},
	}
	f.Add(writeSnap(f, withPolicies))
	// A small document with authors and checkpoints (snapshot version 7).
	small, _ := NewDoc("d", "t", "u", "ab", 1)
	for i := range 3 {
		small, _, _ = small.SubmitAs("u", "c", uint64(i+1), small.Version, []Op{{Kind: OpInsert, Pos: 1, Text: "é"}}, 2, HistoryRules{MaxChanges: 3, CheckpointEvery: 2})
	}
	f.Add(writeSnap(f, &Snapshot{Docs: []*Doc{small}}))
	// With a viewer and a share link (snapshot version 9).
	shared := small.WithMember(MakeUserID(1, 0), DocViewer).withLinks([]ShareLink{{ID: "00000000000000aa", Role: DocEditor, ExpiresMs: 9}})
	f.Add(writeSnap(f, &Snapshot{Docs: []*Doc{shared}}))
	// With named versions, one in the history, one older (snapshot
	// version snapVersionNamed).
	named, _ := NewDoc("d", "t", "u", "ab", 1)
	named = nameVersion(f, named, 0, "first")
	for i := range 5 {
		named, _, _ = named.SubmitAs("u", "c", uint64(i+1), named.Version, []Op{{Kind: OpInsert, Pos: 1, Text: "é"}}, 2, HistoryRules{MaxChanges: 2, CheckpointEvery: 2})
	}
	named = nameVersion(f, named, named.Version, "last")
	f.Add(writeSnap(f, &Snapshot{Docs: []*Doc{named}}))
	// With webhooks (snapshot version snapVersionWebhooks).
	hooks := tinySnapshot(1, 1)
	hooks.Meta.Webhooks = sampleWebhooks()
	f.Add(writeSnap(f, hooks))
	f.Add(snapshotMagic)
	f.Add([]byte("TROUPE-SNAPSHOT\n\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 256 {
			return // keeps the minimiser (quadratic in the length) fast: execs allocate 256 KiB buffers
		}
		s, err := ReadSnapshot(bytes.NewReader(b))
		if err != nil {
			if s != nil {
				t.Fatal("a snapshot and an error")
			}
			return
		}
		// Whatever was accepted writes and reads back the same.
		var w1, w2 bytes.Buffer
		if err := WriteSnapshot(&w1, s); err != nil {
			t.Fatal(err)
		}
		s2, err := ReadSnapshot(bytes.NewReader(w1.Bytes()))
		if err != nil {
			t.Fatalf("rewritten snapshot does not read: %v", err)
		}
		if err := WriteSnapshot(&w2, s2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w1.Bytes(), w2.Bytes()) {
			t.Fatal("rewriting is not stable")
		}
	})
}

func FuzzParsePHC(f *testing.F) {
	f.Add(HashPassword("pw", []byte("saltsalt"), cheapArgon2))
	f.Add(HashPassword("pw", []byte("0123456789abcdef"), DefaultArgon2))
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw")
	f.Add("$argon2id$v=19$t=1,p=1,m=64$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw")
	f.Add("$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw")
	f.Add("$argon2id$v=19$m=4194305,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$")
	f.Add("$$$$$")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 256 {
			return // keeps the minimiser (quadratic in the length) fast
		}
		h, err := ParsePHC(s)
		if err != nil {
			if h != nil {
				t.Fatal("a hash and an error")
			}
			return
		}
		if err := h.Params.Validate(); err != nil {
			t.Fatalf("accepted out-of-range parameters: %v", err)
		}
		if h.Params.SaltLen != len(h.Salt) || int(h.Params.KeyLen) != len(h.Key) {
			t.Fatalf("lengths: %+v", h)
		}
		canon := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", h.Params.MemoryKiB, h.Params.Time, h.Params.Threads,
			b64.EncodeToString(h.Salt), b64.EncodeToString(h.Key))
		h2, err := ParsePHC(canon)
		if err != nil || !reflect.DeepEqual(h, h2) {
			t.Fatalf("canonical form %q: %v %+v", canon, err, h2)
		}
	})
}

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{
		"ada@example.com", "  Ada@Example.COM \n", "josé@exämple.com", "用户@例子.广告", "a@b.c",
		"a..b@c.d", ".a@b.c", "a@b", "a@-b.c", "a@b.c.", "\"a\"@b.c", "a@b@c.d", "\xff@b.c",
		"\u00a0a@b.c\u3000", strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + ".com",
		"!#$%&'*+/=?^_`{|}~-@example.com", "ǅ@x.y", "K@x.y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > MaxEmailBytes+32 {
			return // keeps the minimiser (quadratic in the length) fast
		}
		out, err := NormalizeEmail("email", s)
		if err != nil {
			if out != "" || err.Kind != KindBadRequest || err.Field != "email" {
				t.Fatalf("rejection: %q %+v", out, err)
			}
			return
		}
		again, err := NormalizeEmail("email", out)
		if err != nil || again != out {
			t.Fatalf("%q normalised to %q, which normalises to %q, %v", s, out, again, err)
		}
		if !utf8.ValidString(out) || len(out) > MaxEmailBytes || strings.TrimSpace(out) != out || !strings.Contains(out, "@") {
			t.Fatalf("accepted %q", out)
		}
		if !strings.Contains(s, out) {
			t.Fatalf("%q is not a part of %q", out, s)
		}
		key := EmailKey(out)
		if EmailKey(key) != key {
			t.Fatalf("EmailKey(%q) = %q is not a fixed point", out, key)
		}
		if ShardOf(key, 64) >= 64 {
			t.Fatal("shard")
		}
	})
}

// FuzzReadSnapshotChunks re-chunks a valid snapshot (with a document and
// a keyed result) at any size, then may give one chunk a header claiming
// any length and cut the stream anywhere: the reader reads what is
// whole, and fails with ErrCorrupt, never a panic, on the rest.
func FuzzReadSnapshotChunks(f *testing.F) {
	s := tinySnapshot(2, 3)
	d, err := NewDoc("d", "T", MakeUserID(1, 0), "héllo", 1)
	if err != nil {
		f.Fatal(err)
	}
	d, _, _ = d.Submit("c", 1, 0, []Op{{Kind: OpInsert, Pos: 1, Text: "abc"}}, 2, 10)
	s.Docs = []*Doc{d}
	s.Meta.Idempotency = append(s.Meta.Idempotency, IdempotencyEntry{RequestID: "d", Result: Result{Doc: d}})
	hdr, fs := frames(f, writeSnap(f, s))
	whole := writeSnap(f, s)
	f.Add(uint16(0), uint8(0), uint64(0), uint32(1<<31))
	f.Add(uint16(1), uint8(3), uint64(0), uint32(1<<31))
	f.Add(uint16(5), uint8(2), uint64(1<<62), uint32(1<<31))
	f.Add(uint16(7), uint8(1), uint64(maxSnapChunk<<1|1), uint32(1<<31))
	f.Add(uint16(7), uint8(1), uint64((maxSnapChunk+1)<<1), uint32(1<<31))
	f.Add(uint16(9), uint8(4), uint64(1), uint32(40))
	f.Add(uint16(0), uint8(0), uint64(0), uint32(100))
	f.Fuzz(func(t *testing.T, chunk uint16, at uint8, claim uint64, cut uint32) {
		b := joinChunked(hdr, int(chunk%512), fs...)
		damaged := false
		if claim != 0 {
			_, bounds := chunkBounds(t, b)
			i := bounds[int(at)%len(bounds)]
			h, n := binary.Uvarint(b[i:])
			if claim != h {
				b = append(binary.AppendUvarint(slices.Clone(b[:i]), claim), b[i+n:]...)
				damaged = true
			}
		}
		if int(cut) < len(b) {
			b, damaged = b[:cut], true
		}
		got, err := ReadSnapshot(bytes.NewReader(b))
		switch {
		case err != nil && !errors.Is(err, ErrCorrupt):
			t.Fatalf("not a corrupt error: %v", err)
		case err == nil && got == nil, err != nil && got != nil:
			t.Fatal("a snapshot and an error, or neither")
		case err == nil && !damaged:
			if again := writeSnap(t, got); !bytes.Equal(again, whole) {
				t.Fatal("re-chunked snapshot reads otherwise")
			}
		case err != nil && !damaged:
			t.Fatalf("re-chunked at %d: %v", chunk%512, err)
		}
	})
}

// FuzzSnapshotRecords reads arbitrary bytes as chunked records: every
// failure is ErrCorrupt, and the reader's buffer never grows beyond what
// arrived, whatever a header claims.
func FuzzSnapshotRecords(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{3, 1, 2, 4, 1, 2})
	f.Add(binary.AppendUvarint(nil, maxSnapChunk<<1|1))
	f.Add(binary.AppendUvarint(nil, 1<<63))
	f.Add(append(binary.AppendUvarint(nil, maxSnapChunk<<1), 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		rr := &recordReader{r: bufio.NewReaderSize(bytes.NewReader(b), 16), chunked: true}
		for {
			rec, err := rr.next()
			if c := rr.buf.Cap(); c > 2*len(b)+4096 {
				t.Fatalf("buffer of %d bytes for %d bytes of input", c, len(b))
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("not a corrupt error: %v", err)
				}
				return
			}
			if len(rec) == 0 {
				t.Fatal("an empty record")
			}
		}
	})
}
