package api

import (
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"

	"github.com/troupe-db/troupe/actors"
)

// A document socket's op is answered twice: its own change, which the
// socket's subscription receives like everyone's, and its ack. Written
// apart they cost the node two writes and the client two reads per op,
// which were most of a busy editing node's CPU (syscalls). So acks go out
// through the pump, the socket's one writer: when the pump meets the
// change of the op the reader is waiting on, it waits a moment
// (defaultWSAckWait) for that op's ack and writes both at once. The reader hands
// the ack over and waits until it is written, so the socket's answers stay
// in the order the reader made them.

// defaultWSAckWait bounds how long the pump holds an op's own change for
// its ack (Config.WSAckWait). The ack follows the change by a hand-off
// between goroutines on the leader; on a follower the leader's answer may
// take longer, and then the change goes out alone and the ack after it.
// Holding the change delays nothing its client waits for (it waits for
// both); the others' changes queued behind it wait as long at most.
const defaultWSAckWait = 5 * time.Millisecond

// wsAckOut is an ack frame handed from the reader to the pump; done gets
// the write's outcome.
type wsAckOut struct {
	frame []byte
	own   *ownSubmit // the op it answers; the pump forgets it once written
	done  chan error
}

// ownSubmit is the op the reader is waiting on.
type ownSubmit struct {
	clientID string
	seq      uint64
}

// wsAcks is the reader's and the pump's shared state for acks.
type wsAcks struct {
	ch    chan *wsAckOut // unbuffered: a send succeeds only when the pump takes it
	gone  <-chan struct{}
	own   atomic.Pointer[ownSubmit]
	out   wsAckOut // the one ack in flight (the reader submits one op at a time)
	frame []byte
	wait  time.Duration
	waitT *time.Timer // the pump's, for await
}

func newWSAcks(pumpGone <-chan struct{}, wait time.Duration) *wsAcks {
	if wait <= 0 {
		wait = defaultWSAckWait
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &wsAcks{ch: make(chan *wsAckOut), gone: pumpGone, out: wsAckOut{done: make(chan error, 1)}, wait: wait, waitT: t}
}

// waiting tells the pump that the reader is waiting on this op's answer.
func (a *wsAcks) waiting(clientID string, seq uint64) {
	a.own.Store(&ownSubmit{clientID: clientID, seq: seq})
}

// isOwn says whether ev is the change of the op the reader waits on.
func (a *wsAcks) isOwn(ev *actors.Event) bool {
	return changeOf(ev, a.own.Load())
}

// changeOf says whether ev is op o's change.
func changeOf(ev *actors.Event, o *ownSubmit) bool {
	return o != nil && ev.Kind == actors.EventChange && ev.Change != nil &&
		ev.Change.Seq == o.seq && ev.Change.ClientID == o.clientID
}

// await waits up to the ack wait for the reader's ack (nil if none came).
func (a *wsAcks) await() *wsAckOut {
	a.waitT.Reset(a.wait)
	select {
	case out := <-a.ch:
		a.waitT.Stop()
		return out
	case <-a.waitT.C:
		return nil
	}
}

// sendAck writes an ack: through the pump, beside its change if the pump
// holds it, or by itself once the pump has gone, and answers the write's
// outcome. The reader only.
func (w *wsSession) sendAck(v *wsAck) error {
	a := w.acks
	data, err := json.Marshal(v)
	if err != nil { // cannot happen: plain fields
		data = []byte(`{"type":"error","error":{"code":"internal","message":"unencodable ack"}}`)
	}
	a.frame = appendWSFrame(a.frame[:0], data)
	// The op stays the one waited on until the ack is written: if the
	// pump takes its change first, it takes this ack with it.
	a.out.frame, a.out.own = a.frame, a.own.Load()
	select {
	case a.ch <- &a.out:
		return <-a.out.done
	case <-a.gone:
		a.own.Store(nil)
		return w.writeFrames(a.frame)
	}
}

// written tells the reader its ack went out (err the write's outcome).
// The pump only.
func (a *wsAcks) written(out *wsAckOut, err error) {
	a.own.CompareAndSwap(out.own, nil)
	out.done <- err
}
