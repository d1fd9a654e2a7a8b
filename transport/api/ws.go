package api

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/stream"
)

// GET /v1/docs/{id}/ws: the same events as SSE, as JSON messages with a
// "type" field, plus submits from the client:
//
//	→ {"type":"op","client_id"?,"seq","base_version","ops"}   ← {"type":"ack","seq","version","ops"}
//	→ {"type":"cursor","pos","anchor"?}                        (presence to the others)
//	→ {"type":"auth","access_token"}                           ← {"type":"auth_ok"} (a fresh token)
//	← {"type":"change",...} {"type":"presence",...} {"type":"reset","doc":{...}}
//	← {"type":"error","seq"?,"error":{"code","message"}}        (a refused op or message)
//	← {"type":"closed","reason"}                                (then a close frame, 1008)
//
// Every message spends the user's default rate-limit bucket (charge);
// cursors are coalesced to one per cursorGap; the stream ends with its
// rights (package stream).
// A submit from any node goes to the leader (as a forwarded command);
// its client_id defaults to the one given when connecting (?client_id=).
// Every submit checks the token again; "auth" gives the session a fresh
// one. An ack may arrive before changes committed ahead of it: clients
// advance their version with change messages only.
// Resume with ?last_event_id=v as with SSE.

const (
	wsMaxMessage = 1 << 20
	wsPongWait   = 60 * time.Second
)

var upgrader = websocket.FastHTTPUpgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	// The browser editor is served by troupe itself; other origins need
	// a token anyway (no cookies are used), so any origin may connect.
	CheckOrigin: func(*fasthttp.RequestCtx) bool { return true },
}

type wsIn struct {
	Type        string    `json:"type"`
	AccessToken *string   `json:"access_token"` // type auth
	ClientID    *string   `json:"client_id"`
	Seq         *uint64   `json:"seq"`
	BaseVersion *uint64   `json:"base_version"`
	Ops         *[]opJSON `json:"ops"`
	Pos         *int      `json:"pos"`
	Anchor      *int      `json:"anchor"` // type cursor: the selection's other end
}

type wsAck struct {
	Type    string   `json:"type"`
	Seq     uint64   `json:"seq"`
	Version uint64   `json:"version"`
	Ops     []opJSON `json:"ops"`
}

type wsError struct {
	Type  string    `json:"type"`
	Seq   *uint64   `json:"seq,omitempty"`
	Error *apiError `json:"error"`
}

func (s *Server) docWS(ctx *fasthttp.RequestCtx) {
	x, d, clientID, ok := s.openStream(ctx)
	if !ok {
		return
	}
	// Everything the session needs from the request, taken now: the
	// context is not ours once the connection is hijacked.
	base := docCommand(ctx, d.ID)
	limitKey := s.limitKey(ctx)
	share := ""
	if c := callerOf(ctx); c.link != nil {
		share = c.link.token
	}
	docs := s.docs
	err := upgrader.Upgrade(ctx, func(conn *websocket.Conn) {
		defer s.closeStream(x)
		if !s.ws.Add(conn) {
			_ = conn.Close()
			return
		}
		defer s.ws.Remove(conn)
		defer conn.Close()
		conn.SetReadLimit(wsMaxMessage)
		sess := &wsSession{s: s, conn: conn, docs: docs, id: x.DocID, sub: x.Sub, x: x, clientID: clientID, base: base, limitKey: limitKey, share: share}
		sess.run()
	})
	if err != nil {
		s.closeStream(x)
		// The upgrader has answered (400) already.
		s.log.Debug("websocket upgrade failed", "err", err)
	}
}

type wsSession struct {
	s        *Server
	conn     *websocket.Conn
	docs     Docs
	id       string
	sub      *actors.Subscriber
	x        *stream.Stream // its token, replaced by "auth"
	clientID string
	base     *storage.DocCommand
	limitKey string
	share    string // the share token the socket was opened with ("" none)

	// overSince: when the rate limit began refusing this socket's
	// messages without a break (zero: it is not refusing). Reader only.
	overSince time.Time

	cursorMu    sync.Mutex
	cursorSent  time.Time   // when the last cursor went to the document
	cursorPos   int         // the newest position not sent yet
	cursorAnch  int         // and its selection's anchor
	cursorTimer *time.Timer // sends cursorPos when due; nil if none is waiting
	cursorDone  bool

	wmu sync.Mutex // one writer at a time

	acks *wsAcks // a document socket's: its acks go out through the pump (wsack.go)
}

