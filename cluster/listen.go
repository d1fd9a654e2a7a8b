package cluster

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// ListenRaft binds the address raft traffic arrives on (--raft-addr),
// over mutual TLS when cfg names TLS files, and returns the stream layer
// Open takes in Config.StreamLayer. A node binds it before it writes
// anything into its data dir, so a taken port leaves no trace. The caller
// closes the layer if it never reaches Open; after that the node does.
func ListenRaft(cfg Config) (raft.StreamLayer, error) {
	advertise := cfg.AdvertiseRaft
	if advertise == "" {
		advertise = cfg.RaftAddr
	}
	advAddr, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve the advertised raft address %q (--advertise-raft): %w", advertise, err)
	}
	if cfg.TLS.Enabled() {
		tcfg, err := cfg.TLS.Config()
		if err != nil {
			return nil, err
		}
		return NewTLSStreamLayer(cfg.RaftAddr, advAddr, tcfg)
	}
	if advAddr.IP == nil || advAddr.IP.IsUnspecified() {
		return nil, fmt.Errorf("cannot advertise raft address %q to other nodes: give a reachable --advertise-raft", advertise)
	}
	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for raft on %s (--raft-addr): %w", cfg.RaftAddr, causeOf(err))
	}
	if cfg.AdvertiseRaft == "" && advAddr.Port == 0 {
		// Bound to any free port: peers dial the one the kernel chose.
		advAddr = &net.TCPAddr{IP: advAddr.IP, Port: ln.Addr().(*net.TCPAddr).Port}
	}
	return &tcpStreamLayer{Listener: ln, advertise: advAddr}, nil
}

// tcpStreamLayer carries raft over plain TCP on a listener bound in
// advance.
type tcpStreamLayer struct {
	net.Listener
	advertise net.Addr
}

func (l *tcpStreamLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.Listener.Addr()
}

func (l *tcpStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

// causeOf strips a net.OpError down to its cause ("address already in
// use"), since the message around it names the address already.
func causeOf(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
