package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// testSnapshot builds a consistent snapshot of users spread over shards:
// each user lives in its email's shard, and every fifth one has since
// changed its email, so its index entry lives in another shard.
func testSnapshot(t testing.TB, shards, users int) *Snapshot {
	t.Helper()
	hash := "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw"
	s := &Snapshot{Meta: Meta{
		Init: &InitParams{ClusterID: "cluster-1", UserShards: uint32(shards), IdempotencyRetention: 60_000,
			Admin: BatchItem{ID: "x", User: NewUser{Name: "Admin", Email: "admin@troupe.local", Role: RoleAdmin}}},
		Index: 12345, LastStamp: StampAt(t0) + uint64(users), LastMs: t0 + 99,
	}}
	for range shards {
		s.Shards = append(s.Shards, NewUserShard())
	}
	var firstUser *User
	for i := range users {
		email := fmt.Sprintf("Person.%d@Example.com", i)
		home := ShardOf(EmailKey(email), shards)
		id := MakeUserID(StampAt(t0)+uint64(i), home)
		in := &NewUser{Name: fmt.Sprintf("Person %d %s.", i, strings.Repeat("ü", i%7)), Email: email, Role: RoleUser}
		if i%3 == 0 {
			in.PasswordHash = hash
		}
		if i%50 == 0 {
			in.Role = RoleAdmin
		}
		u, err := s.Shards[home].Create(id, in, t0+int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			// email change, as the actors apply it
			next := *u
			next.Email, next.Version, next.UpdatedMs = fmt.Sprintf("moved%d@example.org", i), 2, t0+int64(users)
			oldKey, newKey := EmailKey(u.Email), EmailKey(next.Email)
			if err := s.Shards[ShardOf(newKey, shards)].IndexEmail(newKey, id); err != nil {
				t.Fatal(err)
			}
			s.Shards[home].Put(&next)
			s.Shards[ShardOf(oldKey, shards)].UnindexEmail(oldKey, id)
			u = &next
		}
		if firstUser == nil {
			firstUser = u
		}
	}
	s.Meta.Idempotency = []IdempotencyEntry{
		{RequestID: "r-user", Fingerprint: 1, AtMs: t0, Result: Result{User: firstUser}},
		{RequestID: "r-err", Fingerprint: ^uint64(0), AtMs: t0 + 1, Result: Result{Err: &Error{Kind: KindConflict, Message: "a user with this email already exists", Field: "email"}}},
		{RequestID: "r-batch", Fingerprint: 3, AtMs: t0 + 2, Result: Result{Items: []Result{
			{User: firstUser}, {Err: &Error{Kind: KindBadRequest, Message: "bad", Field: "users[1].name"}}, {},
		}}},
		{RequestID: "r-empty-batch", AtMs: t0 + 3, Result: Result{Items: []Result{}}},
		{RequestID: "r-noop", AtMs: -5, Result: Result{}},
	}
	return s
}

