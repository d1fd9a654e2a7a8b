// Package clustertest holds helpers that the tests of several packages
// share: free loopback addresses, a throwaway PKI for TLS tests and the
// register model that porcupine checks histories against. It imports
// nothing of troupe, so any package's tests may use it; only tests and
// test helpers (internal/nodetest) do.
package clustertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// PKI is a CA and one certificate for 127.0.0.1, usable for both server
// and client authentication, as PEM files.
type PKI struct {
	CA, Cert, Key string
	Pool          *x509.CertPool
}

// NewPKI writes a fresh CA and node certificate (valid for an hour) into
// a temporary directory of t.
func NewPKI(t testing.TB, name string) PKI {
	t.Helper()
	dir := t.TempDir()
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name + " node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return PKI{CA: write("ca.pem", "CERTIFICATE", caDER), Cert: write("node.pem", "CERTIFICATE", der),
		Key: write("node-key.pem", "EC PRIVATE KEY", keyDER), Pool: pool}
}

// RegOp is one operation on a register named Key: a write of Value, or a
// read (Write false) whose output is the value read.
type RegOp struct {
	Key   string
	Write bool
	Value string
}

// RegisterModel is a set of independent registers (a user's name each),
// all starting at "initial". Histories are checked per key. A write whose
// outcome is unknown is recorded with an infinite return time: the
// checker then lets it take effect at any later point, or never.
var RegisterModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(RegOp).Key
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(byKey))
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "initial" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(RegOp)
		if in.Write {
			return true, in.Value
		}
		return output.(string) == state, state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(RegOp)
		if in.Write {
			return "set(" + in.Key + ", " + in.Value + ")"
		}
		return "get(" + in.Key + ") → " + output.(string)
	},
}

// FreeAddr returns a loopback address that nobody listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
