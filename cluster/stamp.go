package cluster

import (
	"sync/atomic"
	"time"

	"github.com/troupe-db/troupe/storage"
)

// stampClock hands out unique, increasing stamps (see storage.StampAt):
// wall-clock milliseconds when the clock moves ahead, the next counter
// value otherwise, and never a stamp at or below floor (the highest stamp
// applied, so a new leader never reuses an old leader's stamps).
type stampClock struct {
	last atomic.Uint64
	now  func() time.Time // nil: time.Now
}

// reserve returns the first of k consecutive fresh stamps.
func (c *stampClock) reserve(k int, floor uint64) uint64 {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	wall := storage.StampAt(now().UnixMilli())
	for {
		last := c.last.Load()
		first := max(wall, last+1, floor+1)
		if c.last.CompareAndSwap(last, first+uint64(k)-1) {
			return first
		}
	}
}
