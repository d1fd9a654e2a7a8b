package storage

import (
	"errors"
	"fmt"
)

// CommandVersion is the version of the command encoding written by this
// build. A node that meets a newer version stops instead of diverging;
// older ones are read as they were written. Version 2 added the limits a
// document command carries (DocCommand.MaxDocs, HistoryBytes), version
// 3 a policy's algorithm (Policy.Algorithm, Window, TimeZone; a policy of
// an older command is GCRA), version 4 the checkpoint interval of a
// document submit (DocCommand.CheckpointEvery; none in older commands),
// version 5 a policy's Envoy rule (Policy.Envoy; none in older commands),
// version 6 document members with roles and share links (CmdDocMember,
// CmdDocLink, and DocCommand.Link, the share link a caller presents; none
// in older commands), version cmdVersionNamed named versions
// (CmdDocVersion), version cmdVersionWebhooks webhooks (CmdWebhook,
// CmdWebhookProgress: webhook.go; no older command has them).
const CommandVersion = cmdVersionWebhooks

// cmdVersionNamed is the command version that introduced named versions
// (CmdDocVersion). Every decoder branch that depends on it names this
// constant, so renumbering it is a one-line change.
const cmdVersionNamed = 7

// CommandKind says what a command does.
type CommandKind uint8

// Command kinds. Values are part of the log format: never renumber.
const (
	CmdInit       CommandKind = 1
	CmdUserCreate CommandKind = 2
	CmdUserBatch  CommandKind = 3
	CmdUserPatch  CommandKind = 4
	CmdUserDelete CommandKind = 5
	// CmdNoop changes nothing. A new leader proposes one and waits for it:
	// raft's own no-op and barrier entries never reach the FSM, so this is
	// how the FSM's applied index comes to cover everything committed in
	// earlier terms.
	CmdNoop CommandKind = 6
	// CmdMember records (or, with Remove, forgets) a member's addresses in
	// the replicated member directory; raft's own configuration says who
	// votes.
	CmdMember CommandKind = 7
	// CmdAuthSetup creates the cluster's authentication state (keys and
	// session rules); only the first one takes effect.
	CmdAuthSetup CommandKind = 8
	// CmdKeyRotate makes a new key the signing key.
	CmdKeyRotate CommandKind = 9
	// CmdSession opens, refreshes or revokes a user's session.
	CmdSession CommandKind = 10
	// CmdPolicyPut creates or replaces a named rate-limit policy.
	CmdPolicyPut CommandKind = 11
	// CmdPolicyDelete deletes a named rate-limit policy.
	CmdPolicyDelete CommandKind = 12
	// Document commands (DocCommand): create, submit ops, retitle,
	// delete, add or remove an editor.
	CmdDocCreate CommandKind = 13
	CmdDocSubmit CommandKind = 14
	CmdDocTitle  CommandKind = 15
	CmdDocDelete CommandKind = 16
	CmdDocEditor CommandKind = 17
	// CmdMulti carries several commands in one log entry (those a
	// follower forwarded to the leader in one request): they apply in
	// order, each exactly as it would in an entry of its own, and raft's
	// per-entry work (replication, the log, the FSM's hand-off) is paid
	// once for all of them.
	CmdMulti CommandKind = 18
	// CmdDocMember gives a user a role in a document, or removes it.
	CmdDocMember CommandKind = 19
	// CmdDocLink creates or revokes a document's share link.
	CmdDocLink CommandKind = 20
	// CmdDocVersion names a version of a document, or deletes its name
	// (from command version cmdVersionNamed).
	CmdDocVersion CommandKind = 21
	// CmdWebhook creates, updates or deletes a webhook (from command
	// version cmdVersionWebhooks).
	CmdWebhook CommandKind = 22
	// CmdWebhookProgress records the leader's delivery progress on
	// webhooks (acknowledged positions, failures).
	CmdWebhookProgress CommandKind = 23
)

// lastKind is the highest kind this build knows.
const lastKind = CmdWebhookProgress

