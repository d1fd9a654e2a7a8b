package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troupe-db/troupe/bench"
)

// kill is one follower killed and restarted.
type kill struct {
	At    time.Duration // since the soak began
	Node  string
	Ready time.Duration // from the restart to /readyz
	Err   error
}

// soak runs the whole thing and writes the report; it reports whether
// the verdict passed. An error is a soak that could not run at all.
func soak(ctx context.Context, o options) (bool, error) {
	root, err := os.MkdirTemp("", "troupe-soak-")
	if err != nil {
		return false, fmt.Errorf("cannot create a temporary directory: %w", err)
	}
	keep := false
	defer func() {
		if keep {
			fmt.Fprintln(os.Stderr, "soak: the nodes' data and logs are kept in", root)
		} else {
			os.RemoveAll(root)
		}
	}()
	logf("starting a three-node cluster (--idempotency-retention %v)", o.retention)
	nodes, err := startCluster(ctx, o.bin, root, o.retention)
	defer func() {
		for _, n := range nodes {
			_ = n.kill(syscall.SIGTERM)
		}
	}()
	if err != nil {
		keep = true
		return false, err
	}
	addrs := addrs(nodes)
	token, err := docOwner(ctx, addrs[0])
	if err != nil {
		keep = true
		return false, err
	}

	// The maximum: the whole mix at once, closed loop.
	logf("measuring the mix's maximum: every scenario at once, closed loop, %v", o.measure)
	measured := mix(addrs, token)
	if err := runClosed(ctx, measured, o.measure); err != nil {
		keep = true
		return false, err
	}
	scen := mix(addrs, token)
	for i, s := range scen {
		s.Max = measured[i].result.ThroughputRPS
		s.Rate = s.Fixed
		if o.load > 0 {
			s.Rate = o.load * s.Max
		}
		if s.Rate < 1 || s.Rate > s.Max {
			keep = true
			return false, fmt.Errorf("%s: measured %.1f/s, too little to run at %.1f/s (a busy or slower machine: give --load)", s.Name, s.Max, s.Rate)
		}
		logf("  %-18s max %8.0f/s → soak at %6.0f/s (%.0f%%)", s.Name, s.Max, s.Rate, 100*share(s.Rate, s.Max))
	}

	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	logf("waiting for the nodes to settle (the baseline of goroutines and fds)")
	base := settle(ctx, client, nodes, nil, Limits{})

	loadBefore := loadAvg()
	rows, kills, err := runSoak(ctx, o, nodes, scen, token, client)
	loadAfter := loadAvg()
	if err != nil {
		keep = true
		return false, err
	}
	ack := scen[0].acks
	logf("reading back every acknowledged write")
	rb := readBack(ctx, addrs, ack, token, docLength)
	lim := DefaultLimits(o.duration, o.retention, historyFill(scen))
	lim.Kills = killSchedule(o.duration, o.killEvery)
	logf("waiting for goroutines and fds to come back to their baseline")
	final := settle(ctx, client, nodes, base, lim)
	if ctx.Err() != nil {
		keep = true
		return false, errors.New("interrupted")
	}

	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.id
	}
	names := make([]string, len(scen))
	for i, s := range scen {
		names[i] = s.Name
	}
	checks := judge(rows, o.duration, names, ids, base, final, rb, lim)
	checks = append(checks, killCheck(kills))
	ok := passed(checks)
	keep = !ok
	rep := report{o: o, scen: scen, rows: rows, checks: checks, kills: kills, rb: rb, base: base, final: final, nodes: ids, pass: ok, lim: lim,
		loadBefore: loadBefore, loadAfter: loadAfter}
	if err := rep.write(); err != nil {
		return false, err
	}
	for _, c := range checks {
		mark := "ok  "
		if !c.Pass {
			mark = "FAIL"
		}
		logf("%s %s: %s", mark, c.Name, c.Detail)
	}
	return ok, nil
}

// keptChanges is how many changes a document keeps for transforms and
// replays (docs/API.md): its memory grows until each document has them.
const keptChanges = 1000

// historyFill is how long the WebSocket edits take to fill every
// document's kept changes at their soak rate.
func historyFill(scen []*soakScenario) time.Duration {
	for _, s := range scen {
		if s.Config.Scenario == "docs-ws" && s.Rate > 0 {
			return time.Duration(float64(keptChanges*s.Config.Docs) / s.Rate * float64(time.Second))
		}
	}
	return 0
}

// runClosed runs the scenarios at once, closed loop, for d.
func runClosed(ctx context.Context, scen []*soakScenario, d time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(scen))
	for i, s := range scen {
		cfg := s.Config
		cfg.Duration, cfg.Warmup = d, 2*time.Second
		r, err := bench.NewRunner(cfg, false)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		s.runner = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.result, errs[i] = r.Run(ctx, nil)
			r.CloseIdleConnections()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("measuring %s: %w", scen[i].Name, err)
		}
	}
	return nil
}

