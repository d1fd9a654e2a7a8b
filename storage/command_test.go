package storage

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// sampleCommands returns one or more commands of every kind, with and
// without request ids, every patch field combination included. The fuzz
// targets use their encodings as seeds.
func sampleCommands() []*Command {
	stamp := StampAt(t0)
	hash := "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw"
	item := func(i int, role Role) BatchItem {
		email := fmt.Sprintf("user%d@example.com", i)
		return BatchItem{ID: MakeUserID(stamp+uint64(i), ShardOf(EmailKey(email), 8)),
			User: NewUser{Name: fmt.Sprintf("User %d", i), Email: email, Role: role}}
	}
	admin := item(0, RoleAdmin)
	admin.User.PasswordHash = hash
	withHash := item(1, RoleUser)
	withHash.User.PasswordHash = hash
	cmds := []*Command{
		{Kind: CmdInit, Stamp: stamp, Init: &InitParams{ClusterID: "c-1", UserShards: 8, IdempotencyRetention: 60_000, Admin: admin}},
		{Kind: CmdInit, Stamp: stamp, RequestID: "init", Fingerprint: 1, Init: &InitParams{ClusterID: "x", UserShards: 1 << 16, IdempotencyRetention: 0}},
		{Kind: CmdUserCreate, Stamp: stamp + 1, Create: &withHash},
		{Kind: CmdUserCreate, Stamp: 0, RequestID: "req-ü", Fingerprint: ^uint64(0), Create: &BatchItem{}},
		{Kind: CmdUserBatch, Stamp: stamp + 2, Batch: []BatchItem{}},
		{Kind: CmdUserBatch, Stamp: stamp + 3, RequestID: "batch-1", Fingerprint: 42, Batch: []BatchItem{item(2, RoleUser), item(3, RoleAdmin), withHash, item(2, RoleUser)}},
		{Kind: CmdUserDelete, Stamp: stamp + 4, Delete: MakeUserID(stamp, 3)},
		{Kind: CmdUserDelete, Stamp: stamp + 5, RequestID: "del", Fingerprint: 7, Delete: ""},
		{Kind: CmdNoop, Stamp: stamp + 6},
		{Kind: CmdNoop, Stamp: ^uint64(0), RequestID: strings.Repeat("k", 300), Fingerprint: 0},
		{Kind: CmdMember, Stamp: stamp + 6, Member: &MemberChange{Member: Member{ID: "n1", HTTPAddr: "127.0.0.1:8080", RaftAddr: "127.0.0.1:7080"}}},
		{Kind: CmdMember, Stamp: stamp + 6, RequestID: "m", Fingerprint: 2, Member: &MemberChange{Member: Member{ID: "n2"}, Remove: true}},
		{Kind: CmdAuthSetup, Stamp: stamp + 7, Auth: &AuthSetup{
			Params:     AuthParams{SessionTTLms: 30 * 86_400_000, GraceMs: 10_000, MaxSessions: 32},
			RefreshKey: bytes.Repeat([]byte{1}, SecretBytes), Key: SigningKey{KID: "k-1", Secret: bytes.Repeat([]byte{2}, SecretBytes)}}},
		{Kind: CmdKeyRotate, Stamp: stamp + 8, RequestID: "rotate", Fingerprint: 9, Key: &SigningKey{KID: "k_2", Secret: bytes.Repeat([]byte{3}, SecretBytes)}},
		{Kind: CmdSession, Stamp: stamp + 9, Session: &SessionOp{Action: SessionOpen, UserID: MakeUserID(stamp, 1), Family: "fam", Hash: [32]byte{1, 2}, PasswordCheck: PasswordCheck(hash)}},
		{Kind: CmdSession, Stamp: stamp + 9, RequestID: "refresh", Fingerprint: 3, Session: &SessionOp{Action: SessionRefresh, UserID: MakeUserID(stamp, 1), Family: "fam", Hash: [32]byte{1, 2}, Next: [32]byte{31: 9}}},
		{Kind: CmdSession, Stamp: stamp + 9, Session: &SessionOp{Action: SessionRevokeAll, UserID: MakeUserID(stamp, 2)}},
		{Kind: CmdPolicyPut, Stamp: stamp + 10, Policy: &Policy{Name: "api", Limit: 100, WindowMs: 1000, Burst: 20, Shadow: true}},
		{Kind: CmdPolicyPut, Stamp: stamp + 10, Policy: &Policy{Name: "sw", Algorithm: SlidingWindow, Limit: 10, WindowMs: 60_000, Burst: 10}},
		{Kind: CmdPolicyPut, Stamp: stamp + 10, Policy: &Policy{Name: "fw", Algorithm: FixedWindow, Limit: 1000, Burst: 1000, Window: UnitMonth, TimeZone: "Europe/Paris"}},
		{Kind: CmdPolicyPut, Stamp: stamp + 10, Policy: &Policy{Name: "sem", Algorithm: Concurrency, Limit: 8, Burst: 8, Shadow: true}},
		{Kind: CmdPolicyPut, Stamp: stamp + 10, Policy: &Policy{Name: "edge", Limit: 10, WindowMs: 1000, Burst: 10,
			Envoy: &EnvoyRule{Domain: "edge", Descriptors: []EnvoyEntry{{Key: "remote_address"}, {Key: "path", Value: "/login"}}}}},
		{Kind: CmdPolicyDelete, Stamp: stamp + 11, RequestID: "del-policy", Fingerprint: 5, Policy: &Policy{Name: "api"}},
		{Kind: CmdDocCreate, Stamp: stamp + 12, Doc: &DocCommand{DocID: "d1", Caller: "u1", Title: "Notes", Content: "héllo", MaxDocs: 10_000}},
		{Kind: CmdDocSubmit, Stamp: stamp + 13, RequestID: "sub", Fingerprint: 6, Doc: &DocCommand{DocID: "d1", Caller: "u1", Admin: true, HistoryBytes: 16 << 20,
			Submit: &DocSubmit{DocID: "d1", ClientID: "c1", Seq: 7, Base: 3, Ops: []Op{{Kind: OpInsert, Pos: 1, Text: "x"}, {Kind: OpDelete, Pos: 0, Len: 2}, {Kind: OpReplace, Pos: 2, Len: 1, Text: "ü"}}}}},
		{Kind: CmdDocTitle, Stamp: stamp + 14, Doc: &DocCommand{DocID: "d1", Caller: "u2", Title: "Renamed"}},
		{Kind: CmdDocDelete, Stamp: stamp + 15, Doc: &DocCommand{DocID: "d1", Admin: true}},
		{Kind: CmdDocEditor, Stamp: stamp + 16, Doc: &DocCommand{DocID: "d1", Caller: "u1", Editor: "u3", Remove: true}},
		{Kind: CmdDocMember, Stamp: stamp + 17, Doc: &DocCommand{DocID: "d1", Caller: "u1", Editor: "u3", Role: DocViewer, MaxMembers: 1000}},
		{Kind: CmdDocMember, Stamp: stamp + 17, RequestID: "mem", Fingerprint: 8, Doc: &DocCommand{DocID: "d1", Admin: true, Editor: "u3", Remove: true}},
		{Kind: CmdDocLink, Stamp: stamp + 18, Doc: &DocCommand{DocID: "d1", Caller: "u1", LinkID: "0123456789abcdef", LinkHash: [32]byte{1, 31: 2}, Role: DocEditor, ExpiresInS: 3600, MaxLinks: 100}},
		{Kind: CmdDocLink, Stamp: stamp + 18, Doc: &DocCommand{DocID: "d1", Caller: "u1", LinkID: "0123456789abcdef", Remove: true}},
		{Kind: CmdDocVersion, Stamp: stamp + 19, Doc: &DocCommand{DocID: "d1", Caller: "u1", VersionName: "draft", Current: true, MaxNamed: 100, MaxNamedBytes: 1 << 26}},
		{Kind: CmdDocVersion, Stamp: stamp + 19, Doc: &DocCommand{DocID: "d1", Caller: "u1", VersionName: "v2", Version: 2}},
		{Kind: CmdDocVersion, Stamp: stamp + 20, Doc: &DocCommand{DocID: "d1", Caller: "u1", Version: 2, Remove: true}},
		{Kind: CmdDocSubmit, Stamp: stamp + 19, Doc: &DocCommand{DocID: "d1", Link: "0123456789abcdef", CheckpointEvery: 64,
			Submit: &DocSubmit{DocID: "d1", ClientID: "g", Seq: 1, Ops: []Op{{Kind: OpInsert, Pos: 0, Text: "hi"}}}}},
	}
	for f := PatchFields(0); f <= patchAll; f++ {
		p := &UserPatch{ID: MakeUserID(stamp, uint16(f)), Fields: f}
		if f&PatchName != 0 {
			p.Name = "Näme " + fmt.Sprint(f)
		}
		if f&PatchEmail != 0 {
			p.Email = fmt.Sprintf("new%d@example.com", f)
		}
		if f&PatchPassword != 0 {
			p.PasswordHash = hash
		}
		if f&PatchRole != 0 {
			p.Role = RoleAdmin
		}
		cmds = append(cmds, &Command{Kind: CmdUserPatch, Stamp: stamp + 10 + uint64(f), Patch: p})
		q := *p
		q.IfVersion = uint64(f) * 1000
		cmds = append(cmds, &Command{Kind: CmdUserPatch, Stamp: stamp + 30 + uint64(f), RequestID: fmt.Sprint("patch-", f), Fingerprint: uint64(f) << 60, Patch: &q})
	}
	cmds = append(cmds, sampleWebhookCommands(stamp)...)
	// Forwarded commands travel as one entry.
	cmds = append(cmds, &Command{Kind: CmdMulti, Multi: []*Command{
		{Kind: CmdUserCreate, Stamp: stamp + 50, Create: &BatchItem{ID: MakeUserID(stamp+50, 1), User: NewUser{Name: "M", Email: "m@example.com", Role: RoleUser}}},
		{Kind: CmdUserCreate, Stamp: stamp + 51, RequestID: "fwd-1", Fingerprint: 7, Create: &BatchItem{ID: MakeUserID(stamp+51, 2), User: NewUser{Name: "N", Email: "n@example.com", Role: RoleUser}}},
	}})
	return cmds
}

