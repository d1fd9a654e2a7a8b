package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/troupe-db/troupe/cluster"
	"github.com/troupe-db/troupe/storage"
)

// backupCmd runs `troupe backup --addr URL --out FILE`: it downloads a
// consistent snapshot from a node and checks it before keeping it.
func backupCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "verify" {
		return verifyCmd(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "http://127.0.0.1:8080", "a node's URL")
	out := fs.String("out", "", "file to write the backup to (required)")
	var creds credentials
	creds.flags(fs)
	timeout := fs.Duration("timeout", 10*time.Minute, "how long the download may take")
	ca := fs.String("ca", "", "CA (PEM) that an HTTPS node's certificate chains to; default: the system's")
	if err := fs.Parse(args); err != nil {
		return exitForFlagError(err)
	}
	tlsCfg, err := caPool(*ca)
	if err != nil {
		fmt.Fprintf(stderr, "troupe backup: %v\n", err)
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "troupe backup: --out is required")
		return 2
	}
	base, err := joinURL(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "troupe backup: %v\n", err)
		return 2
	}
	if err := download(base, creds, *out, *timeout, tlsCfg); err != nil {
		fmt.Fprintf(stderr, "troupe backup: %v\n", err)
		return 1
	}
	f, err := os.Open(*out)
	if err != nil {
		fmt.Fprintf(stderr, "troupe backup: %v\n", err)
		return 1
	}
	defer f.Close()
	snap, err := storage.ReadSnapshot(f)
	if err != nil {
		os.Remove(*out)
		fmt.Fprintf(stderr, "troupe backup: the downloaded backup does not read back (%v); nothing kept\n", err)
		return 1
	}
	users := 0
	for _, s := range snap.Shards {
		users += s.Len()
	}
	fmt.Fprintf(stdout, "backup of index %d with %d users written to %s (it holds password hashes: keep it secret)\n", snap.Meta.Index, users, *out)
	return 0
}

func download(base string, creds credentials, out string, timeout time.Duration, tlsCfg *tls.Config) error {
	req, err := http.NewRequest(http.MethodGet, base+"/v1/cluster/backup", nil)
	if err != nil {
		return err
	}
	if creds.secret != "" {
		req.Header.Set("X-Troupe-Cluster-Secret", creds.secret)
	}
	if creds.token != "" {
		req.Header.Set("Authorization", "Bearer "+creds.token)
	}
	resp, err := (&http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s answered %d: %s%s", base, resp.StatusCode, strings.TrimSpace(string(b)), creds.hint(resp.StatusCode))
	}
	tmp := out + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("download cut short: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// restoreCmd runs `troupe restore --from FILE --data DIR`.
func restoreCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the backup file (required)")
	data := fs.String("data", "", "an empty data dir to restore into (required)")
	if err := fs.Parse(args); err != nil {
		return exitForFlagError(err)
	}
	if *from == "" || *data == "" {
		fmt.Fprintln(stderr, "troupe restore: --from and --data are required")
		return 2
	}
	snap, err := cluster.PrepareRestore(*from, *data)
	if err != nil {
		fmt.Fprintf(stderr, "troupe restore: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "backup of index %d placed in %s; start `troupe serve --data %s` (with any --node-id): it boots a new one-node cluster holding the backup's data\n",
		snap.Meta.Index, *data, *data)
	return 0
}

func exitForFlagError(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// verifyCmd runs `troupe backup verify FILE…`: it reads each backup whole,
// as a restore would, and checks it against its checksum file (FILE.sha256,
// written beside scheduled backups) if there is one, restoring nothing.
func verifyCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: troupe backup verify FILE...") }
	if err := fs.Parse(args); err != nil {
		return exitForFlagError(err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	code := 0
	for _, path := range fs.Args() {
		snap, summed, err := cluster.VerifyBackup(path)
		if err != nil {
			fmt.Fprintf(stderr, "troupe backup verify: %v\n", err)
			code = 1
			continue
		}
		users := 0
		for _, s := range snap.Shards {
			users += s.Len()
		}
		check := "no checksum file beside it"
		if summed {
			check = "checksum matches"
		}
		fmt.Fprintf(stdout, "%s: a usable backup of index %d: %d users, %d documents, %d policies, %d members; %s\n",
			path, snap.Meta.Index, users, len(snap.Docs), len(snap.Meta.Policies), len(snap.Meta.Members), check)
	}
	return code
}