// runSoak runs the open loop for o.duration with the subscribers and the
// killer, sampling every o.sampleEvery.
func runSoak(ctx context.Context, o options, nodes []*node, scen []*soakScenario, token string, client *http.Client) ([]Row, []kill, error) {
	ack := newAcks()
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	errs := make([]error, len(scen))
	for i, s := range scen {
		cfg := s.Config
		cfg.Rate, cfg.Warmup, cfg.OnAck = s.Rate, 0, ack.record
		cfg.Duration = o.duration + time.Hour // ended by stopLoad
		r, err := bench.NewRunner(cfg, false)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		s.runner, s.acks = r, ack
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.result, errs[i] = r.Run(loadCtx, nil)
			r.CloseIdleConnections()
		}()
	}
	// Every scenario's setup done: the clock starts.
	deadline := time.Now().Add(2 * time.Minute)
	for _, s := range scen {
		for !s.runner.Measuring() {
			if time.Now().After(deadline) || ctx.Err() != nil {
				stopLoad()
				wg.Wait()
				return nil, nil, fmt.Errorf("%s did not finish its setup: %v", s.Name, errors.Join(errs...))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var docs []string
	for _, s := range scen {
		if s.Config.Scenario == "docs-ws" {
			docs = s.runner.DocIDs()
		}
	}
	subs := &subscribers{}
	var subWG *sync.WaitGroup
	if o.subscribers > 0 && len(docs) > 0 {
		subWG = subs.run(loadCtx, o.subscribers, addrs(nodes), docs, token)
	}
	start := time.Now()
	for _, s := range scen {
		s.runner.Interval() // what came before the clock
	}
	subs.take()
	logf("soak: %v at %s, a follower killed every %v, a sample every %v", o.duration, o.rates(), o.killEvery, o.sampleEvery)

	events := make(chan string, 64)
	var kills []kill
	killDone := make(chan struct{})
	go func() {
		defer close(killDone)
		kills = killLoop(loadCtx, ctx, start, o, nodes, client, events)
	}()

	var rows []Row
	for k := 1; ; k++ {
		at := time.Duration(k) * o.sampleEvery
		if at > o.duration {
			break
		}
		select {
		case <-ctx.Done():
			stopLoad()
			wg.Wait()
			<-killDone
			return nil, nil, errors.New("interrupted")
		case <-time.After(time.Until(start.Add(at))):
		}
		row := Row{At: at, Load: map[string]Point{}}
		for _, s := range scen {
			iv := s.runner.Interval()
			row.Load[s.Name] = Point{OK: iv.OK, Failed: iv.Failed, RPS: float64(iv.OK) / o.sampleEvery.Seconds(), Latency: iv.Latency}
		}
		row.SSE = subs.take()
		row.Nodes = sampleAll(ctx, client, nodes)
	drain:
		for {
			select {
			case e := <-events:
				row.Events = append(row.Events, e)
			default:
				break drain
			}
		}
		rows = append(rows, row)
		logf("%s", progressLine(row, scen, nodes))
	}
	stopLoad()
	wg.Wait()
	if subWG != nil {
		subWG.Wait()
		subs.close()
	}
	<-killDone
	for i, err := range errs {
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", scen[i].Name, err)
		}
	}
	return rows, kills, nil
}

// killSchedule is when the follower kills fall: every `every`, outside
// the first and last tenth of the run (the p99 rule compares those two
// in steady state) and early enough that the node is back (20 s) before
// the last tenth begins.
func killSchedule(d, every time.Duration) []time.Duration {
	var out []time.Duration
	for at := every; at+20*time.Second <= d-d/10; at += every {
		if at > d/10 {
			out = append(out, at)
		}
	}
	return out
}

// killLoop kills a follower with SIGKILL at each scheduled time and
// restarts it (with ctx, not loadCtx: a node is never left down), the
// follower killed least so far first.
func killLoop(loadCtx, ctx context.Context, start time.Time, o options, nodes []*node, client *http.Client, events chan<- string) []kill {
	var kills []kill
	count := map[string]int{}
	for _, at := range killSchedule(o.duration, o.killEvery) {
		select {
		case <-loadCtx.Done():
			return kills
		case <-time.After(time.Until(start.Add(at))):
		}
		var victim *node
		for _, n := range nodes {
			if isLeader(ctx, client, n) {
				continue
			}
			if victim == nil || count[n.id] < count[victim.id] {
				victim = n
			}
		}
		if victim == nil {
			kills = append(kills, kill{At: time.Since(start), Err: errors.New("no follower found")})
			continue
		}
		count[victim.id]++
		k := kill{At: time.Since(start), Node: victim.id}
		if k.Err = victim.kill(nil); k.Err == nil {
			events <- fmt.Sprintf("%s killed (-9)", victim.id)
			k.Ready, k.Err = victim.start(ctx, 2*time.Minute)
		}
		if k.Err == nil {
			events <- fmt.Sprintf("%s ready again in %s", victim.id, fmtDur(k.Ready))
		} else {
			events <- fmt.Sprintf("%s: %v", victim.id, k.Err)
		}
		kills = append(kills, k)
	}
	return kills
}

// isLeader reads troupe_raft_state from the node's /metrics.
func isLeader(ctx context.Context, client *http.Client, n *node) bool {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+n.httpAddr+"/metrics", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	m, err := parseMetrics(resp.Body, metricRaftState)
	return err == nil && m[metricRaftState] == 2
}

func sampleAll(ctx context.Context, client *http.Client, nodes []*node) []NodeSample {
	out := make([]NodeSample, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = sampleNode(ctx, client, n)
		}()
	}
	wg.Wait()
	return out
}

