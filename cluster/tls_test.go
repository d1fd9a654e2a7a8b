package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA makes a CA and a node certificate for 127.0.0.1 in dir.
func testCA(t *testing.T, dir, name string) TLSFiles {
	t.Helper()
	write := func(file string, blockType string, der []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name + " node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return TLSFiles{
		CA:   write(name+"-ca.pem", "CERTIFICATE", caDER),
		Cert: write(name+"-cert.pem", "CERTIFICATE", der),
		Key:  write(name+"-key.pem", "EC PRIVATE KEY", keyDER),
	}
}

func TestClusterOverMutualTLS(t *testing.T) {
	files := testCA(t, t.TempDir(), "troupe")
	var nodes []*Node
	for i := range 3 {
		id := fmt.Sprintf("t%d", i+1)
		mode := Join
		if i == 0 {
			mode = Bootstrap
		}
		n, stop := startMemberWith(t, id, mode, t.TempDir(), freeAddr(t), func(c *Config) { c.TLS = files })
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
	stranger := testCA(t, t.TempDir(), "stranger")
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
