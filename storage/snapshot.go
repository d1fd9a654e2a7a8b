package storage

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// SnapshotVersion is the snapshot format written by this build. Version
// 2 added authentication (an auth frame, token epochs and sessions in
// user records), version 3 rate-limit policies (a policies frame),
// version 4 documents (docs frames), version 5 carries every record in
// bounded chunks (chunks.go) so that no value has a size limit of the
// format's own, version 6 a rate-limit policy's algorithm (the policies
// of older snapshots are GCRA), version 7 each kept change's author and
// time and a document's checkpoints (timetravel.go; a document of an
// older snapshot has none, and its changes no author), version 8 a
// policy's Envoy rule (none in older snapshots), version 9 a document's
// viewers and share links (docaccess.go; a document of an older snapshot
// has neither, so its editors are all its members, with role editor),
// version snapVersionNamed a document's named versions (named.go; none
// in older snapshots), version snapVersionWebhooks webhooks (a webhooks
// frame; none in older snapshots); older versions are still read.
const SnapshotVersion = snapVersionWebhooks

// snapVersionNamed is the snapshot version that introduced named
// versions. Every reader branch that depends on it names this constant,
// so renumbering it is a one-line change.
const snapVersionNamed = 10

// policyFormatOfSnapshot is the policy layout of snapshot version v.
func policyFormatOfSnapshot(v uint64) policyFormat {
	switch {
	case v >= 8:
		return policyV3
	case v >= 6:
		return policyV2
	}
	return policyV1
}

var snapshotMagic = []byte("TROUPE-SNAPSHOT\n")

// Snapshot is the whole replicated state at one log index: the FSM's meta
// state and every user shard (immutable views).
type Snapshot struct {
	Meta   Meta
	Shards []*UserShard
	Docs   []*Doc // sorted by id
}

// Meta is the replicated state the FSM keeps itself.
type Meta struct {
	Init        *InitParams // nil until the cluster is initialised
	Index       uint64      // the log index the state covers
	LastStamp   uint64      // highest stamp applied; new leaders start above it
	LastMs      int64       // command time of the last applied command
	Idempotency []IdempotencyEntry
	Members     []Member   // sorted by id
	Auth        *AuthState // nil until set up
	Policies    []Policy   // named rate-limit policies, sorted by name
	Webhooks    []Webhook  // sorted by id
}

// IdempotencyEntry is one remembered request id and its result.
type IdempotencyEntry struct {
	RequestID   string
	Fingerprint uint64
	AtMs        int64
	Result      Result
}

// The stream is a magic header, the version (a uvarint), then records,
// each carried in chunks (chunks.go; up to version 4, one frame each: a
// uvarint length and that many bytes). A record's first byte is its type:
//
//	meta      cluster parameters, index, last stamp and time, the
//	          idempotency window (continued in idem records), the shard count
//	idem      more idempotency entries
//	members   the member directory
//	auth      signing keys and session rules
//	policies  named rate-limit policies
//	docs      documents in id order, each with its text and kept history
//	webhooks  webhooks in id order, with their progress
//	users     a shard index, then that shard's user records
//	end       the number of users, as a check
//
// Records of many small values (users, idempotency entries, documents)
// are cut near recordTarget, so the reader's buffer stays small; a record
// holding one large value (a document with its history, a keyed result
// with many users) is as long as the value, in as many chunks as it takes.
const (
	frameMeta    = 1
	frameUsers   = 2
	frameEnd     = 3
	frameIdem    = 4 // continues the meta frame's idempotency entries
	frameMembers = 5
	frameAuth    = 6
	framePolicy  = 7
	frameDocs    = 8
	frameHooks   = 9 // webhooks, from snapshot version 10

	recordTarget = 64 << 10
	// maxFrame bounds a frame of versions 1 to 4, which wrote none longer.
	maxFrame = 16 << 20
)

