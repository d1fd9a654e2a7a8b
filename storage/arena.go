package storage

import (
	"encoding/binary"
	"fmt"
)

// An arena holds a shard's user records as bytes, in chunks the garbage
// collector does not walk (they hold no pointers). A million users as
// Go objects — a struct and four strings each, behind a B-tree of
// pointers — cost every collection ≈ 60 ms of marking on two cores, and
// requests queue while it runs; as arena bytes they cost nothing to mark.
//
// An arena is append-only: the bytes of a record never change once
// written, so a filter may read strings that alias them
// (UserShard.fields) and a view may share the chunks written so far. A
// changed record is written anew and the old bytes become garbage, which
// UserShard.compactIfWasteful reclaims by copying the live records to a
// fresh arena.
//
// Each entry is a uvarint length followed by the record's encoding
// (encoder.user), the same bytes a snapshot carries.
type arena struct {
	// chunks are allocated at their full length, and a chunk's header is
	// never changed once appended: a view may share the list's backing
	// array (see view) while the owner appends to it.
	chunks [][]byte
	fill   int // bytes written in the last chunk
	used   int // bytes of all entries written
	live   int // bytes of the entries still referenced
	// sealed: the last chunk's spare room is not ours to write, because
	// another arena (a view) shares it; the next entry starts a chunk.
	sealed bool
}

// Chunks start small, so an almost empty shard costs little, and double
// up to maxChunk. An entry larger than a chunk gets one of its own. The
// last chunk of each shard is half empty on average, so maxChunk is
// small: 64 shards with 1 MiB chunks left ≈ 32 MB unused.
const (
	minChunk = 4 << 10
	maxChunk = 64 << 10

	// A location is the chunk's index and the entry's offset in it.
	// Entries start below maxChunk (a larger one starts a chunk), so 24
	// bits of offset are plenty.
	locOffsetBits = 24
	locChunkBits  = 24
	locBits       = locChunkBits + locOffsetBits
)

// add copies an entry for rec (the record without its length) and
// returns its location.
func (a *arena) add(rec []byte) uint64 {
	n := uvarintLen(uint64(len(rec))) + len(rec)
	last := len(a.chunks) - 1
	if a.sealed || last < 0 || len(a.chunks[last])-a.fill < n {
		size := minChunk
		if last >= 0 {
			size = min(2*len(a.chunks[last]), maxChunk)
		}
		if last+1 >= 1<<locChunkBits {
			panic(fmt.Sprintf("storage: user arena has %d chunks", last+1))
		}
		a.chunks = append(a.chunks, make([]byte, max(size, n)))
		a.fill, a.sealed = 0, false
		last++
	}
	c := a.chunks[last]
	off := a.fill
	k := binary.PutUvarint(c[off:], uint64(len(rec)))
	copy(c[off+k:], rec)
	a.fill = off + n
	a.used += n
	a.live += n
	return uint64(last)<<locOffsetBits | uint64(off)
}

// record returns the record at loc, aliasing the arena.
func (a *arena) record(loc uint64) []byte {
	c := a.chunks[loc>>locOffsetBits]
	off := int(loc & (1<<locOffsetBits - 1))
	n, k := binary.Uvarint(c[off:])
	return c[off+k : off+k+int(n) : off+k+int(n)]
}

// free marks the entry at loc as garbage.
func (a *arena) free(loc uint64) {
	rec := a.record(loc)
	a.live -= uvarintLen(uint64(len(rec))) + len(rec)
}

// view returns an arena sharing the bytes written so far, in O(1): the
// view's list of chunks is the owner's, cut to its current length and
// capacity, so the owner's later appends to the list write past what the
// view can see (or into a new array), and no chunk header either reads
// ever changes. The view is sealed, so that neither writes into bytes
// the other can see: the owner writes only past its fill, which no
// entry of the view reaches.
func (a *arena) view() arena {
	v := *a
	v.chunks = a.chunks[:len(a.chunks):len(a.chunks)]
	v.sealed = true
	return v
}

// garbage reports whether enough of the arena is garbage to be worth
// compacting: more than is live, and at least a few chunks' worth.
func (a *arena) garbage() bool {
	dead := a.used - a.live
	return dead > a.live && dead >= 16*minChunk
}

// sizedFor returns an empty arena whose first chunk fits n bytes of
// entries (up to maxChunk).
func sizedFor(n int) arena {
	return arena{chunks: [][]byte{make([]byte, min(max(n, minChunk), maxChunk))}}
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