// token is the access token the session acts with.
func (w *wsSession) token() (string, bool) {
	token, hasToken, _ := w.x.Credentials()
	return token, hasToken
}

func (w *wsSession) write(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.conn.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	return w.conn.WriteMessage(websocket.TextMessage, data)
}

// closeWith sends {"type":"closed","reason"} and closes the socket with
// 1008 (policy violation).
func (w *wsSession) closeWith(reason string) {
	w.s.streams.Ended(reason)
	_ = w.write(map[string]string{"type": "closed", "reason": reason})
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, reason), time.Now().Add(time.Second))
}

func (w *wsSession) run() {
	done, pumped := make(chan struct{}), make(chan struct{})
	w.acks = newWSAcks(pumped, w.s.cfg.WSAckWait)
	go func() {
		defer close(pumped)
		w.pump(done)
	}()
	// The connection is fasthttp's again once the handler returns: the
	// pump must be gone by then (closing the connection ends a write it
	// may be blocked in).
	defer func() {
		w.stopCursor()
		close(done)
		_ = w.conn.Close()
		<-pumped
	}()
	w.readMessages(func(in *wsIn) {
		switch in.Type {
		case "op":
			w.submit(in)
		case "cursor":
			if in.Pos == nil || *in.Pos < 0 {
				_ = w.write(wsError{Type: "error", Error: badRequest("a cursor needs pos, a code point offset ≥ 0", "pos")})
				return
			}
			anchor := *in.Pos
			if in.Anchor != nil {
				if *in.Anchor < 0 {
					_ = w.write(wsError{Type: "error", Error: badRequest("a cursor's anchor is a code point offset ≥ 0", "anchor")})
					return
				}
				anchor = *in.Anchor
			}
			w.cursor(*in.Pos, anchor)
		case "auth":
			w.reauth(in)
		default:
			_ = w.write(wsError{Type: "error", Error: badRequest(`type must be "op", "cursor" or "auth"`, "type")})
		}
	})
}

// readMessages reads the socket's messages until it fails or closes, and
// hands each to handle once it has been charged to the caller's rate
// limit and decoded: the read deadline (extended by pongs and messages),
// the size limit and the metrics, the same for every kind of socket. A
// caller over its limit for Config.WSOverLimitClose is disconnected; a
// message that does not decode is answered with an error.
func (w *wsSession) readMessages(handle func(in *wsIn)) {
	_ = w.conn.SetReadDeadline(time.Now().Add(wsPongWait))
	w.conn.SetPongHandler(func(string) error { return w.conn.SetReadDeadline(time.Now().Add(wsPongWait)) })
	for {
		_, data, err := w.conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				w.s.wsMetrics.tooLarge.Inc()
			}
			return
		}
		w.s.wsMetrics.received.Inc()
		_ = w.conn.SetReadDeadline(time.Now().Add(wsPongWait))
		var in wsIn
		e := decodeJSON(data, &in)
		if !w.charge(&in) {
			if !w.overSince.IsZero() && time.Since(w.overSince) >= w.s.cfg.WSOverLimitClose {
				w.closeWith(stream.ReasonRateLimited)
				return
			}
			continue
		}
		if e != nil {
			_ = w.write(wsError{Type: "error", Error: e})
			continue
		}
		handle(&in)
	}
}

// charge counts a message against the caller's default rate-limit
// bucket, the one its HTTP requests spend. A refused message is
// answered rate_limited (with its seq, if it has one) and not applied.
func (w *wsSession) charge(in *wsIn) bool {
	s := w.s
	if s.cfg.RateLimit == nil || s.limiter == nil {
		return true
	}
	d, err := s.limiter.Decide(actors.Check{Policy: s.cfg.RateLimit, Key: w.limitKey, Cost: 1}, time.Now().Add(time.Second))
	if err != nil || d.Allowed {
		// A limiter that cannot answer fails open, as for requests.
		w.overSince = time.Time{}
		return true
	}
	if w.overSince.IsZero() {
		w.overSince = time.Now()
	}
	s.wsMetrics.rateLimited.Inc()
	e := newError("rate_limited", "too many messages; slow down")
	e.Details = map[string]any{"policy": storage.DefaultPolicy, "retry_after_ms": ceilDiv(d.RetryAfterNs, int64(time.Millisecond))}
	_ = w.write(wsError{Type: "error", Seq: in.Seq, Error: e})
	return false
}

// cursorGap is the least time between two cursor positions of one socket
// reaching the others (≈20 a second); positions sent faster are
// coalesced: the newest goes when the gap has passed.
const cursorGap = 50 * time.Millisecond

