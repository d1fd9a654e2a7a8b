package systemtest

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
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki is a test CA and one certificate for 127.0.0.1, usable as server
// and client certificate.
type pki struct {
	CA, Cert, Key string
	Pool          *x509.CertPool
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "systemtest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "troupe node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pki{CA: write("ca.pem", "CERTIFICATE", caDER), Cert: write("node.pem", "CERTIFICATE", der),
		Key: write("node-key.pem", "EC PRIVATE KEY", keyDER), Pool: pool}
}

// TestClusterOverTLS runs three nodes that serve HTTPS and speak raft over
// mutual TLS: joins, forwarded writes and a follower's linearizable reads
// all travel encrypted, and nodes recognise each other by certificate.
func TestClusterOverTLS(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	p := newPKI(t)
	tlsArgs := []string{"--http-tls-cert", p.Cert, "--http-tls-key", p.Key,
		"--tls-cert", p.Cert, "--tls-key", p.Key, "--tls-ca", p.CA, "--cluster-secret", "tls-secret",
		"--raft-heartbeat-timeout", "400ms", "--raft-election-timeout", "400ms"}
	clientTLS := &tls.Config{RootCAs: p.Pool}
	ca := newNodeConfig(t, "a")
	ca.ClientTLS = clientTLS
	ca.ExtraArgs = append(append(ca.ExtraArgs, "--bootstrap"), tlsArgs...)
	nodes := []*node{startNode(t, ca)}
	for _, id := range []string{"b", "c"} {
		c := newNodeConfig(t, id)
		c.ClientTLS = clientTLS
		c.ExtraArgs = append(append(c.ExtraArgs, "--join", "https://"+ca.HTTPAddr), tlsArgs...)
		nodes = append(nodes, startNode(t, c))
	}
	if st := status(t, nodes[2]); len(st.Members) != 3 {
		t.Fatalf("members: %+v", st)
	}
	for i := range 5 {
		u := expectUser(t, nodes[1+i%2].do(t, "POST", "/v1/users", map[string]string{"name": "T", "email": fmt.Sprintf("t%d@example.com", i)}, nil), 201)
		expectStatus(t, nodes[2-i%2].do(t, "GET", userPath(u.ID), nil, nil), 200)
	}
	sameHashes(t, nodes...)
	// The CLI speaks HTTPS with the cluster's CA.
	if out, err := exec.Command(troupeBin, "status", "--addr", nodes[1].URL, "--ca", p.CA).CombinedOutput(); err != nil || strings.Count(string(out), "  yes") != 3 {
		t.Fatalf("troupe status over HTTPS: %v\n%s", err, out)
	}
	backup := filepath.Join(t.TempDir(), "b")
	if out, err := exec.Command(troupeBin, "backup", "--addr", nodes[2].URL, "--ca", p.CA, "--out", backup, "--cluster-secret", "tls-secret").CombinedOutput(); err != nil {
		t.Fatalf("troupe backup over HTTPS: %v\n%s", err, out)
	}
	// Plain HTTP gets no answer from an HTTPS node.
	if r, err := (&node{URL: "http://" + ca.HTTPAddr, Client: nodes[0].Client}).send(t.Context(), "GET", "/healthz", nil, nil); err == nil && r.Status == 200 {
		t.Fatal("an HTTPS node answered plain HTTP")
	}
}
