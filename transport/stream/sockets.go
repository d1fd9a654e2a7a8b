package stream

import (
	"sync"

	"github.com/fasthttp/websocket"
)

// Sockets tracks open WebSockets: hijacked connections are not the HTTP
// server's to close on shutdown, so the node closes them itself. The
// zero value is ready to use.
type Sockets struct {
	mu     sync.Mutex
	conns  map[*websocket.Conn]struct{}
	closed bool
}

// Add tracks c, or reports false once CloseAll has run (the caller must
// close c itself).
func (w *Sockets) Add(c *websocket.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	if w.conns == nil {
		w.conns = map[*websocket.Conn]struct{}{}
	}
	w.conns[c] = struct{}{}
	return true
}

// Remove stops tracking c.
func (w *Sockets) Remove(c *websocket.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.conns, c)
}

// CloseAll closes every tracked socket and refuses new ones.
func (w *Sockets) CloseAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for c := range w.conns {
		_ = c.Close()
	}
}