func (w *wsSession) cursor(pos, anchor int) {
	w.cursorMu.Lock()
	defer w.cursorMu.Unlock()
	if w.cursorTimer != nil {
		w.cursorPos, w.cursorAnch = pos, anchor // the waiting one takes the newest position
		w.s.wsMetrics.cursorsCoalesced.Inc()
		return
	}
	if wait := cursorGap - time.Since(w.cursorSent); wait > 0 {
		w.cursorPos, w.cursorAnch = pos, anchor
		w.cursorTimer = time.AfterFunc(wait, w.flushCursor)
		return
	}
	w.cursorSent = time.Now()
	w.docs.Cursor(w.id, w.sub, pos, anchor)
}

func (w *wsSession) flushCursor() {
	w.cursorMu.Lock()
	defer w.cursorMu.Unlock()
	w.cursorTimer = nil
	if w.cursorDone {
		return
	}
	w.cursorSent = time.Now()
	w.docs.Cursor(w.id, w.sub, w.cursorPos, w.cursorAnch)
}

func (w *wsSession) stopCursor() {
	w.cursorMu.Lock()
	defer w.cursorMu.Unlock()
	w.cursorDone = true
	if w.cursorTimer != nil {
		w.cursorTimer.Stop()
		w.cursorTimer = nil
	}
}

// pump sends the document's events and keep-alive pings until the
// subscription or the session ends. Events queued together go out in one
// write: a busy document sends each subscriber many events a
// millisecond, and a write per event was most of the node's work.
func (w *wsSession) pump(done <-chan struct{}) {
	ping := time.NewTicker(w.s.cfg.StreamKeepAlive)
	defer ping.Stop()
	defer w.conn.Close() // ends the reader too
	var buf []byte
	reset := false // a reset went out: the subscription is over
	// send writes ev and whatever is queued behind it; false ends the
	// pump (a failed write, or a reset, after which C is closed).
	send := func(ev *actors.Event, ack *wsAckOut) bool {
		buf = buf[:0]
		last, withChange := false, false
		if ev != nil {
			buf = appendWSEvent(buf, ev)
			last = ev.Kind == actors.EventReset
			if ack == nil && w.acks.isOwn(ev) {
				ack = w.acks.await()
				withChange = ack != nil
			}
		}
		if ack != nil {
			buf = append(buf, ack.frame...)
		}
		for !last && len(buf) < wsBatchBytes {
			select {
			case e := <-w.sub.C:
				buf = appendWSEvent(buf, &e)
				last = e.Kind == actors.EventReset
				withChange = withChange || (ack != nil && changeOf(&e, ack.own))
				continue
			default:
			}
			break
		}
		reset = reset || last
		if ack != nil { // counted before the write, which its reader may see first
			w.s.wsMetrics.acked(withChange)
		}
		err := w.writeFrames(buf)
		if ack != nil {
			w.acks.written(ack, err)
		}
		return err == nil && !last
	}
	// ended: after a reset, a subscription ended for its holder's sake
	// says why (a deleted document).
	ended := func() {
		if r := w.sub.Reason(); reset && r != "" {
			w.closeWith(r)
		}
	}
	for {
		select {
		case ev := <-w.sub.C:
			if !send(&ev, nil) {
				ended()
				return
			}
		case ack := <-w.acks.ch:
			if !send(nil, ack) {
				ended()
				return
			}
		case <-w.sub.Done():
			if revokedReason(w.sub.Reason()) {
				// Nothing more of the document: its reader lost it.
				w.closeWith(w.sub.Reason())
				return
			}
			for {
				select {
				case ev := <-w.sub.C:
					if !send(&ev, nil) {
						ended()
						return
					}
					continue
				default:
				}
				break
			}
			if w.writeFrames(appendWSEvent(buf[:0], &actors.Event{Kind: actors.EventReset, Doc: w.docs.Latest(w.id)})) == nil {
				reset = true
				ended()
			}
			return
		case <-ping.C:
			w.wmu.Lock()
			err := w.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(sseWriteTimeout))
			w.wmu.Unlock()
			if err != nil {
				return
			}
			w.s.streams.Check(w.x) // the backstop of the revocation events
		case <-done:
			return
		}
	}
}

// wsBatchBytes bounds the events written at once (a slow reader's
// backlog goes in several writes, each under the write timeout).
const wsBatchBytes = 64 << 10

