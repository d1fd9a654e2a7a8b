package cluster

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/storage"
)

// The determinism test replays one random log on independent state
// machines, each in its own batches, and checks that they end in the same
// state (hash of the snapshot stream) with the same result for every
// command; then it restores a snapshot into a fresh FSM and checks that it
// goes on exactly like the original.

const (
	detShards    = 8
	detRetention = 10_000 // ms of command time
)

type detFSM struct {
	fsm *FSM
	sys *actors.System
}

func newDetFSM(t *testing.T) *detFSM {
	logger := slog.New(slog.DiscardHandler)
	set := metrics.NewSet()
	sys := actors.NewSystem(logger, set)
	f := NewFSM(sys, logger, set, func(err error) { t.Errorf("fatal: %v", err) })
	return &detFSM{fsm: f, sys: sys}
}

func (d *detFSM) close() {
	d.fsm.Close()
	d.sys.Shutdown()
}

// apply hands logs to the FSM in batches of random size, as raft does, and
// returns the apply responses without waiting for them: an
// *actors.Pending per log, or for a CmdMulti entry one per command.
func (d *detFSM) apply(t *testing.T, logs []*raft.Log, r *rand.Rand) []any {
	out := make([]any, 0, len(logs))
	for len(logs) > 0 {
		n := min(len(logs), 1+r.IntN(64))
		resp := d.fsm.ApplyBatch(logs[:n])
		if len(resp) != n {
			t.Errorf("ApplyBatch returned %d responses for %d logs", len(resp), n)
			return out
		}
		for i, x := range resp {
			switch x.(type) {
			case *actors.Pending, []*actors.Pending:
			default:
				t.Errorf("index %d: response %T", logs[i].Index, x)
				return out
			}
			out = append(out, x)
		}
		if got, want := d.fsm.AppliedIndex(), logs[n-1].Index; got != want {
			t.Errorf("applied index %d after a batch up to %d", got, want)
		}
		logs = logs[n:]
	}
	return out
}

// applyAll applies logs to every FSM at once, each from its own goroutine
// and with its own batch sizes, waits for every result and returns them.
func applyAll(t *testing.T, logs []*raft.Log, seed uint64, fsms ...*detFSM) [][]storage.Result {
	t.Helper()
	pend := make([][]any, len(fsms))
	var wg sync.WaitGroup
	for i, d := range fsms {
		wg.Go(func() {
			pend[i] = d.apply(t, logs, rand.New(rand.NewPCG(seed, uint64(i))))
		})
	}
	wg.Wait()
	deadline := time.After(30 * time.Second)
	res := make([][]storage.Result, len(fsms))
	for i, ps := range pend {
		if len(ps) != len(logs) {
			t.Fatalf("fsm %d: %d responses for %d logs", i, len(ps), len(logs))
		}
		for j, x := range ps {
			wait := func(p *actors.Pending) storage.Result {
				select {
				case <-p.Done():
				case <-deadline:
					t.Fatalf("fsm %d: the result of index %d never came", i, logs[j].Index)
				}
				return p.Result()
			}
			switch x := x.(type) {
			case *actors.Pending:
				res[i] = append(res[i], wait(x))
			case []*actors.Pending:
				// A multi entry: its commands' results as Items.
				items := make([]storage.Result, len(x))
				for k, p := range x {
					items[k] = wait(p)
				}
				res[i] = append(res[i], storage.Result{Items: items})
			}
		}
	}
	return res
}

// stateHash captures the FSM's state (which waits for every command sent
// to its actors) and hashes its snapshot stream. Call it from the goroutine
// that applies, or after it has stopped.
func (d *detFSM) stateHash(t *testing.T) ([]byte, [32]byte) {
	t.Helper()
	var b bytes.Buffer
	if err := storage.WriteSnapshot(&b, d.fsm.capture()); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), sha256.Sum256(b.Bytes())
}

