package feed

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// Ownership. The FSM goroutine calls Record, Applied and Reset, in log
// order; they only append to batch (FSM goroutine only) and, once a
// batch, hand it to the worker under inMu. The worker goroutine alone
// runs the builder (build.go) and pushes into the ring under mu, which
// also guards processed, the subscriptions and progress. Readers
// (Subscription, Since) take mu. Lock order: inMu and mu are never held
// together.

// Defaults of the ring's bounds (--watch-history, --watch-history-bytes).
const (
	DefaultMaxChanges = 100_000
	DefaultMaxBytes   = 64 << 20
)

// Config bounds the ring.
type Config struct {
	MaxChanges int   // the newest changes kept; default DefaultMaxChanges
	MaxBytes   int64 // and no more than this many bytes of them; default DefaultMaxBytes
}

// Limits of the bounds, checked by Validate (and the flags).
const (
	MinMaxChanges = 1
	MaxMaxChanges = 10_000_000
	MinMaxBytes   = 1 << 20
	MaxMaxBytes   = 64 << 30
)

// Validate checks the bounds (0 means the default).
func (c Config) Validate() error { return c.check(true) }

// ValidateFlags is Validate for bounds given as flags, which have their
// defaults written out: 0 is out of range there too.
func (c Config) ValidateFlags() error { return c.check(false) }

func (c Config) check(zeroOK bool) error {
	if (!zeroOK || c.MaxChanges != 0) && (c.MaxChanges < MinMaxChanges || c.MaxChanges > MaxMaxChanges) {
		return fmt.Errorf("watch history (--watch-history) %d must be from %d to %d changes", c.MaxChanges, MinMaxChanges, MaxMaxChanges)
	}
	if (!zeroOK || c.MaxBytes != 0) && (c.MaxBytes < MinMaxBytes || c.MaxBytes > MaxMaxBytes) {
		return fmt.Errorf("watch history bytes (--watch-history-bytes) %d must be from %d (1 MiB) to %d (64 GiB)", c.MaxBytes, int64(MinMaxBytes), int64(MaxMaxBytes))
	}
	return nil
}

// Feed is a node's change feed.
type Feed struct {
	// --- FSM goroutine only ---
	batch []item

	inMu sync.Mutex
	in   []item // handed to the worker, not yet taken
	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	mu        sync.Mutex
	ring      ring
	processed uint64 // every change of the entries up to it is in the ring
	subs      map[*Subscription]struct{}
	progress  chan struct{} // closed and replaced when processed advances

	b builder // worker only
	// eager counts the subscriptions and waiters: while there are any,
	// every batch wakes the worker.
	eager atomic.Int32
	// owedUntil is, while documents owe a text change, the command time
	// (ms) from which the first of them is due (any command applied at
	// or after it announces it); 0 when none is owed. Set by the worker.
	owedUntil atomic.Int64

	changes *metrics.Counter
}

// item is what the FSM hands over: one applied command, the end of a
// batch (mark), or a restore (reset).
type item struct {
	index uint64
	atMs  int64
	cmd   *storage.Command
	p     *actors.Pending
	meta  *Meta
	reset *resetItem
	mark  bool
}

type resetItem struct {
	docs   []*storage.Doc
	lastMs int64
}

// Meta is what the FSM adds to a command it applies itself (policies,
// members): whether the record existed before and the record after.
type Meta struct {
	Existed bool
	Policy  *storage.Policy
	Member  *storage.Member
}