// writeFrames writes whole frames (appendWSFrame) to the connection in
// one write. The session's writes hold wmu and the websocket library
// writes only whole frames, so frames never interleave.
func (w *wsSession) writeFrames(frames []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	nc := w.conn.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	_, err := nc.Write(frames)
	return err
}

// reauth replaces the session's token with a fresh one of the same user
// (an access token expires long before an editing session ends).
func (w *wsSession) reauth(in *wsIn) {
	if in.AccessToken == nil {
		_ = w.write(wsError{Type: "error", Error: badRequest("access_token is required", "access_token")})
		return
	}
	c, ae := w.s.tokenCaller(*in.AccessToken, true)
	if ae == nil && (!c.signedIn() || c.uid != w.base.Caller) {
		ae = newError("forbidden", "the token is another user's")
	}
	if ae != nil {
		_ = w.write(wsError{Type: "error", Error: ae})
		return
	}
	w.s.streams.Renew(w.x, *in.AccessToken, w.s.tokenExpiry(*in.AccessToken, true))
	_ = w.write(map[string]string{"type": "auth_ok"})
}

// submit proposes an op list (on the leader, or forwarded to it) and
// acknowledges it.
func (w *wsSession) submit(in *wsIn) {
	fail := func(e *apiError) {
		w.acks.own.Store(nil)
		_ = w.write(wsError{Type: "error", Seq: in.Seq, Error: e})
	}
	if in.Seq == nil || in.BaseVersion == nil || in.Ops == nil {
		fail(badRequest("seq, base_version and ops are required", ""))
		return
	}
	clientID := w.clientID
	if in.ClientID != nil {
		clientID = *in.ClientID
	}
	ops, e := opsFromJSON(*in.Ops)
	if e != nil {
		fail(e)
		return
	}
	// The token is checked again for every submit, as a request would
	// be: a socket outlives its token, a logout, a new password or role.
	// A guest has no token: its share link is checked in apply (a
	// revoked or expired one, or a viewer's, gets forbidden).
	token, hasToken := w.token()
	c := &caller{}
	if hasToken || w.x.Link == "" {
		var ae *apiError
		if c, ae = w.s.tokenCaller(token, hasToken); ae != nil {
			fail(ae)
			return
		}
	}
	// The command, its document command and its submit in one allocation.
	parts := &struct {
		cmd storage.Command
		dc  storage.DocCommand
		sub storage.DocSubmit
	}{dc: *w.base, sub: storage.DocSubmit{DocID: w.id, ClientID: clientID, Seq: *in.Seq, Base: *in.BaseVersion, Ops: ops}}
	dc := &parts.dc
	dc.Caller, dc.Admin = "", c.admin
	if c.signedIn() {
		dc.Caller = c.uid
	}
	dc.Link = w.x.Link
	dc.Submit = &parts.sub
	dc.HistoryBytes = uint64(w.s.cfg.DocumentHistoryBytes)
	dc.CheckpointEvery = storage.DocCheckpointEvery
	cmd := &parts.cmd
	*cmd = storage.Command{Kind: storage.CmdDocSubmit, Stamp: w.s.node.Stamps(1), Doc: dc,
		RequestID: "ws:" + wsScope(dc) + ":" + w.id + ":" + clientID + ":" + strconv.FormatUint(*in.Seq, 10)}
	deadline := w.s.deadline()
	w.acks.waiting(clientID, *in.Seq)
	var res storage.Result
	var err error
	if w.s.node.IsLeader() {
		res, _, err = w.s.node.Propose(context.Background(), cmd, deadline)
	} else {
		err = replica.ErrNotLeader
	}
	if errors.Is(err, replica.ErrNotLeader) {
		res, _, err = w.s.forwardCommandAs(context.Background(), fwdCredentials{token: token, hasToken: hasToken, share: w.share}, cmd, deadline)
	}
	switch {
	case err != nil:
		fail(toAPIError(err))
	case res.Err != nil:
		w.s.docLimits.count(res.Err)
		fail(storageError(res.Err))
	case res.Submit == nil:
		fail(newError("internal", "no result for the submit"))
	default:
		_ = w.sendAck(&wsAck{Type: "ack", Seq: *in.Seq, Version: res.Submit.Version, Ops: opsToJSON(res.Submit.Ops)})
	}
}

// wsScope scopes a socket's submit request ids: its user, else (a guest)
// its share link, so that two guests' client ids never meet.
func wsScope(dc *storage.DocCommand) string {
	if dc.Caller == "" && dc.Link != "" {
		return storage.GuestAuthor(dc.Link)
	}
	return dc.Caller
}
