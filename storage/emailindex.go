package storage

import (
	"hash/maphash"
	"strings"
)

// emailIndex maps email keys to user ids in memory the garbage collector
// need not walk. A map[string]string of a million entries cost every
// collection ≈ 90 ms of marking on two cores (its key and value are both
// pointers), a third of the time a collection took with a million
// users, and requests queue while it runs.
//
// Each key is stored as two independent hashes of it (maphash, with
// seeds random per process; 64 bits of the first, 48 of the second) and
// each id as its stamp and shard, all plain integers. Two keys are taken
// as equal when both hashes are: the chance that two different addresses
// agree on 112 random bits is negligible, and the seeds are secret, so
// they cannot be chosen to.
// Two keys that share only the first hash, and ids that are not
// canonical user ids (some tests use others), go to a small ordinary map.
type emailIndex struct {
	m     map[uint64]emailEntry // by the key's first hash
	other map[string]string     // what m cannot hold; almost always empty
	hash  func(key string) (uint64, uint64)
}

// emailEntry is 16 bytes, so that a map slot is 24: the id's stamp, and
// its shard beside 48 bits of the key's second hash.
type emailEntry struct {
	stamp      uint64 // the id's stamp and shard (MakeUserID)
	checkShard uint64 // the second hash's top 48 bits, then the shard
}

func makeEmailEntry(check, stamp uint64, shard uint16) emailEntry {
	return emailEntry{stamp: stamp, checkShard: check&^0xffff | uint64(shard)}
}

func (e emailEntry) shard() uint16 { return uint16(e.checkShard) }

// matches reports whether the entry is for the key with second hash check.
func (e emailEntry) matches(check uint64) bool { return e.checkShard>>16 == check>>16 }

var emailSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func emailHashes(key string) (uint64, uint64) {
	return maphash.String(emailSeeds[0], key), maphash.String(emailSeeds[1], key)
}

func newEmailIndex(size int) *emailIndex {
	return &emailIndex{m: make(map[uint64]emailEntry, size), hash: emailHashes}
}

func (x *emailIndex) get(key string) (string, bool) {
	if len(x.other) > 0 {
		if id, ok := x.other[key]; ok {
			return id, true
		}
	}
	h, check := x.hash(key)
	if e, ok := x.m[h]; ok && e.matches(check) {
		return MakeUserID(e.stamp, e.shard()), true
	}
	return "", false
}

func (x *emailIndex) has(key string) bool {
	if _, ok := x.other[key]; ok {
		return true
	}
	h, check := x.hash(key)
	e, ok := x.m[h]
	return ok && e.matches(check)
}

// An emailSlot is where a key not yet indexed goes, as probe found it:
// the check and the insert of a new user's address hash it once.
type emailSlot struct {
	h, check uint64
	occupied bool // by another key with the same first hash
}

// probe reports whether key is indexed, and if not where it goes.
func (x *emailIndex) probe(key string) (emailSlot, bool) {
	if _, taken := x.other[key]; taken {
		return emailSlot{}, true
	}
	h, check := x.hash(key)
	e, occupied := x.m[h]
	if occupied && e.matches(check) {
		return emailSlot{}, true
	}
	return emailSlot{h: h, check: check, occupied: occupied}, false
}

// fill maps key, found free by probe with no change since, to id.
func (x *emailIndex) fill(sl emailSlot, key, id string) {
	if stamp, shard, ok := ParseUserID(id); ok && !sl.occupied {
		x.m[sl.h] = makeEmailEntry(sl.check, stamp, shard)
		return
	}
	x.put(key, id) // the rare cases: a first-hash collision, an odd id
}

func (x *emailIndex) put(key, id string) {
	if _, ok := x.other[key]; ok {
		x.other[key] = strings.Clone(id)
		return
	}
	h, check := x.hash(key)
	stamp, shard, ok := ParseUserID(id)
	e, taken := x.m[h]
	if ok && (!taken || e.matches(check)) {
		x.m[h] = makeEmailEntry(check, stamp, shard)
		return
	}
	if taken && e.matches(check) {
		delete(x.m, h) // the key moves to other with its new id
	}
	if x.other == nil {
		x.other = map[string]string{}
	}
	// Copies: the strings may alias a shard's arena (RebuildEmailIndexes),
	// whose chunks they would keep alive.
	x.other[strings.Clone(key)] = strings.Clone(id)
}

func (x *emailIndex) remove(key string) {
	if _, ok := x.other[key]; ok {
		delete(x.other, key)
		return
	}
	h, check := x.hash(key)
	if e, ok := x.m[h]; ok && e.matches(check) {
		delete(x.m, h)
	}
}