// MaxMulti is the most commands one CmdMulti may carry.
const MaxMulti = 256

// IsDoc reports whether k is a document command.
func (k CommandKind) IsDoc() bool {
	return k >= CmdDocCreate && k <= CmdDocEditor || k == CmdDocMember || k == CmdDocLink || k == CmdDocVersion
}

func (k CommandKind) String() string {
	switch k {
	case CmdInit:
		return "init"
	case CmdUserCreate:
		return "user_create"
	case CmdUserBatch:
		return "user_batch"
	case CmdUserPatch:
		return "user_patch"
	case CmdUserDelete:
		return "user_delete"
	case CmdNoop:
		return "noop"
	case CmdMember:
		return "member"
	case CmdAuthSetup:
		return "auth_setup"
	case CmdKeyRotate:
		return "key_rotate"
	case CmdSession:
		return "session"
	case CmdPolicyPut:
		return "policy_put"
	case CmdPolicyDelete:
		return "policy_delete"
	case CmdDocCreate:
		return "doc_create"
	case CmdDocSubmit:
		return "doc_submit"
	case CmdDocTitle:
		return "doc_title"
	case CmdDocDelete:
		return "doc_delete"
	case CmdDocEditor:
		return "doc_editor"
	case CmdMulti:
		return "multi"
	case CmdDocMember:
		return "doc_member"
	case CmdDocLink:
		return "doc_link"
	case CmdDocVersion:
		return "doc_version"
	case CmdWebhook:
		return "webhook"
	case CmdWebhookProgress:
		return "webhook_progress"
	}
	return fmt.Sprintf("command(%d)", uint8(k))
}

// MaxBatch is the most users one batch command may create.
const MaxBatch = 1000

// Command is one replicated change. Everything that could differ between
// nodes (ids, time, hashes) is decided before proposing and carried here.
type Command struct {
	Kind  CommandKind
	Stamp uint64 // leader-decided hybrid time; see StampAt
	// RequestID is the client's Idempotency-Key (scoped by the caller), or
	// empty. Fingerprint identifies the request it was first used with.
	RequestID   string
	Fingerprint uint64

	Init    *InitParams
	Create  *BatchItem      // CmdUserCreate
	Batch   []BatchItem     // CmdUserBatch
	Patch   *UserPatch      // CmdUserPatch
	Delete  string          // CmdUserDelete: user id
	Member  *MemberChange   // CmdMember
	Auth    *AuthSetup      // CmdAuthSetup
	Key     *SigningKey     // CmdKeyRotate: KID and Secret
	Session *SessionOp      // CmdSession
	Policy  *Policy         // CmdPolicyPut; CmdPolicyDelete: Name only
	Doc     *DocCommand     // document commands
	Multi   []*Command      // CmdMulti: no CmdMulti among them; Stamp and RequestID unused
	Webhook *WebhookCommand // CmdWebhook
	// Progress is CmdWebhookProgress's reports, one per webhook.
	Progress []WebhookReport
}

// BatchItem is one user to create, with its id decided at the leader.
type BatchItem struct {
	ID   string
	User NewUser
}

// InitParams are the cluster parameters, fixed at bootstrap and kept in
// the replicated state, and the first admin.
type InitParams struct {
	ClusterID            string
	UserShards           uint32
	IdempotencyRetention uint64 // milliseconds
	Admin                BatchItem
}

// Validate checks cluster parameters.
func (p *InitParams) Validate() error {
	if p.UserShards == 0 || p.UserShards&(p.UserShards-1) != 0 || p.UserShards > 1<<12 {
		return fmt.Errorf("user shards must be a power of two between 1 and 4096, got %d", p.UserShards)
	}
	if p.IdempotencyRetention < 1000 {
		return fmt.Errorf("idempotency retention must be at least 1s, got %dms", p.IdempotencyRetention)
	}
	if p.ClusterID == "" {
		return fmt.Errorf("cluster id must not be empty")
	}
	return nil
}

