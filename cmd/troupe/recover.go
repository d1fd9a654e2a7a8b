package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/troupe-db/troupe/cluster"
)

// recoverCmd runs `troupe recover --data DIR --peers FILE`.
func recoverCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./troupe-data", "the stopped node's data dir")
	peers := fs.String("peers", "", `JSON file of the servers to keep: [{"id":"n1","address":"10.0.0.1:7080","non_voter":false}, ...] (required)`)
	if err := fs.Parse(args); err != nil {
		return exitForFlagError(err)
	}
	if *peers == "" {
		fmt.Fprintln(stderr, "troupe recover: --peers is required")
		return 2
	}
	b, err := os.ReadFile(filepath.Join(*data, "node-id"))
	if err != nil {
		fmt.Fprintf(stderr, "troupe recover: %s is not a node's data dir: %v\n", *data, err)
		return 1
	}
	id := strings.TrimSpace(string(b))
	release, err := cluster.LockDataDir(*data)
	if err != nil {
		fmt.Fprintf(stderr, "troupe recover: %v\n", err)
		return 1
	}
	defer release()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	conf, err := cluster.Recover(*data, *peers, id, logger)
	if err != nil {
		fmt.Fprintf(stderr, "troupe recover: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "node %s now belongs to a cluster of %d server(s); start it (and the other survivors, recovered with the same file)\n", id, len(conf.Servers))
	return 0
}
