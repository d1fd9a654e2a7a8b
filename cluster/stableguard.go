package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// stableGuard wraps the stable store (term and vote) for one hazard of
// shutdown: raft's network transport serves heartbeats on its own
// goroutines, and one already under way when raft and the transport stop
// may still record a newer term — after the store has been closed, which
// makes raft panic. Once the node is stopping, writes are dropped: the
// node will answer nothing more, and a heartbeat carries no vote, so a
// term it forgets is one it would learn again from the next heartbeat.
type stableGuard struct {
	raft.StableStore
	mu       sync.RWMutex // held for reading by writes in flight
	stopping bool
}

func (g *stableGuard) Set(key, val []byte) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.stopping {
		return nil
	}
	return g.StableStore.Set(key, val)
}

func (g *stableGuard) SetUint64(key []byte, val uint64) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.stopping {
		return nil
	}
	return g.StableStore.SetUint64(key, val)
}

// stop waits for writes in flight and drops the ones that follow; call it
// before closing the store.
func (g *stableGuard) stop() {
	g.mu.Lock()
	g.stopping = true
	g.mu.Unlock()
}
