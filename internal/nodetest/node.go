// Package nodetest runs a real troupe node in process for tests of what
// talks to one over HTTP (the Go client, the load generator): raft in a
// temporary directory, the actors, and the fasthttp server on 127.0.0.1,
// as `troupe serve --insecure --rate-limit off` with cheap password
// hashing. It wires cluster into transport as cmd/troupe does, and lives
// outside transport so that transport's builds never depend on cluster.
package nodetest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/cluster"
	"github.com/troupe-db/troupe/cluster/clustertest"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/api"
)

// CheapArgon makes password hashing cost next to nothing in tests.
var CheapArgon = storage.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, KeyLen: 32, SaltLen: 16}

// AdminPassword is the first admin's password (admin@troupe.local).
const AdminPassword = "admin-password"

// Start starts a one-node cluster with userShards user shards that
// runs until the test ends, and returns its HTTP address (host:port) once
// it is ready.
func Start(t testing.TB, userShards int) string {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	set := metrics.NewSet()
	sys := actors.NewSystem(logger, set)
	ncfg := cluster.DefaultConfig()
	ncfg.DataDir = t.TempDir()
	ncfg.UserShards = userShards
	ncfg.RaftAddr = clustertest.FreeAddr(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ncfg.AdvertiseHTTP = ln.Addr().String()
	adminHash := storage.HashPassword(AdminPassword, []byte("0123456789abcdef"), CheapArgon)
	node, err := cluster.Open(ncfg, logger, set, sys, func() (storage.NewUser, error) {
		return storage.NewUser{Name: "Admin", Email: "admin@troupe.local", Role: storage.RoleAdmin, PasswordHash: adminHash}, nil
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	limiter := actors.NewLimiter(sys, set, actors.LimiterConfig{})
	hcfg := api.DefaultConfig()
	hcfg.HTTPAddr, hcfg.Insecure, hcfg.Argon2, hcfg.Limiter = ln.Addr().String(), true, CheapArgon, limiter
	srv, err := api.New(hcfg, logger, set, node, node.Docs(), func() api.Users {
		if u := node.Users(); u != nil {
			return u
		}
		return nil
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Log(err)
		}
		if err := node.Shutdown(); err != nil {
			t.Error(err)
		}
		limiter.Close()
		sys.Shutdown()
	})
	deadline := time.Now().Add(10 * time.Second)
	for node.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("node not ready: %v", node.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ln.Addr().String()
}
