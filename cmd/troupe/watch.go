package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	json "github.com/goccy/go-json"

	"github.com/troupe-db/troupe/transport/client"
)

// watchCmd runs `troupe watch --addr URL[,URL] [--kinds K] [--from N]
// [--json] [--count N]`: the change feed, one change per line, like
// etcdctl watch; the watch moves to another of the nodes when one fails.
// It ends at SIGINT/SIGTERM (exit 0), after --count changes, or at an
// error it cannot get past (exit 1: a bad argument, a refused token, a
// from older than the nodes keep).
func watchCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "http://127.0.0.1:8080", "node URL(s), URL[,URL]: the watch moves to the next when one fails")
	kinds := fs.String("kinds", "", "changes to watch, among users,docs,policies,members (default: all the token may see)")
	from := fs.String("from", "", "watch the changes after this log index (a listing's X-Troupe-Index; default: from now)")
	asJSON := fs.Bool("json", false, "print each change as its JSON object")
	count := fs.Int("count", 0, "stop after this many changes (0: until interrupted)")
	timeout := fs.Duration("timeout", 10*time.Second, "time to connect to a node and get its answer")
	ca := fs.String("ca", "", "CA (PEM) that HTTPS nodes' certificates chain to; default: the system's")
	token := fs.String("token", os.Getenv("TROUPE_TOKEN"), "an access token (env TROUPE_TOKEN); without one only an --insecure node answers")
	if err := fs.Parse(args); err != nil {
		return exitForFlagError(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "troupe watch: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	start := client.FromNow
	if *from != "" {
		n, err := strconv.ParseUint(*from, 10, 64)
		if err != nil || n == client.FromNow {
			fmt.Fprintf(stderr, "troupe watch: --from %q must be a log index, an integer from 0 to %d\n", *from, client.FromNow-1)
			return 2
		}
		start = n
	}
	if *count < 0 {
		fmt.Fprintf(stderr, "troupe watch: --count %d must be 0 (no end) or more\n", *count)
		return 2
	}
	if *timeout <= 0 || *timeout > time.Hour {
		fmt.Fprintf(stderr, "troupe watch: --timeout %v must be above 0 and at most 1h\n", *timeout)
		return 2
	}
	tlsCfg, err := caPool(*ca)
	if err != nil {
		fmt.Fprintf(stderr, "troupe watch: %v\n", err)
		return 2
	}
	c, err := newClient(*addr, *timeout, tlsCfg, credentials{token: *token})
	if err != nil {
		fmt.Fprintf(stderr, "troupe watch: %v\n", err)
		return 2
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var ks []string
	if *kinds != "" {
		ks = strings.Split(*kinds, ",")
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	n := 0
	for ch, err := range c.Watch(ctx, start, ks...) {
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return 0
			}
			out.Flush()
			fmt.Fprintf(stderr, "troupe watch: %v\n", err)
			if client.IsGone(err) {
				fmt.Fprintln(stderr, "troupe watch: list again (GET /v1/users, /v1/docs, …) and watch --from the listing's X-Troupe-Index")
			}
			return 1
		}
		if *asJSON {
			b, _ := json.Marshal(ch)
			_, _ = out.Write(append(b, '\n'))
		} else {
			fmt.Fprintf(out, "%s %s %s %s", ch.EventID(), ch.Kind, ch.Op, ch.ID)
			if ch.Version != nil {
				fmt.Fprintf(out, " v%d", *ch.Version)
			}
			fmt.Fprintf(out, " %s\n", ch.At)
		}
		if err := out.Flush(); err != nil {
			return 1
		}
		if n++; *count > 0 && n >= *count {
			return 0
		}
	}
	return 0
}