func writeSnap(t testing.TB, s *Snapshot) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteSnapshot(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// frames splits a snapshot stream into its header and records, and
// checks the chunking: every chunk 1 to snapChunkTarget bytes.
func frames(t testing.TB, b []byte) (hdr []byte, fs [][]byte) {
	t.Helper()
	hdr, bounds := chunkBounds(t, b)
	var rec []byte
	for i, at := range bounds {
		h, n := binary.Uvarint(b[at:])
		l := int(h >> 1)
		if l == 0 || l > snapChunkTarget {
			t.Fatalf("chunk %d of %d bytes", i, l)
		}
		rec = append(rec, b[at+n:at+n+l]...)
		if h&1 == 0 {
			fs = append(fs, rec)
			rec = nil
		}
	}
	if rec != nil {
		t.Fatal("the last record does not end")
	}
	return hdr, fs
}

// chunkBounds returns the header and where each chunk starts.
func chunkBounds(t testing.TB, b []byte) (hdr []byte, bounds []int) {
	t.Helper()
	rest := b[len(snapshotMagic):]
	_, n := binary.Uvarint(rest)
	hdr = b[:len(snapshotMagic)+n]
	for at := len(hdr); at < len(b); {
		h, n := binary.Uvarint(b[at:])
		if n <= 0 || uint64(len(b)-at-n) < h>>1 {
			t.Fatalf("bad chunking at %d", at)
		}
		bounds = append(bounds, at)
		at += n + int(h>>1)
	}
	return hdr, bounds
}

// joinFrames writes records as chunks of up to chunk bytes (one chunk
// each if chunk is 0).
func joinFrames(hdr []byte, fs ...[]byte) []byte { return joinChunked(hdr, 0, fs...) }

func joinChunked(hdr []byte, chunk int, fs ...[]byte) []byte {
	out := slices.Clone(hdr)
	for _, f := range fs {
		for {
			n := len(f)
			if chunk > 0 {
				n = min(n, chunk)
			}
			more := uint64(0)
			if n < len(f) {
				more = 1
			}
			out = binary.AppendUvarint(out, uint64(n)<<1|more)
			out = append(out, f[:n]...)
			if f = f[n:]; len(f) == 0 {
				break
			}
		}
	}
	return out
}

// sameState compares two snapshots by content, email indexes included.
func sameState(t testing.TB, got, want *Snapshot) {
	t.Helper()
	if !reflect.DeepEqual(got.Meta, want.Meta) {
		t.Fatalf("meta differs:\n got %+v\nwant %+v", got.Meta, want.Meta)
	}
	if len(got.Shards) != len(want.Shards) {
		t.Fatalf("%d shards, want %d", len(got.Shards), len(want.Shards))
	}
	if len(got.Docs) != len(want.Docs) {
		t.Fatalf("%d documents, want %d", len(got.Docs), len(want.Docs))
	}
	for i := range got.Docs {
		var g, w encoder
		g.doc(got.Docs[i])
		g.docAccess(got.Docs[i])
		g.docNamed(got.Docs[i], nil)
		w.doc(want.Docs[i])
		w.docAccess(want.Docs[i])
		w.docNamed(want.Docs[i], nil)
		if !bytes.Equal(g.b, w.b) || got.Docs[i].Text.String() != want.Docs[i].Text.String() {
			t.Fatalf("document %s differs", want.Docs[i].ID)
		}
	}
	for i := range got.Shards {
		g, w := got.Shards[i], want.Shards[i]
		gu, wu := g.List(nil, ListQuery{Limit: 1 << 30}), w.List(nil, ListQuery{Limit: 1 << 30})
		if len(gu) != len(wu) {
			t.Fatalf("shard %d: %d users, want %d", i, len(gu), len(wu))
		}
		for j := range gu {
			if !reflect.DeepEqual(gu[j], wu[j]) {
				t.Fatalf("shard %d: %+v, want %+v", i, *gu[j], *wu[j])
			}
		}
		if !g.byEmail.equal(w.byEmail) {
			t.Fatalf("shard %d: email index differs (%d vs %d entries)", i, g.byEmail.len(), w.byEmail.len())
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := testSnapshot(t, 4, 3000)
	b := writeSnap(t, s)
	if len(b) < 3*recordTarget {
		t.Fatalf("snapshot of %d bytes: want several frames", len(b))
	}
	_, fs := frames(t, b)
	usersFrames := 0
	for _, f := range fs {
		if f[0] == frameUsers {
			usersFrames++
		}
		if len(f) > recordTarget+1024 {
			t.Errorf("frame of %d bytes", len(f))
		}
	}
	if usersFrames < 5 || fs[0][0] != frameMeta || fs[len(fs)-1][0] != frameEnd {
		t.Fatalf("%d frames, %d of users", len(fs), usersFrames)
	}
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, s)
	if again := writeSnap(t, got); !bytes.Equal(again, b) {
		t.Fatal("writing the read snapshot gives other bytes")
	}
	// A reader that returns one byte at a time is fine too.
	got, err = ReadSnapshot(&oneByteReader{b})
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, s)
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestSnapshotEmpty(t *testing.T) {
	for _, s := range []*Snapshot{
		{},
		{Meta: Meta{Index: 7, LastStamp: 9, LastMs: -1}},
		{Meta: Meta{Init: &InitParams{ClusterID: "c", UserShards: 2, IdempotencyRetention: 1000}}, Shards: []*UserShard{NewUserShard(), NewUserShard()}},
	} {
		got, err := ReadSnapshot(bytes.NewReader(writeSnap(t, s)))
		if err != nil {
			t.Fatal(err)
		}
		sameState(t, got, s)
	}
}

// A large idempotency window (batch results carry whole users) must not
// make a meta frame that the reader refuses.
func TestSnapshotLargeIdempotencyWindow(t *testing.T) {
	entries, items := 40, 1000
	if !testing.Short() {
		entries = 120 // > maxFrame in all
	}
	u := &User{ID: MakeUserID(1, 0), Name: "Some User", Email: "someone@example.com",
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		Role:         RoleUser, Version: 1}
	res := make([]Result, items)
	for i := range res {
		res[i] = Result{User: u}
	}
	s := &Snapshot{}
	for i := range entries {
		s.Meta.Idempotency = append(s.Meta.Idempotency, IdempotencyEntry{RequestID: fmt.Sprint("r", i), AtMs: int64(i), Result: Result{Items: res}})
	}
	b := writeSnap(t, s)
	_, fs := frames(t, b) // checks every chunk's size
	if len(fs) < entries/2 || fs[1][0] != frameIdem {
		t.Fatalf("meta not split: %d records", len(fs))
	}
	got, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Meta.Idempotency) != entries || !reflect.DeepEqual(got.Meta.Idempotency[entries-1], s.Meta.Idempotency[entries-1]) {
		t.Fatal("idempotency window lost")
	}
	// Cut at and around every chunk boundary of a smaller window.
	s.Meta.Idempotency = s.Meta.Idempotency[:20]
	for i := range s.Meta.Idempotency {
		s.Meta.Idempotency[i].Result.Items = res[:100]
	}
	b = writeSnap(t, s)
	_, bounds := chunkBounds(t, b)
	if len(bounds) < 4 {
		t.Fatalf("%d chunks", len(bounds))
	}
	for _, cut := range bounds {
		for _, n := range []int{cut - 1, cut, cut + 1} {
			if _, err := ReadSnapshot(bytes.NewReader(b[:n])); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("cut at %d of %d: %v", n, len(b), err)
			}
		}
	}
}

