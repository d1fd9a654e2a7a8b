// Command soak is `make soak`: it starts a three-node troupe on
// 127.0.0.1 (--idempotency-retention 60s), measures the maximum of a
// mixed load (keyed user writes, user reads, WebSocket edits on 64
// documents held at a steady length, rate-limit checks, all at once,
// closed loop), then runs that mix as an open loop at fixed rates (or,
// with --load, at a share of that maximum) for --duration, with SSE
// subscribers joining and leaving, while a follower is killed (-9) and
// restarted every --kill-every. Every --sample-every it records each
// scenario's throughput and p99 and each node's RSS, live heap,
// goroutines, open fds and apply lag. At the end it reads back every
// acknowledged write, compares the replicas, waits for the nodes to
// settle, judges the run (verdict.go) and writes the report (SOAK.md
// and soak.svg). The exit status is 1 on a failed verdict.
//
//	go run ./bench/soak --troupe bin/troupe --duration 30m --out docs/SOAK.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// options are the soak's settings.
type options struct {
	bin          string
	duration     time.Duration
	killEvery    time.Duration
	sampleEvery  time.Duration
	measure      time.Duration
	load         float64
	retention    time.Duration
	subscribers  int
	out          string
	explicitKill bool
}

func (o *options) validate() error {
	var errs []error
	if o.duration < time.Minute || o.duration > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--duration %v out of range 1m..24h", o.duration))
	}
	if o.killEvery < 10*time.Second && o.killEvery != 0 {
		errs = append(errs, fmt.Errorf("--kill-every %v below 10s (0: the default)", o.killEvery))
	}
	if o.sampleEvery != 0 && (o.sampleEvery < time.Second || o.sampleEvery > o.duration/4) {
		errs = append(errs, fmt.Errorf("--sample-every %v out of range 1s..a quarter of --duration (0: the default)", o.sampleEvery))
	}
	if o.measure < 3*time.Second || o.measure > 5*time.Minute {
		errs = append(errs, fmt.Errorf("--measure %v out of range 3s..5m", o.measure))
	}
	if o.load < 0 || o.load > 1 {
		errs = append(errs, fmt.Errorf("--load %g out of range [0, 1] (0: the fixed rates)", o.load))
	}
	if o.retention < 10*time.Second || o.retention > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--idempotency-retention %v out of range 10s..24h", o.retention))
	}
	if o.subscribers < 0 || o.subscribers > 1000 {
		errs = append(errs, fmt.Errorf("--subscribers %d out of range 0..1000", o.subscribers))
	}
	return errors.Join(errs...)
}

// rates says what the open loop runs at.
func (o options) rates() string {
	if o.load > 0 {
		return fmt.Sprintf("%.0f%% of the mix's measured maximum", o.load*100)
	}
	return "the mix's fixed rates"
}

// withDefaults fills the intervals that scale with the run: a kill every
// 5 minutes (every quarter of a shorter run) and a sample every 30 s
// (every sixtieth of a shorter run, 5 s at least).
func (o options) withDefaults() options {
	if o.killEvery == 0 {
		o.killEvery = min(5*time.Minute, o.duration/4)
	}
	if o.sampleEvery == 0 {
		o.sampleEvery = min(30*time.Second, max(5*time.Second, o.duration/60))
	}
	return o
}

func main() {
	var o options
	flag.StringVar(&o.bin, "troupe", "bin/troupe", "the troupe binary the nodes run")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long the load runs (1m..24h)")
	flag.DurationVar(&o.killEvery, "kill-every", 0, "kill (-9) and restart a follower this often (≥ 10s; 0: 5m, or a quarter of a shorter run)")
	flag.DurationVar(&o.sampleEvery, "sample-every", 0, "record the figures this often (0: 30s, or a sixtieth of a shorter run, at least 5s)")
	flag.DurationVar(&o.measure, "measure", 15*time.Second, "closed-loop measurement of the mix's maximum (3s..5m)")
	flag.Float64Var(&o.load, "load", 0, "the open loop's rates as a fraction of the measured maximum, [0, 1]; 0: the fixed rates of the mix, so that runs compare")
	flag.DurationVar(&o.retention, "idempotency-retention", 60*time.Second, "the nodes' --idempotency-retention (10s..24h)")
	flag.IntVar(&o.subscribers, "subscribers", 16, "SSE subscribers joining and leaving (0..1000)")
	flag.StringVar(&o.out, "out", "docs/SOAK.md", "the report; the chart goes next to it as soak.svg")
	flag.Parse()
	flag.Visit(func(f *flag.Flag) { o.explicitKill = o.explicitKill || f.Name == "kill-every" })
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ok, err := soak(ctx, o.withDefaults())
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "soak: FAILED (see", o.out+")")
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "soak: passed (see", o.out+")")
}
