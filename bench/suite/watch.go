package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// The watch row (`make bench-watch`, `--only watch`): user creates open
// loop at half the closed-loop maximum, with 64 change-feed watchers and
// without, alternately on one fresh node, each pair in the same minute
// so that the ratio is read within a run; a shared machine's load moves
// both figures of a pair alike.

// watchWatchers is how many streams the row holds open.
const watchWatchers = 64

// watchRow is one measurement of the row.
type watchRow struct {
	round, watchers int
	res             *result
	cpuPerReq       string
	genCores        string // the load generator's CPU, in cores
	load, cmd       string
}

// childrenCPU is the CPU time of this process's children that have
// ended (the load generators; the node runs until the rows are done).
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runWatchRows measures the closed-loop create maximum on n, then rounds
// pairs at half of it: without watchers, then with watchWatchers.
func runWatchRows(bin string, n *node, d time.Duration, rounds int) (rate float64, rows []watchRow, err error) {
	url := "http://" + n.addr
	fmt.Fprintln(os.Stderr, "→ watch: the closed-loop create maximum")
	max, _, err := runBench(bin, createArgs(url, d.String(), 0))
	if err != nil {
		return 0, nil, err
	}
	rate = max.ThroughputRPS / 2
	for round := 1; round <= rounds; round++ {
		for _, w := range []int{0, watchWatchers} {
			fmt.Fprintf(os.Stderr, "→ watch: round %d, %d watchers at %.0f req/s\n", round, w, rate)
			args := []string{"bench", "--addr", url, "--duration", d.String(), "--warmup", "2s", "--json",
				"--scenario", "watch", "--watchers", fmt.Sprint(w), "--connections", "64", "--rate", fmt.Sprintf("%.0f", rate)}
			load := loadAverage()
			cpu0, ok0 := n.cpu()
			gen0, start := childrenCPU(), time.Now()
			res, cmd, err := runBench(bin, args)
			if err != nil {
				return 0, nil, err
			}
			cpu1, ok1 := n.cpu()
			gen := fmt.Sprintf("%.2f", float64(childrenCPU()-gen0)/float64(time.Since(start)))
			perReq := "—"
			if ok0 && ok1 && res.Requests > 0 && res.DurationS > 0 {
				// The warmup (2 s) counted at the measured rate.
				reqs := float64(res.Requests) * (res.DurationS + 2) / res.DurationS
				perReq = fmt.Sprintf("%.1f", float64((cpu1-cpu0).Microseconds())/reqs)
			}
			rows = append(rows, watchRow{round: round, watchers: w, res: res, cpuPerReq: perReq, genCores: gen, load: load, cmd: cmd})
		}
	}
	return rate, rows, nil
}

// watchTable renders the rows: each with-watchers row's ratio is to the
// row without just before it.
func watchTable(rate float64, rows []watchRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Creates open loop at %.0f req/s (half the closed-loop maximum measured first on the same node).\n\n", rate)
	b.WriteString("| round | watchers | creates req/s | × without | create p99 ms | changes/s read | lag p50 ms | lag p99 ms | node CPU µs/create | generator CPU (cores) | load | stolen |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var without float64
	for _, r := range rows {
		ratio, lag50, lag99, events := "—", "—", "—", "—"
		if r.watchers == 0 {
			without = r.res.ThroughputRPS
		} else {
			if without > 0 {
				ratio = fmt.Sprintf("**%.2f**", r.res.ThroughputRPS/without)
			}
			if l := r.res.WatchLagMS; l != nil {
				lag50, lag99 = fmt.Sprint(l.P50), fmt.Sprintf("**%d**", l.P99)
			}
			events = fmt.Sprintf("%.0f", r.res.WatchEventsRPS)
		}
		fmt.Fprintf(&b, "| %d | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.round, r.watchers, r.res.ThroughputRPS, ratio,
			ms(r.res.LatencyUS.P99), events, lag50, lag99, r.cpuPerReq, r.genCores, r.load, pct(r.res.Steal))
		if len(r.res.WatchErrors) > 0 {
			fmt.Fprintf(&b, "\nwatch errors: %s\n\n", strings.Join(r.res.WatchErrors, "; "))
		}
	}
	for _, r := range rows {
		if r.watchers > 0 {
			b.WriteString("\n```sh\n" + r.cmd + "\n```\n")
			break
		}
	}
	return b.String()
}

// watchOnly is `--only watch`: the watch row on a fresh node, printed.
func watchOnly(bin string, d time.Duration, rounds int) error {
	n, err := startNodeProc(bin)
	if err != nil {
		return err
	}
	defer n.remove()
	rate, rows, err := runWatchRows(bin, n, d, rounds)
	if err != nil {
		return err
	}
	_, err = os.Stdout.WriteString(watchTable(rate, rows))
	return err
}