func TestCommandRoundTrip(t *testing.T) {
	kinds := map[CommandKind]bool{}
	for i, c := range sampleCommands() {
		kinds[c.Kind] = true
		b := EncodeCommand(nil, c)
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%d %v: %v", i, c.Kind, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("%d %v: round trip\n got %+v\nwant %+v", i, c.Kind, got, c)
		}
		// EncodeCommand appends.
		pre := []byte("prefix")
		if b2 := EncodeCommand(pre, c); !bytes.Equal(b2[:6], pre) || !bytes.Equal(b2[6:], b) {
			t.Fatalf("%d: EncodeCommand does not append", i)
		}
		if b[0] != CommandVersion || CommandKind(b[1]) != c.Kind {
			t.Fatalf("%d: header % x", i, b[:2])
		}
	}
	for k := CmdInit; k <= lastKind; k++ {
		if !kinds[k] {
			t.Errorf("no sample of %v", k)
		}
		if strings.HasPrefix(k.String(), "command(") {
			t.Errorf("kind %d has no name", k)
		}
	}
	if CommandKind(99).String() != "command(99)" {
		t.Error(CommandKind(99).String())
	}
}

// EncodeMulti of encoded commands is the encoding of the CmdMulti that
// carries them.
func TestEncodeMulti(t *testing.T) {
	var subs []*Command
	var encoded [][]byte
	for _, c := range sampleCommands() {
		if c.Kind == CmdMulti {
			continue
		}
		subs = append(subs, c)
		encoded = append(encoded, EncodeCommand(nil, c))
	}
	want := EncodeCommand([]byte("pre"), &Command{Kind: CmdMulti, Multi: subs})
	if got := EncodeMulti([]byte("pre"), encoded); !bytes.Equal(got, want) {
		t.Fatalf("EncodeMulti differs from EncodeCommand of the multi")
	}
	got, err := DecodeCommand(want[3:])
	if err != nil || !reflect.DeepEqual(got.Multi, subs) {
		t.Fatalf("decoded %v: %+v", err, got)
	}
}