// WriteSnapshot streams s to w in the current format.
func WriteSnapshot(w io.Writer, s *Snapshot) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := bw.Write(snapshotMagic); err != nil {
		return err
	}
	var hdr [binary.MaxVarintLen64]byte
	if _, err := bw.Write(hdr[:binary.PutUvarint(hdr[:], SnapshotVersion)]); err != nil {
		return err
	}
	rw := &recordWriter{w: bw}
	e := &rw.e

	e.byte1(frameMeta)
	m := &s.Meta
	e.boolean(m.Init != nil)
	if m.Init != nil {
		e.initParams(m.Init)
	}
	e.uvarint(m.Index)
	e.uvarint(m.LastStamp)
	e.varint(m.LastMs)
	e.uvarint(uint64(len(m.Idempotency)))
	for i := range m.Idempotency {
		if rw.size() >= recordTarget {
			if err := rw.end(); err != nil {
				return err
			}
			e.byte1(frameIdem)
		}
		ie := &m.Idempotency[i]
		e.str(ie.RequestID)
		e.fixed64(ie.Fingerprint)
		e.varint(ie.AtMs)
		e.resultSpilling(&ie.Result, rw.spill)
		rw.spill()
	}
	e.uvarint(uint64(len(s.Shards)))
	if err := rw.end(); err != nil {
		return err
	}
	if len(m.Members) > 0 {
		e.byte1(frameMembers)
		e.uvarint(uint64(len(m.Members)))
		for i := range m.Members {
			e.member(&m.Members[i])
		}
		if err := rw.end(); err != nil {
			return err
		}
	}

	if a := m.Auth; a != nil {
		e.byte1(frameAuth)
		e.varint(a.Params.SessionTTLms)
		e.varint(a.Params.GraceMs)
		e.uvarint(uint64(a.Params.MaxSessions))
		e.bytes(a.RefreshKey)
		e.uvarint(uint64(len(a.Keys)))
		for i := range a.Keys {
			k := &a.Keys[i]
			e.str(k.KID)
			e.bytes(k.Secret)
			e.varint(k.CreatedMs)
			e.varint(k.RetiredMs)
		}
		if err := rw.end(); err != nil {
			return err
		}
	}

	if len(m.Policies) > 0 {
		e.byte1(framePolicy)
		e.uvarint(uint64(len(m.Policies)))
		for i := range m.Policies {
			e.policy(&m.Policies[i])
		}
		if err := rw.end(); err != nil {
			return err
		}
	}

	if len(m.Webhooks) > 0 {
		e.byte1(frameHooks)
		e.uvarint(uint64(len(m.Webhooks)))
		for i := range m.Webhooks {
			e.webhook(&m.Webhooks[i])
		}
		if err := rw.end(); err != nil {
			return err
		}
	}

	if len(s.Docs) > 0 {
		// A record of documents ends before the one that would take it
		// past the target, so a large document has a record of its own.
		e.byte1(frameDocs)
		for _, d := range s.Docs {
			if rw.size() > 1 && rw.size()+d.Text.Size() >= recordTarget {
				if err := rw.end(); err != nil {
					return err
				}
				e.byte1(frameDocs)
			}
			e.docSpilling(d, rw.spill)
			e.docHistory(d, rw.spill)
			e.docAccess(d)
			e.docNamed(d, rw.spill)
			if rw.err != nil {
				return rw.err
			}
		}
		if err := rw.end(); err != nil {
			return err
		}
	}

	var total uint64
	for si, sh := range s.Shards {
		start := func() {
			e.byte1(frameUsers)
			e.uvarint(uint64(si))
		}
		start()
		var err error
		sh.ascendRecords(func(rec []byte) bool {
			e.b = append(e.b, rec...) // a record is stored as e.user encodes it
			total++
			if rw.size() >= recordTarget {
				if err = rw.end(); err != nil {
					return false
				}
				start()
			}
			return true
		})
		if err != nil {
			return err
		}
		if err := rw.end(); err != nil {
			return err
		}
	}
	e.byte1(frameEnd)
	e.uvarint(total)
	if err := rw.end(); err != nil {
		return err
	}
	return bw.Flush()
}