// EncodeCommand appends the binary form of c to dst.
func EncodeCommand(dst []byte, c *Command) []byte {
	e := encoder{b: dst}
	e.byte1(CommandVersion)
	e.byte1(byte(c.Kind))
	e.uvarint(c.Stamp)
	e.str(c.RequestID)
	if c.RequestID != "" {
		e.fixed64(c.Fingerprint)
	}
	switch c.Kind {
	case CmdInit:
		e.initParams(c.Init)
	case CmdUserCreate:
		e.batchItem(c.Create)
	case CmdUserBatch:
		e.uvarint(uint64(len(c.Batch)))
		for i := range c.Batch {
			e.batchItem(&c.Batch[i])
		}
	case CmdUserPatch:
		p := c.Patch
		e.str(p.ID)
		e.uvarint(p.IfVersion)
		e.byte1(byte(p.Fields))
		if p.Fields&PatchName != 0 {
			e.str(p.Name)
		}
		if p.Fields&PatchEmail != 0 {
			e.str(p.Email)
		}
		if p.Fields&PatchPassword != 0 {
			e.str(p.PasswordHash)
		}
		if p.Fields&PatchRole != 0 {
			e.byte1(byte(p.Role))
		}
	case CmdUserDelete:
		e.str(c.Delete)
	case CmdMember:
		e.member(&c.Member.Member)
		e.boolean(c.Member.Remove)
	case CmdAuthSetup:
		a := c.Auth
		e.varint(a.Params.SessionTTLms)
		e.varint(a.Params.GraceMs)
		e.uvarint(uint64(a.Params.MaxSessions))
		e.bytes(a.RefreshKey)
		e.str(a.Key.KID)
		e.bytes(a.Key.Secret)
	case CmdKeyRotate:
		e.str(c.Key.KID)
		e.bytes(c.Key.Secret)
	case CmdSession:
		op := c.Session
		e.byte1(byte(op.Action))
		e.str(op.UserID)
		e.str(op.Family)
		e.b = append(e.b, op.Hash[:]...)
		e.b = append(e.b, op.Next[:]...)
		e.fixed64(op.PasswordCheck)
	case CmdPolicyPut:
		e.policy(c.Policy)
	case CmdPolicyDelete:
		e.str(c.Policy.Name)
	case CmdDocCreate, CmdDocSubmit, CmdDocTitle, CmdDocDelete, CmdDocEditor, CmdDocMember, CmdDocLink, CmdDocVersion:
		e.docCommand(c.Kind, c.Doc)
	case CmdMulti:
		e.uvarint(uint64(len(c.Multi)))
		for _, sub := range c.Multi {
			e.bytes(EncodeCommand(nil, sub))
		}
	case CmdWebhook:
		e.webhookCommand(c.Webhook)
	case CmdWebhookProgress:
		e.webhookReports(c.Progress)
	}
	return e.b
}

// EncodeMulti appends the binary form of a CmdMulti carrying the commands
// encoded in subs (by EncodeCommand; none a CmdMulti) to dst: the same
// bytes as EncodeCommand of the decoded commands, without decoding them.
func EncodeMulti(dst []byte, subs [][]byte) []byte {
	e := encoder{b: dst}
	e.byte1(CommandVersion)
	e.byte1(byte(CmdMulti))
	e.uvarint(0)
	e.str("")
	e.uvarint(uint64(len(subs)))
	for _, sub := range subs {
		e.bytes(sub)
	}
	return e.b
}

// policyFormat is the layout of a policy record: what the command or
// snapshot version that carries it wrote.
type policyFormat uint8

const (
	// policyV1: name, limit, window, burst, shadow (command versions 1
	// and 2, snapshot versions up to 5).
	policyV1 policyFormat = iota
	// policyV2 adds the algorithm (command version 3, snapshot 6).
	policyV2
	// policyV3 adds the Envoy rule (command version 5, snapshot 8).
	policyV3
)

