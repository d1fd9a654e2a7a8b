package actors

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkUsersMixed is the users-mixed workload in process: parallel
// readers by id (linearizable reads answered from the shards' views or
// their mailboxes), one operation in ten a create, sent one at a time as
// the FSM goroutine sends them. Writes after reads are what a view costs:
// the first write to a tree node after a view copies the node.
func BenchmarkUsersMixed(b *testing.B) {
	u, ids := benchUsers(b, 100_000)
	extra := benchItems(u, len(ids), b.N/10+64)
	var next atomic.Int64
	var fsm sync.Mutex // one sender, as the FSM goroutine
	deadline := time.Now().Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	defer func() { cpu.report(b, b.N) }()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if i%10 == 0 {
				k := next.Add(1) - 1
				if int(k) >= len(extra) {
					continue
				}
				fsm.Lock()
				p := u.Create(&extra[k], 1000)
				fsm.Unlock()
				<-p.Done()
				if r := p.Result(); r.Err != nil {
					b.Error(r.Err)
					return
				}
				continue
			}
			if _, err := u.Get(ids[(i*7919)%len(ids)], deadline); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
