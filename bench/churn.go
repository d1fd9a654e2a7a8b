package bench

import (
	"github.com/valyala/fasthttp"
)

// users-churn: durable writes over a bounded population, so that a long
// run reaches a steady state (its memory must stop growing) while every
// write stays checkable. Each connection creates users and, once it
// holds its share of --users, deletes its oldest before creating the
// next: creates and deletes then alternate. Config.OnAck hears of every
// acknowledged create (Ack.User) and delete (Ack.Deleted), and of every
// delete sent (Ack.Deleting): at the end, a user whose create was
// acknowledged and who was never to be deleted must be there, and one
// whose delete was acknowledged must be gone; one whose delete went
// unanswered may be either.
//
// State: the ring below belongs to the worker's goroutine.

// churnState is one connection's users, oldest first.
type churnState struct {
	owned    []string
	head     int    // owned[head:] are the users still held
	deleting string // the user the request in flight deletes; "" for a create
}

// churnShare is how many users each connection keeps (at least one).
func churnShare(r *Runner) int { return max(1, r.cfg.Users/r.cfg.Connections) }

func nextChurn(r *Runner, w *worker, req *fasthttp.Request) int {
	c := &w.churn
	if len(c.owned)-c.head >= churnShare(r) {
		c.deleting = c.owned[c.head]
		if r.cfg.OnAck != nil {
			r.cfg.OnAck(Ack{User: c.deleting, Deleting: true})
		}
		req.Header.SetMethod("DELETE")
		w.buf = append(append(w.buf[:0], "/v1/users/"...), c.deleting...)
		req.SetRequestURIBytes(w.buf)
		return fasthttp.StatusNoContent
	}
	c.deleting = ""
	return nextCreate(r, w, req)
}

// afterChurn moves the ring on after an acknowledged create or delete.
// A delete answered 404 is one tried again after an earlier attempt's
// answer was lost: that attempt removed the user (no other connection
// deletes it), so it is reported deleted too.
func afterChurn(r *Runner, w *worker, resp *fasthttp.Response) {
	c := &w.churn
	switch {
	case c.deleting == "" && resp.StatusCode() == fasthttp.StatusCreated:
		id := userID(resp.Body())
		if id == "" {
			return
		}
		c.owned = append(c.owned, id)
		if r.cfg.OnAck != nil {
			r.cfg.OnAck(Ack{User: id})
		}
	case c.deleting != "" && (resp.StatusCode() == fasthttp.StatusNoContent || resp.StatusCode() == fasthttp.StatusNotFound):
		if r.cfg.OnAck != nil {
			r.cfg.OnAck(Ack{User: c.deleting, Deleted: true})
		}
		c.head++
		// Compact the ring once half of it is spent.
		if c.head > len(c.owned)/2 {
			c.owned = append(c.owned[:0], c.owned[c.head:]...)
			c.head = 0
		}
	}
}