// policyFormatOfCommand is the policy layout of command version v.
func policyFormatOfCommand(v byte) policyFormat {
	switch {
	case v >= 5:
		return policyV3
	case v >= 3:
		return policyV2
	}
	return policyV1
}

// policy writes a policy record: the fields of command version 2 and
// snapshot version 5, then the algorithm and, for fixed windows, the
// unit and time zone, then the Envoy rule.
func (e *encoder) policy(p *Policy) {
	e.str(p.Name)
	e.uvarint(uint64(p.Limit))
	e.varint(p.WindowMs)
	e.uvarint(uint64(p.Burst))
	e.boolean(p.Shadow)
	e.byte1(byte(p.Algorithm))
	if p.Algorithm == FixedWindow {
		e.byte1(byte(p.Window))
		e.str(p.TimeZone)
	}
	e.envoyRule(p.Envoy)
}

// policy reads a policy record written in format f: the policies of
// policyV1 are all GCRA, those before policyV3 have no Envoy rule.
func (d *decoder) policy(f policyFormat) *Policy {
	p := &Policy{Name: d.str()}
	limit := d.uvarint()
	p.WindowMs = d.varint()
	burst := d.uvarint()
	p.Shadow = d.boolean()
	if limit > MaxPolicyLimit || burst > MaxPolicyLimit {
		d.fail("policy limit %d or burst %d out of range", limit, burst)
	}
	p.Limit, p.Burst = uint32(limit), uint32(burst)
	if f < policyV2 {
		return p
	}
	p.Algorithm = Algorithm(d.byte1())
	switch {
	case d.err != nil:
	case p.Algorithm > lastAlgorithm:
		d.fail("unknown rate-limit algorithm %d", p.Algorithm)
	case p.Algorithm == FixedWindow:
		p.Window = CalendarUnit(d.byte1())
		p.TimeZone = d.str()
		if d.err == nil && (p.Window < UnitSecond || p.Window > lastUnit || len(p.TimeZone) > MaxTimeZone) {
			d.fail("fixed window %d in time zone %q", p.Window, p.TimeZone)
		}
	}
	if f >= policyV3 {
		p.Envoy = d.envoyRule()
	}
	return p
}

func (e *encoder) batchItem(it *BatchItem) {
	e.str(it.ID)
	e.str(it.User.Name)
	e.str(it.User.Email)
	e.str(it.User.PasswordHash)
	e.byte1(byte(it.User.Role))
}

func (e *encoder) initParams(p *InitParams) {
	e.str(p.ClusterID)
	e.uvarint(uint64(p.UserShards))
	e.uvarint(p.IdempotencyRetention)
	e.batchItem(&p.Admin)
}

func (d *decoder) initParams() *InitParams {
	p := &InitParams{ClusterID: d.str()}
	shards := d.uvarint()
	if shards > 1<<16 {
		d.fail("shard count %d", shards)
	}
	p.UserShards = uint32(shards)
	p.IdempotencyRetention = d.uvarint()
	d.batchItem(&p.Admin)
	return p
}

func (d *decoder) batchItem(it *BatchItem) {
	it.ID = d.str()
	it.User.Name = d.str()
	it.User.Email = d.str()
	it.User.PasswordHash = d.str()
	it.User.Role = Role(d.byte1())
}

