package bench

import (
	"bytes"
	"errors"
	"net"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/fasthttp/websocket"
	json "github.com/goccy/go-json"
)

// docs-ws: collaborative editing as an editor does it, over the
// document's WebSocket (API.md, Documents; transport/api/ws.go). Each worker
// is one client of one document. It keeps the version and length of the
// text it has integrated from the change stream, sends one small insert
// at a valid position of that text, and sends the next only when the ack
// has come and the change stream has reached the ack's version (an ack
// may overtake changes committed before it, and a submit based before
// the client's own last change is refused). Latency runs from send to
// ack; in an open loop (--rate) from when the op fell due, so that a
// client waiting for its previous ack cannot hide a stall. It reads every change of its document, the others' and its own
// (that fan-out is the load), and counts them as events.
//
// On a reset it takes the version and length of the document sent with
// it and reconnects from there (the server closes after a reset); an op
// still unanswered when a connection ends is sent again with its seq on
// the next one (a repeat gets the first ack).
//
// Goroutines: a worker's loop owns its wsClient and connection; Run only
// closes the connection (worker.ws) at stop, to end a blocked read.

// wsMessage is any message the server sends; fields a type does not
// have stay zero.
type wsMessage struct {
	Type     string `json:"type"`
	Version  uint64 `json:"version"`
	Seq      uint64 `json:"seq"` // 0: none (seqs start at 1)
	ClientID string `json:"client_id"`
	Ops      []wsOp `json:"ops"`
	Error    *struct {
		Code string `json:"code"`
	} `json:"error"`
	Doc     *wsDoc `json:"doc"`
	Deleted bool   `json:"deleted"`
}

// wsDoc is the document a reset carries (the fields a client needs).
type wsDoc struct {
	Version uint64 `json:"version"`
	Content string `json:"content"`
}

type wsOp struct {
	Op   string `json:"op"`
	Len  int    `json:"len"`
	Text string `json:"text"`
}

// maxDocRunes bounds the lengths the client believes (a document holds
// at most 8 MiB), so that no message can overflow them.
const maxDocRunes = 8 << 20

// lengthChange is how many code points ops add to the text.
func lengthChange(ops []wsOp) int {
	n := 0
	for _, op := range ops {
		switch op.Op {
		case "insert":
			n += utf8.RuneCountInString(op.Text)
		case "delete":
			n -= min(max(op.Len, 0), maxDocRunes)
		case "replace":
			n += utf8.RuneCountInString(op.Text) - min(max(op.Len, 0), maxDocRunes)
		}
		n = min(max(n, -maxDocRunes), maxDocRunes)
	}
	return n
}

type wsClient struct {
	r        *Runner
	w        *worker
	docID    string
	clientID string
	dialer   *websocket.Dialer
	conn     *websocket.Conn

	version uint64 // the last change integrated
	length  int    // code points of the text at version
	seq     uint64 // of the op in flight, or of the last one sent

	inflight bool      // out holds an op sent and not yet answered
	sent     time.Time // when it was first sent
	awaiting uint64    // the acked version the stream must reach before the next send

	out []byte // the op in flight, as sent
	in  bytes.Buffer
	msg wsMessage
}

// errBroken ends a connection the client cannot go on with (a gap in the
// stream, a reset); the failure, if any, is counted already.
var errBroken = errors.New("connection abandoned")

// docsWSLoop is the docs-ws worker: one WebSocket client until stop.
func docsWSLoop(r *Runner, w *worker) {
	c := &wsClient{
		r: r, w: w, docID: r.docIDs[w.id%len(r.docIDs)],
		clientID: r.runID + "-" + strconv.Itoa(w.id),
		length:   r.cfg.DocLength, // as created, at version 0
		dialer:   &websocket.Dialer{HandshakeTimeout: r.cfg.Timeout, ReadBufferSize: 4096, WriteBufferSize: 4096},
	}
	defer c.hangUp()
	for !r.stop.Load() {
		if c.conn == nil && !c.connect() {
			pause(r)
			continue
		}
		if !c.inflight && c.version >= c.awaiting {
			// Open loop: the next op waits for its due time, from
			// which its latency counts.
			due, ok := r.next()
			if !ok {
				return
			}
			c.nextOp(due)
			if err := c.write(); err != nil {
				c.broken("ws_write", err)
				continue
			}
		}
		if err := c.read(); err != nil {
			c.broken("ws_read", err)
			continue
		}
		if err := c.handle(); err != nil {
			c.hangUp()
			if errors.Is(err, errDocGone) {
				return
			}
		}
	}
}

// pause keeps a client from spinning against a target that refuses it.
func pause(r *Runner) {
	if !r.stop.Load() {
		time.Sleep(10 * time.Millisecond)
	}
}

// connect subscribes from the client's version (the server replays what
// came after it) and sends the op in flight again, if any.
func (c *wsClient) connect() bool {
	q := url.Values{}
	q.Set("client_id", c.clientID)
	q.Set("last_event_id", strconv.FormatUint(c.version, 10))
	if c.r.cfg.Token != "" {
		q.Set("access_token", c.r.cfg.Token)
	}
	u := "ws://" + c.w.addr + "/v1/docs/" + url.PathEscape(c.docID) + "/ws?" + q.Encode()
	conn, resp, err := c.dialer.Dial(u, nil)
	if err != nil {
		kind := "ws_dial"
		if resp != nil {
			kind = "ws_upgrade_" + strconv.Itoa(resp.StatusCode)
		}
		c.fail(kind, false)
		return false
	}
	conn.SetReadLimit(16 << 20)
	c.conn = conn
	c.w.ws.Store(conn)
	// Run closes the published connection at stop; one published after
	// it looked is closed here.
	if c.r.stop.Load() {
		c.hangUp()
		return false
	}
	if c.inflight {
		if err := c.write(); err != nil {
			c.broken("ws_write", err)
			return false
		}
	}
	return true
}

