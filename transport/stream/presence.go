package stream

import (
	"log/slog"
	"sync"
	"time"

	json "github.com/goccy/go-json"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/transport/peer"
)

// Presence across nodes: each node keeps its own clients' presence (in
// the document actors) and tells the other nodes of every change,
// best-effort, and again every presenceRenew so that a node that missed
// a message, or whose peer died, converges: a report not renewed within
// the presence TTL (10 s) expires there with a leave. Presence never
// enters the log, snapshots or state hashes.

const (
	// PresencePath is where a node receives its peers' presence reports
	// (a PresenceBatch).
	PresencePath = "/internal/v1/presence"
	// MaxPresenceItems bounds the items of one PresenceBatch.
	MaxPresenceItems = 1024
	presenceRenew    = 3 * time.Second
)

// PresenceItem is one client's presence in one document, as a node
// reports it to its peers.
type PresenceItem struct {
	Doc      string `json:"doc"`
	User     string `json:"user"`
	ClientID string `json:"client_id"`
	State    string `json:"state"`
	Pos      int    `json:"pos"`
	// Anchor is the other end of a selection (with state cursor), absent
	// when nothing is selected (and from nodes that did not know it).
	Anchor *int `json:"anchor,omitempty"`
}

// PresenceBatch is the body of a presence report.
type PresenceBatch struct {
	Items []PresenceItem `json:"items"`
}

// RelayConfig is how a Relay reaches the other members.
type RelayConfig struct {
	// Peers returns the members' HTTP addresses and this node's place
	// among them (-1 if it is not one).
	Peers func() (addrs []string, self int)
	// Post sends body to path on the member at addr, or fails.
	Post func(addr, path string, body []byte) error
	Log  *slog.Logger
}

// Relay sends this node's presence changes to the other nodes. Its
// goroutine owns local; Local may be called from any goroutine.
type Relay struct {
	cfg    RelayConfig
	in     chan PresenceItem
	b      peer.Batcher[PresenceItem]
	stop   chan struct{}
	wg     sync.WaitGroup
	local  map[string]map[string]PresenceItem // doc → client → last state (relay goroutine only)
	closed sync.Once
}

// NewRelay starts a relay; Close stops it.
func NewRelay(cfg RelayConfig) *Relay {
	r := &Relay{cfg: cfg, in: make(chan PresenceItem, 4096), stop: make(chan struct{}), local: map[string]map[string]PresenceItem{}}
	r.b = peer.Batcher[PresenceItem]{MaxItems: MaxPresenceItems, MaxBytes: 1 << 20, InFlight: 2,
		Size: func(it PresenceItem) int { return len(it.Doc) + len(it.User) + len(it.ClientID) + 32 },
		Send: r.send}
	r.wg.Add(1)
	go r.run()
	return r
}

// Local is told of a change of presence of this node's clients (by the
// document actors: it never blocks).
func (r *Relay) Local(doc string, p actors.Presence) {
	select {
	case r.in <- itemOf(doc, p):
	default: // best-effort: the next renewal repairs it
	}
}

// Close stops the relay; reports still queued are dropped.
func (r *Relay) Close() {
	r.closed.Do(func() {
		close(r.stop)
		r.wg.Wait()
		r.b.Close()
	})
}

func (r *Relay) run() {
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
					clients = map[string]PresenceItem{}
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
func (r *Relay) broadcast(it PresenceItem) {
	addrs, self := r.cfg.Peers()
	for i, addr := range addrs {
		if i == self {
			continue
		}
		if q, ok := r.b.Queue(addr); ok {
			select {
			case q <- it:
			default:
			}
		}
	}
}

func (r *Relay) send(addr string, batch []PresenceItem) {
	data, err := json.Marshal(PresenceBatch{Items: batch})
	if err != nil {
		return
	}
	if err := r.cfg.Post(addr, PresencePath, data); err != nil {
		r.cfg.Log.Debug("presence not delivered", slog.String("to", addr), slog.Any("err", err))
	}
}

// itemOf is a presence as reported to the other nodes.
func itemOf(doc string, p actors.Presence) PresenceItem {
	it := PresenceItem{Doc: doc, User: p.User, ClientID: p.ClientID, State: p.State, Pos: p.Pos}
	if p.State == "cursor" && p.Selected {
		anchor := p.Anchor
		it.Anchor = &anchor
	}
	return it
}

// Presence is a reported presence as the document actors keep it.
func (it PresenceItem) Presence() actors.Presence {
	p := actors.Presence{User: it.User, ClientID: it.ClientID, State: it.State, Pos: it.Pos}
	if it.State == "cursor" && it.Anchor != nil && *it.Anchor >= 0 && *it.Anchor != it.Pos {
		p.Selected, p.Anchor = true, *it.Anchor
	}
	return p
}