func compareResults(t *testing.T, logs []*raft.Log, a, b []storage.Result, what string) {
	t.Helper()
	bad := 0
	for i := range logs {
		if !sameResult(a[i], b[i]) {
			if bad++; bad <= 5 {
				t.Errorf("%s: index %d: results differ:\n%s\n%s", what, logs[i].Index, describe(a[i]), describe(b[i]))
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d results differ", what, bad, len(logs))
	}
}

// sameResult compares results as clients and snapshots see them (their
// encoding): a document in a result may share its history's array with
// others, which DeepEqual would compare too.
func sameResult(a, b storage.Result) bool {
	return bytes.Equal(storage.AppendResult(nil, &a), storage.AppendResult(nil, &b))
}

func describe(r storage.Result) string {
	var sb strings.Builder
	if r.Err != nil {
		fmt.Fprintf(&sb, "err=%v/%q/%q ", r.Err.Kind, r.Err.Field, r.Err.Message)
	}
	if r.User != nil {
		fmt.Fprintf(&sb, "user=%s v%d %q ", r.User.ID, r.User.Version, r.User.Email)
	}
	if r.Items != nil {
		sb.WriteString("items=[")
		for _, it := range r.Items {
			sb.WriteString(describe(it) + "; ")
		}
		sb.WriteString("]")
	}
	return sb.String()
}

// logGen generates a random but plausible log, as leaders would propose
// it: increasing stamps, ids derived from stamps and email shards, request
// ids that are sometimes retried.
type logGen struct {
	r      *rand.Rand
	pr     *rand.Rand // policies' algorithms: a stream of their own, so the rest of the log is as before
	dr     *rand.Rand // document members and share links: likewise
	vr     *rand.Rand // named versions: likewise
	wr     *rand.Rand // webhooks: likewise
	index  uint64
	stamp  uint64
	ids    []string // ids of creates proposed (not all succeeded)
	admin  string
	hashes []string
	reqs   []sentReq
}

type sentReq struct {
	id   string
	fp   uint64
	data []byte
}

func newLogGen(seed uint64) *logGen {
	g := &logGen{r: rand.New(rand.NewPCG(seed, seed^0x5eed)), pr: rand.New(rand.NewPCG(seed, seed^0xa190)),
		dr: rand.New(rand.NewPCG(seed, seed^0xd0c5)), vr: rand.New(rand.NewPCG(seed, seed^0x7e5)), wr: rand.New(rand.NewPCG(seed, seed^0x400c)),
		stamp: storage.StampAt(1_700_000_000_000)}
	p := storage.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, KeyLen: 16, SaltLen: 8}
	for i := range 3 {
		g.hashes = append(g.hashes, storage.HashPassword(fmt.Sprint("password", i), []byte(fmt.Sprint("saltsalt", i)), p))
	}
	return g
}

// stamps reserves k stamps, moving time on by a random step.
func (g *logGen) stamps(k int) uint64 {
	ms := storage.StampMillis(g.stamp)
	switch x := g.r.IntN(1000); {
	case x < 600: // same millisecond
	case x < 997:
		ms += g.r.Int64N(20)
	default:
		ms += g.r.Int64N(3 * detRetention / 2) // expire part of the idempotency window
	}
	first := max(storage.StampAt(ms), g.stamp+1)
	g.stamp = first + uint64(k) - 1
	return first
}

func (g *logGen) email() string {
	var e string
	switch x := g.r.IntN(100); {
	case x < 3:
		e = []string{"no-at-sign", "a@b", "a..b@example.com", ""}[g.r.IntN(4)]
	case x < 5:
		e = "admin@troupe.local"
	case x < 8:
		e = fmt.Sprintf("José%d@exämple.com", g.r.IntN(20))
	default:
		e = fmt.Sprintf("user%d@example%d.com", g.r.IntN(600), g.r.IntN(3))
	}
	// Case changes make the same address.
	if g.r.IntN(4) == 0 {
		e = strings.ToUpper(e)
	}
	if g.r.IntN(20) == 0 {
		e = "  " + e + " "
	}
	return e
}

func (g *logGen) name() string {
	switch g.r.IntN(40) {
	case 0:
		return "   "
	case 1:
		return strings.Repeat("n", storage.MaxNameRunes+1)
	case 2:
		return "bad\x00name"
	case 3:
		return "  Trimmed Name  "
	}
	return fmt.Sprintf("Name %d", g.r.IntN(1000))
}

func (g *logGen) hash() string {
	switch g.r.IntN(10) {
	case 0:
		return ""
	case 1:
		return "not-a-phc-string"
	}
	return g.hashes[g.r.IntN(len(g.hashes))]
}

func (g *logGen) role() storage.Role {
	switch x := g.r.IntN(100); {
	case x < 2:
		return storage.Role(g.r.IntN(2) * 7) // invalid: 0 or 7
	case x < 8:
		return storage.RoleAdmin
	}
	return storage.RoleUser
}

func (g *logGen) item(stamp uint64) storage.BatchItem {
	u := storage.NewUser{Name: g.name(), Email: g.email(), PasswordHash: g.hash(), Role: g.role()}
	shard := storage.ShardOf(storage.EmailKey(u.Email), detShards)
	if g.r.IntN(50) == 0 {
		shard = (shard + 1) % detShards // an id that does not match the email's shard
	}
	id := storage.MakeUserID(stamp, shard)
	g.ids = append(g.ids, id)
	return storage.BatchItem{ID: id, User: u}
}

// target picks the id of a patch or delete.
func (g *logGen) target() string {
	switch x := g.r.IntN(100); {
	case x < 3:
		return g.admin
	case x < 8:
		return storage.MakeUserID(g.r.Uint64N(g.stamp), uint16(g.r.IntN(detShards))) // no such user
	case x < 10:
		return []string{"", "nope", strings.ToUpper(g.ids[0]), storage.MakeUserID(g.stamp, detShards+3)}[g.r.IntN(4)]
	case x < 50 && len(g.ids) > 20:
		return g.ids[len(g.ids)-1-g.r.IntN(20)] // recent ones, likely to exist
	}
	return g.ids[g.r.IntN(len(g.ids))]
}

func (g *logGen) init() *raft.Log {
	stamp := g.stamps(1)
	email := "admin@troupe.local"
	g.admin = storage.MakeUserID(stamp, storage.ShardOf(storage.EmailKey(email), detShards))
	g.ids = append(g.ids, g.admin)
	return g.log(&storage.Command{Kind: storage.CmdInit, Stamp: stamp, Init: &storage.InitParams{
		ClusterID: "determinism", UserShards: detShards, IdempotencyRetention: detRetention,
		Admin: storage.BatchItem{ID: g.admin, User: storage.NewUser{Name: "Admin", Email: email, PasswordHash: g.hashes[0], Role: storage.RoleAdmin}},
	}})
}

func (g *logGen) log(c *storage.Command) *raft.Log {
	g.index++
	return &raft.Log{Index: g.index, Term: 1, Type: raft.LogCommand, Data: storage.EncodeCommand(nil, c)}
}

// webhookCommand is a webhook create, update, delete or progress report,
// valid or not, on a few ids.
func (g *logGen) webhookCommand() *storage.Command {
	r := g.wr
	id := fmt.Sprint("wh_", r.IntN(5))
	urls := []string{"https://a.example/h", "http://10.0.0.1:8080/x", "ftp://bad/", ""}
	switch r.IntN(4) {
	case 0:
		secret := make([]byte, storage.WebhookSecretBytes-r.IntN(4)/3)
		for i := range secret {
			secret[i] = byte(r.Uint32())
		}
		return &storage.Command{Kind: storage.CmdWebhook, Stamp: g.stamps(1), Webhook: &storage.WebhookCommand{Action: storage.WebhookCreate, ID: id,
			URL: urls[r.IntN(2)+r.IntN(4)/3*2], Kinds: uint8(1 + r.IntN(16)), Description: fmt.Sprint("d", r.IntN(9)), Secret: secret}}
	case 1:
		c := &storage.WebhookCommand{Action: storage.WebhookUpdate, ID: id, Fields: storage.WebhookFields(r.IntN(16))}
		c.URL, c.Kinds, c.Description = urls[r.IntN(len(urls))], uint8(r.IntN(17)), "x"
		return &storage.Command{Kind: storage.CmdWebhook, Stamp: g.stamps(1), Webhook: c}
	case 2:
		return &storage.Command{Kind: storage.CmdWebhook, Stamp: g.stamps(1), Webhook: &storage.WebhookCommand{Action: storage.WebhookDelete, ID: id}}
	}
	var rs []storage.WebhookReport
	for range 1 + r.IntN(3) {
		rs = append(rs, storage.WebhookReport{ID: fmt.Sprint("wh_", r.IntN(5)), Gen: 1 + r.Uint64N(3), AckedIndex: g.index - min(g.index, r.Uint64N(20)),
			AckedN: uint32(r.IntN(3)), FailingSinceMs: r.Int64N(1000), LastAttemptMs: r.Int64N(1000), LastError: fmt.Sprint("e", r.IntN(3)),
			Status: storage.WebhookStatus(r.IntN(3)), GapOldest: r.Uint64N(100)})
	}
	return &storage.Command{Kind: storage.CmdWebhookProgress, Stamp: g.stamps(1), Progress: rs}
}

func (g *logGen) command() *storage.Command {
	var c *storage.Command
	switch x := g.r.IntN(100); {
	case x < 35:
		stamp := g.stamps(1)
		it := g.item(stamp)
		c = &storage.Command{Kind: storage.CmdUserCreate, Stamp: stamp, Create: &it}
	case x < 45:
		n := g.r.IntN(13)
		stamp := g.stamps(max(n, 1))
		c = &storage.Command{Kind: storage.CmdUserBatch, Stamp: stamp, Batch: []storage.BatchItem{}}
		for i := range n {
			it := g.item(stamp + uint64(i))
			if i > 0 && g.r.IntN(5) == 0 {
				// the same address again, in another case
				it.User.Email = strings.ToUpper(c.Batch[g.r.IntN(i)].User.Email)
				it.ID = storage.MakeUserID(stamp+uint64(i), storage.ShardOf(storage.EmailKey(it.User.Email), detShards))
				g.ids[len(g.ids)-1] = it.ID
			}
			c.Batch = append(c.Batch, it)
		}
	case x < 70:
		p := &storage.UserPatch{ID: g.target()}
		if g.r.IntN(4) == 0 {
			p.IfVersion = 1 + g.r.Uint64N(4)
		}
		if g.r.IntN(15) > 0 {
			p.Fields = storage.PatchFields(g.r.IntN(16))
		}
		if p.Fields&storage.PatchName != 0 {
			p.Name = g.name()
		}
		if p.Fields&storage.PatchEmail != 0 {
			p.Email = g.email()
		}
		if p.Fields&storage.PatchPassword != 0 {
			p.PasswordHash = g.hash()
		}
		if p.Fields&storage.PatchRole != 0 {
			p.Role = g.role()
		}
		c = &storage.Command{Kind: storage.CmdUserPatch, Stamp: g.stamps(1), Patch: p}
	case x < 82:
		c = &storage.Command{Kind: storage.CmdUserDelete, Stamp: g.stamps(1), Delete: g.target()}
	case x < 88:
		c = &storage.Command{Kind: storage.CmdSession, Stamp: g.stamps(1), Session: g.session()}
	case x < 90:
		names := []string{"api", "login", "default", "bad name"}
		p := &storage.Policy{Name: names[g.r.IntN(len(names))], Limit: uint32(g.r.IntN(100)), WindowMs: g.r.Int64N(5000), Burst: uint32(g.r.IntN(10)), Shadow: g.r.IntN(2) == 0}
		// Every algorithm, valid or not (4 is none).
		switch p.Algorithm = storage.Algorithm(g.pr.IntN(5)); p.Algorithm {
		case storage.FixedWindow:
			zones := []string{"", "UTC", "Europe/Paris", "America/New_York", "Nowhere/Else"}
			p.Window, p.TimeZone = storage.CalendarUnit(g.pr.IntN(7)), zones[g.pr.IntN(len(zones))]
			if g.pr.IntN(4) > 0 {
				p.WindowMs = 0
			}
		case storage.Concurrency:
			if g.pr.IntN(4) > 0 {
				p.WindowMs = 0
			}
		}
		if p.Algorithm != storage.GCRA && g.pr.IntN(2) == 0 {
			p.Burst = 0
		}
		kind := storage.CmdPolicyPut
		if g.r.IntN(3) == 0 {
			kind = storage.CmdPolicyDelete
		}
		c = &storage.Command{Kind: kind, Stamp: g.stamps(1), Policy: p}
	case x < 91:
		if g.wr.IntN(3) > 0 {
			c = g.webhookCommand()
		} else {
			c = &storage.Command{Kind: storage.CmdNoop, Stamp: g.stamps(1)}
		}
	case x < 96:
		c = g.docCommand()
	case x < 98:
		// Auth setup (only the first takes effect) and key rotations.
		secret := func() []byte {
			b := make([]byte, storage.SecretBytes)
			for i := range b {
				b[i] = byte(g.r.Uint32())
			}
			return b
		}
		if g.r.IntN(3) == 0 {
			c = &storage.Command{Kind: storage.CmdAuthSetup, Stamp: g.stamps(1), Auth: &storage.AuthSetup{
				Params:     storage.AuthParams{SessionTTLms: 60_000 + g.r.Int64N(120_000), GraceMs: g.r.Int64N(50), MaxSessions: 1 + g.r.IntN(4)},
				RefreshKey: secret(), Key: storage.SigningKey{KID: fmt.Sprint("k", g.r.IntN(1000)), Secret: secret()}}}
		} else {
			c = &storage.Command{Kind: storage.CmdKeyRotate, Stamp: g.stamps(1), Key: &storage.SigningKey{KID: fmt.Sprint("k", g.r.IntN(50)), Secret: secret()}}
		}
	default:
		// A second init: refused.
		c = &storage.Command{Kind: storage.CmdInit, Stamp: g.stamps(1), Init: &storage.InitParams{ClusterID: "again", UserShards: 2, IdempotencyRetention: 1000,
			Admin: g.item(g.stamp)}}
	}
	if g.r.IntN(40) == 0 {
		// A stale stamp (a new leader's clock behind): command time must
		// not go backwards. Only for commands whose ids do not use it.
		if c.Kind == storage.CmdUserPatch || c.Kind == storage.CmdUserDelete || c.Kind == storage.CmdNoop || c.Kind == storage.CmdWebhook || c.Kind == storage.CmdWebhookProgress {
			c.Stamp -= storage.StampAt(g.r.Int64N(5000))
		}
	}
	return c
}

// docCommand makes a document command on a small pool of documents,
// by their owner, another user or an admin, with ops that may not fit.
func (g *logGen) docCommand() *storage.Command {
	kinds := []storage.CommandKind{storage.CmdDocCreate, storage.CmdDocSubmit, storage.CmdDocSubmit, storage.CmdDocSubmit, storage.CmdDocTitle, storage.CmdDocEditor, storage.CmdDocDelete}
	kind := kinds[g.r.IntN(len(kinds))]
	dc := &storage.DocCommand{DocID: fmt.Sprint("doc", g.r.IntN(6)), Caller: []string{"owner", "editor", "stranger"}[g.r.IntN(3)], Admin: g.r.IntN(8) == 0}
	switch kind {
	case storage.CmdDocCreate:
		dc.Title, dc.Content = g.name(), strings.Repeat("ab", g.r.IntN(20))
		dc.Caller = "owner"
	case storage.CmdDocTitle:
		dc.Title = g.name()
	case storage.CmdDocEditor:
		dc.Editor, dc.Remove = storage.MakeUserID(g.stamp, 1), g.r.IntN(3) == 0
	case storage.CmdDocSubmit:
		var ops []storage.Op
		for range 1 + g.r.IntN(3) {
			switch g.r.IntN(3) {
			case 0:
				ops = append(ops, storage.Op{Kind: storage.OpInsert, Pos: g.r.IntN(30), Text: "xy"})
			case 1:
				ops = append(ops, storage.Op{Kind: storage.OpDelete, Pos: g.r.IntN(30), Len: 1 + g.r.IntN(3)})
			default:
				ops = append(ops, storage.Op{Kind: storage.OpReplace, Pos: g.r.IntN(30), Len: 1 + g.r.IntN(2), Text: "é"})
			}
		}
		dc.Submit = &storage.DocSubmit{DocID: dc.DocID, ClientID: fmt.Sprint("c", g.r.IntN(3)), Seq: g.r.Uint64N(50), Base: g.r.Uint64N(10), Ops: ops}
		// From the seq, so that the random sequence stays as it was; 0: as
		// a command of an older version.
		dc.CheckpointEvery = dc.Submit.Seq % 4
	}
	g.rolesAndLinks(&kind, dc)
	g.namedVersions(&kind, dc)
	return &storage.Command{Kind: kind, Stamp: g.stamps(1), Doc: dc}
}

// rolesAndLinks turns some retitles, editor changes and deletes into
// member and share-link commands, and has strangers' submits made through
// a link, drawing from its own stream so that the rest of the log (its
// creates and accepted submits included) is as before. Members and links
// come from small pools and the caps are 0 (none) to 2, so role changes,
// removals, revocations, expiries (by command time) and both caps occur.
func (g *logGen) rolesAndLinks(kind *storage.CommandKind, dc *storage.DocCommand) {
	pool := func() string { return fmt.Sprintf("%016x", g.dr.IntN(4)) }
	switch *kind {
	case storage.CmdDocCreate:
		return
	case storage.CmdDocSubmit:
		if dc.Caller == "stranger" && !dc.Admin && g.dr.IntN(2) == 0 {
			dc.Caller, dc.Link = "", pool() // a guest (its link may be a viewer's, revoked or expired)
		}
		return
	}
	if g.dr.IntN(3) == 0 {
		return
	}
	if g.dr.IntN(4) != 0 {
		dc.Caller = "owner" // mostly the owner: the others are refused
	}
	if g.dr.IntN(2) == 0 {
		*kind = storage.CmdDocMember
		dc.Editor, dc.Role = storage.MakeUserID(uint64(g.dr.IntN(5)), 1), storage.DocRole(1+g.dr.IntN(2))
		dc.Remove, dc.MaxMembers = g.dr.IntN(4) == 0, uint64(g.dr.IntN(3))
		return
	}
	*kind = storage.CmdDocLink
	dc.LinkID, dc.Remove = pool(), g.dr.IntN(4) == 0
	dc.LinkHash, dc.Role = sha256.Sum256([]byte(dc.LinkID)), storage.DocRole(1+g.dr.IntN(2))
	dc.ExpiresInS, dc.MaxLinks = uint64(g.dr.IntN(3)), uint64(g.dr.IntN(3))
}

// namedVersions turns some of the retitles left into namings of a version
// (the current one or an older one, kept or not) or deletes of a name,
// drawing from its own stream so that the rest of the log is as before.
// Callers are mostly the owner; the bounds are none to 2 per document and
// up to a few hundred bytes per owner, so both are met.
func (g *logGen) namedVersions(kind *storage.CommandKind, dc *storage.DocCommand) {
	if *kind != storage.CmdDocTitle || g.vr.IntN(2) == 0 {
		return
	}
	*kind = storage.CmdDocVersion
	if g.vr.IntN(4) != 0 {
		dc.Caller = "owner"
	}
	dc.VersionName, dc.Current = fmt.Sprint("v", g.vr.IntN(3)), g.vr.IntN(2) == 0
	dc.Version, dc.Remove = uint64(g.vr.IntN(12)), g.vr.IntN(4) == 0
	dc.MaxNamed, dc.MaxNamedBytes = uint64(g.vr.IntN(3)), uint64(g.vr.IntN(400))
}

// session makes a session change: tokens and families come from small
// pools, so refreshes hit current, previous and unknown tokens.
func (g *logGen) session() *storage.SessionOp {
	tok := func() [32]byte { return sha256.Sum256([]byte(fmt.Sprint("token", g.r.IntN(8)))) }
	op := &storage.SessionOp{Action: storage.SessionAction(1 + g.r.IntN(4)), UserID: g.target(), Family: fmt.Sprint("fam", g.r.IntN(4))}
	switch op.Action {
	case storage.SessionOpen:
		op.Hash = tok()
		op.PasswordCheck = storage.PasswordCheck(g.hash())
	case storage.SessionRefresh:
		op.Hash, op.Next = tok(), tok()
	case storage.SessionRevoke:
		op.Hash = tok()
	}
	if g.r.IntN(30) == 0 {
		op.Action = 9 // unknown
	}
	return op
}

// next returns the next log entry.
func (g *logGen) next() *raft.Log {
	switch x := g.r.IntN(1000); {
	case x < 5:
		// Undecodable bytes of the current version: every node fails the
		// command the same way.
		g.index++
		return &raft.Log{Index: g.index, Term: 1, Type: raft.LogCommand, Data: []byte{storage.CommandVersion, byte(storage.CmdNoop), 0, 0, 1, 2, 3}}
	case x < 100 && len(g.reqs) > 0:
		// A retry of an earlier request id.
		old := g.reqs[max(0, len(g.reqs)-1-g.r.IntN(300))]
		if g.r.IntN(3) > 0 {
			// the same request again: the same bytes
			g.index++
			return &raft.Log{Index: g.index, Term: 1, Type: raft.LogCommand, Data: old.data}
		}
		c := g.command()
		c.RequestID, c.Fingerprint = old.id, old.fp+1+g.r.Uint64N(1000)
		return g.log(c)
	case x < 400:
		c := g.command()
		c.RequestID, c.Fingerprint = fmt.Sprintf("req-%d", len(g.reqs)), g.r.Uint64()
		l := g.log(c)
		g.reqs = append(g.reqs, sentReq{id: c.RequestID, fp: c.Fingerprint, data: l.Data})
		return l
	case x < 450:
		// Commands forwarded together: one entry, applied in order as if
		// each had its own.
		m := &storage.Command{Kind: storage.CmdMulti}
		for range 2 + g.r.IntN(4) {
			c := g.command()
			if c.Kind == storage.CmdInit {
				continue
			}
			if g.r.IntN(2) == 0 {
				c.RequestID, c.Fingerprint = fmt.Sprintf("multi-%d-%d", g.index, len(m.Multi)), g.r.Uint64()
			}
			m.Multi = append(m.Multi, c)
		}
		if len(m.Multi) == 0 {
			return g.log(g.command())
		}
		return g.log(m)
	}
	return g.log(g.command())
}

func (g *logGen) logs(n int) []*raft.Log {
	out := make([]*raft.Log, n)
	for i := range out {
		out[i] = g.next()
	}
	return out
}

// tally counts outcomes by command kind, so that the test can check that
// the log exercised what it should.
func tally(logs []*raft.Log, res []storage.Result) map[string]int {
	m := map[string]int{}
	for i, l := range logs {
		kind := "undecodable"
		if c, err := storage.DecodeCommand(l.Data); err == nil {
			kind = c.Kind.String()
		}
		r := res[i]
		switch {
		case r.Err != nil:
			m[kind+":"+r.Err.Kind.String()]++
		case r.Items != nil:
			for _, it := range r.Items {
				if it.Err != nil {
					m[kind+":item:"+it.Err.Kind.String()]++
				} else {
					m[kind+":item:ok"]++
				}
			}
		default:
			m[kind+":ok"]++
		}
	}
	return m
}

// checkIdempotency replays the idempotency window on the side: a request
// id seen within the retention (by command time) answers the recorded
// result if the fingerprint matches, a conflict if not.
func checkIdempotency(t *testing.T, logs []*raft.Log, res []storage.Result) (replays, conflicts, reapplied int) {
	t.Helper()
	type rec struct {
		atMs int64
		fp   uint64
		res  storage.Result
	}
	window := map[string]rec{}
	seen := map[string]bool{}
	lastMs := int64(0)
	for i, l := range logs {
		c, err := storage.DecodeCommand(l.Data)
		if err != nil {
			continue
		}
		now := max(storage.StampMillis(c.Stamp), lastMs)
		lastMs = now
		for id, e := range window {
			if e.atMs < now-detRetention {
				delete(window, id)
			}
		}
		if c.RequestID == "" {
			continue
		}
		e, ok := window[c.RequestID]
		switch {
		case !ok:
			if seen[c.RequestID] {
				reapplied++
			}
			seen[c.RequestID] = true
			window[c.RequestID] = rec{atMs: now, fp: c.Fingerprint, res: res[i]}
		case e.fp == c.Fingerprint:
			replays++
			if !sameResult(res[i], e.res) {
				t.Errorf("index %d: a replay of %s answered %s, not the recorded %s", l.Index, c.RequestID, describe(res[i]), describe(e.res))
			}
		default:
			conflicts++
			if r := res[i]; r.Err == nil || r.Err.Kind != storage.KindConflict || !strings.Contains(r.Err.Message, "Idempotency-Key") {
				t.Errorf("index %d: %s reused with another fingerprint answered %s", l.Index, c.RequestID, describe(r))
			}
		}
	}
	return replays, conflicts, reapplied
}

func TestFSMDeterminism(t *testing.T) {
	seeds := []uint64{20261123, 1, 2}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { testDeterminism(t, seed) })
	}
}

