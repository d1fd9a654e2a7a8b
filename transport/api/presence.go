package api

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/actors"
)

// Presence across nodes: each node keeps its own clients' presence (in
// the document actors) and tells the other nodes of every change,
// best-effort, and again every presenceRenew so that a node that missed
// a message, or whose peer died, converges: a report not renewed within
// the presence TTL (10 s) expires there with a leave. Presence never
// enters the log, snapshots or state hashes.

const (
	presencePath   = "/internal/v1/presence"
	presenceRenew  = 3 * time.Second
	maxPresenceMsg = 1024
)

type presenceItem struct {
	Doc      string `json:"doc"`
	User     string `json:"user"`
	ClientID string `json:"client_id"`
	State    string `json:"state"`
	Pos      int    `json:"pos"`
}

type presenceBatch struct {
	Items []presenceItem `json:"items"`
}

// presenceRelay sends this node's presence changes to the other nodes.
type presenceRelay struct {
	s      *Server
	in     chan presenceItem
	b      peerBatcher[presenceItem]
	stop   chan struct{}
	wg     sync.WaitGroup
	local  map[string]map[string]presenceItem // doc → client → last state (relay goroutine only)
	closed sync.Once
}

func newPresenceRelay(s *Server) *presenceRelay {
	r := &presenceRelay{s: s, in: make(chan presenceItem, 4096), stop: make(chan struct{}), local: map[string]map[string]presenceItem{}}
	r.b = peerBatcher[presenceItem]{maxItems: maxPresenceMsg, maxBytes: 1 << 20, inFlight: 2,
		size: func(it presenceItem) int { return len(it.Doc) + len(it.User) + len(it.ClientID) + 32 },
		send: r.send}
	s.docs.OnPresence(func(doc string, p actors.Presence) {
		select {
		case r.in <- presenceItem{Doc: doc, User: p.User, ClientID: p.ClientID, State: p.State, Pos: p.Pos}:
		default: // best-effort: the next renewal repairs it
		}
	})
	r.wg.Add(1)
	go r.run()
	return r
}

func (r *presenceRelay) close() {
	r.closed.Do(func() {
		close(r.stop)
		r.wg.Wait()
		r.b.close()
	})
}

func (r *presenceRelay) run() {
	defer r.wg.Done()
	renew := time.NewTicker(presenceRenew)
	defer renew.Stop()
	for {
		select {
		case <-r.stop:
			return
		case it := <-r.in:
			clients := r.local[it.Doc]
			if it.State == "leave" {
				delete(clients, it.ClientID)
				if len(clients) == 0 {
					delete(r.local, it.Doc)
				}
			} else {
				if clients == nil {
					clients = map[string]presenceItem{}
					r.local[it.Doc] = clients
				}
				clients[it.ClientID] = it
			}
			r.broadcast(it)
		case <-renew.C:
			for _, clients := range r.local {
				for _, it := range clients {
					r.broadcast(it)
				}
			}
		}
	}
}

// broadcast queues it to every other member.
func (r *presenceRelay) broadcast(it presenceItem) {
	o := r.s.memberView()
	for i, addr := range o.addrs {
		if i == o.self {
			continue
		}
		if q, ok := r.b.queue(addr); ok {
			select {
			case q <- it:
			default:
			}
		}
	}
}

func (r *presenceRelay) send(addr string, batch []presenceItem) {
	s := r.s
	data, err := json.Marshal(presenceBatch{Items: batch})
	if err != nil {
		return
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	s.peerPost(req, addr, presencePath, "application/json", data)
	if err := s.fwd.client(addr).DoTimeout(req, resp, time.Second); err != nil {
		s.log.Debug("presence not delivered", slog.String("to", addr), slog.Any("err", err))
	}
}

// receivePresence is the route other nodes report presence to.
func (s *Server) receivePresence(ctx *fasthttp.RequestCtx) {
	if !s.peerProven(ctx) && !s.forwardedByPeer(ctx) {
		writeError(ctx, newError("forbidden", "only members of this cluster may report presence"))
		return
	}
	var b presenceBatch
	if e := decodeJSON(ctx.PostBody(), &b); e != nil {
		writeError(ctx, e)
		return
	}
	if len(b.Items) > maxPresenceMsg {
		writeError(ctx, badRequest("too many items", "items"))
		return
	}
	docs := s.docs
	for _, it := range b.Items {
		switch it.State {
		case "join", "cursor", "leave":
		default:
			continue
		}
		docs.RemotePresence(it.Doc, actors.Presence{User: it.User, ClientID: it.ClientID, State: it.State, Pos: it.Pos})
	}
	ctx.SetStatusCode(http.StatusNoContent)
}