// hangUp closes the connection, if any.
func (c *wsClient) hangUp() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
		c.w.ws.Store(nil)
	}
}

// broken counts a connection that failed (unless the run is stopping,
// when Run closed it) and drops it; the client reconnects.
func (c *wsClient) broken(kind string, err error) {
	if !c.r.stop.Load() {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			kind = "timeout"
		}
		c.fail(kind, false)
	}
	c.hangUp()
	pause(c.r)
}

// nextOp fills out with one small edit against the client's version: an
// insert of one letter, or with Config.DocLength a delete of one where
// the text has that many; its latency counts from due.
func (c *wsClient) nextOp(due time.Time) {
	c.seq++
	b := append(c.out[:0], `{"type":"op","seq":`...)
	b = strconv.AppendUint(b, c.seq, 10)
	b = append(b, `,"base_version":`...)
	b = strconv.AppendUint(b, c.version, 10)
	if n := c.r.cfg.DocLength; n > 0 && c.length >= n {
		b = append(b, `,"ops":[{"op":"delete","pos":`...)
		b = strconv.AppendInt(b, int64(c.w.rng.IntN(c.length)), 10)
		c.out = append(b, `,"len":1}]}`...)
	} else {
		b = append(b, `,"ops":[{"op":"insert","pos":`...)
		b = strconv.AppendInt(b, int64(c.w.rng.IntN(c.length+1)), 10)
		b = append(b, `,"text":"`...)
		b = append(b, byte('a'+c.w.rng.IntN(26)))
		c.out = append(b, `"}]}`...)
	}
	c.inflight, c.sent = true, due
}

func (c *wsClient) write() error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.r.cfg.Timeout))
	return c.conn.WriteMessage(websocket.TextMessage, c.out)
}

// read decodes the next message into c.msg. Every client expects one
// within the timeout: its op is in flight or its change on the way.
func (c *wsClient) read() error {
	_ = c.conn.SetReadDeadline(time.Now().Add(c.r.cfg.Timeout))
	_, rd, err := c.conn.NextReader()
	if err != nil {
		return err
	}
	c.in.Reset()
	if _, err := c.in.ReadFrom(rd); err != nil {
		return err
	}
	c.msg = wsMessage{Ops: c.msg.Ops[:0]}
	return json.Unmarshal(c.in.Bytes(), &c.msg)
}

var errDocGone = errors.New("the document was deleted")

// handle acts on c.msg.
func (c *wsClient) handle() error {
	m := &c.msg
	switch m.Type {
	case "change":
		if m.Version <= c.version {
			return nil // replayed, integrated already
		}
		if m.Version != c.version+1 {
			// A change was missed: resubscribe from the version held.
			c.fail("ws_gap", false)
			return errBroken
		}
		c.version = m.Version
		// A server that reports more deleted than there was (a bug)
		// must not make the next op's position negative.
		c.length = max(0, c.length+lengthChange(m.Ops))
		c.countEvent()
	case "ack":
		if !c.inflight || m.Seq != c.seq {
			return nil // an answer to an op abandoned already
		}
		c.inflight, c.awaiting = false, m.Version
		if c.r.cfg.OnAck != nil {
			c.r.cfg.OnAck(Ack{Doc: c.docID, Version: m.Version})
		}
		c.ack()
	case "error":
		code := "unknown"
		if m.Error != nil {
			code = m.Error.Code
		}
		if !c.inflight || (m.Seq != 0 && m.Seq != c.seq) {
			c.fail("ws_error_"+code, false)
			return nil
		}
		// A refused submit used no seq; the next op takes a new one
		// anyway (safe whatever happened to this one).
		c.inflight = false
		c.fail("ws_error_"+code, true)
		if code == "version_too_old" {
			return errBroken // resubscribing brings a reset
		}
		pause(c.r)
	case "reset":
		c.countReset()
		if m.Deleted || m.Doc == nil {
			c.fail("ws_doc_deleted", false)
			return errDocGone
		}
		c.version, c.length = m.Doc.Version, utf8.RuneCountInString(m.Doc.Content)
		return errBroken // the server closes after a reset
	}
	return nil
}

// The counters below count only once measuring has begun.

func (c *wsClient) ack() {
	if !c.r.counting() {
		return
	}
	now := time.Now()
	w := c.w
	w.mu.Lock()
	w.recordLatency(now.Sub(c.sent))
	w.acks++
	w.countOK(c.r, now)
	w.mu.Unlock()
	if n := c.r.total.Add(1); c.r.cfg.Requests > 0 && n >= c.r.cfg.Requests {
		c.r.halt()
	}
}

// fail counts a failure of kind; answered says it answers the op in
// flight (its latency is recorded as for a failed HTTP request).
func (c *wsClient) fail(kind string, answered bool) {
	if !c.r.counting() {
		return
	}
	w := c.w
	w.mu.Lock()
	if answered {
		w.recordLatency(time.Since(c.sent))
	}
	w.failed(kind)
	w.mu.Unlock()
}

func (c *wsClient) countEvent() {
	if c.r.counting() {
		c.w.mu.Lock()
		c.w.events++
		c.w.mu.Unlock()
	}
}

func (c *wsClient) countReset() {
	if c.r.counting() {
		c.w.mu.Lock()
		c.w.resets++
		c.w.mu.Unlock()
	}
}
