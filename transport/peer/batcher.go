// Package peer batches what a node sends its peers besides Raft
// (forwarded commands, rate-limit decisions, presence): per address, a
// queue and a sender that packs whatever is queued into one request.
package peer

import "sync"

// Batcher sends items to other nodes in batches: a queue and a sender
// goroutine per address. The sender takes one of inFlight slots, waits
// for an item, adds every item queued behind it (up to maxItems and
// maxBytes) and sends them as one request; while every slot is busy,
// items accumulate into the next batch. So a busy node makes few large
// requests and an idle one sends each item at once.
type Batcher[T any] struct {
	MaxItems, MaxBytes, InFlight int
	Size                         func(T) int
	Send                         func(addr string, batch []T) // answers every item

	mu     sync.Mutex
	queues map[string]*queue[T]
	quit   chan struct{}
	closed bool
}

type queue[T any] struct {
	addr  string
	ch    chan T
	slots chan struct{}
}

// Queue returns the channel to send items for addr on, starting its
// sender on first use; false once the batcher is closed.
func (b *Batcher[T]) Queue(addr string) (chan<- T, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, false
	}
	if b.queues == nil {
		b.queues = map[string]*queue[T]{}
		b.quit = make(chan struct{})
	}
	q := b.queues[addr]
	if q == nil {
		q = &queue[T]{addr: addr, ch: make(chan T, 4096), slots: make(chan struct{}, b.InFlight)}
		b.queues[addr] = q
		go b.run(q)
	}
	return q.ch, true
}

// Close stops the senders; items still queued are not sent (their
// waiters time out).
func (b *Batcher[T]) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed && b.quit != nil {
		close(b.quit)
	}
	b.closed = true
}

func (b *Batcher[T]) run(q *queue[T]) {
	for {
		select {
		case q.slots <- struct{}{}:
		case <-b.quit:
			return
		}
		var first T
		select {
		case first = <-q.ch:
		case <-b.quit:
			return
		}
		batch := []T{first}
		size := b.Size(first)
	fill:
		for len(batch) < b.MaxItems && size < b.MaxBytes {
			select {
			case it := <-q.ch:
				batch = append(batch, it)
				size += b.Size(it)
			default:
				break fill
			}
		}
		go func() {
			defer func() { <-q.slots }()
			b.Send(q.addr, batch)
		}()
	}
}
