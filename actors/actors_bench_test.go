package actors

import (
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-db/troupe/storage"
)

// Benchmarks of the actor paths. Every benchmark stops its actors and its
// system: TestMain checks for leaked goroutines.

const benchShards = 64 // the default cluster parameter

func benchSystem(b *testing.B) *System {
	b.Helper()
	sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	b.Cleanup(sys.Shutdown)
	return sys
}

func benchItems(u *Users, from, n int) []storage.BatchItem {
	items := make([]storage.BatchItem, n)
	stamp := storage.StampAt(1_700_000_000_000) + uint64(from)
	for i := range items {
		email := "user" + strconv.Itoa(from+i) + "@example.com"
		items[i] = storage.BatchItem{ID: storage.MakeUserID(stamp+uint64(i), u.HomeShardFor(email)),
			User: storage.NewUser{Name: "User " + strconv.Itoa(from+i), Email: email, Role: storage.RoleUser}}
	}
	return items
}

// benchUsers returns shards holding n users, and their ids.
func benchUsers(b *testing.B, n int) (*Users, []string) {
	b.Helper()
	u := NewUsers(benchSystem(b), benchShards)
	b.Cleanup(u.Stop) // runs before sys.Shutdown (LIFO)
	items := benchItems(u, 0, n)
	ps := make([]*Pending, n)
	for i := range items {
		ps[i] = u.Create(&items[i], 1000)
	}
	ids := make([]string, n)
	for i, p := range ps {
		<-p.Done()
		if r := p.Result(); r.Err != nil {
			b.Fatal(r.Err)
		}
		ids[i] = items[i].ID
	}
	return u, ids
}

// BenchmarkUsersGet is a read by id. "serial" and "parallel" take the
// path a read takes when its shard's published view is current: it reads
// the view, without a message. "actor" and "actor-parallel" force the
// path of a read whose view is behind: a shardRead (recycled, with its
// reply channel and timer) through the shard actor's mailbox, the lookup
// in the actor's turn, the reply. All report cpu-ns/op, the process's CPU
// time per read, besides ns/op (see cpuClock).
func BenchmarkUsersGet(b *testing.B) {
	direct := func(u *Users, id string, deadline time.Time) error {
		_, err := u.Get(id, deadline)
		return err
	}
	actorGet := func(u *Users, id string, deadline time.Time) error {
		r := getRead(readUser, id)
		if err := u.askActor(u.homeShard(id), r, deadline); err != nil {
			return err
		}
		if r.usr == nil {
			return notFound(id)
		}
		release(r)
		return nil
	}
	for _, c := range []struct {
		name string
		get  func(*Users, string, time.Time) error
	}{{"serial", direct}, {"actor", actorGet}} {
		b.Run(c.name, func(b *testing.B) {
			u, ids := benchUsers(b, 1000)
			deadline := time.Now().Add(time.Hour)
			b.ReportAllocs()
			i := 0
			cpu := startCPU()
			for b.Loop() {
				if err := c.get(u, ids[i%len(ids)], deadline); err != nil {
					b.Fatal(err)
				}
				i++
			}
			cpu.report(b, b.N)
		})
		parallel := "parallel"
		if c.name == "actor" {
			parallel = "actor-parallel"
		}
		b.Run(parallel, func(b *testing.B) {
			u, ids := benchUsers(b, 1000)
			deadline := time.Now().Add(time.Hour)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU()
			defer func() { cpu.report(b, b.N) }()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if err := c.get(u, ids[i%len(ids)], deadline); err != nil {
						b.Error(err)
						return
					}
					i += 7
				}
			})
		})
	}
}

