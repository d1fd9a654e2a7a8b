package storage

import "hash/maphash"

// emailIndex maps email keys to user ids in memory the garbage collector
// need not walk. A map[string]string of a million entries cost every
// collection ≈ 90 ms of marking on two cores (its key and value are both
// pointers), a third of the time a collection took with a million
// users, and requests queue while it runs.
//
// Each key is stored as two independent 64-bit hashes of it (maphash,
// with seeds random per process) and each id as its stamp and shard, all
// plain integers. Two keys are taken as equal when both hashes are: the
// chance that two different addresses agree on 128 random bits is
// negligible, and the seeds are secret, so they cannot be chosen to.
// Two keys that share only the first hash, and ids that are not
// canonical user ids (some tests use others), go to a small ordinary map.
type emailIndex struct {
	m     map[uint64]emailEntry // by the key's first hash
	other map[string]string     // what m cannot hold; almost always empty
	hash  func(key string) (uint64, uint64)
}

type emailEntry struct {
	check uint64 // the key's second hash
	stamp uint64 // the id's stamp and shard (MakeUserID)
	shard uint16
}

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
	if e, ok := x.m[h]; ok && e.check == check {
		return MakeUserID(e.stamp, e.shard), true
	}
	return "", false
}

func (x *emailIndex) has(key string) bool {
	if _, ok := x.other[key]; ok {
		return true
	}
	h, check := x.hash(key)
	e, ok := x.m[h]
	return ok && e.check == check
}

func (x *emailIndex) put(key, id string) {
	if _, ok := x.other[key]; ok {
		x.other[key] = id
		return
	}
	h, check := x.hash(key)
	stamp, shard, ok := ParseUserID(id)
	if e, taken := x.m[h]; !ok || taken && e.check != check {
		if x.other == nil {
			x.other = map[string]string{}
		}
		x.other[key] = id
		return
	}
	x.m[h] = emailEntry{check: check, stamp: stamp, shard: shard}
}

func (x *emailIndex) remove(key string) {
	if _, ok := x.other[key]; ok {
		delete(x.other, key)
		return
	}
	h, check := x.hash(key)
	if e, ok := x.m[h]; ok && e.check == check {
		delete(x.m, h)
	}
}
