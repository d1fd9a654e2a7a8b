package storage

import (
	"bytes"
	"fmt"
)

// UserShard is the state of one user shard: the records whose id names
// this shard as home, and the email index entries of the addresses that
// hash to this shard. A new user's home shard is its email's shard, so a
// create (with its uniqueness check) touches one shard; after an email
// change the record stays home and only the index entry moves.
//
// Records live as bytes in an arena and are found by a B-tree of plain
// integers, so the garbage collector walks neither (see arena). Get and
// the other readers hand out a fresh *User with its own copy of the
// record's bytes: callers may keep it, and changing it changes nothing
// in the shard.
//
// UserShard is not safe for concurrent use: exactly one actor owns it.
// Its tree is copy-on-write and its arena append-only: View returns in
// O(1) an immutable view that other goroutines may read while the owner
// goes on changing the shard, which is how the owning actor publishes
// its records to readers and to the snapshot barrier. A record a view
// holds is never changed: a change writes a new record (Put), and the
// first change to a tree node after a view copies the node.
type UserShard struct {
	byID  userIndex
	arena arena
	// byEmail maps an email key to a user id. It is derivable from the
	// records of all shards (RebuildEmailIndexes), so snapshots do not
	// carry it and views do not hold it: no cloning. Pointer-free for
	// the garbage collector (emailIndex).
	byEmail *emailIndex
	// scratch is the owner's encoding buffer for records.
	scratch encoder
}

// A userRef finds a record: its id (a shard's ids differ in their stamps
// only, but any home is allowed) and where its bytes are in the arena.
type userRef struct {
	stamp uint64
	x     uint64 // the id's home shard (high 16 bits) and the arena location
}

func makeRef(stamp uint64, shard uint16, loc uint64) userRef {
	return userRef{stamp: stamp, x: uint64(shard)<<locBits | loc}
}

func (r userRef) home() uint16 { return uint16(r.x >> locBits) }
func (r userRef) loc() uint64  { return r.x & (1<<locBits - 1) }

// lessRef orders records by id: ids encode stamp and shard big-endian in
// a sortable alphabet, so their order is that of (stamp, shard).
func lessRef(a, b userRef) bool {
	return a.stamp < b.stamp || a.stamp == b.stamp && a.home() < b.home()
}

// refOf is the search key of a canonical id; ok is false for any other
// string, which no record can have.
func refOf(id string) (userRef, bool) {
	stamp, shard, ok := ParseUserID(id)
	return makeRef(stamp, shard, 0), ok
}

const btreeDegree = 32

// NewUserShard returns an empty shard.
func NewUserShard() *UserShard {
	return &UserShard{
		byID:    newUserIndex(),
		byEmail: newEmailIndex(0),
	}
}

// View returns an immutable copy of the shard's records that shares
// structure with it, in O(1); later changes to s do not show in the view,
// and vice versa. The first change to each tree node after a view copies
// that node: the cost is paid by writes, per view taken. A view has no
// email index (see RebuildEmailIndexes).
func (s *UserShard) View() *UserShard {
	return &UserShard{byID: s.byID.clone(), arena: s.arena.view()}
}

// TakeOver makes s hold from's records and email index. The two share
// no bytes or tree nodes either may write, so from's records stay as
// they were whatever s does; from's email index becomes s's, and from
// must not use it again.
func (s *UserShard) TakeOver(from *UserShard) {
	*s = UserShard{byID: from.byID.clone(), arena: from.arena.view(), byEmail: from.byEmail}
}

// HasEmailIndex reports whether the shard holds its email index (a view
// does not).
func (s *UserShard) HasEmailIndex() bool { return s.byEmail != nil }

// Len is the number of records whose home is this shard.
func (s *UserShard) Len() int { return s.byID.len() }

// Get returns the record with id.
func (s *UserShard) Get(id string) (*User, bool) {
	k, ok := refOf(id)
	if !ok {
		return nil, false
	}
	r, ok := s.byID.get(k)
	if !ok {
		return nil, false
	}
	u := &User{}
	s.decode(r, u)
	return u, true
}

