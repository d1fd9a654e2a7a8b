package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// The keyed rows: creates with a fresh Idempotency-Key on every write
// (`troupe bench --idempotency`), next to keyless ones, and again after the
// idempotency window has turned over several times.

// turnoverRetention and turnovers: the node of the turnover rows keeps
// keys for turnoverRetention (the shortest --idempotency-retention allowed)
// and is driven for turnovers retention periods between its two measured
// runs, so that by the second every key it keeps has replaced an expired one
// several times over.
const (
	turnoverRetention = 10 * time.Second
	turnovers         = 4
)

// keyedRuns are the keyed rows and what they stand next to.
type keyedRuns struct {
	keyless, keyed *run // on the suite's node, one after the other
	// On a node started with --idempotency-retention turnoverRetention:
	// the first run, the drive of turnovers periods, the run after.
	first, drive, after *run
	windowKeys          float64 // troupe_idempotency_keys after the run after; -1 unknown
}

// runKeyedPair measures keyless and keyed creates at 64 connections, one
// after the other, against url (next to the floor).
func runKeyedPair(bin, url, dur string) (keyless, keyed *run, err error) {
	keyless = &run{label: "users-create, 64 connections (the keyless run next to the keyed one)", args: append(createArgs(url, dur, 0), "--compare-floor")}
	keyed = &run{label: "users-create, 64 connections, a fresh Idempotency-Key on every write", args: append(createArgs(url, dur, 0), "--compare-floor", "--idempotency")}
	for _, r := range []*run{keyless, keyed} {
		fmt.Fprintf(os.Stderr, "→ %s\n", r.label)
		if r.res, r.cmd, err = runBench(bin, r.args); err != nil {
			return nil, nil, err
		}
	}
	return keyless, keyed, nil
}

// runTurnover starts a node with the short retention, measures keyed
// creates at once, drives them for turnovers retention periods, and
// measures again.
func runTurnover(bin, dur string) (first, drive, after *run, windowKeys float64, err error) {
	n, err := newNode(bin)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	n.extra = []string{"--idempotency-retention", turnoverRetention.String()}
	defer n.remove()
	if _, err := n.start(); err != nil {
		return nil, nil, nil, 0, err
	}
	url := "http://" + n.addr
	ret := turnoverRetention.String()
	first = &run{label: fmt.Sprintf("users-create, 64 connections, keyed, node with --idempotency-retention %s: first run", ret),
		args: append(createArgs(url, dur, 0), "--idempotency")}
	driveFor := time.Duration(turnovers) * turnoverRetention
	drive = &run{label: fmt.Sprintf("the same, driven for %s (%d retention periods, unmeasured here)", driveFor, turnovers),
		args: []string{"bench", "--addr", url, "--duration", driveFor.String(), "--warmup", "0s", "--json",
			"--scenario", "users-create", "--connections", "64", "--idempotency"}}
	after = &run{label: fmt.Sprintf("users-create, 64 connections, keyed, node with --idempotency-retention %s: after the window turned over %d times", ret, turnovers),
		args: append(createArgs(url, dur, 0), "--idempotency")}
	for _, r := range []*run{first, drive, after} {
		fmt.Fprintf(os.Stderr, "→ %s\n", r.label)
		if r.res, r.cmd, err = runBench(bin, r.args); err != nil {
			return nil, nil, nil, 0, err
		}
	}
	r := "troupe serve --insecure --rate-limit off --idempotency-retention " + ret + " …; "
	first.cmd, drive.cmd, after.cmd = r+first.cmd, r+drive.cmd, r+after.cmd
	return first, drive, after, gauge(n.addr, "troupe_idempotency_keys"), nil
}

// gauge reads one metric from a node's /metrics, or -1.
func gauge(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// runKeyed runs every keyed row: the pair against url, the turnover on a
// node of its own.
func runKeyed(bin, url, dur string) (*keyedRuns, error) {
	k := &keyedRuns{}
	var err error
	if k.keyless, k.keyed, err = runKeyedPair(bin, url, dur); err != nil {
		return nil, err
	}
	if k.first, k.drive, k.after, k.windowKeys, err = runTurnover(bin, dur); err != nil {
		return nil, err
	}
	return k, nil
}

// writeKeyed writes the keyed rows' section of the report.
func writeKeyed(w func(string, ...any), k *keyedRuns) {
	w("## Idempotency-Key on every write\n\n")
	w("Creates with a fresh `Idempotency-Key` on each (`troupe bench --idempotency`): the node keeps\n")
	w("every key's result for `--idempotency-retention`. The first pair ran one after the other on the\n")
	w("suite's node (retention 10 minutes: the window fills); the turnover rows on a node started with\n")
	w("`--idempotency-retention %s`, measured at once and again after %d retention periods of keyed creates\n", turnoverRetention, turnovers)
	w("(every key then expires as a new one comes in).\n\n")
	w("| scenario | req/s | p50 ms | p99 ms | p99.9 ms | floor req/s | ratio | stolen |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range []*run{k.keyless, k.keyed, k.first, k.drive, k.after} {
		fr, ratio := "—", "—"
		if r.res.Floor != nil {
			fr, ratio = fmt.Sprintf("%.0f", r.res.Floor.ThroughputRPS), fmt.Sprintf("%.2f", r.res.FloorRatio)
		}
		w("| %s | %.0f | %s | %s | %s | %s | %s | %s |\n", r.label, r.res.ThroughputRPS,
			ms(r.res.LatencyUS.P50), ms(r.res.LatencyUS.P99), ms(r.res.LatencyUS.P999), fr, ratio, pct(r.res.Steal))
	}
	w("\n")
	w("- keyed / keyless creates at 64 connections: **%.2f** (goal ≥ 0.9)\n", k.keyed.res.ThroughputRPS/k.keyless.res.ThroughputRPS)
	w("- keyed creates after the window turned over %d times / the first run: **%.2f** (goal ≥ 0.9)", turnovers, k.after.res.ThroughputRPS/k.first.res.ThroughputRPS)
	if k.windowKeys >= 0 {
		w("; keys kept at the end (`troupe_idempotency_keys`): %.0f", k.windowKeys)
	}
	w("\n\nCommands:\n\n```sh\n")
	for _, r := range []*run{k.keyless, k.keyed, k.first, k.drive, k.after} {
		w("%s\n", r.cmd)
	}
	w("```\n\n")
}

// keyedOnly is `--only keyed`: a node of its own for the pair, then the
// turnover; the section goes to stdout, and docs/BENCHMARKS.md is left
// as it is.
func keyedOnly(bin string, d time.Duration) error {
	addr, stop, err := startNode(bin)
	if err != nil {
		return err
	}
	defer stop()
	k, err := runKeyed(bin, "http://"+addr, d.String())
	if err != nil {
		return err
	}
	var b strings.Builder
	writeKeyed(func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }, k)
	_, err = os.Stdout.WriteString(b.String())
	return err
}
