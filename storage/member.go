package storage

import (
	"fmt"
	"net"
)

// Member is one node of the cluster as the replicated directory knows
// it: where clients and other nodes reach it.
type Member struct {
	ID       string
	HTTPAddr string // host:port of its HTTP API
	RaftAddr string // host:port of its raft transport
}

// MemberChange records or removes a member.
type MemberChange struct {
	Member
	Remove bool
}

// Validate checks a member's id and addresses.
func (m *Member) Validate() error {
	if m.ID == "" || len(m.ID) > 64 {
		return fmt.Errorf("member id must be 1-64 characters")
	}
	for _, r := range m.ID {
		if !IDRune(r) {
			return fmt.Errorf("member id %q may hold only letters, digits, '-', '_' and '.'", m.ID)
		}
	}
	for name, addr := range map[string]string{"http_addr": m.HTTPAddr, "raft_addr": m.RaftAddr} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("%s %q must be host:port", name, addr)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return fmt.Errorf("%s %q must be an address others can reach, not %s", name, addr, host)
		}
	}
	return nil
}

func (e *encoder) member(m *Member) {
	e.str(m.ID)
	e.str(m.HTTPAddr)
	e.str(m.RaftAddr)
}

func (d *decoder) member(m *Member) {
	m.ID = d.str()
	m.HTTPAddr = d.str()
	m.RaftAddr = d.str()
}

// IDRune reports whether r may appear in a node id: letters, digits, '-',
// '_' and '.'.
func IDRune(r rune) bool {
	return r == '-' || r == '_' || r == '.' || r < 0x80 && isAlnum(byte(r))
}