// has reports whether a record with id exists.
func (s *UserShard) has(id string) bool {
	k, ok := refOf(id)
	return ok && s.byID.has(k)
}

// decode fills u with the record r refers to. Its strings alias a copy
// of the record's bytes, not the arena: a *User may be kept for minutes
// (results stay in the idempotency window), and strings into the arena
// would keep a whole chunk alive past the compaction that freed it.
func (s *UserShard) decode(r userRef, u *User) {
	d := decoder{b: bytes.Clone(s.arena.record(r.loc())), alias: true}
	d.userInto(u)
	mustDecode(&d)
}

// fields is decode without the authentication state and without the
// copy, for filters that look at a record and drop it: it allocates
// nothing, and its strings must not outlive the call.
func (s *UserShard) fields(r userRef, u *User) {
	d := decoder{b: s.arena.record(r.loc()), alias: true}
	d.userFields(u)
	if d.err != nil {
		mustDecode(&d)
	}
}

// mustDecode panics if a record the shard wrote does not decode: the
// arena is damaged, which no input can cause.
func mustDecode(d *decoder) {
	if err := d.end(); err != nil {
		panic(fmt.Sprintf("storage: user record in the arena: %v", err))
	}
}

// EmailOwner returns the id indexed under an email key.
func (s *UserShard) EmailOwner(key string) (string, bool) {
	return s.byEmail.get(key)
}

// Put inserts or replaces a record; the shard keeps a copy. Its id must
// be canonical (MakeUserID), as the ids of all users are.
func (s *UserShard) Put(u *User) {
	k, ok := refOf(u.ID)
	if !ok {
		panic(fmt.Sprintf("storage: user id %q is not canonical", u.ID))
	}
	if old, existed := s.byID.replaceOrInsert(s.write(k, u)); existed {
		s.arena.free(old.loc())
		s.compactIfWasteful()
	}
}

// write copies u into the arena and returns its reference.
func (s *UserShard) write(k userRef, u *User) userRef {
	s.scratch.b = s.scratch.b[:0]
	s.scratch.user(u)
	return makeRef(k.stamp, k.home(), s.arena.add(s.scratch.b))
}

// Remove deletes a record.
func (s *UserShard) Remove(id string) {
	k, ok := refOf(id)
	if !ok {
		return
	}
	if old, existed := s.byID.delete(k); existed {
		s.arena.free(old.loc())
		s.compactIfWasteful()
	}
}

// compactIfWasteful copies the live records to a fresh arena once most of
// the arena is garbage, so that it stays within twice the live bytes.
// Each record is copied after at least as many bytes of changes as it
// holds, so the copying costs O(1) per byte changed. Views keep the old
// arena alive as long as they need it.
func (s *UserShard) compactIfWasteful() {
	if !s.arena.garbage() {
		return
	}
	fresh := sizedFor(s.arena.live)
	index := newUserIndex()
	s.byID.ascend(func(r userRef) bool {
		index.tree.ReplaceOrInsert(makeRef(r.stamp, r.home(), fresh.add(s.arena.record(r.loc()))))
		return true
	})
	s.byID, s.arena = index, fresh
}

// IndexEmail maps key to id. It fails with a conflict when another user
// holds the key.
func (s *UserShard) IndexEmail(key, id string) *Error {
	if owner, ok := s.EmailOwner(key); ok && owner != id {
		return &Error{Kind: KindConflict, Field: "email", Message: "a user with this email already exists"}
	}
	s.byEmail.put(key, id)
	return nil
}

// UnindexEmail removes key if it maps to id.
func (s *UserShard) UnindexEmail(key, id string) {
	if owner, ok := s.EmailOwner(key); ok && owner == id {
		s.byEmail.remove(key)
	}
}