// ReadSnapshot parses a snapshot stream and rebuilds the shards, email
// indexes included. It fails, never panics, on a damaged or hostile
// stream, and reports a newer format as such.
func ReadSnapshot(r io.Reader) (*Snapshot, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != string(snapshotMagic) {
		return nil, fmt.Errorf("%w: not a troupe snapshot", ErrCorrupt)
	}
	v, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot header: %v", ErrCorrupt, err)
	}
	if v < 1 || v > SnapshotVersion {
		return nil, fmt.Errorf("%w: snapshot version %d is not supported by this build (it reads versions 1 to %d)", ErrUnsupportedVersion, v, SnapshotVersion)
	}
	rr := &recordReader{r: br, chunked: v >= 5}
	next := func() (*decoder, byte, error) {
		b, err := rr.next()
		if err != nil {
			return nil, 0, err
		}
		d := &decoder{b: b, v1: v == 1}
		return d, d.byte1(), nil
	}

	d, kind, err := next()
	if err != nil {
		return nil, err
	}
	if kind != frameMeta {
		return nil, fmt.Errorf("%w: expected meta frame", ErrCorrupt)
	}
	s := &Snapshot{}
	if d.boolean() {
		p := d.initParams()
		s.Meta.Init = p
		if d.err == nil {
			if err := p.Validate(); err != nil {
				d.fail("cluster parameters: %v", err)
			}
		}
	}
	s.Meta.Index = d.uvarint()
	s.Meta.LastStamp = d.uvarint()
	s.Meta.LastMs = d.varint()
	// Entries continue in idempotency frames; n is not trusted for
	// allocation, every entry must be read first.
	n := d.uvarint()
	for i := uint64(0); i < n && d.err == nil; i++ {
		if len(d.b) == 0 {
			if d, kind, err = next(); err != nil {
				return nil, err
			}
			if kind != frameIdem {
				return nil, fmt.Errorf("%w: expected idempotency frame", ErrCorrupt)
			}
		}
		var ie IdempotencyEntry
		ie.RequestID = d.str()
		ie.Fingerprint = d.fixed64()
		ie.AtMs = d.varint()
		d.result(&ie.Result, 0)
		s.Meta.Idempotency = append(s.Meta.Idempotency, ie)
	}
	nShards := d.uvarint()
	if err := d.end(); err != nil {
		return nil, err
	}
	want := uint64(0)
	if s.Meta.Init != nil {
		want = uint64(s.Meta.Init.UserShards)
	}
	if nShards != want {
		return nil, fmt.Errorf("%w: %d shards, cluster parameters say %d", ErrCorrupt, nShards, want)
	}
	s.Shards = make([]*UserShard, nShards)
	for i := range s.Shards {
		s.Shards[i] = NewUserShard()
	}

	var total uint64
	for {
		d, kind, err := next()
		if err != nil {
			return nil, err
		}
		switch kind {
		case frameMembers:
			if s.Meta.Members != nil {
				return nil, fmt.Errorf("%w: members listed twice", ErrCorrupt)
			}
			n := d.count(3)
			s.Meta.Members = make([]Member, 0, n)
			for i := 0; i < n && d.err == nil; i++ {
				var m Member
				d.member(&m)
				if d.err == nil && len(s.Meta.Members) > 0 && s.Meta.Members[len(s.Meta.Members)-1].ID >= m.ID {
					d.fail("members out of order")
				}
				s.Meta.Members = append(s.Meta.Members, m)
			}
			if err := d.end(); err != nil {
				return nil, err
			}
		case frameAuth:
			if s.Meta.Auth != nil {
				return nil, fmt.Errorf("%w: auth state given twice", ErrCorrupt)
			}
			a, err := d.authState()
			if err != nil {
				return nil, err
			}
			s.Meta.Auth = a
		case framePolicy:
			if s.Meta.Policies != nil {
				return nil, fmt.Errorf("%w: policies given twice", ErrCorrupt)
			}
			n := d.count(4)
			s.Meta.Policies = make([]Policy, 0, n)
			for i := 0; i < n && d.err == nil; i++ {
				p := d.policy(policyFormatOfSnapshot(v))
				if d.err != nil {
					break
				}
				if e := p.Validate(); e != nil || (i > 0 && s.Meta.Policies[i-1].Name >= p.Name) {
					d.fail("bad or unsorted policy %q", p.Name)
					break
				}
				s.Meta.Policies = append(s.Meta.Policies, *p)
			}
			if err := d.end(); err != nil {
				return nil, err
			}
		case frameHooks:
			if v < snapVersionWebhooks {
				return nil, fmt.Errorf("%w: a webhooks frame in a snapshot of version %d, older than webhooks", ErrCorrupt, v)
			}
			if s.Meta.Webhooks != nil {
				return nil, fmt.Errorf("%w: webhooks given twice", ErrCorrupt)
			}
			n := d.count(12)
			if n > MaxWebhooks {
				return nil, fmt.Errorf("%w: %d webhooks, more than %d", ErrCorrupt, n, MaxWebhooks)
			}
			s.Meta.Webhooks = make([]Webhook, 0, n)
			for i := 0; i < n && d.err == nil; i++ {
				w := d.webhook()
				if d.err == nil && i > 0 && s.Meta.Webhooks[i-1].ID >= w.ID {
					d.fail("webhooks out of order at %q", w.ID)
				}
				s.Meta.Webhooks = append(s.Meta.Webhooks, *w)
			}
			if err := d.end(); err != nil {
				return nil, err
			}
		case frameDocs:
			for d.err == nil && len(d.b) > 0 {
				doc := d.doc()
				if v >= 7 {
					d.docHistory(doc)
				}
				if v >= 9 {
					d.docAccess(doc)
				}
				if v >= snapVersionNamed {
					d.docNamed(doc)
				}
				if d.err != nil {
					break
				}
				if n := len(s.Docs); n > 0 && s.Docs[n-1].ID >= doc.ID {
					return nil, fmt.Errorf("%w: documents out of order at %q", ErrCorrupt, doc.ID)
				}
				s.Docs = append(s.Docs, doc)
			}
			if d.err != nil {
				return nil, d.err
			}
		case frameUsers:
			si := d.uvarint()
			if d.err == nil && si >= nShards {
				return nil, fmt.Errorf("%w: shard %d out of range", ErrCorrupt, si)
			}
			// The shard copies each record, so its strings may alias the
			// frame, which the next frame overwrites.
			d.alias = true
			var u User
			for d.err == nil && len(d.b) > 0 {
				if d.userInto(&u); d.err != nil {
					break
				}
				if err := s.restoreUser(int(si), &u); err != nil {
					return nil, err
				}
				total++
			}
			if d.err != nil {
				return nil, d.err
			}
		case frameEnd:
			count := d.uvarint()
			if err := d.end(); err != nil {
				return nil, err
			}
			if count != total {
				return nil, fmt.Errorf("%w: %d users, trailer says %d", ErrCorrupt, total, count)
			}
			if err := RebuildEmailIndexes(s.Shards); err != nil {
				return nil, err
			}
			return s, nil
		default:
			return nil, fmt.Errorf("%w: unknown frame type %d", ErrCorrupt, kind)
		}
	}
}

