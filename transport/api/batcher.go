package api

import (
	"sync"

	"github.com/valyala/fasthttp"
)

// peerPost makes req a POST of body to another node's internal route at
// addr, carrying this node's membership proof (the forwarding proof and,
// when set, the cluster secret; over HTTPS also its certificate).
func (s *Server) peerPost(req *fasthttp.Request, addr, path, contentType string, body []byte) {
	scheme := "http://"
	if s.fwd.tls != nil {
		scheme = "https://"
	}
	req.SetRequestURI(scheme + addr + path)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType(contentType)
	if proof := s.forwardProof(); proof != "" {
		req.Header.Set(forwardedHeader, proof)
	}
	if s.cfg.ClusterSecret != "" {
		req.Header.Set("X-Troupe-Cluster-Secret", s.cfg.ClusterSecret)
	}
	req.SetBodyRaw(body)
}

// peerBatcher sends items to other nodes in batches: a queue and a sender
// goroutine per address. The sender takes one of inFlight slots, waits
// for an item, adds every item queued behind it (up to maxItems and
// maxBytes) and sends them as one request; while every slot is busy,
// items accumulate into the next batch. So a busy node makes few large
// requests and an idle one sends each item at once.
type peerBatcher[T any] struct {
	maxItems, maxBytes, inFlight int
	size                         func(T) int
	send                         func(addr string, batch []T) // answers every item

	mu     sync.Mutex
	queues map[string]*peerQueue[T]
	quit   chan struct{}
	closed bool
}

type peerQueue[T any] struct {
	addr  string
	ch    chan T
	slots chan struct{}
}

// queue returns the channel to send items for addr on, starting its
// sender on first use; false once the batcher is closed.
func (b *peerBatcher[T]) queue(addr string) (chan<- T, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, false
	}
	if b.queues == nil {
		b.queues = map[string]*peerQueue[T]{}
		b.quit = make(chan struct{})
	}
	q := b.queues[addr]
	if q == nil {
		q = &peerQueue[T]{addr: addr, ch: make(chan T, 4096), slots: make(chan struct{}, b.inFlight)}
		b.queues[addr] = q
		go b.run(q)
	}
	return q.ch, true
}

// close stops the senders; items still queued are not sent (their
// waiters time out).
func (b *peerBatcher[T]) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed && b.quit != nil {
		close(b.quit)
	}
	b.closed = true
}

func (b *peerBatcher[T]) run(q *peerQueue[T]) {
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
		size := b.size(first)
	fill:
		for len(batch) < b.maxItems && size < b.maxBytes {
			select {
			case it := <-q.ch:
				batch = append(batch, it)
				size += b.size(it)
			default:
				break fill
			}
		}
		go func() {
			defer func() { <-q.slots }()
			b.send(q.addr, batch)
		}()
	}
}