// Create adds a new user whose home and email shard is s. It is a
// single-shard operation: the uniqueness check and the insert happen in
// one step. The record returned is the caller's; the shard keeps a copy.
func (s *UserShard) Create(id string, in *NewUser, nowMs int64) (*User, *Error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	k, ok := refOf(id)
	if !ok {
		return nil, errorf(KindInternal, "user id %q is not canonical", id)
	}
	key := EmailKey(in.Email)
	slot, taken := s.byEmail.probe(key)
	if taken {
		return nil, &Error{Kind: KindConflict, Field: "email", Message: "a user with this email already exists"}
	}
	u := &User{
		ID: id, Name: in.Name, Email: in.Email, PasswordHash: in.PasswordHash,
		Role: in.Role, Version: 1, CreatedMs: nowMs, UpdatedMs: nowMs,
	}
	// One traversal: insert, and put back what was there if the id
	// existed. Ids are unique by construction (stamps); an existing one
	// means a clock or leadership anomaly, reported deterministically.
	r := s.write(k, u)
	if old, existed := s.byID.replaceOrInsert(r); existed {
		s.byID.replaceOrInsert(old)
		s.arena.free(r.loc())
		return nil, errorf(KindConflict, "user id %s already exists", id)
	}
	s.byEmail.fill(slot, key, id)
	return u, nil
}

// ListQuery selects records for a page of a list.
type ListQuery struct {
	After string // exclusive lower bound, a user id; "" = from the start
	Q     string // lower-case substring of name or email; "" = all
	Limit int
}

// List appends to dst up to q.Limit records in id order.
func (s *UserShard) List(dst []*User, q ListQuery) []*User {
	if q.Limit <= 0 {
		return dst
	}
	n := 0
	var u User
	visit := func(r userRef) bool {
		if q.Q != "" {
			if s.fields(r, &u); !containsFold(u.Name, q.Q) && !containsFold(u.Email, q.Q) {
				return true
			}
		}
		match := &User{}
		s.decode(r, match)
		dst = append(dst, match)
		n++
		return n < q.Limit
	}
	if q.After == "" {
		s.byID.ascend(visit)
		return dst
	}
	after, ok := refOf(q.After)
	if !ok {
		return dst // no id follows a string that is not one
	}
	s.byID.ascendFrom(after, func(r userRef) bool {
		return !lessRef(after, r) || visit(r)
	})
	return dst
}

// Count returns the number of records matching q (lower-case) or all.
func (s *UserShard) Count(q string) int {
	if q == "" {
		return s.byID.len()
	}
	n := 0
	var u User
	s.byID.ascend(func(r userRef) bool {
		s.fields(r, &u)
		if containsFold(u.Name, q) || containsFold(u.Email, q) {
			n++
		}
		return true
	})
	return n
}

// Ascend calls fn for every record in id order until it returns false.
func (s *UserShard) Ascend(fn func(*User) bool) {
	s.byID.ascend(func(r userRef) bool {
		u := &User{}
		s.decode(r, u)
		return fn(u)
	})
}

// ascendRecords calls fn with the encoding of every record (encoder.user)
// in id order until it returns false. The bytes alias the arena.
func (s *UserShard) ascendRecords(fn func(rec []byte) bool) {
	s.byID.ascend(func(r userRef) bool { return fn(s.arena.record(r.loc())) })
}

// Admins appends the ids of this shard's admins.
func (s *UserShard) Admins(dst []string) []string {
	var u User
	s.byID.ascend(func(r userRef) bool {
		if s.fields(r, &u); u.Role == RoleAdmin {
			dst = append(dst, MakeUserID(r.stamp, r.home()))
		}
		return true
	})
	return dst
}

// RebuildEmailIndexes gives every shard a fresh email index built from the
// records of all of them: an address's entry lives in the shard it hashes
// to, whichever shard holds the record. It fails if two users share an
// address. It changes no records, so it may run on views.
func RebuildEmailIndexes(shards []*UserShard) error {
	for _, s := range shards {
		s.byEmail = newEmailIndex(s.Len())
	}
	for _, s := range shards {
		var err error
		var u User
		s.byID.ascend(func(r userRef) bool {
			s.fields(r, &u)
			key := EmailKey(u.Email)
			if e := shards[ShardOf(key, len(shards))].IndexEmail(key, u.ID); e != nil {
				err = fmt.Errorf("%w: email of user %s is not unique", ErrCorrupt, u.ID)
				return false
			}
			return true
		})
		if err != nil {
			return err
		}
	}
	return nil
}
