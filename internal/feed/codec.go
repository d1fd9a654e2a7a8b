package feed

import (
	"encoding/binary"
	"unsafe"

	"github.com/troupe-db/troupe/storage"
)

// The history keeps changes encoded, back to back in byte arenas that
// hold no pointers (ring.go): the collector never scans them, and
// recording a change is one append of about a hundred bytes. A change is
// turned back into a Change when a reader first asks for it.
//
// An encoded change:
//
//	index    8 bytes, little-endian
//	n        4 bytes, little-endian
//	kind     1 byte
//	op       1 byte
//	record   1 byte: recNone, recUser, recDoc or recSide
//	version  uvarint
//	at       varint (ms)
//	id, lost reader: strings (uvarint length, bytes)
//	recUser: name, email, role (1 byte), version (uvarint), created, updated (varint)
//	recDoc:  title, owner, editors and viewers (uvarint count, strings),
//	         version (uvarint), created, updated (varint)
//
// A user's and a document's id are the change's. Policies and members
// (recSide), rare and administrative, are kept as the records they are,
// beside the arena (segment.side).

const (
	recNone byte = iota
	recUser
	recDoc
	recSide
)

// headerSize is the fixed part: index, n, kind, op, record.
const headerSize = 15

// encodeChange appends v, at position p, to b. side is v's policy or
// member, if any: the caller keeps it beside the bytes.
func encodeChange(b []byte, p Position, v *spec) (_ []byte, side any) {
	b = binary.LittleEndian.AppendUint64(b, p.Index)
	b = binary.LittleEndian.AppendUint32(b, p.N)
	rec := recNone
	switch {
	case v.User != nil:
		rec = recUser
	case v.Doc != nil:
		rec = recDoc
	case v.Policy != nil:
		rec, side = recSide, v.Policy
	case v.Member != nil:
		rec, side = recSide, v.Member
	}
	b = append(b, byte(v.Kind), byte(v.Op), rec)
	b = binary.AppendUvarint(b, v.Version)
	b = binary.AppendVarint(b, v.AtMs)
	b = appendStr(b, v.ID)
	b = appendStr(b, v.LostReader)
	switch rec {
	case recUser:
		u := v.User
		b = appendStr(b, u.Name)
		b = appendStr(b, u.Email)
		b = append(b, byte(u.Role))
		b = binary.AppendUvarint(b, u.Version)
		b = binary.AppendVarint(b, u.CreatedMs)
		b = binary.AppendVarint(b, u.UpdatedMs)
	case recDoc:
		d := v.Doc
		b = appendStr(b, d.Title)
		b = appendStr(b, d.Owner)
		b = appendStrs(b, d.Editors)
		b = appendStrs(b, d.Viewers)
		b = binary.AppendUvarint(b, d.Version)
		b = binary.AppendVarint(b, d.CreatedMs)
		b = binary.AppendVarint(b, d.UpdatedMs)
	}
	return b, side
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrs(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendStr(b, s)
	}
	return b
}

// positionOf reads an encoded change's position.
func positionOf(b []byte) Position {
	return Position{Index: binary.LittleEndian.Uint64(b), N: binary.LittleEndian.Uint32(b[8:])}
}

// slabs hands out the decoded changes and users, 64 to an allocation
// (a slab lives while any of its records is held).
type slabs struct {
	changes []Change
	users   []storage.User
}

const slabSize = 64

func (s *slabs) change() *Change {
	if len(s.changes) == 0 {
		s.changes = make([]Change, slabSize)
	}
	c := &s.changes[0]
	s.changes = s.changes[1:]
	return c
}

func (s *slabs) user() *storage.User {
	if len(s.users) == 0 {
		s.users = make([]storage.User, slabSize)
	}
	u := &s.users[0]
	s.users = s.users[1:]
	return u
}

// decodeChange turns an encoded change back into a Change taken from
// slabs. Its strings alias b, which must never change (an arena's
// written bytes do not). side is the change's policy or member, if it
// has one.
func decodeChange(b []byte, side any, slabs *slabs) *Change {
	d := decoder{b: b[headerSize:]}
	c := slabs.change()
	c.Position, c.Kind, c.Op = positionOf(b), Kind(b[12]), Op(b[13])
	rec := b[14]
	c.Version = d.uvarint()
	c.AtMs = d.varint()
	c.ID = d.str()
	c.LostReader = d.str()
	switch rec {
	case recUser:
		u := slabs.user()
		u.ID, u.Name, u.Email = c.ID, d.str(), d.str()
		u.Role = storage.Role(d.byte())
		u.Version, u.CreatedMs, u.UpdatedMs = d.uvarint(), d.varint(), d.varint()
		c.User = u
	case recDoc:
		doc := &storage.Doc{ID: c.ID, Title: d.str(), Owner: d.str()}
		doc.Editors, doc.Viewers = d.strs(), d.strs()
		doc.Version, doc.CreatedMs, doc.UpdatedMs = d.uvarint(), d.varint(), d.varint()
		c.Doc = doc
	case recSide:
		switch r := side.(type) {
		case *storage.Policy:
			c.Policy = r
		case *storage.Member:
			c.Member = r
		}
	}
	return c
}

// decoder reads what encodeChange wrote (the feed's own bytes: never
// malformed, so it does not check).
type decoder struct{ b []byte }

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) str() string {
	n := int(d.uvarint())
	if n == 0 {
		return ""
	}
	s := unsafe.String(&d.b[0], n)
	d.b = d.b[n:]
	return s
}

func (d *decoder) strs() []string {
	n := int(d.uvarint())
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}
