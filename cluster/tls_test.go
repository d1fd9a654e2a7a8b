package cluster

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

// testCA makes a CA and a node certificate for 127.0.0.1.
func testCA(t *testing.T, name string) TLSFiles {
	p := clustertest.NewPKI(t, name)
	return TLSFiles{CA: p.CA, Cert: p.Cert, Key: p.Key}
}

func TestClusterOverMutualTLS(t *testing.T) {
	files := testCA(t, "troupe")
	var nodes []*Node
	for i := range 3 {
		id := fmt.Sprintf("t%d", i+1)
		mode := Join
		if i == 0 {
			mode = Bootstrap
		}
		n, stop := startMemberWith(t, id, mode, t.TempDir(), clustertest.FreeAddr(t), func(c *Config) { c.TLS = files })
		defer stop()
		nodes = append(nodes, n)
	}
	waitFor(t, "t1 to lead", func() bool { return nodes[0].Ready() == nil })
	for _, n := range nodes[1:] {
		if err := nodes[0].AddMember(n.self(), true, time.Now().Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		createUser(t, nodes[0], "TLS", fmt.Sprintf("tls%d@example.com", i))
	}
	waitFor(t, "replication over TLS", func() bool {
		return nodes[2].FSM().AppliedIndex() >= nodes[0].FSM().AppliedIndex()
	})

	// A stranger, with a certificate from another CA, cannot talk raft.
	stranger := testCA(t, "stranger")
	cfg, err := stranger.Config()
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName = "127.0.0.1"
	conn, err := tls.Dial("tcp", nodes[0].RaftAddr(), cfg)
	if err == nil {
		err = conn.Handshake()
		if err == nil {
			// TLS 1.3 reports a rejected client certificate on first read.
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil {
		t.Fatal("a node with a foreign certificate was accepted")
	}
	// Half a configuration is refused.
	if _, err := (TLSFiles{Cert: files.Cert}).Config(); err == nil {
		t.Fatal("incomplete TLS settings accepted")
	}
}
