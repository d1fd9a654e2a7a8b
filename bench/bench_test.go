package bench

import (
	"context"
	"net"
	"testing"
	"time"
)

func startFloor(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFloorServer()
	done := make(chan struct{})
	go func() { _ = f.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = f.Shutdown(); <-done })
	return ln.Addr().String()
}

func TestRunAgainstFloor(t *testing.T) {
	addr := startFloor(t)
	for _, sc := range ScenarioNames() {
		cfg := DefaultConfig()
		cfg.Addrs, cfg.Scenario, cfg.Connections = []string{addr}, sc, 3
		cfg.Duration, cfg.Warmup = 300*time.Millisecond, 50*time.Millisecond
		r, err := NewRunner(cfg, true)
		if err != nil {
			t.Fatal(err)
		}
		var lives int
		res, err := r.Run(context.Background(), func(Live) { lives++ })
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests == 0 || res.Errors != 0 || res.ThroughputRPS <= 0 || res.LatencyUS.Max == 0 || lives == 0 {
			t.Fatalf("%s: %+v (progress calls %d)", sc, res, lives)
		}
	}
}

func TestRequestLimitAndOpenLoop(t *testing.T) {
	addr := startFloor(t)
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Scenario, cfg.Connections = []string{addr}, "users-create", 2
	cfg.Duration, cfg.Warmup, cfg.Requests = time.Minute, 0, 500
	r, _ := NewRunner(cfg, true)
	res, err := r.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Each connection may finish the request it had in flight.
	if res.Requests < 500 || res.Requests > 502 {
		t.Fatalf("requests %d, want 500..502", res.Requests)
	}
	cfg.Requests, cfg.Rate, cfg.Duration = 0, 400, 500*time.Millisecond
	r, _ = NewRunner(cfg, true)
	res, err = r.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// An open loop sends no more than its schedule allows.
	if res.Requests == 0 || res.Requests > 400*3/4+int64(cfg.Connections) {
		t.Fatalf("open loop sent %d requests in %.2fs at 400/s", res.Requests, res.DurationS)
	}
}

func TestParseAddrsAndValidate(t *testing.T) {
	got, err := ParseAddrs("http://127.0.0.1:1, 127.0.0.1:2")
	if err != nil || len(got) != 2 || got[0] != "127.0.0.1:1" || got[1] != "127.0.0.1:2" {
		t.Fatal(got, err)
	}
	for _, bad := range []string{"", "https://127.0.0.1:1", "http://"} {
		if _, err := ParseAddrs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	cfg := DefaultConfig()
	cfg.Scenario = "nope"
	if cfg.Validate() == nil {
		t.Fatal("unknown scenario accepted")
	}
}
