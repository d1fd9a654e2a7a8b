// Command troupe runs a troupe node and its tools:
//
//	troupe serve     run a node (see troupe serve -h)
//	troupe bench     drive load and compare with the floor (see troupe bench -h)
//	troupe status    the cluster as a node sees it
//	troupe join      add a member through any node
//	troupe watch     print the change feed, one change per line
//	troupe backup    download a consistent backup from a node
//	troupe restore   prepare a data dir that boots from a backup
//	troupe recover   rewrite a stopped node's cluster after a lost quorum
//	troupe version   print the version
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "status":
		return statusCmd(args[1:], stdout, stderr)
	case "join":
		return joinCmd(args[1:], stdout, stderr)
	case "watch":
		return watchCmd(args[1:], stdout, stderr)
	case "recover":
		return recoverCmd(args[1:], stdout, stderr)
	case "backup":
		return backupCmd(args[1:], stdout, stderr)
	case "restore":
		return restoreCmd(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "troupe", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "troupe: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `troupe — an in-memory, replicated, actor-based data service

Usage:
  troupe serve [flags]   run a node (troupe serve -h lists the flags)
  troupe bench [flags]   drive load at nodes (troupe bench -h; troupe bench serve-floor)
  troupe status --addr URL               the cluster as a node sees it, and each member's readiness
  troupe join --addr URL --id ID --http-addr H --raft-addr R [--learner]   add a member
  troupe watch --addr URL[,URL] [--kinds users,docs] [--from N] [--json]   print the change feed, one change per line
  troupe backup --addr URL --out FILE      download a consistent backup from a node
  troupe restore --from FILE --data DIR    make DIR boot a new one-node cluster holding the backup
  troupe recover --data DIR --peers FILE   after losing a quorum: keep only the listed servers
  troupe version         print the version
`)
}