// DecodeCommand parses a command. It fails, never panics, on any input
// that EncodeCommand did not produce, and reports a newer version as such
// so the caller can stop with a clear message.
func DecodeCommand(b []byte) (*Command, error) {
	d := decoder{b: b}
	v := d.byte1()
	if d.err == nil && (v < 1 || v > CommandVersion) {
		return nil, fmt.Errorf("%w: command version %d is not supported by this build (it reads versions 1 to %d); upgrade this node", ErrUnsupportedVersion, v, CommandVersion)
	}
	c := &Command{Kind: CommandKind(d.byte1())}
	c.Stamp = d.uvarint()
	c.RequestID = d.str()
	if c.RequestID != "" {
		c.Fingerprint = d.fixed64()
	}
	switch c.Kind {
	case CmdInit:
		c.Init = d.initParams()
	case CmdUserCreate:
		c.Create = &BatchItem{}
		d.batchItem(c.Create)
	case CmdUserBatch:
		n := d.count(5)
		if n > MaxBatch {
			d.fail("batch of %d items", n)
		}
		if d.err == nil {
			c.Batch = make([]BatchItem, n)
			for i := range c.Batch {
				d.batchItem(&c.Batch[i])
			}
		}
	case CmdUserPatch:
		p := &UserPatch{}
		p.ID = d.str()
		p.IfVersion = d.uvarint()
		p.Fields = PatchFields(d.byte1())
		if p.Fields&^patchAll != 0 {
			d.fail("unknown patch fields %#x", p.Fields)
		}
		if p.Fields&PatchName != 0 {
			p.Name = d.str()
		}
		if p.Fields&PatchEmail != 0 {
			p.Email = d.str()
		}
		if p.Fields&PatchPassword != 0 {
			p.PasswordHash = d.str()
		}
		if p.Fields&PatchRole != 0 {
			p.Role = Role(d.byte1())
		}
		c.Patch = p
	case CmdUserDelete:
		c.Delete = d.str()
	case CmdNoop:
	case CmdMember:
		c.Member = &MemberChange{}
		d.member(&c.Member.Member)
		c.Member.Remove = d.boolean()
	case CmdAuthSetup:
		a := &AuthSetup{}
		a.Params.SessionTTLms = d.varint()
		a.Params.GraceMs = d.varint()
		if n := d.uvarint(); n > 1<<20 {
			d.fail("max sessions %d", n)
		} else {
			a.Params.MaxSessions = int(n)
		}
		a.RefreshKey = d.bytes()
		a.Key.KID = d.str()
		a.Key.Secret = d.bytes()
		c.Auth = a
	case CmdKeyRotate:
		c.Key = &SigningKey{KID: d.str(), Secret: d.bytes()}
	case CmdSession:
		op := &SessionOp{Action: SessionAction(d.byte1()), UserID: d.str(), Family: d.str()}
		d.hash(&op.Hash)
		d.hash(&op.Next)
		op.PasswordCheck = d.fixed64()
		c.Session = op
	case CmdPolicyPut:
		c.Policy = d.policy(policyFormatOfCommand(v))
	case CmdPolicyDelete:
		c.Policy = &Policy{Name: d.str()}
	case CmdDocCreate, CmdDocSubmit, CmdDocTitle, CmdDocDelete, CmdDocEditor, CmdDocMember, CmdDocLink, CmdDocVersion:
		c.Doc = d.docCommand(c.Kind, v)
	case CmdMulti:
		n := d.count(3)
		if d.err == nil && (n == 0 || n > MaxMulti) {
			d.fail("%d commands in one", n)
		}
		for range n {
			raw := d.bytes()
			if d.err != nil {
				break
			}
			sub, err := DecodeCommand(raw)
			if errors.Is(err, ErrUnsupportedVersion) {
				return nil, err
			}
			if err != nil {
				d.fail("command %d of %d: %v", len(c.Multi)+1, n, err)
				break
			}
			if sub.Kind == CmdMulti {
				d.fail("a multi command inside another")
				break
			}
			c.Multi = append(c.Multi, sub)
		}
	case CmdWebhook, CmdWebhookProgress:
		if v < cmdVersionWebhooks {
			d.fail("command kind %s in a command of version %d, older than webhooks", c.Kind, v)
			break
		}
		if c.Kind == CmdWebhook {
			c.Webhook = d.webhookCommand()
		} else {
			c.Progress = d.webhookReports()
		}
	default:
		if d.err == nil && c.Kind > lastKind {
			// A kind this build does not know was written by a newer one:
			// stop rather than skip it and diverge.
			return nil, fmt.Errorf("%w: command kind %d is not known to this build; upgrade this node", ErrUnsupportedVersion, c.Kind)
		}
		d.fail("unknown command kind %d", c.Kind)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return c, nil
}
