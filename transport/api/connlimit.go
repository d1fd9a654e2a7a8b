package api

import (
	"crypto/tls"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// connLimit bounds the client connections a node holds open
// (--max-connections), WebSockets included: they stay counted until
// closed, whoever closes them. The connection over the limit is answered
// 503 unavailable (Retry-After: 1) and closed, without reaching fasthttp.
// The answer is written by a goroutine of its own (over TLS it needs a
// handshake), at most refusalWriters at once; beyond that a refused
// connection is closed without a word. Connections from another member's
// address (forwarded writes, read indexes, presence) are let in over the
// limit: a flood of clients must not cut a node off from its cluster.
type connLimit struct {
	max int64
	// exempt reports whether a connection from addr comes from another
	// member; asked only over the limit.
	exempt  func(addr net.Addr) bool
	open    atomic.Int64
	writers chan struct{}
	wg      sync.WaitGroup // refusals being written
	refused *metrics.Counter
}

// wait waits for the refusals being written (each within refusalTimeout).
func (l *connLimit) wait() { l.wg.Wait() }

const (
	refusalWriters = 64
	refusalTimeout = 2 * time.Second
)

func newConnLimit(max int, set *metrics.Set) *connLimit {
	l := &connLimit{max: int64(max), writers: make(chan struct{}, refusalWriters),
		refused: set.NewCounter(`troupe_connections_refused_total`)}
	set.NewGauge(`troupe_connections_open`, func() float64 { return float64(l.open.Load()) })
	return l
}

func (l *connLimit) listener(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, l: l}
}

type limitedListener struct {
	net.Listener
	l *connLimit
}

func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l := ll.l
		if l.open.Add(1) <= l.max || l.exempt != nil && l.exempt(c.RemoteAddr()) {
			lc := &limitedConn{Conn: c, l: l}
			if tc, ok := c.(*tls.Conn); ok {
				// fasthttp recognises TLS (IsTLS, client certificates)
				// by these methods.
				return &limitedTLSConn{limitedConn: lc, tc: tc}, nil
			}
			return lc, nil
		}
		l.open.Add(-1)
		l.refused.Inc()
		select {
		case l.writers <- struct{}{}:
			l.wg.Add(1)
			go l.refuse(c)
		default:
			_ = c.Close()
		}
	}
}

// refusal is the answer to a connection over the limit.
func (l *connLimit) refusal() []byte {
	body := `{"error":{"code":"unavailable","message":"this node holds its maximum of ` + strconv.FormatInt(l.max, 10) +
		` connections; retry later or on another node","details":{"limit":` + strconv.FormatInt(l.max, 10) + `}}}`
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

func (l *connLimit) refuse(c net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.writers }()
	_ = c.SetDeadline(time.Now().Add(refusalTimeout))
	_, _ = c.Write(l.refusal())
	_ = c.Close()
}

// limitedConn gives its place back once, when first closed.
type limitedConn struct {
	net.Conn
	l    *connLimit
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

type limitedTLSConn struct {
	*limitedConn
	tc *tls.Conn
}

func (c *limitedTLSConn) Handshake() error                     { return c.tc.Handshake() }
func (c *limitedTLSConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }
