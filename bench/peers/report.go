package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/troupe-db/troupe/bench"
)

// figure is one system's measurement in a row: successful operations per
// second and latencies in milliseconds (negative: not reported).
type figure struct {
	rps            float64
	p50, p99, p999 float64
	errors         int64
	events         float64 // changes delivered to the clients per second (edits), or 0
	first, last    float64 // ops/s in the first and last tenth (edits), or 0
	cmd            string
}

func fromTroupe(r *bench.Result, cmd string) *figure {
	return &figure{rps: r.ThroughputRPS, p50: float64(r.LatencyUS.P50) / 1000, p99: float64(r.LatencyUS.P99) / 1000,
		p999: float64(r.LatencyUS.P999) / 1000, errors: r.Errors, events: r.EventsRPS, first: r.FirstRPS, last: r.LastRPS, cmd: cmd}
}

func fromEtcd(s *etcdSummary, cmd string) *figure {
	ms := func(p float64) float64 {
		if v := s.pct(p); v >= 0 {
			return v * 1000
		}
		return -1
	}
	return &figure{rps: s.RPS, p50: ms(50), p99: ms(99), p999: ms(99.9), errors: s.Errors, cmd: cmd}
}

func fromShareDB(r *sharedbResult, cmd string) *figure {
	return &figure{rps: r.OpsPerS, p50: r.LatencyUS.P50 / 1000, p99: r.LatencyUS.P99 / 1000, p999: r.LatencyUS.P999 / 1000,
		errors: r.Errors, events: r.EventsPerS, first: r.FirstRPS, last: r.LastRPS, cmd: cmd}
}

// row is one workload: troupe's figure and its peer's, taken one after
// the other.
type row struct {
	label    string
	peerName string
	troupe   *figure
	peer     *figure // nil: the peer's run failed (peerErr)
	peerErr  string
	steal    float64 // share of CPU time stolen over both runs, or -1
}

// ratio is troupe's throughput over the peer's, or "—".
func (r *row) ratio() string {
	if r.troupe == nil || r.peer == nil || r.peer.rps <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", r.troupe.rps/r.peer.rps)
}

type report struct {
	started        time.Time
	duration       time.Duration
	troupeVersion  string
	loadAvg        string
	etcd           *etcdTools
	etcdSkipped    string
	sharedb        *sharedbTools
	sharedbSkipped string
	kv, ws         []*row
}

func troupeVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "troupe ")
}

// loadAverage is the first three fields of /proc/loadavg, or "unknown":
// other processes on the machine show there, not in steal.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// shortRun is below the time a row needs to be read as a figure rather
// than as a check that the harness runs (PEERS_DURATION=2s).
const shortRun = 5 * time.Second

