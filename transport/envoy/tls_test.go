package envoy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/troupe-db/troupe/storage"
)

// testCA makes a CA and certificates it signs for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// With the cluster's TLS, a client certificate of its CA admits a caller
// without a token; a client without one needs a token; a certificate of
// another CA is refused.
func TestShouldRateLimitMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	// As cluster.TLSFiles.Config builds it.
	cluster := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, 2)}, RootCAs: ca.pool, ClientCAs: ca.pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	f := serve(t, Config{TLS: cluster}, storage.Policy{Name: "p", Limit: 100, WindowMs: 1000, Envoy: rule("d", "k")})
	addr := f.addr
	req := &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("k", "v")}}
	dial := func(cfg *tls.Config) rlsv3.RateLimitServiceClient {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return rlsv3.NewRateLimitServiceClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	withCert := dial(&tls.Config{Certificates: []tls.Certificate{ca.issue(t, 3)}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13})
	if resp, err := withCert.ShouldRateLimit(ctx, req); err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("with the cluster's certificate: %v %v", resp, err)
	}
	noCert := dial(&tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13})
	if _, err := noCert.ShouldRateLimit(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without a certificate or token: %v", err)
	}
	if resp, err := noCert.ShouldRateLimit(withToken("svc"), req); err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("without a certificate, with a token: %v %v", resp, err)
	}
	other := newTestCA(t)
	foreign := dial(&tls.Config{Certificates: []tls.Certificate{other.issue(t, 4)}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13})
	if _, err := foreign.ShouldRateLimit(ctx, req); err == nil {
		t.Fatal("a certificate of another CA was admitted")
	}
}
