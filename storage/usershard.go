package storage

import (
	"fmt"

	"github.com/google/btree"
)

// UserShard is the state of one user shard: the records whose id names
// this shard as home, and the email index entries of the addresses that
// hash to this shard. A new user's home shard is its email's shard, so a
// create (with its uniqueness check) touches one shard; after an email
// change the record stays home and only the index entry moves.
//
// UserShard is not safe for concurrent use: exactly one actor owns it. Its
// trees are copy-on-write: View returns an O(1) immutable view that
// another goroutine may read (one at a time: lookups reuse a search key)
// while the owner goes on changing the shard.
type UserShard struct {
	byID *btree.BTreeG[*User]
	// byEmail maps an email key to a user id. It is derivable from the
	// records of all shards (RebuildEmailIndexes), so snapshots do not
	// carry it and views do not hold it: no cloning. Pointer-free for
	// the garbage collector (emailIndex).
	byEmail *emailIndex
	// key is a reusable search key, so lookups allocate nothing. Each
	// UserShard value (the live one, each view) has its own.
	key User
}

const btreeDegree = 32

func lessUser(a, b *User) bool { return a.ID < b.ID }

// NewUserShard returns an empty shard.
func NewUserShard() *UserShard {
	return &UserShard{
		byID:    btree.NewG(btreeDegree, lessUser),
		byEmail: newEmailIndex(0),
	}
}

// View returns an immutable copy of the shard's records that shares
// structure with it; later changes to s do not show in the view, and vice
// versa. A view has no email index (see RebuildEmailIndexes).
func (s *UserShard) View() *UserShard {
	return &UserShard{byID: s.byID.Clone()}
}

// HasEmailIndex reports whether the shard holds its email index (a view
// does not).
func (s *UserShard) HasEmailIndex() bool { return s.byEmail != nil }

// Len is the number of records whose home is this shard.
func (s *UserShard) Len() int { return s.byID.Len() }

// Get returns the record with id.
func (s *UserShard) Get(id string) (*User, bool) {
	s.key.ID = id
	u, ok := s.byID.Get(&s.key)
	s.key.ID = ""
	return u, ok
}

// EmailOwner returns the id indexed under an email key.
func (s *UserShard) EmailOwner(key string) (string, bool) {
	return s.byEmail.get(key)
}

// Put inserts or replaces a record. The record must not be changed after.
func (s *UserShard) Put(u *User) { s.byID.ReplaceOrInsert(u) }

// Remove deletes a record.
func (s *UserShard) Remove(id string) {
	s.key.ID = id
	s.byID.Delete(&s.key)
	s.key.ID = ""
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
// one step.
func (s *UserShard) Create(id string, in *NewUser, nowMs int64) (*User, *Error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	key := EmailKey(in.Email)
	if s.byEmail.has(key) {
		return nil, &Error{Kind: KindConflict, Field: "email", Message: "a user with this email already exists"}
	}
	u := &User{
		ID: id, Name: in.Name, Email: in.Email, PasswordHash: in.PasswordHash,
		Role: in.Role, Version: 1, CreatedMs: nowMs, UpdatedMs: nowMs,
	}
	// One traversal: insert, and put back what was there if the id
	// existed. Ids are unique by construction (stamps); an existing one
	// means a clock or leadership anomaly, reported deterministically.
	if old, existed := s.byID.ReplaceOrInsert(u); existed {
		s.byID.ReplaceOrInsert(old)
		return nil, errorf(KindConflict, "user id %s already exists", id)
	}
	s.byEmail.put(key, id)
	return u, nil
}

// ListQuery selects records for a page of a list.
type ListQuery struct {
	After string // exclusive lower bound on id; "" = from the start
	Q     string // lower-case substring of name or email; "" = all
	Limit int
}

// List appends to dst up to q.Limit records in id order.
func (s *UserShard) List(dst []*User, q ListQuery) []*User {
	if q.Limit <= 0 {
		return dst
	}
	n := 0
	visit := func(u *User) bool {
		if u.ID == q.After {
			return true
		}
		if q.Q == "" || containsFold(u.Name, q.Q) || containsFold(u.Email, q.Q) {
			dst = append(dst, u)
			n++
		}
		return n < q.Limit
	}
	if q.After == "" {
		s.byID.Ascend(visit)
	} else {
		s.byID.AscendGreaterOrEqual(&User{ID: q.After}, visit)
	}
	return dst
}

// Count returns the number of records matching q (lower-case) or all.
func (s *UserShard) Count(q string) int {
	if q == "" {
		return s.byID.Len()
	}
	n := 0
	s.byID.Ascend(func(u *User) bool {
		if containsFold(u.Name, q) || containsFold(u.Email, q) {
			n++
		}
		return true
	})
	return n
}

// Ascend calls fn for every record in id order until it returns false.
func (s *UserShard) Ascend(fn func(*User) bool) { s.byID.Ascend(fn) }

// Admins appends the ids of this shard's admins.
func (s *UserShard) Admins(dst []string) []string {
	s.byID.Ascend(func(u *User) bool {
		if u.Role == RoleAdmin {
			dst = append(dst, u.ID)
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
		s.byID.Ascend(func(u *User) bool {
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