// BenchmarkUsersCreate applies creates as the FSM does, through the shard
// actors. "sync" waits for each Pending before the next create; "window64"
// keeps 64 in flight (the FSM never waits between creates), then waits.
func BenchmarkUsersCreate(b *testing.B) {
	b.Run("sync", func(b *testing.B) {
		u := NewUsers(benchSystem(b), benchShards)
		b.Cleanup(u.Stop)
		items := benchItems(u, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		for i := range items {
			p := u.Create(&items[i], 1000)
			<-p.Done()
			if r := p.Result(); r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		cpu.report(b, b.N)
	})
	b.Run("window64", func(b *testing.B) {
		u := NewUsers(benchSystem(b), benchShards)
		b.Cleanup(u.Stop)
		items := benchItems(u, 0, b.N)
		ps := make([]*Pending, 0, 64)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		defer func() { cpu.report(b, b.N) }()
		for i := 0; i < len(items); i += 64 {
			ps = ps[:0]
			for j := i; j < min(i+64, len(items)); j++ {
				ps = append(ps, u.Create(&items[j], 1000))
			}
			for _, p := range ps {
				<-p.Done()
				if r := p.Result(); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
	})
}

// BenchmarkActorRoundTrip is one request/reply with a troupe actor as
// the node spawns it (System.spawn: its mailbox on the node's warm
// workers): a typed message sent to it, answered on a reply channel the
// message carries and the sender reuses. It is BenchmarkUsersGet/actor
// without the user lookup, the shard mutex and the deadline timer; the
// parallel form keeps one request in flight per goroutine, one actor per
// goroutine.
func BenchmarkActorRoundTrip(b *testing.B) {
	spawn := func(sys *System) *actor.PID {
		return sys.spawn(func() actor.Actor {
			return actor.ReceiveFunc(func(c actor.Context) {
				if m, ok := c.Message().(*benchPing); ok {
					m.reply <- 1
				}
			})
		})
	}
	b.Run("serial", func(b *testing.B) {
		sys := benchSystem(b)
		pingLoop(b, sys, spawn(sys))
	})
	b.Run("parallel", func(b *testing.B) {
		sys := benchSystem(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			pid := spawn(sys)
			msg := &benchPing{reply: make(chan int, 1)}
			for pb.Next() {
				sys.root.Send(pid, msg)
				<-msg.reply
			}
		})
	})
}

// The raw protoactor baseline for BenchmarkUsersGet: a trivial actor
// answering by RequestFuture, and one answering on a reply channel that
// the message carries.

type benchPing struct{ reply chan int }

// pingLoop sends one reused benchPing to pid and waits for its reply, b.N
// times.
func pingLoop(b *testing.B, sys *System, pid *actor.PID) {
	msg := &benchPing{reply: make(chan int, 1)}
	b.ReportAllocs()
	for b.Loop() {
		sys.root.Send(pid, msg)
		<-msg.reply
	}
}

func BenchmarkProtoactorBaseline(b *testing.B) {
	b.Run("RequestFuture", func(b *testing.B) {
		sys := benchSystem(b)
		pid := sys.root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
			if _, ok := c.Message().(int); ok {
				c.Respond(1)
			}
		}))
		b.Cleanup(func() { _ = sys.root.StopFuture(pid).Wait() })
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sys.root.RequestFuture(pid, 1, time.Second).Result(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// One message and one cap-1 channel reused: what a pooled reply
	// channel costs, with protoactor's default dispatcher (a new goroutine
	// per mailbox run), a pool of long-lived workers, and the synchronized
	// dispatcher (the sender runs an idle actor's mailbox itself).
	for _, d := range []string{"default", "pooled", "synchronized"} {
		b.Run("SendReplyChan/"+d, func(b *testing.B) {
			sys := benchSystem(b)
			var opts []actor.PropsOption
			switch d {
			case "pooled":
				opts = append(opts, actor.WithDispatcher(newBenchPool(b, 4)))
			case "synchronized":
				opts = append(opts, actor.WithDispatcher(actor.NewSynchronizedDispatcher(300)))
			}
			pid := sys.root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
				if m, ok := c.Message().(*benchPing); ok {
					m.reply <- 1
				}
			}, opts...))
			b.Cleanup(func() { _ = sys.root.StopFuture(pid).Wait() })
			pingLoop(b, sys, pid)
		})
	}
	b.Run("SendReplyChanFresh", func(b *testing.B) {
		sys := benchSystem(b)
		pid := sys.root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
			if m, ok := c.Message().(*benchPing); ok {
				m.reply <- 1
			}
		}))
		b.Cleanup(func() { _ = sys.root.StopFuture(pid).Wait() })
		// A new message and channel per request, as Users.query does.
		b.ReportAllocs()
		for b.Loop() {
			msg := &benchPing{reply: make(chan int, 1)}
			sys.root.Send(pid, msg)
			<-msg.reply
		}
	})
}

// benchPool is a dispatcher with long-lived workers, whose stacks have
// already grown, instead of a new goroutine per mailbox run.
type benchPool struct {
	work chan func()
	wg   sync.WaitGroup
}

func newBenchPool(b *testing.B, workers int) *benchPool {
	p := &benchPool{work: make(chan func(), 1024)}
	for range workers {
		p.wg.Go(func() {
			for fn := range p.work {
				fn()
			}
		})
	}
	b.Cleanup(func() { close(p.work); p.wg.Wait() })
	return p
}

func (p *benchPool) Schedule(fn func()) {
	select {
	case p.work <- fn:
	default:
		go fn()
	}
}

func (p *benchPool) Throughput() int { return 300 }

// BenchmarkUsersMemory creates 100k users through the shard actors, as
// the FSM does, and reports the live heap they take per user, beyond the
// bytes of their id, name and email (heap-B/user-beyond-raw): records,
// indexes and whatever the shards publish for readers.
func BenchmarkUsersMemory(b *testing.B) {
	const n = 100_000
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for b.Loop() {
		b.StopTimer()
		sys := NewSystem(slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
		before := heap()
		b.StartTimer()
		u := NewUsers(sys, benchShards)
		items := benchItems(u, 0, n)
		raw := 0
		for i := range items {
			raw += storage.UserIDLen + len(items[i].User.Name) + len(items[i].User.Email)
		}
		ps := make([]*Pending, 0, 64)
		for i := 0; i < n; i += 64 {
			ps = ps[:0]
			for j := i; j < min(i+64, n); j++ {
				ps = append(ps, u.Create(&items[j], 1000))
			}
			for _, p := range ps {
				<-p.Done()
				if r := p.Result(); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
		b.StopTimer()
		items = nil
		after := heap()
		b.ReportMetric((float64(after)-float64(before)-float64(raw))/n, "heap-B/user-beyond-raw")
		runtime.KeepAlive(u)
		u.Stop()
		sys.Shutdown()
		b.StartTimer()
	}
}
