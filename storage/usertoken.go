package storage

import (
	"bytes"
	"encoding/binary"
)

// TokenState is what an access token is checked against in its user's
// record: the user's current role and token epoch, and whether the
// token's session (refresh family) is still open.
type TokenState struct {
	Role    Role
	Epoch   uint64
	Session bool // the session asked about is open
}

// Holds reports whether an access token of epoch and the session asked
// about is good for the user: the same epoch, and its session open.
func (t TokenState) Holds(epoch uint64) bool { return t.Epoch == epoch && t.Session }

// TokenState returns the token state of the record with id, asking about
// the session sid. It reads the record where it lies, skipping what the
// check does not need (name, email, password hash, the sessions' hashes):
// unlike Get it copies nothing and allocates nothing, so a token checked
// with every request costs no garbage. It agrees with Get: for the record
// Get returns, Role is u.Role, Epoch u.TokenEpoch() and Session
// u.HasSession(sid).
func (s *UserShard) TokenState(id, sid string) (TokenState, bool) {
	k, ok := refOf(id)
	if !ok {
		return TokenState{}, false
	}
	r, ok := s.byID.get(k)
	if !ok {
		return TokenState{}, false
	}
	d := decoder{b: s.arena.record(r.loc()), alias: true}
	t := d.tokenState(sid)
	mustDecode(&d)
	return t, true
}

// GetProfile is Get without the authentication state (Auth is nil): for
// answers that show a user, which never include it. It decodes the
// record's fields alone, never its sessions.
func (s *UserShard) GetProfile(id string) (*User, bool) {
	k, ok := refOf(id)
	if !ok {
		return nil, false
	}
	r, ok := s.byID.get(k)
	if !ok {
		return nil, false
	}
	// From a copy, as decode: the strings must not alias the arena.
	d := decoder{b: bytes.Clone(s.arena.record(r.loc())), alias: true}
	u := &User{}
	d.userFields(u)
	if d.err != nil {
		mustDecode(&d)
	}
	return u, true
}

// tokenState decodes a record as userInto does, keeping only its token
// state; its strings are compared in place, never kept.
func (d *decoder) tokenState(sid string) TokenState {
	d.raw() // id
	d.raw() // name
	d.raw() // email
	d.raw() // password hash
	t := TokenState{Role: Role(d.byte1())}
	d.skipVarint() // version
	d.skipVarint() // created
	d.skipVarint() // updated
	switch d.byte1() {
	case 0:
		return t
	case 1:
	default:
		d.fail("bad auth flag")
		return t
	}
	t.Epoch = d.uvarint()
	n := d.count(1 + 64 + 2)
	for range n {
		if string(d.raw()) == sid {
			t.Session = true
		}
		d.skip(64)     // hash, previous hash
		d.skipVarint() // rotated
		d.skipVarint() // expires
	}
	return t
}

// skipVarint passes over a varint (signed or not) without decoding it:
// its last byte is the first below 0x80.
func (d *decoder) skipVarint() {
	if d.err != nil {
		return
	}
	for i, c := range d.b {
		if i == binary.MaxVarintLen64 {
			break
		}
		if c < 0x80 {
			d.b = d.b[i+1:]
			return
		}
	}
	d.fail("bad varint")
}

// skip passes over n bytes.
func (d *decoder) skip(n int) {
	if d.err != nil {
		return
	}
	if len(d.b) < n {
		d.fail("%d bytes beyond end", n)
		return
	}
	d.b = d.b[n:]
}
