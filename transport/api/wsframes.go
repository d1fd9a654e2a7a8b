package api

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	json "github.com/goccy/go-json"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// What a WebSocket stream writes: its events as JSON messages in text
// frames (a change encoded once for all its subscribers), and its
// metrics.

// appendWSFrame appends payload as one unfragmented text frame from the
// server (RFC 6455 §5.2: FIN and opcode 1, the payload length in 7, 7+16
// or 7+64 bits, no mask).
func appendWSFrame(b, payload []byte) []byte {
	b = append(b, 0x81)
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// appendWSEvent appends ev as a frame. A change is encoded once for all
// the subscribers that send it (wsChangeFrames).
func appendWSEvent(b []byte, ev *actors.Event) []byte {
	if ev.Kind == actors.EventChange {
		return append(b, wsChangeFrame(ev.Change)...)
	}
	js, err := json.Marshal(wsEvent(ev))
	if err != nil {
		js = []byte(`{"type":"error","error":{"code":"internal","message":"unencodable event"}}`)
	}
	return appendWSFrame(b, js)
}

// wsChangeFrames holds the frames of recent changes, each under its
// change (the *storage.Change every subscriber of the document gets):
// the first subscriber to send a change encodes it, the others copy the
// bytes. A slot holds one change; two changes meeting in a slot only
// cost an encoding. Frames over wsCachedFrameMax are not kept.
var wsChangeFrames [256]atomic.Pointer[changeFrame]

type changeFrame struct {
	change *storage.Change
	frame  []byte // never changed once stored
}

func wsChangeFrame(c *storage.Change) []byte {
	slot := &wsChangeFrames[c.Version%uint64(len(wsChangeFrames))]
	if f := slot.Load(); f != nil && f.change == c {
		return f.frame
	}
	js, err := json.Marshal(wsEvent(&actors.Event{Kind: actors.EventChange, Change: c}))
	if err != nil { // cannot happen: plain fields
		js = []byte(`{"type":"error","error":{"code":"internal","message":"unencodable change"}}`)
	}
	frame := appendWSFrame(nil, js)
	if len(frame) <= wsCachedFrameMax {
		slot.Store(&changeFrame{change: c, frame: frame})
	}
	return frame
}

// wsCachedFrameMax bounds the frames wsChangeFrames keeps (each with its
// change): at most 256 × 2 × 64 KiB stay alive. A bigger change is
// encoded by each subscriber that sends it.
const wsCachedFrameMax = 64 << 10

// wsEvent is an event as a WebSocket message: the SSE data with a type.
func wsEvent(ev *actors.Event) any {
	switch ev.Kind {
	case actors.EventChange:
		c := toChangeJSON(ev.Change)
		return struct {
			Type string `json:"type"`
			changeJSON
		}{"change", c}
	case actors.EventPresence:
		return struct {
			Type string `json:"type"`
			presenceJSON
		}{"presence", toPresenceJSON(ev.Presence)}
	}
	m := map[string]any{"type": "reset"}
	if ev.Doc != nil {
		m["doc"] = toDocJSON(ev.Doc, true, nil)
	} else {
		m["deleted"] = true
	}
	return m
}

// wsMetrics count the messages the WebSocket sessions receive, and what
// they refuse and coalesce.
type wsMetrics struct {
	received, rateLimited, tooLarge, cursorsCoalesced *metrics.Counter
	acksWithChange, acksAlone                         *metrics.Counter
}

func newWSMetrics(set *metrics.Set) wsMetrics {
	return wsMetrics{
		received:         set.NewCounter(`troupe_ws_messages_total`),
		rateLimited:      set.NewCounter(`troupe_ws_messages_refused_total{reason="rate_limited"}`),
		tooLarge:         set.NewCounter(`troupe_ws_messages_refused_total{reason="too_large"}`),
		cursorsCoalesced: set.NewCounter(`troupe_ws_cursors_coalesced_total`),
		acksWithChange:   set.NewCounter(`troupe_ws_acks_total{write="with_change"}`),
		acksAlone:        set.NewCounter(`troupe_ws_acks_total{write="alone"}`),
	}
}

// acked counts an ack written through the pump, in one write with its
// op's change or not.
func (m *wsMetrics) acked(withChange bool) {
	if withChange {
		m.acksWithChange.Inc()
	} else {
		m.acksAlone.Inc()
	}
}
