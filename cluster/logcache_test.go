package cluster

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

func TestSmallLogCache(t *testing.T) {
	store := raft.NewInmemStore()
	c := newSmallLogCache(4, store)
	big := bytes.Repeat([]byte("x"), maxCachedEntryBytes+1)
	var logs []*raft.Log
	for i := uint64(1); i <= 6; i++ {
		l := &raft.Log{Index: i, Term: 1, Data: []byte{byte(i)}}
		if i == 5 {
			l.Data = big
		}
		logs = append(logs, l)
	}
	if err := c.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	// Recent small entries come from the cache; large and old ones from
	// the store; every one reads back as written.
	// The cache keeps copies, never raft's own structs (on a leader
	// they sit inside the entry's future).
	if c.ring[6%4] == nil || c.ring[6%4] == logs[5] || c.ring[6%4].Index != 6 || c.ring[5%4] != nil || c.ring[1%4] != nil && c.ring[1%4].Index == 1 {
		t.Fatalf("cache slots: %+v", c.ring)
	}
	for i := uint64(1); i <= 6; i++ {
		var l raft.Log
		if err := c.GetLog(i, &l); err != nil || l.Index != i || !bytes.Equal(l.Data, logs[i-1].Data) {
			t.Fatalf("entry %d: %+v %v", i, l, err)
		}
	}
	if err := c.DeleteRange(1, 6); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := c.GetLog(6, &l); err != raft.ErrLogNotFound {
		t.Fatalf("after delete: %+v %v", l, err)
	}
}

func TestSmallLogCacheBudget(t *testing.T) {
	store := raft.NewInmemStore()
	c := newSmallLogCache(1024, store)
	entry := bytes.Repeat([]byte("y"), maxCachedEntryBytes)
	n := uint64(cacheBudget/maxCachedEntryBytes) + 10
	for i := uint64(1); i <= n; i++ {
		if err := c.StoreLogs([]*raft.Log{{Index: i, Term: 1, Data: entry}}); err != nil {
			t.Fatal(err)
		}
		if c.bytes > cacheBudget {
			t.Fatalf("after %d entries the cache holds %d bytes", i, c.bytes)
		}
	}
	// The newest entries fill the budget; the oldest left it.
	cached := 0
	for _, l := range c.ring {
		if l != nil {
			cached++
			if l.Index <= n-cacheBudget/maxCachedEntryBytes {
				t.Fatalf("entry %d still cached", l.Index)
			}
		}
	}
	if cached != cacheBudget/maxCachedEntryBytes {
		t.Fatalf("%d entries cached, want %d", cached, cacheBudget/maxCachedEntryBytes)
	}
	for i := uint64(1); i <= n; i++ {
		var l raft.Log
		if err := c.GetLog(i, &l); err != nil || l.Index != i {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	// Small entries wrapping the ring keep the count of bytes right.
	for i := n + 1; i <= n+3000; i++ {
		if err := c.StoreLogs([]*raft.Log{{Index: i, Term: 1, Data: []byte{1, 2, 3}}}); err != nil {
			t.Fatal(err)
		}
	}
	if c.bytes != 3*len(c.ring) {
		t.Fatalf("cache counts %d bytes for %d small entries", c.bytes, len(c.ring))
	}
}