func TestReadSnapshotTruncated(t *testing.T) {
	s := testSnapshot(t, 2, 6)
	b := writeSnap(t, s)
	for n := 0; n < len(b); n++ {
		got, err := ReadSnapshot(bytes.NewReader(b[:n:n]))
		if got != nil || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix %d/%d: %v %v", n, len(b), got != nil, err)
		}
	}
	if _, err := ReadSnapshot(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

func TestReadSnapshotBadHeader(t *testing.T) {
	b := writeSnap(t, testSnapshot(t, 2, 3))
	bad := slices.Clone(b)
	bad[5] ^= 1
	if _, err := ReadSnapshot(bytes.NewReader(bad)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad magic: %v", err)
	}
	if _, err := ReadSnapshot(strings.NewReader("not a snapshot at all, clearly")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("text: %v", err)
	}
	for _, v := range []uint64{0, SnapshotVersion + 1, 1 << 40} {
		bad := binary.AppendUvarint(slices.Clone(snapshotMagic), v)
		bad = append(bad, b[len(snapshotMagic)+1:]...)
		_, err := ReadSnapshot(bytes.NewReader(bad))
		if !errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("version %d: %v", v, err)
		}
	}
}

func TestReadSnapshotCorrupt(t *testing.T) {
	// Hand-made inconsistent states, written by the normal writer.
	dupEmail := testSnapshot(t, 2, 10)
	{
		// a second user, in the other shard, with an email that differs only in case
		src := dupEmail.Shards[0].List(nil, ListQuery{Limit: 1})[0]
		other := ShardOf(EmailKey(src.Email), 2) ^ 1
		u := *src
		u.ID = MakeUserID(StampAt(t0)+10_000, other)
		u.Email = strings.ToUpper(src.Email)
		dupEmail.Shards[other].Put(&u)
	}
	wrongShard := testSnapshot(t, 2, 10)
	{
		u := *wrongShard.Shards[0].List(nil, ListQuery{Limit: 1})[0]
		wrongShard.Shards[0].Remove(u.ID)
		wrongShard.Shards[1].Put(&u)
	}
	// A shard holds canonical ids only, so a malformed one is written
	// over a good one of the same length.
	badID := testSnapshot(t, 2, 0)
	badID.Shards[0].Put(&User{ID: MakeUserID(1, 0), Email: "a@b.c", Role: RoleUser, Version: 1})
	badIDBytes := bytes.Replace(writeSnap(t, badID), []byte(MakeUserID(1, 0)), []byte("not-an-id-at-all"), 1)
	badRole := testSnapshot(t, 2, 0)
	badRole.Shards[0].Put(&User{ID: MakeUserID(1, 0), Email: "a@b.c", Role: RoleService + 1, Version: 1})
	badVersion := testSnapshot(t, 2, 0)
	badVersion.Shards[0].Put(&User{ID: MakeUserID(1, 0), Email: "a@b.c", Role: RoleUser})
	shardOutOfRange := testSnapshot(t, 2, 0)
	shardOutOfRange.Shards[1].Put(&User{ID: MakeUserID(1, 2), Email: "a@b.c", Role: RoleUser, Version: 1})
	badInit := testSnapshot(t, 4, 0)
	badInit.Meta.Init.UserShards = 3
	badInit.Shards = badInit.Shards[:3]
	shardCount := testSnapshot(t, 4, 0)
	shardCount.Shards = shardCount.Shards[:2]
	noInit := testSnapshot(t, 2, 0)
	noInit.Meta.Init = nil

	for name, s := range map[string]*Snapshot{
		"duplicate email across shards": dupEmail,
		"user in the wrong shard":       wrongShard,
		"bad role":                      badRole,
		"version 0":                     badVersion,
		"id names a missing shard":      shardOutOfRange,
		"invalid cluster parameters":    badInit,
		"shard count mismatch":          shardCount,
		"shards without init":           noInit,
	} {
		got, err := ReadSnapshot(bytes.NewReader(writeSnap(t, s)))
		if got != nil || !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got, err := ReadSnapshot(bytes.NewReader(badIDBytes)); got != nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not-an-id-at-all") {
		t.Errorf("malformed id: %v", err)
	}

	// Damaged framing.
	hdr, fs := frames(t, writeSnap(t, testSnapshot(t, 2, 10)))
	meta, users0, users1, end := fs[0], fs[1], fs[2], fs[3]
	if len(fs) != 4 || end[0] != frameEnd || users0[0] != frameUsers || users1[0] != frameUsers {
		t.Fatalf("unexpected framing: %d frames", len(fs))
	}
	badEnd := append([]byte{frameEnd}, binary.AppendUvarint(nil, 11)...)
	usersOut := append([]byte{frameUsers, 2}, users0[2:]...)
	bigLen := binary.AppendUvarint(slices.Clone(hdr), (maxSnapChunk+1)<<1)
	bigLen = append(bigLen, make([]byte, 100)...)
	zeroLen := append(slices.Clone(hdr), 0)
	zeroMore := append(slices.Clone(hdr), 1)
	hugeClaim := binary.AppendUvarint(slices.Clone(hdr), 1<<62|1)
	badVarint := append(slices.Clone(hdr), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	unfinished := joinChunked(hdr, 0, meta, users0, users1, end)
	unfinished = unfinished[:len(unfinished)-len(end)-1]
	unfinished = append(unfinished, byte(len(end))<<1|1) // "more" on the last chunk, then nothing
	unfinished = append(unfinished, end...)
	trunc := slices.Clone(users0)
	trunc = trunc[:len(trunc)-3]
	for name, b := range map[string][]byte{
		"user twice":          joinFrames(hdr, meta, users0, users0, users1, end),
		"users before meta":   joinFrames(hdr, users0, meta, users1, end),
		"wrong trailer count": joinFrames(hdr, meta, users0, users1, badEnd),
		"no end frame":        joinFrames(hdr, meta, users0, users1),
		"unknown frame type":  joinFrames(hdr, meta, users0, users1, []byte{9}, end),
		"stray idem frame":    joinFrames(hdr, meta, users0, []byte{frameIdem, 0}, users1, end),
		"shard out of range":  joinFrames(hdr, meta, usersOut, users1, end),
		"truncated user":      joinFrames(hdr, meta, trunc, users1, end),
		"trailing in meta":    joinFrames(hdr, append(slices.Clone(meta), 0), users0, users1, end),
		"trailing in end":     joinFrames(hdr, meta, users0, users1, append(slices.Clone(end), 0)),
		"chunk too long":      bigLen,
		"chunk length 0":      zeroLen,
		"empty chunk, more":   zeroMore,
		"huge claimed chunk":  hugeClaim,
		"chunk header varint": badVarint,
		"record never ends":   unfinished,
	} {
		got, err := ReadSnapshot(bytes.NewReader(b))
		if got != nil || !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The unchanged frames read fine, and so do empty user frames.
	if _, err := ReadSnapshot(bytes.NewReader(joinFrames(hdr, meta, users0, []byte{frameUsers, 1}, users1, end))); err != nil {
		t.Fatal(err)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteSnapshotError(t *testing.T) {
	s := testSnapshot(t, 2, 3000)
	size := len(writeSnap(t, s))
	for _, n := range []int{0, 100, size / 2, size - 1} {
		if err := WriteSnapshot(&failWriter{n: n}, s); err == nil {
			t.Errorf("write error after %d bytes not reported", n)
		}
	}
}
