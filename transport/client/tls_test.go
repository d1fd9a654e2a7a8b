package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// selfSigned returns a certificate for 127.0.0.1 in PEM form.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "troupe test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestHTTPSNode(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Logger: quietLogger{}, Handler: func(ctx *fasthttp.RequestCtx) { answer(ctx, 200, `{"status":"ok"}`) }}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLSEmbed(ln, certPEM, keyPEM) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		ln.Close()
		if err := <-done; err != nil {
			t.Log(err)
		}
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	cfg := testConfig("https://" + ln.Addr().String())
	cfg.TLSConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	c := newTestClient(t, cfg)
	if meta, err := c.Health(testCtx(t)); err != nil || meta.Node != "https://"+ln.Addr().String() {
		t.Fatalf("%+v %v", meta, err)
	}
	// Without the CA the node is not trusted: a failure, not an answer.
	cfg.TLSConfig = nil
	cfg.MaxAttempts = 1
	untrusting := newTestClient(t, cfg)
	if _, err := untrusting.Health(testCtx(t)); err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
}

func TestDoRejectsRelativePath(t *testing.T) {
	c := newTestClient(t, testConfig("127.0.0.1:1"))
	if _, err := c.Do(testCtx(t), "GET", "v1/users", nil, nil); err == nil {
		t.Fatal("relative path accepted")
	}
}
