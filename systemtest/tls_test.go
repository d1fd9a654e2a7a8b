package systemtest

import (
	"crypto/tls"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

// TestClusterOverTLS runs three nodes that serve HTTPS and speak raft over
// mutual TLS: joins, forwarded writes and a follower's linearizable reads
// all travel encrypted, and nodes recognise each other by certificate.
func TestClusterOverTLS(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	p := clustertest.NewPKI(t, "systemtest")
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
	if out, err := exec.Command(troupeBin, "status", "--addr", nodes[1].URL, "--ca", p.CA).CombinedOutput(); err != nil || strings.Count(string(out), "yes\n") != 3 {
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