func testDeterminism(t *testing.T, seed uint64) {
	const n1, n2 = 5000, 1500
	start := time.Now()
	g := newLogGen(seed)
	logs := append([]*raft.Log{g.init()}, g.logs(n1-1)...)

	f1, f2 := newDetFSM(t), newDetFSM(t)
	defer f1.close()
	defer f2.close()
	res := applyAll(t, logs, 1, f1, f2)
	compareResults(t, logs, res[0], res[1], "fsm 1 vs fsm 2")
	feed1 := feedDigest(t, f1.fsm, feed.After(0), uint64(len(logs)))
	compareFeeds(t, feed1, feedDigest(t, f2.fsm, feed.After(0), uint64(len(logs))), "the change feeds of fsm 1 and fsm 2")
	checkFeedKinds(t, f1.fsm, feed1)
	if r := res[0][0]; r.Err != nil || r.User == nil || r.User.ID != g.admin {
		t.Fatalf("init: %s", describe(r))
	}

	counts := tally(logs, res[0])
	for _, want := range []string{
		"user_create:ok", "user_create:conflict", "user_create:bad_request", "user_create:internal",
		"user_batch:item:ok", "user_batch:item:conflict",
		"user_patch:ok", "user_patch:not_found", "user_patch:precondition_failed", "user_patch:bad_request", "user_patch:conflict",
		"user_delete:ok", "user_delete:not_found", "user_delete:conflict",
		"init:conflict", "noop:ok", "undecodable:internal",
		"session:ok", "session:unauthenticated", "session:not_found", "session:bad_request",
		"auth_setup:ok", "auth_setup:conflict", "key_rotate:ok", "key_rotate:bad_request",
		"policy_put:ok", "policy_put:bad_request", "policy_delete:ok", "policy_delete:not_found",
		"doc_create:ok", "doc_create:conflict", "doc_submit:ok", "doc_submit:bad_request", "doc_submit:forbidden", "doc_delete:ok",
		"doc_member:ok", "doc_member:forbidden", "doc_link:ok", "doc_link:not_found", "doc_link:forbidden",
		"doc_version:ok",
		"multi:item:ok", "multi:item:conflict",
	} {
		if counts[want] == 0 {
			t.Errorf("the log never produced %s; outcomes: %v", want, counts)
		}
	}

	snap1, h1 := f1.stateHash(t)
	_, h2 := f2.stateHash(t)
	if h1 != h2 {
		t.Fatalf("state hashes differ after %d entries: %x vs %x", len(logs), h1, h2)
	}
	decoded, err := storage.ReadSnapshot(bytes.NewReader(snap1))
	if err != nil {
		t.Fatal(err)
	}
	users := 0
	for _, s := range decoded.Shards {
		users += s.Len()
	}
	if users < 300 || len(decoded.Meta.Idempotency) < 20 || decoded.Meta.Index != uint64(len(logs)) {
		t.Fatalf("state too small to mean much: %d users, %d idempotency entries, index %d",
			users, len(decoded.Meta.Idempotency), decoded.Meta.Index)
	}

	// A fresh FSM restored from the snapshot is the same state...
	f3 := newDetFSM(t)
	defer f3.close()
	if err := f3.fsm.Restore(io.NopCloser(bytes.NewReader(snap1))); err != nil {
		t.Fatal(err)
	}
	if got := f3.fsm.AppliedIndex(); got != uint64(len(logs)) {
		t.Fatalf("restored applied index %d", got)
	}
	if f3.fsm.LastStamp() != f1.fsm.LastStamp() {
		t.Fatalf("restored last stamp %d, want %d", f3.fsm.LastStamp(), f1.fsm.LastStamp())
	}
	if _, h3 := f3.stateHash(t); h3 != h1 {
		t.Fatalf("restored state hash %x, want %x", h3, h1)
	}

	// So is one that had applied another log before (stale users, admins
	// and request ids must all go).
	f4 := newDetFSM(t)
	defer f4.close()
	g4 := newLogGen(seed ^ 0xabcdef)
	applyAll(t, append([]*raft.Log{g4.init()}, g4.logs(500)...), 3, f4)
	if err := f4.fsm.Restore(io.NopCloser(bytes.NewReader(snap1))); err != nil {
		t.Fatal(err)
	}
	if _, h4 := f4.stateHash(t); h4 != h1 {
		t.Fatalf("state hash after restoring over another state %x, want %x", h4, h1)
	}

	// ...and goes on exactly like the original (retries of requests from
	// before the snapshot included).
	more := g.logs(n2)
	res2 := applyAll(t, more, 2, f1, f2, f3, f4)
	compareResults(t, more, res2[0], res2[1], "after the snapshot, fsm 1 vs fsm 2")
	compareResults(t, more, res2[0], res2[2], "after the snapshot, fsm 1 vs restored fsm 3")
	compareResults(t, more, res2[0], res2[3], "after the snapshot, fsm 1 vs re-restored fsm 4")
	// The feeds after the snapshot are the same too, held-back text
	// changes included.
	last := more[len(more)-1].Index
	after := feed.After(uint64(len(logs)))
	feedAfter := feedDigest(t, f1.fsm, after, last)
	compareFeeds(t, feedAfter, feedDigest(t, f2.fsm, after, last), "after the snapshot, the feeds of fsm 1 and 2")
	compareFeeds(t, feedAfter, feedDigest(t, f3.fsm, after, last), "after the snapshot, the feeds of fsm 1 and restored fsm 3")
	compareFeeds(t, feedAfter, feedDigest(t, f4.fsm, after, last), "after the snapshot, the feeds of fsm 1 and re-restored fsm 4")
	if _, err := f3.fsm.Feed().Since(feed.After(uint64(len(logs))-1), nil, 1); err == nil {
		t.Fatal("a restored feed answers changes from before its snapshot")
	}
	_, h1 = f1.stateHash(t)
	_, h2 = f2.stateHash(t)
	_, h3 := f3.stateHash(t)
	_, h4 := f4.stateHash(t)
	if h1 != h2 || h1 != h3 || h1 != h4 {
		t.Fatalf("state hashes differ after %d more entries: %x %x %x %x", len(more), h1, h2, h3, h4)
	}

	replays, conflicts, reapplied := checkIdempotency(t, append(logs[:len(logs):len(logs)], more...), append(res[0], res2[0]...))
	if replays == 0 || conflicts == 0 || reapplied == 0 {
		t.Errorf("idempotency not exercised: %d replays, %d conflicts, %d re-applied after expiry", replays, conflicts, reapplied)
	}
	t.Logf("%d + %d entries, %d users and %d idempotency entries at the snapshot; %d replays, %d key conflicts, %d re-applied after expiry; %v",
		len(logs), len(more), users, len(decoded.Meta.Idempotency), replays, conflicts, reapplied, time.Since(start))
	t.Logf("outcomes: %v", counts)
}
