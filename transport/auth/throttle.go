package auth

import (
	"slices"
	"sync"
	"time"
)

// Throttle slows down password guessing: each key (an email, a
// client address) may fail `burst` times at once and then once per
// `every` (GCRA over failures only; successes cost nothing). It holds at
// most `capacity` keys: when full, keys whose allowance has fully
// recovered are dropped first, then arbitrary ones, so memory stays
// bounded whatever an attacker sends.
type Throttle struct {
	every    time.Duration
	burst    int
	capacity int
	now      func() time.Time

	mu  sync.Mutex
	tat map[string]time.Time // theoretical arrival time of the next failure
}

// NewThrottle returns a throttle allowing perMinute failures a minute
// per key, for at most capacity keys; now is its clock (nil: time.Now).
func NewThrottle(perMinute, capacity int, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{
		every: time.Minute / time.Duration(perMinute), burst: perMinute, capacity: capacity,
		now: now, tat: map[string]time.Time{},
	}
}

// Blocked reports whether key has used up its failures, and for how long.
func (t *Throttle) Blocked(key string) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tat, ok := t.tat[key]
	if !ok {
		return 0, false
	}
	// Another failure would push tat beyond now + burst*every.
	wait := tat.Add(t.every).Sub(t.now().Add(time.Duration(t.burst) * t.every))
	return wait, wait > 0
}

// Fail records a failure of key.
func (t *Throttle) Fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	tat, ok := t.tat[key]
	if !ok && len(t.tat) >= t.capacity {
		t.evict(now)
	}
	if tat.Before(now) {
		tat = now
	}
	t.tat[key] = tat.Add(t.every)
}

// evict makes room: recovered keys first, then the tenth of the keys
// closest to recovery, so the keys under attack stay blocked.
func (t *Throttle) evict(now time.Time) {
	for k, tat := range t.tat {
		if !tat.After(now) {
			delete(t.tat, k)
		}
	}
	if len(t.tat) < t.capacity {
		return
	}
	tats := make([]time.Time, 0, len(t.tat))
	for _, tat := range t.tat {
		tats = append(tats, tat)
	}
	slices.SortFunc(tats, time.Time.Compare)
	cut := tats[t.capacity/10]
	for k, tat := range t.tat {
		if !tat.After(cut) {
			delete(t.tat, k)
		}
	}
}

// Len is how many keys the throttle holds.
func (t *Throttle) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.tat)
}