// New starts a feed that keeps what cfg allows and counts in set (nil:
// no metrics). Close stops it.
func New(cfg Config, set *metrics.Set) *Feed {
	if cfg.MaxChanges <= 0 {
		cfg.MaxChanges = DefaultMaxChanges
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	f := &Feed{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		subs: map[*Subscription]struct{}{}, progress: make(chan struct{}),
		ring: ring{maxChanges: cfg.MaxChanges, maxBytes: cfg.MaxBytes, floor: After(0)}}
	f.b.init()
	if set != nil {
		set.NewGauge(`troupe_watch_history_changes`, func() float64 { f.mu.Lock(); defer f.mu.Unlock(); return float64(f.ring.len()) })
		set.NewGauge(`troupe_watch_history_bytes`, func() float64 { f.mu.Lock(); defer f.mu.Unlock(); return float64(f.ring.bytes) })
		set.NewGauge(`troupe_watch_subscribers`, func() float64 { f.mu.Lock(); defer f.mu.Unlock(); return float64(len(f.subs)) })
		f.changes = set.NewCounter(`troupe_watch_changes_total`)
	}
	go f.worker()
	return f
}

// SetBounds changes the ring's bounds (0: keep the bound); the next
// change applies them.
func (f *Feed) SetBounds(cfg Config) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cfg.MaxChanges > 0 {
		f.ring.maxChanges = cfg.MaxChanges
	}
	if cfg.MaxBytes > 0 {
		f.ring.maxBytes = cfg.MaxBytes
	}
}

// Close stops the worker; subscriptions see no more changes.
func (f *Feed) Close() {
	select {
	case <-f.stop:
		return
	default:
	}
	close(f.stop)
	<-f.done
}

// Record notes an applied command (FSM goroutine): p is its result to
// come, atMs its command time, meta what the FSM adds for the commands
// it applies itself (nil for the others). It costs an append.
func (f *Feed) Record(index uint64, cmd *storage.Command, p *actors.Pending, atMs int64, meta *Meta) {
	f.batch = append(f.batch, item{index: index, atMs: atMs, cmd: cmd, p: p, meta: meta})
}

// Applied ends a batch of the FSM: the entries up to index are applied.
func (f *Feed) Applied(index uint64) {
	f.batch = append(f.batch, item{index: index, mark: true})
	f.hand()
}

// Reset says the state was replaced by a snapshot of index (FSM
// goroutine): the changes before are unknown here. docs are the restored
// documents and lastMs the snapshot's last command time (the text
// changes they may still owe, see build.go).
func (f *Feed) Reset(index uint64, docs []*storage.Doc, lastMs int64) {
	f.batch = append(f.batch, item{index: index, reset: &resetItem{docs: docs, lastMs: lastMs}})
	f.hand()
}

// hand gives the batch to the worker: the two swap buffers when the
// worker has taken the last one (no copy). The worker is woken at once
// only while someone reads the feed live (a subscription, a waiter);
// otherwise it takes what came every lazyEvery, so a node nobody watches
// pays no goroutine switch per batch.
func (f *Feed) hand() {
	f.inMu.Lock()
	if len(f.in) == 0 {
		f.in, f.batch = f.batch, f.in[:0]
	} else {
		f.in = append(f.in, f.batch...)
		clear(f.batch)
		f.batch = f.batch[:0]
	}
	f.inMu.Unlock()
	if f.eager.Load() > 0 {
		f.poke()
	}
}

func (f *Feed) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// lazyEvery is how often the worker takes the commands applied while
// nobody reads the feed live.
const lazyEvery = 10 * time.Millisecond

func (f *Feed) worker() {
	defer close(f.done)
	var items []item
	tick := time.NewTicker(lazyEvery)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-f.wake:
		case <-tick.C:
		}
		f.inMu.Lock()
		items, f.in = f.in, items[:0]
		f.inMu.Unlock()
		for i := range items {
			it := &items[i]
			switch {
			case it.mark:
				f.publish(it.index)
			case it.reset != nil:
				f.publish(0)
				f.b.reset(it.reset.docs, it.reset.lastMs)
				f.mu.Lock()
				f.ring.reset(After(it.index))
				f.processed = it.index
				f.advanced()
				f.mu.Unlock()
			default:
				select {
				case <-it.p.Done(): // resolved already, as most are
				default:
					select {
					case <-it.p.Done():
					case <-f.stop:
						return
					}
				}
				f.b.changes(it)
			}
		}
		clear(items)
		if len(f.b.owing) > 0 {
			f.owedUntil.Store((f.b.minBucket + 1) * TextBucketMs)
		} else {
			f.owedUntil.Store(0)
		}
		f.publish(0)
	}
}

