package api

import (
	"errors"
	"strconv"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// GET /v1/docs/{id}/events: Server-Sent Events fed by this node's
// document actor. Reconnecting with Last-Event-ID: v replays every change
// after v, then goes live (one step of the actor: no gap, no duplicate);
// a version older than the kept history gets a reset with the whole
// document. A subscriber that falls behind is cut off with a reset.
// Keep-alive comments go out every Config.StreamKeepAlive (5 s), which is
// also how a vanished client is noticed (and its presence leaves). A
// stream whose holder loses the document ends with a "closed" event
// (package stream).

const (
	sseWriteTimeout = 30 * time.Second
	// notYetWait: a client that knows a version this node has not
	// applied waits this long for it (then 503).
	notYetWait = 3 * time.Second
)

type presenceJSON struct {
	User     string `json:"user"`
	ClientID string `json:"client_id"`
	State    string `json:"state"`
	Pos      *int   `json:"pos,omitempty"`
	Anchor   *int   `json:"anchor,omitempty"` // with a selection only
}

func toPresenceJSON(p *actors.Presence) presenceJSON {
	j := presenceJSON{User: p.User, ClientID: p.ClientID, State: p.State}
	if p.State == "cursor" {
		pos := p.Pos
		j.Pos = &pos
		if p.Selected {
			anchor := p.Anchor
			j.Anchor = &anchor
		}
	}
	return j
}

// subscribe subscribes the caller to a document's events after the
// version the client gives (Last-Event-ID header, or last_event_id), or
// answers an error.
func (s *Server) subscribe(ctx *fasthttp.RequestCtx) (d *storage.Doc, sub *actors.Subscriber, clientID string, ok bool) {
	clientID = string(ctx.QueryArgs().Peek("client_id"))
	if len(clientID) > storage.MaxClientIDBytes {
		writeError(ctx, badRequest("client_id is too long", "client_id"))
		return nil, nil, "", false
	}
	deadline := s.deadline()
	d, ok = s.readableDoc(ctx, deadline)
	if !ok {
		return nil, nil, "", false
	}
	last := string(ctx.Request.Header.Peek("Last-Event-ID"))
	if last == "" {
		last = string(ctx.QueryArgs().Peek("last_event_id"))
	}
	var after uint64
	if last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			writeError(ctx, badRequest("Last-Event-ID must be a document version, an integer from 0 to "+maxUint64Text, "Last-Event-ID"))
			return nil, nil, "", false
		}
		after = n
	}
	user := callerOf(ctx).presenceName() // a guest shows as guest-xxxx
	wait := time.Now().Add(notYetWait)
	for {
		sub, err := s.docs.Subscribe(d.ID, after, last != "", user, clientID, deadline)
		if errors.Is(err, actors.ErrNotYet) && time.Now().Before(wait) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if errors.Is(err, actors.ErrNotYet) {
			writeError(ctx, newError("unavailable", "this node has not applied version "+last+" of the document yet; retry"))
			return nil, nil, "", false
		}
		var full *actors.ErrPresenceFull
		if errors.As(err, &full) {
			s.streams.RefusedPresence()
			e := newError("rate_limited", full.Error()+"; retry later")
			e.Details = map[string]any{"limit": full.Limit}
			ctx.Response.Header.Set("Retry-After", "1")
			writeError(ctx, e)
			return nil, nil, "", false
		}
		if err != nil {
			writeError(ctx, err)
			return nil, nil, "", false
		}
		return d, sub, clientID, true
	}
}

func (s *Server) docEvents(ctx *fasthttp.RequestCtx) {
	x, d, _, ok := s.openStream(ctx)
	if !ok {
		return
	}
	sub := x.Sub
	docs := s.docs
	id := d.ID
	shutdown := ctx.Done()
	serveSSE(ctx, func(send func([]byte) bool) {
		defer s.closeStream(x)
		if !send([]byte(": subscribed\n\n")) {
			return
		}
		keepAlive := time.NewTicker(s.cfg.StreamKeepAlive)
		defer keepAlive.Stop()
		var buf []byte
		// closed says why the stream ends, if it was ended for its
		// holder's sake.
		closed := func() {
			if r := sub.Reason(); r != "" {
				s.streams.Ended(r)
				send(appendSSEClosed(buf[:0], r))
			}
		}
		for {
			select {
			case ev, open := <-sub.C:
				if !open {
					return
				}
				buf = appendSSE(buf[:0], &ev)
				if !send(buf) {
					return
				}
				if ev.Kind == actors.EventReset {
					closed()
					return
				}
			case <-sub.Done():
				if revokedReason(sub.Reason()) {
					// Nothing more of the document: its reader lost it.
					closed()
					return
				}
				// Drain what was queued, then say why it ended.
				for {
					select {
					case ev := <-sub.C:
						if !send(appendSSE(buf[:0], &ev)) {
							return
						}
						if ev.Kind == actors.EventReset {
							closed()
							return
						}
						continue
					default:
					}
					break
				}
				ev := actors.Event{Kind: actors.EventReset, Doc: docs.Latest(id)}
				if send(appendSSE(buf[:0], &ev)) {
					closed()
				}
				return
			case <-keepAlive.C:
				if !send([]byte(": keep-alive\n\n")) {
					return
				}
				s.streams.Check(x) // the backstop of the revocation events
			case <-shutdown:
				return
			}
		}
	})
}

// revokedReason reports whether a subscription ended for reason ends
// without another word about the document (only "closed").
func revokedReason(reason string) bool { return reason != "" && reason != actors.ReasonDeleted }

// appendSSEClosed appends the event that ends a stream for reason.
func appendSSEClosed(b []byte, reason string) []byte {
	b = append(b, "event: closed\ndata: {\"reason\":\""...)
	b = append(b, reason...)
	return append(b, "\"}\n\n"...)
}

// appendSSE appends one event in the text/event-stream form.
func appendSSE(b []byte, ev *actors.Event) []byte {
	var name string
	var data any
	var id string
	switch ev.Kind {
	case actors.EventChange:
		name, data, id = "change", toChangeJSON(ev.Change), strconv.FormatUint(ev.Change.Version, 10)
	case actors.EventPresence:
		name, data = "presence", toPresenceJSON(ev.Presence)
	case actors.EventReset:
		name = "reset"
		if ev.Doc != nil {
			data, id = toDocJSON(ev.Doc, true, nil), strconv.FormatUint(ev.Doc.Version, 10)
		} else {
			data = map[string]any{"deleted": true}
		}
	}
	js, err := json.Marshal(data)
	if err != nil {
		js = []byte(`{}`)
	}
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, js...)
	return append(b, "\n\n"...)
}
