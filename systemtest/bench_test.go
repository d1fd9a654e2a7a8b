package systemtest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBenchSmoke runs `troupe bench` briefly against a real node and
// against the floor, and checks only that it works and reports (figures
// are never asserted: machines are shared and noisy).
func TestBenchSmoke(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	n := startNode(t, newNodeConfig(t, "bench1"))
	for _, sc := range []string{"users-create", "users-mixed", "users-batch", "users-get-stale"} {
		args := []string{"bench", "--addr", n.URL, "--scenario", sc, "--connections", "4", "--duration", "700ms",
			"--warmup", "200ms", "--users", "50", "--batch-size", "10", "--json"}
		if sc == "users-create" {
			args = append(args, "--compare-floor")
		}
		if sc == "users-get-stale" {
			args = append(args, "--rate", "200")
		}
		cmd := exec.Command(troupeBin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v\n%s%s", sc, err, stdout.String(), stderr.String())
			}
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%s: bench did not finish", sc)
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		var res struct {
			Scenario      string  `json:"scenario"`
			Connections   int     `json:"connections"`
			DurationS     float64 `json:"duration_s"`
			Requests      int64   `json:"requests"`
			Errors        int64   `json:"errors"`
			ThroughputRPS float64 `json:"throughput_rps"`
			LatencyUS     struct {
				P50, P90, P99, P999, Max int64
			} `json:"latency_us"`
			Floor      *struct{ Requests int64 } `json:"floor"`
			FloorRatio float64                   `json:"floor_ratio"`
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
			t.Fatalf("%s: last line is not the JSON result: %v\n%s", sc, err, stdout.String())
		}
		if res.Scenario != sc || res.Connections != 4 || res.Requests == 0 || res.Errors != 0 || res.ThroughputRPS <= 0 ||
			res.DurationS <= 0 || res.LatencyUS.P50 <= 0 || res.LatencyUS.Max < res.LatencyUS.P99 {
			t.Fatalf("%s: implausible result: %s", sc, lines[len(lines)-1])
		}
		if sc == "users-create" && (res.Floor == nil || res.Floor.Requests == 0 || res.FloorRatio <= 0) {
			t.Fatalf("no floor comparison: %s", lines[len(lines)-1])
		}
		if !strings.Contains(stdout.String(), "throughput") {
			t.Fatalf("%s: no table:\n%s", sc, stdout.String())
		}
	}
}
