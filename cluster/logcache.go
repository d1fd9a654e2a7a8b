package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// smallLogCache keeps the most recent log entries in memory in front of
// the log store: replication to followers, and a follower applying what
// it was sent, read entries back by index, and raft-wal pays a read of the
// disk for each. Unlike raft.LogCache it bounds the bytes it holds
// (cacheBudget; the oldest entries leave first) and skips entries larger
// than maxCachedEntryBytes (user batches): those are read from the store,
// their cost shared by the many writes they carry.
type smallLogCache struct {
	store raft.LogStore
	// stored, if set, is called after each StoreLogs that succeeded (on
	// a leader, raft's leader loop is about to take its next entries).
	stored func()
	mu     sync.RWMutex
	ring   []*raft.Log
	bytes  int    // Data and Extensions of the entries in ring
	oldest uint64 // no entry below this index is in ring
}

const (
	maxCachedEntryBytes = 64 << 10
	cacheBudget         = 16 << 20
)

var _ raft.MonotonicLogStore = (*smallLogCache)(nil)

func newSmallLogCache(slots int, store raft.LogStore) *smallLogCache {
	return &smallLogCache{store: store, ring: make([]*raft.Log, slots)}
}

// IsMonotonic passes the store's answer on (raft-wal's is true).
func (c *smallLogCache) IsMonotonic() bool {
	m, ok := c.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (c *smallLogCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	l := c.ring[idx%uint64(len(c.ring))]
	c.mu.RUnlock()
	if l != nil && l.Index == idx {
		*log = *l
		return nil
	}
	return c.store.GetLog(idx, log)
}

func (c *smallLogCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

func (c *smallLogCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return err
	}
	c.mu.Lock()
	for _, l := range logs {
		c.put(l)
	}
	c.mu.Unlock()
	if c.stored != nil {
		c.stored()
	}
	return nil
}

// put caches l in its slot (or empties the slot, for a large entry) and
// then drops the oldest entries while over budget; c.mu is held.
func (c *smallLogCache) put(l *raft.Log) {
	slot := &c.ring[l.Index%uint64(len(c.ring))]
	if *slot != nil {
		c.bytes -= entryBytes(*slot)
		*slot = nil
	}
	if entryBytes(l) > maxCachedEntryBytes {
		return
	}
	// A copy: on a leader, l lives inside raft's future for the entry,
	// which holds the apply response (every command's result) until the
	// cache lets go of it.
	cp := *l
	*slot = &cp
	c.bytes += entryBytes(l)
	// Entries a whole ring behind l are gone from it already.
	floor := l.Index - min(l.Index, uint64(len(c.ring))-1)
	if c.oldest == 0 || l.Index < c.oldest {
		c.oldest = l.Index
	}
	c.oldest = max(c.oldest, floor)
	for c.bytes > cacheBudget && c.oldest < l.Index {
		old := &c.ring[c.oldest%uint64(len(c.ring))]
		if *old != nil && (*old).Index == c.oldest {
			c.bytes -= entryBytes(*old)
			*old = nil
		}
		c.oldest++
	}
}

func entryBytes(l *raft.Log) int { return len(l.Data) + len(l.Extensions) }

func (c *smallLogCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }
func (c *smallLogCache) LastIndex() (uint64, error)  { return c.store.LastIndex() }

func (c *smallLogCache) DeleteRange(lo, hi uint64) error {
	c.mu.Lock()
	clear(c.ring)
	c.bytes, c.oldest = 0, 0
	c.mu.Unlock()
	return c.store.DeleteRange(lo, hi)
}
