// Command peers is `make bench-peers`: troupe next to the systems its
// users would otherwise pick, measured in one run on one machine with the
// same connection counts, written to docs/PEERS.md.
//
//   - etcd 3.6 (its server and its benchmark tool built with the go
//     command from the module proxy into a scratch directory): 1-node and
//     3-node durable writes at 64 and 1 connections, linearizable and
//     serializable reads at 64, next to troupe's users-create, users-get
//     and users-get-stale on a 1-node and a 3-node troupe.
//   - ShareDB 7 with ot-text-unicode (npm packages installed into the
//     scratch directory; server.js and load.js beside this file): 64
//     WebSocket clients on 1 and on 64 documents, next to troupe's
//     docs-ws.
//
// A peer whose toolchain is missing (go, node, npm) or whose build or
// install fails is skipped with the reason, in the output and the report.
// Each troupe row and its peer's row run one after the other, both
// servers up, so that the two meet the same machine.
//
// It is a command of its own, not a mode of bench/suite: it builds and
// runs other systems, takes minutes before its first row, and writes its
// own report; `make bench` and CI never need node or etcd.
//
//	go run ./bench/peers --troupe bin/troupe --out docs/PEERS.md --duration 10s
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/troupe-db/troupe/bench"
)

type options struct {
	troupe         string
	out            string
	scratch        string
	duration       time.Duration
	etcdVersion    string
	sharedbVersion string
	only           string
}

func main() {
	var o options
	flag.StringVar(&o.troupe, "troupe", "bin/troupe", "the troupe binary")
	flag.StringVar(&o.out, "out", "docs/PEERS.md", "where to write the report (- for stdout)")
	flag.StringVar(&o.scratch, "scratch", defaultScratch(), "where the peers are built and installed (outside the repository)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per row, each system")
	// v3.6.8: the newest 3.6 release for which the module proxy served both
	// modules when this was written (the server module alone went further).
	flag.StringVar(&o.etcdVersion, "etcd-version", "v3.6.8", "etcd's version (go.etcd.io/etcd/server/v3 and go.etcd.io/etcd/v3, whose tools/benchmark is the load client)")
	flag.StringVar(&o.sharedbVersion, "sharedb-version", "7", "ShareDB's npm version (a version or range)")
	flag.StringVar(&o.only, "only", "", "run one peer's rows only: etcd or sharedb")
	flag.Parse()
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench peers:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench peers:", err)
		os.Exit(1)
	}
}

func (o *options) validate() error {
	var errs []error
	if o.duration < time.Second || o.duration > 10*time.Minute {
		errs = append(errs, fmt.Errorf("--duration %v: give 1s to 10m", o.duration))
	}
	if o.only != "" && o.only != "etcd" && o.only != "sharedb" {
		errs = append(errs, fmt.Errorf("--only %q: etcd or sharedb", o.only))
	}
	if !isFile(o.troupe) {
		errs = append(errs, fmt.Errorf("--troupe %s: no such binary (make build)", o.troupe))
	}
	if o.scratch == "" {
		errs = append(errs, errors.New("--scratch: no directory (no user cache directory either)"))
	}
	return errors.Join(errs...)
}

// defaultScratch is troupe-peers in the user's cache directory.
func defaultScratch() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "troupe-peers")
}

func run(o options) error {
	scratch, err := filepath.Abs(o.scratch)
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "troupe-peers-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	rep := &report{started: time.Now().UTC(), duration: o.duration}
	rep.troupeVersion, rep.loadAvg = troupeVersion(o.troupe), loadAverage()

	if o.only != "sharedb" {
		fmt.Fprintf(os.Stderr, "→ building etcd %s\n", o.etcdVersion)
		et, err := buildEtcd(scratch, o.etcdVersion)
		if err != nil {
			rep.etcdSkipped = err.Error()
			fmt.Fprintf(os.Stderr, "bench peers: etcd skipped: %v\n", err)
		} else {
			rep.etcd = et
			if err := kvRows(o, rep, et, root); err != nil {
				return err
			}
		}
	}
	if o.only != "etcd" {
		fmt.Fprintf(os.Stderr, "→ installing ShareDB %s\n", o.sharedbVersion)
		st, err := installShareDB(scratch, o.sharedbVersion)
		if err != nil {
			rep.sharedbSkipped = err.Error()
			fmt.Fprintf(os.Stderr, "bench peers: ShareDB skipped: %v\n", err)
		} else {
			rep.sharedb = st
			if err := wsRows(o, rep, st, root); err != nil {
				return err
			}
		}
	}
	return rep.write(o.out)
}

