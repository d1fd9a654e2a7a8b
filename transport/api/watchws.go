package api

import (
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/stream"
)

// GET /v1/watch/ws: the change feed over a WebSocket (see watch.go). The
// server sends {"type":"change",...change} messages (several changes
// read together go in one write), {"type":"closed","reason"} before a
// close frame (1008) when the stream ends for its holder's sake (or
// "gone", behind the history), and a ping every keep-alive. The client
// may send {"type":"auth","access_token"} (answered {"type":"auth_ok"})
// to give the stream a fresh token of the same user before its own
// expires; anything else is answered with an error message.

// watchSession is one watch socket: its reader (run) and its pump.
type watchSession struct {
	s    *Server
	w    *watcher
	conn *websocket.Conn
	ws   *wsSession // for write, closeWith and reauth
}

func (s *Server) watchWS(ctx *fasthttp.RequestCtx) {
	w, ok := s.openWatch(ctx)
	if !ok {
		return
	}
	limitKey := s.limitKey(ctx) // its messages spend the caller's default bucket, as a document socket's
	err := upgrader.Upgrade(ctx, func(conn *websocket.Conn) {
		defer s.closeWatch(w)
		if !s.ws.Add(conn) {
			_ = conn.Close()
			return
		}
		defer s.ws.Remove(conn)
		defer conn.Close()
		conn.SetReadLimit(wsMaxMessage)
		ws := &wsSession{s: s, conn: conn, x: w.x, base: &storage.DocCommand{Caller: w.user, Admin: w.admin}, limitKey: limitKey}
		(&watchSession{s: s, w: w, conn: conn, ws: ws}).run()
	})
	if err != nil {
		s.closeWatch(w)
		s.log.Debug("websocket upgrade failed", "err", err)
	}
}

func (ws *watchSession) run() {
	done, pumped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pumped)
		ws.pump(done)
	}()
	defer func() {
		close(done)
		_ = ws.conn.Close()
		<-pumped
	}()
	ws.ws.readMessages(func(in *wsIn) {
		if in.Type != "auth" {
			_ = ws.ws.write(wsError{Type: "error", Error: badRequest(`a watch socket takes only "auth" messages`, "type")})
			return
		}
		ws.ws.reauth(in)
	})
}

// pump sends the changes and keep-alive pings until the stream or the
// session ends.
func (ws *watchSession) pump(done <-chan struct{}) {
	ping := time.NewTicker(ws.s.cfg.StreamKeepAlive)
	defer ping.Stop()
	defer ws.conn.Close() // ends the reader too
	var buf []byte
	var changes []*feed.Change
	var pace watchPace
	for {
		select {
		case <-pace.wake(ws.w.sub.Wake()):
			var gone *feed.GoneError
			var more bool
			changes, buf, more, gone = ws.w.next(changes, buf[:0], appendWatchWS)
			if len(buf) > 0 {
				if ws.ws.writeFrames(buf) != nil {
					return
				}
				if !more {
					pace.wrote()
				}
			}
			if gone != nil {
				ws.ws.closeWith(stream.ReasonGone)
				return
			}
		case <-pace.hold:
			pace.hold = nil
		case <-ws.w.ended:
			ws.ws.closeWith(ws.w.reason)
			return
		case <-ping.C:
			ws.ws.wmu.Lock()
			err := ws.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(sseWriteTimeout))
			ws.ws.wmu.Unlock()
			if err != nil {
				return
			}
			ws.s.streams.Check(ws.w.x)
		case <-done:
			return
		}
	}
}

// appendWatchWS appends a change as a WebSocket text frame:
// {"type":"change",...}.
func appendWatchWS(b []byte, c *feed.Change) []byte {
	js := c.Rendered(renderChange)
	msg := make([]byte, 0, len(js)+16)
	msg = append(append(msg, `{"type":"change",`...), js[1:]...)
	return appendWSFrame(b, msg)
}
