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

// ParseUserID returns the stamp and home shard of a well-formed id. It
// runs for every request naming a user, so it decodes by table: 16
// characters of 5 bits are exactly the id's 80 bits, so every string of
// 16 characters of the alphabet is canonical, and no other string is an
// id (FuzzParseUserID checks it against the base32 decoder).
func ParseUserID(id string) (stamp uint64, shard uint16, ok bool) {
	if len(id) != UserIDLen {
		return 0, 0, false
	}
	var hi, lo uint64 // 80 bits: hi holds the top 16
	for i := 0; i < UserIDLen; i++ {
		v := idDigits[id[i]]
		if v == 0xff {
			return 0, 0, false
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v)
	}
	return hi<<48 | lo>>16, uint16(lo), true
}

// idDigits maps a byte to its value in the id alphabet, or 0xff.
var idDigits = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdefghijklmnopqrstuv" {
		t[c] = byte(i)
	}
	return t
}()

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
