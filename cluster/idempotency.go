package cluster

import (
	"hash/maphash"
	"math"
	"sync/atomic"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// idempotencyWindow remembers, for a retention period of command time,
// the result of every command that carried a request id. It is part of the
// replicated state: it changes only in apply, by command time.
//
// It holds up to millions of keys for as long as a node runs, so it is
// built to cost the garbage collector nothing per key: no pointer and no
// heap object per entry.
//
//   - Entries, in apply order (so in time order), are fixed-size slots in
//     blocks of idemBlockLen; entry number seq (counted from 0 for the
//     window's life) is slot seq%idemBlockLen of block seq/idemBlockLen.
//     add appends at the tail; expire advances the head, and a block the
//     head has left is dropped whole. Neither copies nor scans the window.
//   - A key's bytes, and its result once known, encoded
//     (storage.AppendResult), go into the byte buffer of the block that is
//     the tail when they are written. A result holding a document is kept
//     as a value instead (in the block's held array): encoding would copy
//     the text.
//   - The index maps a key's hash (maphash, seeded per window, so that no
//     client can choose colliding keys) to its entry number (idemindex.go:
//     no pointers, no tombstones). A key whose hash a live key already
//     holds goes into clash, by its string.
//   - Results not yet known are the commands' *actors.Pending, in a queue
//     running from the settle cursor to the tail. The cursor follows the
//     tail and, two entries per add, moves each known result into its slot
//     and drops the Pending.
//
// Views: everything an entry is written once, before the tail passes it,
// and never again, but for settling, which writes only slots that a view
// taken earlier reads from its own copy of the queue. A block's buffer is
// only appended to while it is the tail. So a view — the head, a count,
// the list of blocks, the tail block's buffer and the unsettled Pendings,
// taken under the FSM's applyMu — stays valid while apply goes on appending
// and expiring, and a snapshot materialises the entries from it off the
// apply path.
//
// Ownership: the FSM goroutine alone calls add, expire, get, answer and
// view; a view may be read from any goroutine; kept may be read from any.
type idempotencyWindow struct {
	// blocks[i] is block number firstBlock+i; the last is the tail's.
	// Dropping blocks from the front reslices and never clears an element
	// (a view may hold the same array), so the array is freed when append
	// next reallocates it.
	blocks     []*idemBlock
	firstBlock uint64
	index      idemIndex         // key hash → entry number
	clash      map[string]uint64 // keys whose hash another key held when added
	seed       maphash.Seed
	// pending.at(i) is entry settleSeq+i's Pending (nil if its result was
	// given when added).
	pending pendingQueue
	// Entry numbers: the oldest kept, the oldest not settled, the next.
	headSeq, settleSeq, tailSeq uint64
	// kept mirrors tailSeq-headSeq for the metrics goroutine.
	kept atomic.Int64
}

// idemBlockLen is the number of entries in a block: large enough that the
// per-block cost (and a view's copy of the block list) is negligible,
// small enough that a block pinned by its expired entries is little memory.
const idemBlockLen = 256

type idemBlock struct {
	// The pointers first: the collector scans a block only up to them.
	data []byte // keys and encoded results, appended while the tail
	// held, allocated on first use, holds the results kept as values.
	held  *[idemBlockLen]storage.Result
	slots [idemBlockLen]idemSlot
}

// An idemSlot is one entry; its key is data[keyOff:keyOff+keyLen] of its
// own block, its result data[resOff:resOff+resLen] of the block resAfter
// blocks later (the tail when it settled).
type idemSlot struct {
	hash        uint64
	fingerprint uint64
	atMs        int64
	keyOff      uint32
	keyLen      uint32
	resOff      uint32
	resLen      uint32
	resAfter    uint32 // the result's block is resAfter blocks after this one
	state       idemState
}

type idemState uint8

const (
	idemPending idemState = iota // the result is in the pending queue
	idemEncoded                  // the result is encoded in a block's data
	idemHeld                     // the result is in its block's held array
)

// idemHash hashes a key for the index (a variable so that a test can make
// keys clash).
var idemHash = maphash.String

func newIdempotencyWindow() *idempotencyWindow {
	return &idempotencyWindow{seed: maphash.MakeSeed()}
}

// size is the number of entries kept.
func (w *idempotencyWindow) size() int { return int(w.tailSeq - w.headSeq) }

// block returns the block holding entry number seq (which must be kept)
// and the entry's slot.
func (w *idempotencyWindow) slot(seq uint64) (*idemBlock, *idemSlot) {
	b := w.blocks[seq/idemBlockLen-w.firstBlock]
	return b, &b.slots[seq%idemBlockLen]
}

// get returns the entry number of id, if kept.
func (w *idempotencyWindow) get(id string) (uint64, bool) {
	if seq, ok := w.clash[id]; ok {
		return seq, true
	}
	h := idemHash(w.seed, id)
	seq32, ok := w.index.get(h, w.holds(h))
	if !ok {
		return 0, false
	}
	seq := w.seqOf(seq32)
	if b, s := w.slot(seq); string(b.data[s.keyOff:s.keyOff+s.keyLen]) != id {
		return 0, false // another key with the same hash
	}
	return seq, true
}

// seqOf rebuilds a kept entry's number from its low 32 bits (the window
// keeps fewer than 2^32 entries: at ~100 bytes each, far more than any
// node's memory).
func (w *idempotencyWindow) seqOf(seq32 uint32) uint64 {
	return w.headSeq + uint64(seq32-uint32(w.headSeq))
}

// holds tells the index whether a kept entry it points at has hash h.
func (w *idempotencyWindow) holds(h uint64) idemHolds {
	return func(seq32 uint32) bool {
		_, s := w.slot(w.seqOf(seq32))
		return s.hash == h
	}
}

// prefetch reads, ahead of a batch, the index slots its keyed commands
// (ids) will look up and those that expiring the next len(ids) oldest
// keys will clear. With a million keys each is a cache miss; read
// back to back they overlap, where one command after another would wait
// for each in turn.
func (w *idempotencyWindow) prefetch(ids []string) {
	var sum uint64
	for _, id := range ids {
		sum += w.index.peek(idemHash(w.seed, id))
	}
	for seq := w.headSeq; seq < w.tailSeq && seq < w.headSeq+uint64(len(ids)); seq++ {
		_, s := w.slot(seq)
		sum += w.index.peek(s.hash)
	}
	idemPrefetched.Store(sum)
}

// idemPrefetched keeps prefetch's reads from being optimised away.
var idemPrefetched atomic.Uint64

// fingerprint returns the fingerprint recorded with entry seq.
func (w *idempotencyWindow) fingerprint(seq uint64) uint64 {
	_, s := w.slot(seq)
	return s.fingerprint
}

// add records id's result p (settled at once if p is nil: then r is the
// result). The id must not be in the window.
func (w *idempotencyWindow) add(id string, fp uint64, atMs int64, p *actors.Pending, r storage.Result) {
	if w.tailSeq%idemBlockLen == 0 {
		// The new block's buffer starts as large as the last one ended:
		// in a steady run it is never regrown, nor left half empty.
		size := 16 << 10
		if len(w.blocks) == 0 {
			w.firstBlock = w.tailSeq / idemBlockLen
		} else {
			size = len(w.blocks[len(w.blocks)-1].data) + 512
		}
		w.blocks = append(w.blocks, &idemBlock{data: make([]byte, 0, size)})
	}
	seq := w.tailSeq
	b, s := w.slot(seq)
	h := idemHash(w.seed, id)
	*s = idemSlot{hash: h, fingerprint: fp, atMs: atMs, keyOff: uint32(len(b.data)), keyLen: uint32(len(id))}
	b.data = append(b.data, id...)
	if !w.index.put(h, seq, w.holds(h)) {
		if w.clash == nil {
			w.clash = map[string]uint64{}
		}
		w.clash[id] = seq
	}
	w.tailSeq++
	w.pending.push(p)
	if p == nil {
		w.store(seq, r)
	}
	w.kept.Store(int64(w.size()))
	w.settleSome(2)
}

// store writes entry seq's result into its slot: encoded into the tail
// block's buffer, or as a value if it holds a document or would not fit.
func (w *idempotencyWindow) store(seq uint64, r storage.Result) {
	b, s := w.slot(seq)
	tail := w.blocks[len(w.blocks)-1]
	if r.Doc == nil {
		off := len(tail.data)
		data := storage.AppendResult(tail.data, &r)
		if len(data) <= math.MaxUint32 {
			tail.data = data
			s.resAfter = uint32(w.firstBlock + uint64(len(w.blocks)-1) - seq/idemBlockLen)
			s.resOff, s.resLen = uint32(off), uint32(len(data)-off)
			s.state = idemEncoded
			return
		}
	}
	if b.held == nil {
		b.held = new([idemBlockLen]storage.Result)
	}
	b.held[seq%idemBlockLen] = r
	s.state = idemHeld
}

// settleSome settles up to n entries at the settle cursor whose results
// are known, stopping at the first still running (its successors wait: at
// two per add the cursor catches up once results come in).
func (w *idempotencyWindow) settleSome(n int) {
	for ; n > 0 && w.settleSeq < w.tailSeq; n-- {
		if p := w.pending.at(0); p != nil {
			select {
			case <-p.Done():
			default:
				return
			}
			w.store(w.settleSeq, p.Result())
		}
		w.pending.drop(1)
		w.settleSeq++
	}
}

// expire forgets entries recorded before cutoffMs: O(1) per entry.
func (w *idempotencyWindow) expire(cutoffMs int64) {
	for w.headSeq < w.tailSeq {
		_, s := w.slot(w.headSeq)
		if s.atMs >= cutoffMs {
			break
		}
		if !w.index.remove(s.hash, w.headSeq) {
			w.unclash(w.headSeq)
		}
		w.headSeq++
		if w.headSeq%idemBlockLen == 0 {
			w.blocks = w.blocks[1:]
			w.firstBlock++
		}
	}
	if w.settleSeq < w.headSeq {
		w.pending.drop(int(w.headSeq - w.settleSeq))
		w.settleSeq = w.headSeq
	}
	if w.headSeq == w.tailSeq && w.tailSeq%idemBlockLen == 0 {
		// Nothing kept and the last block full: it goes too.
		w.blocks = w.blocks[:0:0]
	}
	w.kept.Store(int64(w.size()))
}

// unclash removes expiring entry seq from clash, where it must be.
func (w *idempotencyWindow) unclash(seq uint64) {
	b, s := w.slot(seq)
	delete(w.clash, string(b.data[s.keyOff:s.keyOff+s.keyLen]))
}

// answer is what a repeat of entry seq's request gets: the first one's
// result.
func (w *idempotencyWindow) answer(seq uint64) *actors.Pending {
	if seq >= w.settleSeq {
		if p := w.pending.at(int(seq - w.settleSeq)); p != nil {
			return p
		}
	}
	b, s := w.slot(seq)
	var data []byte
	if s.state == idemEncoded {
		data = w.blocks[seq/idemBlockLen+uint64(s.resAfter)-w.firstBlock].data
	}
	return actors.Resolved(storedResult(b, seq, data))
}

// storedResult returns settled entry seq's result from its block b, data
// being the buffer of the block its result was encoded into.
func storedResult(b *idemBlock, seq uint64, data []byte) storage.Result {
	s := &b.slots[seq%idemBlockLen]
	if s.state == idemHeld {
		return b.held[seq%idemBlockLen]
	}
	r, err := storage.DecodeResult(data[s.resOff : s.resOff+s.resLen])
	if err != nil {
		// What AppendResult wrote always decodes.
		panic("idempotency window: a stored result does not decode: " + err.Error())
	}
	return r
}

// view returns the window as it is now, for a snapshot, under the FSM's
// applyMu: O(blocks + unsettled entries), never O(keys).
func (w *idempotencyWindow) view() idemView {
	v := idemView{head: w.headSeq, n: w.size(), settle: w.settleSeq, firstBlock: w.firstBlock}
	if v.n == 0 {
		return v
	}
	v.blocks = w.blocks[:len(w.blocks):len(w.blocks)]
	v.tailData = w.blocks[len(w.blocks)-1].data
	v.pending = w.pending.copy()
	return v
}

// idemView is the window at one applied index: n entries from head. Apply
// only appends after them, settles entries from settle on (which the view
// reads from its own pending), or moves its head past them, so it stays
// valid, and readable from any goroutine, as long as it is held.
type idemView struct {
	head, settle uint64
	n            int
	blocks       []*idemBlock
	firstBlock   uint64
	tailData     []byte // the tail block's buffer when the view was taken
	pending      []*actors.Pending
}

func (v *idemView) data(block uint64) []byte {
	if block-v.firstBlock == uint64(len(v.blocks)-1) {
		return v.tailData
	}
	return v.blocks[block-v.firstBlock].data
}

// result returns entry seq's result, waiting for it if still running.
func (v *idemView) result(seq uint64) storage.Result {
	if seq >= v.settle {
		if p := v.pending[seq-v.settle]; p != nil {
			<-p.Done()
			return p.Result()
		}
	}
	b := v.blocks[seq/idemBlockLen-v.firstBlock]
	var data []byte
	if s := &b.slots[seq%idemBlockLen]; s.state == idemEncoded {
		data = v.data(seq/idemBlockLen + uint64(s.resAfter))
	}
	return storedResult(b, seq, data)
}

// entries materialises the view for a snapshot, waiting for any result
// not yet known (after a capture's barrier, every one is).
func (v idemView) entries() []storage.IdempotencyEntry {
	if v.n == 0 {
		return nil
	}
	out := make([]storage.IdempotencyEntry, v.n)
	for i := range out {
		seq := v.head + uint64(i)
		b := v.blocks[seq/idemBlockLen-v.firstBlock]
		s := &b.slots[seq%idemBlockLen]
		out[i] = storage.IdempotencyEntry{RequestID: string(v.data(seq / idemBlockLen)[s.keyOff : s.keyOff+s.keyLen]),
			Fingerprint: s.fingerprint, AtMs: s.atMs, Result: v.result(seq)}
	}
	return out
}

// pendingQueue is a ring of the unsettled entries' Pendings: pushed at the
// tail, dropped from the head, with no allocation once grown to the number
// of commands in flight.
type pendingQueue struct {
	buf     []*actors.Pending // len a power of two, or 0
	head, n int
}

func (q *pendingQueue) push(p *actors.Pending) {
	if q.n == len(q.buf) {
		grown := make([]*actors.Pending, max(16, 2*len(q.buf)))
		q.n = copy(grown, q.copy())
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = p
	q.n++
}

// at returns the i-th Pending from the head; i < n.
func (q *pendingQueue) at(i int) *actors.Pending { return q.buf[(q.head+i)&(len(q.buf)-1)] }

// drop removes k ≤ n Pendings from the head.
func (q *pendingQueue) drop(k int) {
	for range k {
		q.buf[q.head] = nil
		q.head = (q.head + 1) & (len(q.buf) - 1)
	}
	q.n -= k
}

// copy returns the queue's Pendings in order.
func (q *pendingQueue) copy() []*actors.Pending {
	out := make([]*actors.Pending, q.n)
	for i := range out {
		out[i] = q.at(i)
	}
	return out
}
