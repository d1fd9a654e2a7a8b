package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// smallLogCache keeps the most recent small log entries in memory in
// front of the log store: replication to followers, and a follower
// applying what it was sent, read entries back by index, and raft-wal
// pays a read of the disk for each. Unlike raft.LogCache it holds only
// entries of at most maxCachedEntryBytes (single writes, the hot case), so
// its memory stays bounded by slots × that size however large batches
// get; large entries are read from the store, their cost shared by the
// many writes they carry.
type smallLogCache struct {
	store raft.LogStore
	mu    sync.RWMutex
	ring  []*raft.Log
}

const maxCachedEntryBytes = 1024

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
	defer c.mu.Unlock()
	for _, l := range logs {
		slot := l.Index % uint64(len(c.ring))
		if len(l.Data)+len(l.Extensions) <= maxCachedEntryBytes {
			c.ring[slot] = l
		} else {
			c.ring[slot] = nil
		}
	}
	return nil
}

func (c *smallLogCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }
func (c *smallLogCache) LastIndex() (uint64, error)  { return c.store.LastIndex() }

func (c *smallLogCache) DeleteRange(lo, hi uint64) error {
	c.mu.Lock()
	clear(c.ring)
	c.mu.Unlock()
	return c.store.DeleteRange(lo, hi)
}