// publish pushes the changes built into the ring and, with index > 0,
// marks every entry up to index processed; then wakes the subscriptions.
func (f *Feed) publish(index uint64) {
	pend := &f.b.pend
	n := pend.len()
	if n == 0 && index == 0 {
		return
	}
	f.mu.Lock()
	k := 0
	for i := range n {
		f.ring.push(pend.enc(i, &k))
	}
	if index > f.processed {
		f.processed = index
		f.advanced()
	}
	if n > 0 {
		for s := range f.subs {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
	f.mu.Unlock()
	if f.changes != nil {
		f.changes.Add(n)
	}
	pend.clear()
}

// advanced wakes those waiting for progress; under mu.
func (f *Feed) advanced() {
	close(f.progress)
	f.progress = make(chan struct{})
}

// OwedUntil is, while some documents' text changes are held back, the
// command time (Unix ms) at and after which any command applied
// announces the first of them; 0 when none is held back. The leader
// proposes a no-op then if nothing else comes, so that the last version
// of an edit burst is announced within about a bucket.
func (f *Feed) OwedUntil() int64 { return f.owedUntil.Load() }

// Processed is the index up to which every change is in the feed.
func (f *Feed) Processed() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.processed
}

// ErrNotYet: the feed has not reached the index asked for in time.
var ErrNotYet = errors.New("this node has not applied that index yet")

// WaitProcessed waits until every change up to index is in the feed, or
// answers ErrNotYet at deadline.
func (f *Feed) WaitProcessed(index uint64, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	f.eager.Add(1)
	defer f.eager.Add(-1)
	f.poke()
	for {
		f.mu.Lock()
		done, ch := f.processed >= index, f.progress
		f.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return ErrNotYet
		case <-f.stop:
			return ErrNotYet
		}
	}
}

// Oldest is the oldest index a watcher may start after.
func (f *Feed) Oldest() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ring.floor.Index
}

// Since appends to dst the changes after p, in log order, at most max of
// them (those the feed holds now: fewer than max says it has no more
// yet), or answers *GoneError when some are no longer kept. It is how a
// reader that keeps its own position — a webhook deliverer, a watcher —
// reads "every change after X": call it again after the last change
// returned.
func (f *Feed) Since(p Position, dst []*Change, max int) ([]*Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ring.after(p, dst, max)
}

// Subscription is a reader of the feed that is woken when changes come.
// It keeps its position; Next reads on from it.
type Subscription struct {
	f    *Feed
	pos  Position
	wake chan struct{}
}

// Subscribe starts a subscription after p, or answers *GoneError when
// some changes after p are no longer kept.
func (f *Feed) Subscribe(p Position) (*Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.Less(f.ring.floor) {
		return nil, &GoneError{Oldest: f.ring.floor.Index}
	}
	s := &Subscription{f: f, pos: p, wake: make(chan struct{}, 1)}
	f.subs[s] = struct{}{}
	f.eager.Add(1)
	if f.ring.last().Index > 0 && p.Less(f.ring.last()) {
		s.wake <- struct{}{}
	}
	return s, nil
}

// Wake receives when changes may have come since the last Next.
func (s *Subscription) Wake() <-chan struct{} { return s.wake }

// Next appends the changes after the subscription's position (at most
// max) and moves past them; none means none yet (wait on Wake). A
// *GoneError means the subscription fell behind what the ring keeps, or
// the state was replaced by a snapshot: the changes it missed are lost
// to it, and it must start again from a listing.
func (s *Subscription) Next(dst []*Change, max int) ([]*Change, error) {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(dst)
	dst, err := f.ring.after(s.pos, dst, max)
	if err != nil {
		return dst, err
	}
	if len(dst) > n {
		s.pos = dst[len(dst)-1].Position
		if len(dst)-n == max {
			select {
			case s.wake <- struct{}{}: // more may wait
			default:
			}
		}
	}
	return dst, nil
}

// Position is where the subscription has read to.
func (s *Subscription) Position() Position {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.pos
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.f.mu.Lock()
	if _, ok := s.f.subs[s]; ok {
		delete(s.f.subs, s)
		s.f.eager.Add(-1)
	}
	s.f.mu.Unlock()
}