// kvRows runs the write and read rows on a 1-node and a 3-node troupe and
// etcd of the same sizes, both up at once.
func kvRows(o options, rep *report, et *etcdTools, root string) error {
	dur := o.duration.String()
	for _, nodes := range []int{1, 3} {
		fmt.Fprintf(os.Stderr, "→ %d-node troupe and etcd\n", nodes)
		tc, err := startTroupe(o.troupe, root, nodes)
		if err != nil {
			return err
		}
		// etcd that cannot start leaves its cells empty, with the
		// reason below the tables; troupe's rows run all the same.
		ec, etcdErr := startEtcd(et, root, nodes)
		if etcdErr == nil {
			if etcdErr = etcdPut(ec.endpoints[0], etcdReadKey, string(make([]byte, etcdValueSize))); etcdErr != nil {
				ec.stop()
				ec = nil
			}
		}
		if etcdErr != nil {
			fmt.Fprintf(os.Stderr, "bench peers: %d-node etcd: %v\n", nodes, etcdErr)
		}
		tb := []string{"bench", "--addr", tc.urls(), "--duration", dur, "--warmup", "1s", "--json"}
		put := []string{"put", "--key-size", fmt.Sprint(etcdKeySize), "--val-size", fmt.Sprint(etcdValueSize), "--sequential-keys"}
		where, oneWhere := "1 node", "1 node"
		var troupeOne, etcdOne []string
		if nodes == 3 {
			// One connection goes to the leader on both: troupe's
			// follows X-Troupe-Leader, etcd's tool asks for the leader.
			where, oneWhere = "3 nodes, connections spread over the 3", "3 nodes, the connection to the leader"
			troupeOne, etcdOne = []string{"--follow-leader"}, []string{"--target-leader"}
		}
		rows := []struct {
			label      string
			troupeArgs []string
			etcdSub    []string
			conns      int
		}{
			{"durable writes (troupe: users-create; etcd: put), 64 connections, " + where,
				[]string{"--scenario", "users-create", "--connections", "64"}, put, 64},
			{"durable writes, 1 connection, " + oneWhere,
				append([]string{"--scenario", "users-create", "--connections", "1"}, troupeOne...),
				append(slices.Clip(put), etcdOne...), 1},
			{"linearizable reads (troupe: users-get; etcd: range --consistency l), 64 connections, " + where,
				[]string{"--scenario", "users-get", "--connections", "64"}, []string{"range", etcdReadKey, "--consistency", "l"}, 64},
			{"serializable reads (troupe: users-get-stale; etcd: range --consistency s), 64 connections, " + where,
				[]string{"--scenario", "users-get-stale", "--connections", "64"}, []string{"range", etcdReadKey, "--consistency", "s"}, 64},
		}
		for _, r := range rows {
			fmt.Fprintf(os.Stderr, "→ %s\n", r.label)
			row := &row{label: r.label, peerName: "etcd"}
			before, okB := bench.ReadCPU()
			tres, tcmd, err := runTroupeBench(o.troupe, append(slices.Clip(tb), r.troupeArgs...))
			if err != nil {
				if ec != nil {
					ec.stop()
				}
				tc.stop()
				return err
			}
			row.troupe = fromTroupe(tres, tcmd)
			switch eres, ecmd, err := runEtcd(et, ec, etcdErr, r.conns, o.duration, r.etcdSub); {
			case err != nil:
				// A failed peer run is reported, not fatal: troupe's
				// figure stands alone in its row.
				row.peerErr = err.Error()
				fmt.Fprintf(os.Stderr, "bench peers: %v\n", err)
			default:
				row.peer = fromEtcd(eres, ecmd)
			}
			after, okA := bench.ReadCPU()
			row.steal = bench.Stolen(before, after, okB, okA)
			rep.kv = append(rep.kv, row)
		}
		if ec != nil {
			ec.stop()
		}
		tc.stop()
	}
	return nil
}

// runEtcd runs one etcd row, or says why it cannot (the cluster did not
// start).
func runEtcd(et *etcdTools, ec *etcdCluster, startErr error, conns int, d time.Duration, sub []string) (*etcdSummary, string, error) {
	if ec == nil {
		return nil, "", fmt.Errorf("etcd did not start: %w", startErr)
	}
	return runEtcdBench(et, ec.endpoints, conns, d, sub)
}

// wsRows runs docs-ws on a fresh 1-node troupe and load.js on the ShareDB
// server, 64 clients on 1 and on 64 documents.
func wsRows(o options, rep *report, st *sharedbTools, root string) error {
	fmt.Fprintln(os.Stderr, "→ 1-node troupe and the ShareDB server")
	tc, err := startTroupe(o.troupe, root, 1)
	if err != nil {
		return err
	}
	defer tc.stop()
	// A server that cannot start leaves ShareDB's cells empty, with the
	// reason below the tables; troupe's rows run all the same.
	sp, addr, serverErr := startShareDB(st, root)
	if serverErr != nil {
		fmt.Fprintf(os.Stderr, "bench peers: ShareDB server: %v\n", serverErr)
	} else {
		defer sp.stop()
	}
	for _, docs := range []int{1, 64} {
		label := "64 WebSocket clients on 1 document (every op to all 64)"
		if docs > 1 {
			label = fmt.Sprintf("64 WebSocket clients on %d documents", docs)
		}
		fmt.Fprintf(os.Stderr, "→ %s\n", label)
		row := &row{label: label, peerName: "ShareDB"}
		before, okB := bench.ReadCPU()
		args := []string{"bench", "--addr", tc.urls(), "--duration", o.duration.String(), "--warmup", "1s", "--json",
			"--scenario", "docs-ws", "--connections", "64", "--docs", fmt.Sprint(docs)}
		tres, tcmd, err := runTroupeBench(o.troupe, args)
		if err != nil {
			return err
		}
		row.troupe = fromTroupe(tres, tcmd)
		var sres *sharedbResult
		var scmd string
		if serverErr != nil {
			err = fmt.Errorf("the ShareDB server did not start: %w", serverErr)
		} else {
			sres, scmd, err = runShareDBLoad(st, addr, 64, docs, o.duration)
		}
		if err != nil {
			row.peerErr = err.Error()
			fmt.Fprintf(os.Stderr, "bench peers: %v\n", err)
		} else {
			row.peer = fromShareDB(sres, scmd)
		}
		after, okA := bench.ReadCPU()
		row.steal = bench.Stolen(before, after, okB, okA)
		rep.ws = append(rep.ws, row)
	}
	return nil
}
