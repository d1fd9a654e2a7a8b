package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// usersOnly runs the user rows (create, linearizable get, mixed; each
// next to its floor) against bin and, if before is set, against before as
// well, alternating the two binaries rounds times on fresh nodes, so that
// both meet the same machine; it prints one table. It is how a change to
// the user path is shown not to be slower (make bench-users BEFORE=…).
func usersOnly(bin, before string, d time.Duration, rounds int) error {
	type build struct{ name, bin string }
	builds := []build{{"this build", bin}}
	if before != "" {
		builds = []build{{"before", before}, {"this build", bin}}
	}
	scenarios := []struct{ label, scenario string }{
		{"users-create, 64 connections", "users-create"},
		{"users-get (linearizable), 64 connections", "users-get"},
		{"users-mixed (90% get, 10% create), 64 connections", "users-mixed"},
	}
	var b strings.Builder
	b.WriteString("| round | build | scenario | req/s | p99 ms | floor req/s | ratio | stolen |\n|---:|---|---|---:|---:|---:|---:|---:|\n")
	for round := 1; round <= rounds; round++ {
		for _, bu := range builds {
			addr, stop, err := startNode(bu.bin)
			if err != nil {
				return err
			}
			for _, sc := range scenarios {
				fmt.Fprintf(os.Stderr, "→ round %d, %s: %s\n", round, bu.name, sc.label)
				args := []string{"bench", "--addr", "http://" + addr, "--duration", d.String(), "--warmup", "1s",
					"--json", "--compare-floor", "--scenario", sc.scenario, "--connections", "64"}
				res, _, err := runBench(bin, args)
				if err != nil {
					stop()
					return err
				}
				fmt.Fprintf(&b, "| %d | %s | %s | %.0f | %s | %.0f | %.2f | %s |\n", round, bu.name, sc.label,
					res.ThroughputRPS, ms(res.LatencyUS.P99), res.Floor.ThroughputRPS, res.FloorRatio, pct(res.Steal))
			}
			stop()
		}
	}
	_, err := os.Stdout.WriteString(b.String())
	return err
}
