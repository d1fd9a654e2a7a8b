package client

import (
	"sync"
	"time"
)

// BreakerState is the state of one node's circuit breaker.
type BreakerState int

const (
	// BreakerClosed: the node takes requests.
	BreakerClosed BreakerState = iota
	// BreakerOpen: the node failed BreakerThreshold times in a row and is
	// skipped until its cool-down ends.
	BreakerOpen
	// BreakerHalfOpen: the cool-down ended; one trial request may go to
	// the node, and its outcome closes or reopens the breaker.
	BreakerHalfOpen
)

// String names the state.
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "unknown"
}

// NodeState is a snapshot of what the client knows about one node.
type NodeState struct {
	Node                string       // base URL, as in Meta.Node
	Breaker             BreakerState // open means skipped until CooldownEnds
	ConsecutiveFailures int
	LastFailure         time.Time // zero if it never failed
	LastError           string    // the last failure, for operators
	CooldownEnds        time.Time // when an open breaker lets a trial through; zero unless open
	Preferred           bool      // the node a call tries first
	Leader              bool      // named by X-Troupe-Leader; writes try it first
}

// breaker is one node's circuit breaker. Any goroutine running a call may
// use it; its fields are guarded by mu, held only for a few assignments
// (never across I/O).
type breaker struct {
	mu          sync.Mutex
	state       BreakerState
	failures    int       // consecutive
	openedAt    time.Time // valid while open
	lastFailure time.Time
	lastErr     string
	trial       bool // half-open and the one trial request is in flight
}

// ticket says how an attempt was admitted, so its outcome is recorded
// the same way.
type ticket int

const (
	admitted ticket = iota // breaker closed
	trial                  // the half-open trial
	forced                 // every breaker was open; tried anyway
)

// allow admits an attempt: always while closed; once the cool-down has
// passed, exactly one trial at a time.
func (b *breaker) allow(now time.Time, cooldown time.Duration) (ticket, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerClosed:
		return admitted, true
	case BreakerOpen:
		if now.Sub(b.openedAt) < cooldown {
			return 0, false
		}
		b.state = BreakerHalfOpen
	}
	if b.trial {
		return 0, false
	}
	b.trial = true
	return trial, true
}

// succeeded records an answer from the node; it reports whether that
// closed an open or half-open breaker.
func (b *breaker) succeeded(t ticket) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t == trial {
		b.trial = false
	}
	b.failures = 0
	was := b.state
	b.state = BreakerClosed
	return was != BreakerClosed
}

// failed records a failure; it reports whether that opened a closed
// breaker. A failed trial reopens it for another cool-down, and so does a
// failed forced attempt (the node was just probed).
func (b *breaker) failed(t ticket, now time.Time, threshold int, reason string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t == trial {
		b.trial = false
	}
	b.failures++
	b.lastFailure = now
	b.lastErr = reason
	if b.state == BreakerClosed && b.failures < threshold {
		return false
	}
	opened := b.state == BreakerClosed
	b.state = BreakerOpen
	b.openedAt = now
	return opened
}

// abandoned releases a trial whose outcome is unknown (the caller gave
// up), so that another trial may go; it records no verdict.
func (b *breaker) abandoned(t ticket) {
	if t != trial {
		return
	}
	b.mu.Lock()
	b.trial = false
	b.mu.Unlock()
}

// snapshot fills the breaker part of a NodeState.
func (b *breaker) snapshot(st *NodeState, cooldown time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st.Breaker = b.state
	st.ConsecutiveFailures = b.failures
	st.LastFailure = b.lastFailure
	st.LastError = b.lastErr
	st.CooldownEnds = time.Time{}
	if b.state == BreakerOpen {
		st.CooldownEnds = b.openedAt.Add(cooldown)
	}
}

// failedAt returns when the node last failed (zero if never).
func (b *breaker) failedAt() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastFailure
}