func TestCommandFingerprintNeedsRequestID(t *testing.T) {
	// The fingerprint is only meaningful with a request id and is only
	// encoded with one.
	c := &Command{Kind: CmdNoop, Stamp: 5, Fingerprint: 99}
	got, err := DecodeCommand(EncodeCommand(nil, c))
	if err != nil || got.Fingerprint != 0 || got.Stamp != 5 {
		t.Fatalf("%+v %v", got, err)
	}
}

func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("%s: %v does not wrap ErrCorrupt (alone)", what, err)
	}
}

func TestDecodeCommandTruncated(t *testing.T) {
	for i, c := range sampleCommands() {
		b := EncodeCommand(nil, c)
		for n := 0; n < len(b); n++ {
			got, err := DecodeCommand(b[:n:n])
			if got != nil {
				t.Fatalf("%d: prefix %d/%d decoded: %+v", i, n, len(b), got)
			}
			wantCorrupt(t, fmt.Sprintf("cmd %d prefix %d/%d", i, n, len(b)), err)
		}
		_, err := DecodeCommand(append(b[:len(b):len(b)], 0))
		wantCorrupt(t, fmt.Sprintf("cmd %d with a trailing byte", i), err)
	}
}

func TestDecodeCommandGarbage(t *testing.T) {
	v := byte(CommandVersion)
	tooMany := []byte{v, byte(CmdUserBatch), 0, 0, 0xe9, 0x07} // 1001 items
	tooMany = append(tooMany, bytes.Repeat([]byte{0, 0, 0, 0, 1}, 1001)...)
	exactly := []byte{v, byte(CmdUserBatch), 0, 0, 0xe8, 0x07} // 1000 items is fine
	exactly = append(exactly, bytes.Repeat([]byte{0, 0, 0, 0, 1}, 1000)...)
	if c, err := DecodeCommand(exactly); err != nil || len(c.Batch) != MaxBatch {
		t.Fatalf("batch of %d: %v", MaxBatch, err)
	}
	cases := map[string][]byte{
		"kind 0":              {v, 0, 0, 0},
		"kind 7":              {v, 7, 0, 0},
		"overlong stamp":      append([]byte{v, byte(CmdNoop)}, bytes.Repeat([]byte{0xff}, 11)...),
		"stamp overflow":      {v, byte(CmdNoop), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0},
		"request id too long": {v, byte(CmdNoop), 0, 10, 'a', 'b'},
		"huge string length":  {v, byte(CmdUserDelete), 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"no fingerprint":      {v, byte(CmdNoop), 0, 1, 'r', 0, 0, 0},
		"patch fields 0x10":   {v, byte(CmdUserPatch), 0, 0, 0, 0, 0x10},
		"patch fields 0xff":   {v, byte(CmdUserPatch), 0, 0, 0, 0, 0xff},
		"batch count huge":    {v, byte(CmdUserBatch), 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"batch count 2 of 1":  {v, byte(CmdUserBatch), 0, 0, 2, 0, 0, 0, 0, 1},
		"batch of 1001":       tooMany,
		"init shards 2^16+1":  {v, byte(CmdInit), 0, 0, 0, 0x81, 0x80, 0x04, 0, 0, 0, 0, 0, 1},
		"trailing after noop": {v, byte(CmdNoop), 0, 0, 0},
	}
	for name, b := range cases {
		c, err := DecodeCommand(b)
		if c != nil {
			t.Errorf("%s: decoded %+v", name, c)
			continue
		}
		wantCorrupt(t, name, err)
	}
}

func TestDecodeCommandVersion(t *testing.T) {
	b := EncodeCommand(nil, &Command{Kind: CmdNoop, Stamp: 1})
	for _, v := range []byte{0, CommandVersion + 1, 0x80, 255} {
		b[0] = v
		c, err := DecodeCommand(b)
		if c != nil || !errors.Is(err, ErrUnsupportedVersion) {
			t.Errorf("version %d: %+v %v", v, c, err)
		}
		if errors.Is(err, ErrCorrupt) {
			t.Errorf("version %d reported as corrupt: %v", v, err)
		}
	}
	// A kind newer than this build's is a newer build's command too.
	for _, k := range []byte{byte(lastKind) + 1, 255} {
		if c, err := DecodeCommand([]byte{CommandVersion, k, 0, 0}); c != nil || !errors.Is(err, ErrUnsupportedVersion) {
			t.Errorf("kind %d: %+v %v", k, c, err)
		}
	}
	// Only the version byte needs to be there for the version to be told.
	if _, err := DecodeCommand([]byte{CommandVersion + 1}); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("bare version byte: %v", err)
	}
}

func TestInitParamsValidate(t *testing.T) {
	ok := InitParams{ClusterID: "c", UserShards: 16, IdempotencyRetention: 1000}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint32{1, 2, 4096} {
		p := ok
		p.UserShards = n
		if err := p.Validate(); err != nil {
			t.Errorf("%d shards: %v", n, err)
		}
	}
	for i, mod := range []func(*InitParams){
		func(p *InitParams) { p.UserShards = 0 },
		func(p *InitParams) { p.UserShards = 3 },
		func(p *InitParams) { p.UserShards = 8192 },
		func(p *InitParams) { p.IdempotencyRetention = 999 },
		func(p *InitParams) { p.ClusterID = "" },
	} {
		p := ok
		mod(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("case %d: %+v accepted", i, p)
		}
	}
}

func TestMultiCommandLimits(t *testing.T) {
	create := &Command{Kind: CmdUserCreate, Stamp: 1, Create: &BatchItem{ID: MakeUserID(1, 0), User: NewUser{Name: "A", Email: "a@b.c"}}}
	if _, err := DecodeCommand(EncodeCommand(nil, &Command{Kind: CmdMulti})); err == nil {
		t.Error("an empty multi command decoded")
	}
	nested := &Command{Kind: CmdMulti, Multi: []*Command{create, {Kind: CmdMulti, Multi: []*Command{create}}}}
	if _, err := DecodeCommand(EncodeCommand(nil, nested)); err == nil {
		t.Error("a nested multi command decoded")
	}
	many := &Command{Kind: CmdMulti}
	for range MaxMulti + 1 {
		many.Multi = append(many.Multi, create)
	}
	if _, err := DecodeCommand(EncodeCommand(nil, many)); err == nil {
		t.Errorf("a multi command of %d decoded", len(many.Multi))
	}
	// A newer command inside says so, as it would alone: the node stops.
	b := EncodeCommand(nil, &Command{Kind: CmdMulti, Multi: []*Command{create}})
	inner := EncodeCommand(nil, create)
	i := bytes.Index(b, inner)
	b[i]++ // the inner command's version byte
	if _, err := DecodeCommand(b); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("a newer command inside: %v", err)
	}
}
