package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The rate-limit rows: single checks over HTTP, multi-checks of 10 over
// HTTP, and Envoy's rate-limit service over gRPC (from the load
// generator's lean client, then from grpc-go's), each next to its floor
// (the bare fasthttp server; for gRPC a bare gRPC rate-limit service with
// the node's gRPC settings).

// rateLimitRow is one rate-limit scenario of the suite.
type rateLimitRow struct {
	label string
	args  func(n *node) []string // the scenario's own flags
}

var rateLimitRows = []rateLimitRow{
	{"ratelimit-check (10k keys), 64 connections", func(*node) []string {
		return []string{"--scenario", "ratelimit-check", "--connections", "64"}
	}},
	{"ratelimit-batch (10 checks per request, all or nothing), 64 connections", func(*node) []string {
		return []string{"--scenario", "ratelimit-batch", "--checks", "10", "--connections", "64"}
	}},
	{"ratelimit-grpc (Envoy's rate-limit service, 1 descriptor per request), 64 streams", func(n *node) []string {
		return []string{"--scenario", "ratelimit-grpc", "--grpc-addr", n.grpcAddr, "--connections", "64"}
	}},
	// The same calls from grpc-go's client, which spends ≈ 20 µs of the
	// shared cores a call (the load generator's lean client a few): the
	// figure earlier reports gave.
	{"ratelimit-grpc, grpc-go's client, 64 streams", func(n *node) []string {
		return []string{"--scenario", "ratelimit-grpc", "--grpc-client", "grpc-go", "--grpc-addr", n.grpcAddr, "--connections", "64"}
	}},
}

// rateLimitOnly runs the rate-limit rows against bin and, if before is
// set, against before as well, alternating the two binaries rounds times
// on fresh nodes, and prints one table: each row with its floor, the
// machine's load average when it started, and the node's CPU time per
// request (`make bench-ratelimit`).
func rateLimitOnly(bin, before string, d time.Duration, rounds int) error {
	type build struct{ name, bin string }
	builds := []build{{"this build", bin}}
	if before != "" {
		builds = []build{{"before", before}, {"this build", bin}}
	}
	var b strings.Builder
	b.WriteString("| round | build | scenario | req/s | decisions/s | p99 ms | floor req/s | ratio | node CPU µs/req | load | stolen |\n|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var cmds []string
	for round := 1; round <= rounds; round++ {
		for _, bu := range builds {
			n, err := startNodeProc(bu.bin)
			if err != nil {
				return err
			}
			for _, row := range rateLimitRows {
				fmt.Fprintf(os.Stderr, "→ round %d, %s: %s\n", round, bu.name, row.label)
				args := append([]string{"bench", "--addr", "http://" + n.addr, "--duration", d.String(), "--warmup", "1s",
					"--json", "--compare-floor"}, row.args(n)...)
				load := loadAverage()
				cpu0, ok0 := n.cpu()
				res, cmd, err := runBench(bin, args)
				if err != nil {
					n.remove()
					return err
				}
				cpu1, ok1 := n.cpu()
				perReq := "—"
				if ok0 && ok1 && res.Requests > 0 && res.DurationS > 0 {
					// The warmup (1 s) counted at the measured rate.
					reqs := float64(res.Requests) * (res.DurationS + 1) / res.DurationS
					perReq = fmt.Sprintf("%.1f", float64((cpu1-cpu0).Microseconds())/reqs)
				}
				items := max(res.Items, 1)
				fmt.Fprintf(&b, "| %d | %s | %s | %.0f | %.0f | %s | %.0f | %.2f | %s | %s | %s |\n", round, bu.name, row.label,
					res.ThroughputRPS, res.ThroughputRPS*float64(items), ms(res.LatencyUS.P99), res.Floor.ThroughputRPS,
					res.FloorRatio, perReq, load, pct(res.Steal))
				if round == 1 && len(cmds) < len(rateLimitRows) {
					cmds = append(cmds, strings.Replace(cmd, n.grpcAddr, "127.0.0.1:8081", 1))
				}
			}
			n.remove()
		}
	}
	b.WriteString("\nNode: `troupe serve --insecure --rate-limit off --max-streams-per-user 100000 --grpc-addr 127.0.0.1:8081`, fresh for each build and round. Commands:\n\n```sh\n")
	for _, c := range cmds {
		b.WriteString(c + "\n")
	}
	b.WriteString("```\n")
	_, err := os.Stdout.WriteString(b.String())
	return err
}

// cpu is the node process's CPU time so far (user and system).
func (n *node) cpu() (time.Duration, bool) {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(n.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The fields after the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	// Clock ticks of 10 ms (USER_HZ is 100 on Linux).
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}

// loadAverage is the one-minute load average, or — when unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "—"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "—"
}
