package storage

import (
	"encoding/base32"
	"encoding/binary"
)

// A stamp is a hybrid logical clock value decided by the leader when it
// proposes a command: Unix milliseconds in the high 48 bits and a counter
// in the low 16. Stamps are unique and increasing per leader, and the FSM
// never lets command time go backwards, so ids and timestamps derived from
// them are deterministic and unique.
const stampCounterBits = 16

// StampAt returns the first stamp of millisecond ms.
func StampAt(ms int64) uint64 { return uint64(ms) << stampCounterBits }

// StampMillis returns the Unix milliseconds of a stamp.
func StampMillis(stamp uint64) int64 { return int64(stamp >> stampCounterBits) }

// User ids are 16 characters: base32hex (sortable) of 10 bytes, the stamp
// (8 bytes, big-endian) followed by the user's home shard (2 bytes). Ids
// therefore sort by creation, and the shard holding the record is known
// from the id alone.
var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// UserIDLen is the length of every user id.
const UserIDLen = 16

// MakeUserID builds the id of a user created with stamp in shard.
func MakeUserID(stamp uint64, shard uint16) string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], stamp)
	binary.BigEndian.PutUint16(b[8:], shard)
	return idEncoding.EncodeToString(b[:])
}

// ParseUserID returns the stamp and home shard of a well-formed id.
func ParseUserID(id string) (stamp uint64, shard uint16, ok bool) {
	if len(id) != UserIDLen {
		return 0, 0, false
	}
	var b [10]byte
	n, err := idEncoding.Decode(b[:], []byte(id))
	if err != nil || n != 10 {
		return 0, 0, false
	}
	// Reject non-canonical spellings (non-zero padding bits), so that one
	// user has exactly one id string. Encoding into a stack buffer keeps
	// this allocation-free.
	var canon [UserIDLen]byte
	idEncoding.Encode(canon[:], b[:])
	if string(canon[:]) != id {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint16(b[8:]), true
}

// ShardOf maps a key (an email key) to one of n shards; n is a power of two.
func ShardOf(key string, n int) uint16 {
	// FNV-1a, inlined so that routing a request allocates nothing.
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return uint16(h & uint64(n-1))
}

// MakeDocID derives a document's id from the stamp of its create command
// (the same form as a user id, without a shard).
func MakeDocID(stamp uint64) string { return MakeUserID(stamp, 0) }