func num(v float64) string {
	if v < 0 {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func msec(v float64) string {
	if v < 0 {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func pct(share float64) string {
	if share < 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", share*100)
}

// peerCells is the peer's columns of a row: its figure, or why there is
// none.
func peerCells(r *row, cols int) []string {
	if r.peer == nil {
		cells := []string{"failed: see below"}
		for len(cells) < cols {
			cells = append(cells, "—")
		}
		return cells
	}
	return nil
}

func (rep *report) write(path string) error {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# troupe next to etcd and ShareDB\n\n")
	w("Written by `make bench-peers` (`go run ./bench/peers`) on %s, %s per row and system. Each row ran\n",
		rep.started.Format("2006-01-02 15:04 UTC"), rep.duration)
	w("troupe's scenario (`troupe bench`) and then the peer's equivalent on the same machine, with the same\n")
	w("number of connections, both servers up: the ratio is **troupe's throughput / the peer's** (above 1,\n")
	w("troupe ahead). Figures are noisy on shared machines: compare ratios taken in one run. The last column\n")
	w("is the share of the machine's CPU time the hypervisor gave to other machines during the row (steal,\n")
	w("from /proc/stat): a row with more than a few percent was measured on a contended machine.\n\n")
	if rep.duration < shortRun {
		w("**A short trial (%s per row): it shows that the harness runs, not how the systems compare.**\n\n", rep.duration)
	}
	w("Machine: %d cores (`nproc`), %s; load average at the start %s (`/proc/loadavg`: other work on\n", runtime.NumCPU(), cpuModel(), rep.loadAvg)
	w("the machine shows there, not in steal). Servers and load generators all on 127.0.0.1.\n\n")
	w("Versions: troupe `%s`", rep.troupeVersion)
	if rep.etcd != nil {
		w("; etcd %s (server and tools/benchmark, built by %s)", rep.etcd.version, rep.etcd.goVersionOf)
	}
	if rep.sharedb != nil {
		names := make([]string, 0, len(rep.sharedb.versions))
		for n := range rep.sharedb.versions {
			names = append(names, n)
		}
		slices.Sort(names)
		var vs []string
		for _, n := range names {
			vs = append(vs, n+" "+rep.sharedb.versions[n])
		}
		w("; %s on Node %s", strings.Join(vs, ", "), rep.sharedb.nodeVer)
	}
	w(".\n\n")

	w("## Durable writes and reads: troupe and etcd\n\n")
	switch {
	case rep.etcd == nil && rep.etcdSkipped != "":
		w("**etcd skipped**: %s\n\n", oneLine(rep.etcdSkipped))
	case rep.etcd == nil:
		w("Not run in this report (`--only sharedb`).\n\n")
	default:
		w("| workload | troupe req/s | p50 ms | p99 ms | etcd req/s | p50 ms | p99 ms | troupe / etcd | stolen |\n")
		w("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rep.kv {
			t := r.troupe
			peer := peerCells(r, 3)
			if peer == nil {
				peer = []string{num(r.peer.rps), msec(r.peer.p50), msec(r.peer.p99)}
			}
			w("| %s | %s | %s | %s | %s | %s | %s |\n", r.label, num(t.rps), msec(t.p50), msec(t.p99),
				strings.Join(peer, " | "), r.ratio(), pct(r.steal))
		}
		w("\n")
		w("- troupe: `troupe serve --insecure --rate-limit off --max-streams-per-user 100000`, a fresh data dir\n")
		w("  per node, as `make bench` runs it; three nodes are n1 (`--bootstrap`) and n2, n3 (`--join`).\n")
		w("  A create is one durable user (name and email, ≈ 100 bytes of JSON); a read is one user by id\n")
		w("  of 1000 created before timing starts.\n")
		w("- etcd %s: the newest 3.6 release for which the module proxy served both the server module and\n", rep.etcd.version)
		w("  the root module (go.etcd.io/etcd/v3, which holds tools/benchmark) when this was written;\n")
		w("  `go run ./bench/peers --etcd-version` picks another.\n")
		w("  `etcd --name eN --data-dir … --initial-cluster …` with its defaults (WAL fsync on), one\n")
		w("  member per node. Its own load client, tools/benchmark, with `--conns N --clients N` (N gRPC\n")
		w("  connections, one request in flight on each, as troupe bench's N connections). A put writes a new\n")
		w("  key of %d bytes with a value of %d bytes (`--sequential-keys --key-space-size` = the run's\n", etcdKeySize, etcdValueSize)
		w("  requests); a range reads one key holding %d bytes. The tool takes a request count, not a time:\n", etcdValueSize)
		w("  a first run of max(200, 50 × N) requests (which also warms the cluster up) measures the rate,\n")
		w("  and the measured run asks for rate × the row's time.\n")
		w("- Three nodes: 64 connections spread over the three members on both (followers forward to the\n")
		w("  leader); one connection goes to the leader on both (troupe `--follow-leader`, etcd\n")
		w("  `--target-leader`).\n\n")
	}

	w("## Collaborative edits: troupe and ShareDB\n\n")
	switch {
	case rep.sharedb == nil && rep.sharedbSkipped != "":
		w("**ShareDB skipped**: %s\n\n", oneLine(rep.sharedbSkipped))
	case rep.sharedb == nil:
		w("Not run in this report (`--only etcd`).\n\n")
	default:
		w("| workload | troupe ops/s | p50 ms | p99 ms | changes/s delivered | first / last tenth ops/s | ShareDB ops/s | p50 ms | p99 ms | changes/s delivered | first / last tenth ops/s | troupe / ShareDB | stolen |\n")
		w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rep.ws {
			t := r.troupe
			peer := peerCells(r, 5)
			if peer == nil {
				p := r.peer
				peer = []string{num(p.rps), msec(p.p50), msec(p.p99), num(p.events), num(p.first) + " / " + num(p.last)}
			}
			w("| %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |\n", r.label, num(t.rps), msec(t.p50), msec(t.p99),
				num(t.events), num(t.first), num(t.last), strings.Join(peer, " | "), r.ratio(), pct(r.steal))
		}
		w("\n")
		w("- troupe: `docs-ws` against a one-node troupe (every op durable: a raft entry, fsync'd, before\n")
		w("  its ack). Each client keeps one insert of one letter in flight at a random position of the text\n")
		w("  it has, and reads every change of its document.\n")
		w("- ShareDB: `bench/peers/sharedb/server.js`, ShareDB's in-memory backend (no durability: it\n")
		w("  writes nothing to disk, which favours it), documents of type text-unicode, one JSON stream per\n")
		w("  WebSocket; `bench/peers/sharedb/load.js` does what docs-ws does: a ShareDB client per\n")
		w("  WebSocket, subscribed to its document, one `submitOp` of one letter in flight at a random\n")
		w("  position, latency from submit to acknowledgement, every change its document receives counted.\n")
		w("  ShareDB's server is one Node process, and so is the load client that drives the 64 clients.\n\n")
	}

	var failed []*row
	for _, r := range append(slices.Clip(rep.kv), rep.ws...) {
		if r.peer == nil && r.peerErr != "" {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		w("## Peer runs that failed\n\n")
		for _, r := range failed {
			w("- %s, %s: %s\n", r.label, r.peerName, oneLine(r.peerErr))
		}
		w("\n")
	}

	w("## Commands\n\n")
	w("The scratch directory (built and installed peers) is `$XDG_CACHE_HOME/troupe-peers` (`--scratch`).\n")
	w("Ports are shown as fixed ones; the run takes free loopback ports.\n\n```sh\n")
	if rep.etcd != nil {
		w("# etcd %s, in a throwaway module of the scratch directory: go install module@version refuses\n", rep.etcd.version)
		w("# etcd's modules (their go.mod has replace directives), so go get + go build from the module proxy\n")
		for _, c := range rep.etcd.buildCmds {
			w("%s\n", c)
		}
		w("etcd --name e1 --data-dir … --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \\\n")
		w("  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \\\n")
		w("  --initial-cluster e1=http://127.0.0.1:2380[,e2=…,e3=…] --initial-cluster-state new --initial-cluster-token … --log-level warn\n")
	}
	if rep.sharedb != nil {
		w("# ShareDB, in the scratch directory\n%s\n", rep.sharedb.installCmd)
		w("NODE_PATH=<scratch>/node_modules node bench/peers/sharedb/server.js --port 9100\n")
	}
	w("troupe serve --insecure --rate-limit off --max-streams-per-user 100000 --data … --node-id n1 --bootstrap [n2, n3: --join http://127.0.0.1:8081]\n")
	w("# each row: troupe's command, then the peer's\n")
	for _, r := range append(slices.Clip(rep.kv), rep.ws...) {
		w("%s\n", r.troupe.cmd)
		if r.peer != nil {
			w("%s\n", r.peer.cmd)
		}
	}
	w("```\n")

	if path == "-" {
		_, err := os.Stdout.WriteString(b.String())
		return err
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", path)
	return nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}
