package actors

import (
	"runtime"
	"sync"
)

// workerDispatcher runs actor mailboxes on long-lived worker goroutines.
// protoactor's default dispatcher starts a goroutine per mailbox run, and
// that goroutine's stack growth cost ~4.6 µs a message here (measured:
// BenchmarkProtoactorBaseline); warm workers bring a send with a reply
// channel under 1 µs.
//
// A mailbox is scheduled at most once at a time, so the queue holds at
// most one entry per busy actor; should it ever be full, the run gets a
// goroutine of its own rather than block the sender.
type workerDispatcher struct {
	work       chan func()
	workers    int
	wg         sync.WaitGroup
	throughput int
	stopOnce   sync.Once
}

func newWorkerDispatcher(workers, queue, throughput int) *workerDispatcher {
	if workers <= 0 {
		workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	d := &workerDispatcher{work: make(chan func(), queue), workers: workers, throughput: throughput}
	d.wg.Add(workers)
	for range workers {
		go d.run()
	}
	return d
}

// run takes mailbox runs until it takes a nil, stop's signal. A plain
// receive rather than a select over a quit channel too: a select locks
// every channel it waits on, and this runs once per mailbox run.
func (d *workerDispatcher) run() {
	defer d.wg.Done()
	for fn := range d.work {
		if fn == nil {
			return
		}
		fn()
	}
}

// Schedule implements actor.Dispatcher.
func (d *workerDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		go fn()
	}
}

// Throughput implements actor.Dispatcher: messages a mailbox run may
// process before yielding its worker.
func (d *workerDispatcher) Throughput() int { return d.throughput }

// stop ends the workers once they have run what is queued; call it after
// the actors have stopped. A nil per worker ends it; the channel is never
// closed, so a late Schedule cannot panic.
func (d *workerDispatcher) stop() {
	d.stopOnce.Do(func() {
		for range d.workers {
			d.work <- nil
		}
		d.wg.Wait()
	})
}

// inlineDispatcher runs a mailbox in the goroutine that schedules it: the
// sender that finds the actor idle runs its turn (protoactor's
// synchronized dispatcher). The mailbox still lets one goroutine at a
// time run the actor, in message order, so the actor alone touches its
// state; what changes is only which goroutine lends it the CPU. The FSM,
// the main sender to user shards, then applies a command to an idle shard
// without two goroutine switches (BenchmarkUsersCreate: see
// docs/DESIGN.md, user shard ownership), while a command sent to a busy
// shard is queued for the goroutine already running it. An actor on it
// must never block in Receive: its sender would wait with it.
type inlineDispatcher struct{}

// Schedule implements actor.Dispatcher.
func (inlineDispatcher) Schedule(fn func()) { fn() }

// Throughput implements actor.Dispatcher.
func (inlineDispatcher) Throughput() int { return 300 }