func (s *Snapshot) restoreUser(home int, u *User) error {
	_, shard, ok := ParseUserID(u.ID)
	switch {
	case !ok || int(shard) != home:
		return fmt.Errorf("%w: user id %q does not belong to shard %d", ErrCorrupt, u.ID, home)
	case !u.Role.Valid(), u.Version == 0:
		return fmt.Errorf("%w: user %s has a bad role or version", ErrCorrupt, u.ID)
	}
	if s.Shards[home].has(u.ID) {
		return fmt.Errorf("%w: user %s appears twice", ErrCorrupt, u.ID)
	}
	s.Shards[home].Put(u)
	return nil
}

// authState reads an auth frame's body and checks it.
func (d *decoder) authState() (*AuthState, error) {
	a := &AuthState{}
	a.Params.SessionTTLms = d.varint()
	a.Params.GraceMs = d.varint()
	if n := d.uvarint(); n > 1<<20 {
		d.fail("max sessions %d", n)
	} else {
		a.Params.MaxSessions = int(n)
	}
	a.RefreshKey = d.bytes()
	n := d.count(4)
	for i := 0; i < n && d.err == nil; i++ {
		a.Keys = append(a.Keys, SigningKey{KID: d.str(), Secret: d.bytes(), CreatedMs: d.varint(), RetiredMs: d.varint()})
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if len(a.Keys) == 0 {
		return nil, fmt.Errorf("%w: auth state without keys", ErrCorrupt)
	}
	setup := AuthSetup{Params: a.Params, RefreshKey: a.RefreshKey, Key: a.Keys[0]}
	if err := setup.Validate(); err != nil {
		return nil, fmt.Errorf("%w: auth state: %v", ErrCorrupt, err)
	}
	for i := range a.Keys {
		if err := a.Keys[i].validate(); err != nil {
			return nil, fmt.Errorf("%w: auth state: %v", ErrCorrupt, err)
		}
	}
	return a, nil
}
