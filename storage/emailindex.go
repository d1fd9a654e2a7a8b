package storage

import (
	"hash/maphash"
	"maps"
	"strings"
	"sync/atomic"
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
//
// The integer map is split by the first hash's top bits into emailSegs
// maps, each copied on its first write after a clone: clone hands out an
// immutable copy in O(emailSegs) (a shard's actor publishes its email
// index with every view it gives readers, UserShard.View), and a write
// after it copies 1/emailSegs of the index. A persistent B-tree instead
// cost 2× per lookup and per insert, and 2.6× the collector's marking
// (measured in docs/DESIGN.md, user shard ownership).
type emailIndex struct {
	segs [emailSegs]map[uint64]emailEntry // by the key's first hash's top bits
	// gens[i] is the generation segs[i] was made in: it is this index's
	// own if that is gen, else shared with a clone, and copied before a
	// write.
	gens  [emailSegs]uint64
	gen   uint64
	other map[string]string // what segs cannot hold; almost always empty
	// otherShared: other is shared with a clone, so it is copied before
	// it is written.
	otherShared bool
	hash        func(key string) (uint64, uint64)
}

// emailSegs is the number of segments: at 64 shards and a million users a
// segment holds ≈ 240 entries.
const (
	emailSegBits = 6
	emailSegs    = 1 << emailSegBits
)

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
	x := &emailIndex{hash: emailHashes}
	for i := range x.segs {
		x.segs[i] = make(map[uint64]emailEntry, size/emailSegs)
	}
	return x
}

// clone returns an index holding what x holds that x's later changes do
// not affect, and vice versa: both move to a new generation, so each
// copies a segment before its first write to it.
func (x *emailIndex) clone() *emailIndex {
	if x == nil {
		return nil
	}
	c := &emailIndex{segs: x.segs, gens: x.gens, gen: emailGens.Add(1), other: x.other, hash: x.hash}
	x.gen = emailGens.Add(1)
	if x.other != nil {
		x.otherShared, c.otherShared = true, true
	}
	return c
}

// emailGens hands out generations, unique in the process, so that no two
// indexes ever take a segment for their own.
var emailGens atomic.Uint64

func segOf(h uint64) int { return int(h >> (64 - emailSegBits)) }

// own returns segment i to write: x's own copy.
func (x *emailIndex) own(i int) map[uint64]emailEntry {
	if x.gens[i] != x.gen {
		x.segs[i], x.gens[i] = maps.Clone(x.segs[i]), x.gen
	}
	return x.segs[i]
}

// ownOther makes other x's alone before a write.
func (x *emailIndex) ownOther() {
	if x.otherShared {
		x.other = maps.Clone(x.other)
		x.otherShared = false
	}
}

func (x *emailIndex) len() int {
	n := len(x.other)
	for _, m := range x.segs {
		n += len(m)
	}
	return n
}

func (x *emailIndex) get(key string) (string, bool) {
	if len(x.other) > 0 {
		if id, ok := x.other[key]; ok {
			return id, true
		}
	}
	h, check := x.hash(key)
	if e, ok := x.segs[segOf(h)][h]; ok && e.matches(check) {
		return MakeUserID(e.stamp, e.shard()), true
	}
	return "", false
}

func (x *emailIndex) has(key string) bool {
	if _, ok := x.other[key]; ok {
		return true
	}
	h, check := x.hash(key)
	e, ok := x.segs[segOf(h)][h]
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
	e, occupied := x.segs[segOf(h)][h]
	if occupied && e.matches(check) {
		return emailSlot{}, true
	}
	return emailSlot{h: h, check: check, occupied: occupied}, false
}

// fill maps key, found free by probe with no change since, to id.
func (x *emailIndex) fill(sl emailSlot, key, id string) {
	if stamp, shard, ok := ParseUserID(id); ok && !sl.occupied {
		x.own(segOf(sl.h))[sl.h] = makeEmailEntry(sl.check, stamp, shard)
		return
	}
	x.put(key, id) // the rare cases: a first-hash collision, an odd id
}

func (x *emailIndex) put(key, id string) {
	if _, ok := x.other[key]; ok {
		x.ownOther()
		x.other[key] = strings.Clone(id)
		return
	}
	h, check := x.hash(key)
	stamp, shard, ok := ParseUserID(id)
	i := segOf(h)
	e, taken := x.segs[i][h]
	if ok && (!taken || e.matches(check)) {
		x.own(i)[h] = makeEmailEntry(check, stamp, shard)
		return
	}
	if taken && e.matches(check) {
		delete(x.own(i), h) // the key moves to other with its new id
	}
	x.ownOther()
	if x.other == nil {
		x.other = map[string]string{}
	}
	// Copies: the strings may alias a shard's arena (RebuildEmailIndexes),
	// whose chunks they would keep alive.
	x.other[strings.Clone(key)] = strings.Clone(id)
}

func (x *emailIndex) remove(key string) {
	if _, ok := x.other[key]; ok {
		x.ownOther()
		delete(x.other, key)
		return
	}
	h, check := x.hash(key)
	i := segOf(h)
	if e, ok := x.segs[i][h]; ok && e.matches(check) {
		delete(x.own(i), h)
	}
}