// settle samples the nodes every 2 s for up to 90 s. Without a base, it
// waits until every node's goroutines and fds held (±2) over three
// samples: the baseline. With one, until every node is back within the
// limits' slack of it. It returns the last samples.
func settle(ctx context.Context, client *http.Client, nodes []*node, base []NodeSample, lim Limits) []NodeSample {
	deadline := time.Now().Add(90 * time.Second)
	var prev [][]NodeSample
	for {
		cur := sampleAll(ctx, client, nodes)
		done := true
		for i, s := range cur {
			if !s.Up {
				done = false
				continue
			}
			if base != nil {
				done = done && base[i].Up && s.Goroutines <= allowed(base[i].Goroutines, lim.GoroutineAbs, lim.SlackFrac) &&
					s.FDs <= allowed(base[i].FDs, lim.FDAbs, lim.SlackFrac)
				continue
			}
			if len(prev) < 2 {
				done = false
				continue
			}
			for _, p := range prev[len(prev)-2:] {
				done = done && p[i].Up && abs(p[i].Goroutines-s.Goroutines) <= 2 && abs(p[i].FDs-s.FDs) <= 2
			}
		}
		prev = append(prev, cur)
		if done || time.Now().After(deadline) || ctx.Err() != nil {
			return cur
		}
		pauseCtx(ctx, 2*time.Second)
	}
}

func abs(v int) int { return max(v, -v) }

// docOwner registers the user that owns the soak's documents and returns
// its access token.
func docOwner(ctx context.Context, addr string) (string, error) {
	client := &http.Client{Timeout: 15 * time.Second}
	defer client.CloseIdleConnections()
	post := func(path, body string, want int) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("POST %s: %w", path, err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode != want {
			return nil, fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, b.String())
		}
		return b.Bytes(), nil
	}
	const creds = `"email":"soak@soak.example.com","password":"soak password"`
	if _, err := post("/v1/auth/register", `{"name":"Soak",`+creds+`}`, http.StatusCreated); err != nil {
		return "", fmt.Errorf("cannot register the document owner: %w", err)
	}
	b, err := post("/v1/auth/login", `{`+creds+`}`, http.StatusOK)
	if err != nil {
		return "", fmt.Errorf("cannot log the document owner in: %w", err)
	}
	var tk struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &tk); err != nil || tk.AccessToken == "" {
		return "", fmt.Errorf("cannot read the login answer %q", b)
	}
	return tk.AccessToken, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// progressLine is one sample, for the terminal.
func progressLine(r Row, scen []*soakScenario, nodes []*node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6s", fmtMin(r.At))
	for _, s := range scen {
		p := r.Load[s.Name]
		fmt.Fprintf(&b, " | %s %.0f/s p99 %s", shortName(s.Config.Scenario), p.RPS, fmtDur(p.P99()))
		if p.Failed > 0 {
			fmt.Fprintf(&b, " (%d failed)", p.Failed)
		}
	}
	for i, n := range r.Nodes {
		if !n.Up {
			fmt.Fprintf(&b, " | %s down", nodes[i].id)
			continue
		}
		fmt.Fprintf(&b, " | %s %s %dg %dfd", nodes[i].id, mib(float64(n.Heap)), n.Goroutines, n.FDs)
	}
	for _, e := range r.Events {
		fmt.Fprintf(&b, " [%s]", e)
	}
	return b.String()
}

func shortName(scenario string) string {
	switch scenario {
	case "users-churn":
		return "writes"
	case "users-get":
		return "reads"
	case "docs-ws":
		return "ws"
	case "ratelimit-check":
		return "rl"
	}
	return scenario
}

// fmtMin shows a time since the start as m:ss.
func fmtMin(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
