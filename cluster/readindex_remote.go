package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/replica"
)

// leaderClients keeps one pooled connection set per leader address for
// read-index calls.
type leaderClients struct {
	mu      sync.Mutex
	clients map[string]*fasthttp.HostClient
	tls     *tls.Config // nil: plain HTTP between nodes
}

func (lc *leaderClients) get(addr string) *fasthttp.HostClient {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.clients == nil {
		lc.clients = map[string]*fasthttp.HostClient{}
	}
	c := lc.clients[addr]
	if c == nil {
		c = &fasthttp.HostClient{Addr: addr, MaxConns: 16, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
			NoDefaultUserAgentHeader: true, IsTLS: lc.tls != nil,
			// A plain dialer: fasthttp's default keeps a process-wide
			// DNS cache goroutine.
			Dial: func(a string) (net.Conn, error) { return net.DialTimeout("tcp", a, 5*time.Second) }}
		if lc.tls != nil {
			c.TLSConfig = lc.tls.Clone()
			if host, _, err := net.SplitHostPort(addr); err == nil {
				c.TLSConfig.ServerName = host
			}
		}
		lc.clients[addr] = c
	}
	return c
}

func (lc *leaderClients) close() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, c := range lc.clients {
		c.CloseIdleConnections()
	}
}

// remoteReadTimeout bounds one read-index round trip to the leader; the
// reads waiting on it give up at their own deadlines.
const remoteReadTimeout = 5 * time.Second

// remoteReadIndex asks the leader for a read index, for a whole batch of
// this follower's linearizable reads.
func (n *Node) remoteReadIndex() (uint64, error) {
	leader := n.LeaderHTTP()
	if leader == "" {
		return 0, replica.ErrNotLeader
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod("GET")
	req.SetRequestURI(replica.ReadIndexPath)
	req.Header.SetHost(leader)
	if n.leaders.tls != nil {
		req.URI().SetScheme("https")
	}
	if n.cfg.ClusterSecret != "" {
		req.Header.Set("X-Troupe-Cluster-Secret", n.cfg.ClusterSecret)
	}
	if err := n.leaders.get(leader).DoTimeout(req, resp, remoteReadTimeout); err != nil {
		return 0, fmt.Errorf("%w: cannot reach the leader for a read index: %v", replica.ErrNotLeader, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return 0, fmt.Errorf("%w: the leader answered %d to a read-index request", replica.ErrNotLeader, resp.StatusCode())
	}
	var body struct {
		Index json.Number `json:"index"`
	}
	if err := json.Unmarshal(resp.Body(), &body); err != nil {
		return 0, fmt.Errorf("bad read-index answer: %w", err)
	}
	return strconv.ParseUint(string(body.Index), 10, 64)
}
