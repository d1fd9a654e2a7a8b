package actors

import (
	"sync"
	"sync/atomic"
)

// Hooks are the functions told of something (a user whose tokens lost
// rights, a document that lost a reader): added and removed rarely (a
// server starting or stopping), called often, from actors, without a
// lock. Each must not block.
type Hooks[T any] struct {
	// mu serialises Add and remove, which servers call as they start and
	// stop. It guards no actor's state: actors only load fns, lock-free.
	mu  sync.Mutex
	fns atomic.Pointer[[]*func(T)]
}

// Add adds fn; the returned function removes it again.
func (h *Hooks[T]) Add(fn func(T)) (remove func()) {
	p := &fn
	h.mu.Lock()
	defer h.mu.Unlock()
	var next []*func(T)
	if cur := h.fns.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, p)
	h.fns.Store(&next)
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		cur := h.fns.Load()
		if cur == nil {
			return
		}
		var kept []*func(T)
		for _, q := range *cur {
			if q != p {
				kept = append(kept, q)
			}
		}
		h.fns.Store(&kept)
	}
}

// Call calls every function with v.
func (h *Hooks[T]) Call(v T) {
	if fns := h.fns.Load(); fns != nil {
		for _, fn := range *fns {
			(*fn)(v)
		}
	}
}

// Empty reports whether no function is set.
func (h *Hooks[T]) Empty() bool {
	fns := h.fns.Load()
	return fns == nil || len(*fns) == 0
}
