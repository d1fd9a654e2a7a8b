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
	if c.ring[6%4] != logs[5] || c.ring[5%4] != nil || c.ring[1%4] != nil && c.ring[1%4].Index == 1 {
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
