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
	quit       chan struct{}
	wg         sync.WaitGroup
	throughput int
	stopOnce   sync.Once
}

func newWorkerDispatcher(workers, queue, throughput int) *workerDispatcher {
	if workers <= 0 {
		workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	d := &workerDispatcher{work: make(chan func(), queue), quit: make(chan struct{}), throughput: throughput}
	d.wg.Add(workers)
	for range workers {
		go d.run()
	}
	return d
}

func (d *workerDispatcher) run() {
	defer d.wg.Done()
	for {
		select {
		case fn := <-d.work:
			fn()
		case <-d.quit:
			return
		}
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

// stop ends the workers; call it after the actors have stopped.
func (d *workerDispatcher) stop() {
	d.stopOnce.Do(func() {
		close(d.quit)
		d.wg.Wait()
	})
}
