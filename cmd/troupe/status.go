package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/troupe-db/troupe/transport/client"
)

// caPool reads a PEM CA file for the CLI's HTTPS calls ("" = the system
// roots).
func caPool(path string) (*tls.Config, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// credentials are how an operator's command proves itself to a secure
// cluster: an admin's access token, or the cluster secret.
type credentials struct {
	token, secret string
}

func (c *credentials) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.token, "token", os.Getenv("TROUPE_TOKEN"), "an admin's access token (env TROUPE_TOKEN)")
	fs.StringVar(&c.secret, "cluster-secret", os.Getenv("TROUPE_CLUSTER_SECRET"), "the cluster secret, if the cluster has one (env TROUPE_CLUSTER_SECRET; visible in the process list as a flag)")
	fs.Func("cluster-secret-file", "file holding the cluster secret", func(path string) error {
		s, _, err := readSecretFile("cluster-secret-file", path)
		c.secret = s
		return err
	})
}

// hint says what to give when a node refused these credentials (status
// 401 or 403), or "" for another status.
func (c *credentials) hint(status int) string {
	switch {
	case status == http.StatusUnauthorized && c.token == "" && c.secret == "":
		return "; give the cluster secret (--cluster-secret-file FILE or the TROUPE_CLUSTER_SECRET variable) or an admin's access token (--token or TROUPE_TOKEN)"
	case status == http.StatusUnauthorized:
		return "; the cluster secret or token given was not accepted: check --cluster-secret-file, TROUPE_CLUSTER_SECRET, --token and TROUPE_TOKEN"
	case status == http.StatusForbidden:
		return "; the token is not an admin's: give an admin's access token (--token or TROUPE_TOKEN) or the cluster secret"
	}
	return ""
}

// explain adds to a client call's error what to give, when the node
// refused the credentials.
func (c *credentials) explain(err error) error {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		if h := c.hint(apiErr.Status); h != "" {
			return fmt.Errorf("%w%s", err, h)
		}
	}
	return err
}

// options are the per-call options that carry the credentials.
func (c *credentials) options() []client.CallOption {
	if c.secret == "" {
		return nil
	}
	return []client.CallOption{client.WithHeader("X-Troupe-Cluster-Secret", c.secret)}
}

func newClient(addrs string, timeout time.Duration, tlsCfg *tls.Config, creds credentials) (*client.Client, error) {
	cfg := client.DefaultConfig()
	cfg.TLSConfig = tlsCfg
	cfg.Token = creds.token
	for _, a := range strings.Split(addrs, ",") {
		u, err := joinURL(a)
		if err != nil {
			return nil, err
		}
		cfg.Nodes = append(cfg.Nodes, u)
	}
	cfg.Timeout = timeout
	return client.New(cfg)
}

// statusCmd runs `troupe status --addr URL[,URL]`: the cluster as a node
// sees it, and whether each member is ready. It exits 1 unless a leader is
// known and every member is ready; with --wait it asks again until they
// are or the wait is over, and prints the last answer.
func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "http://127.0.0.1:8080", "node URL(s), URL[,URL]")
	timeout := fs.Duration("timeout", 3*time.Second, "per-request timeout")
	wait := fs.Duration("wait", 0, "ask again until a leader is known and every member is ready, for up to this long (e.g. 30s; 0: ask once)")
	ca := fs.String("ca", "", "CA (PEM) that HTTPS nodes' certificates chain to; default: the system's")
	var creds credentials
	creds.flags(fs)
	if err := fs.Parse(args); err != nil {
		return exitForFlagError(err)
	}
	if *wait < 0 || *wait > 24*time.Hour {
		fmt.Fprintf(stderr, "troupe status: --wait must be between 0 and 24h, got %v\n", *wait)
		return 2
	}
	tlsCfg, err := caPool(*ca)
	if err != nil {
		fmt.Fprintf(stderr, "troupe status: %v\n", err)
		return 2
	}
	c, err := newClient(*addr, *timeout, tlsCfg, creds)
	if err != nil {
		fmt.Fprintf(stderr, "troupe status: %v\n", err)
		return 2
	}
	defer c.Close()
	deadline := time.Now().Add(*wait)
	for {
		var out bytes.Buffer
		healthy, err := clusterStatus(c, &out, creds, *timeout, tlsCfg)
		var apiErr *client.APIError
		refused := errors.As(err, &apiErr) && creds.hint(apiErr.Status) != ""
		if healthy || refused || !time.Now().Add(250*time.Millisecond).Before(deadline) {
			if err != nil {
				fmt.Fprintf(stderr, "troupe status: %v\n", creds.explain(err))
				return 1
			}
			_, _ = stdout.Write(out.Bytes())
			if !healthy {
				return 1
			}
			return 0
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// clusterStatus asks c for the cluster and each member for its readiness,
// writes the table to out, and says whether a leader is known and every
// member is ready.
func clusterStatus(c *client.Client, out io.Writer, creds credentials, timeout time.Duration, tlsCfg *tls.Config) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*timeout)
	defer cancel()
	st, meta, err := c.ClusterStatus(ctx, creds.options()...)
	if err != nil {
		return false, err
	}
	// Only the leader knows whether the others answer its heartbeats: ask
	// it for the members if another node answered.
	if st.Leader != nil && st.Leader.ID != st.NodeID && st.Leader.HTTPAddr != "" {
		if lc, err := newClient(schemeOf(meta.Node)+st.Leader.HTTPAddr, timeout, tlsCfg, creds); err == nil {
			if ls, _, err := lc.ClusterStatus(ctx, append(creds.options(), client.WithMaxAttempts(1))...); err == nil && ls.NodeID == st.Leader.ID {
				st.Members = ls.Members
			}
			lc.Close()
		}
	}
	leader := "none known"
	if st.Leader != nil {
		leader = fmt.Sprintf("%s (%s)", st.Leader.ID, st.Leader.HTTPAddr)
	}
	fmt.Fprintf(out, "asked %s: node %s, leader %s, term %d, commit %d, applied %d\n\n",
		meta.Node, st.NodeID, leader, st.Term, st.CommitIndex, st.AppliedIndex)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tVOTER\tHTTP\tRAFT\tREACHED BY LEADER\tREADY")
	healthy := st.Leader != nil
	for _, m := range st.Members {
		ready := "unknown (no address)"
		if m.HTTPAddr != "" {
			ready = probeReady(schemeOf(meta.Node)+m.HTTPAddr, timeout, tlsCfg)
			healthy = healthy && ready == "yes"
		} else {
			healthy = false
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\n", m.ID, m.State, m.Voter, m.HTTPAddr, m.RaftAddr, reached(m), ready)
	}
	tw.Flush()
	return healthy, nil
}

// reached is the leader's view of a member: "-" for the leader itself (or
// when no leader answered), "yes", or "no" with when it was last heard.
func reached(m client.ClusterMember) string {
	switch {
	case m.Reachable == nil:
		return "-"
	case *m.Reachable:
		return "yes"
	case m.LastContactMs == nil:
		return "no (never heard from)"
	}
	return fmt.Sprintf("no (last contact %s ago)", (time.Duration(*m.LastContactMs) * time.Millisecond).Round(100*time.Millisecond))
}

func probeReady(url string, timeout time.Duration, tlsCfg *tls.Config) string {
	c, err := newClient(url, timeout, tlsCfg, credentials{})
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := c.Ready(ctx, client.WithMaxAttempts(1)); err != nil {
		return "no: " + err.Error()
	}
	return "yes"
}

// joinCmd runs `troupe join`: it asks a member to add a node (the node
// itself is started with `troupe serve --join`, which does this on its
// own; this is the operator's tool, e.g. to promote a learner).
func joinCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "http://127.0.0.1:8080", "member URL(s), URL[,URL]")
	id := fs.String("id", "", "the new member's node id (required)")
	httpAddr := fs.String("http-addr", "", "the new member's HTTP address, host:port (required)")
	raftAddr := fs.String("raft-addr", "", "the new member's raft address, host:port (required)")
	learner := fs.Bool("learner", false, "add it as a learner (replicates, does not vote)")
	ca := fs.String("ca", "", "CA (PEM) that HTTPS nodes' certificates chain to; default: the system's")
	var creds credentials
	creds.flags(fs)
	if err := fs.Parse(args); err != nil {
		return exitForFlagError(err)
	}
	tlsCfg, err := caPool(*ca)
	if err != nil {
		fmt.Fprintf(stderr, "troupe join: %v\n", err)
		return 2
	}
	if *id == "" || *httpAddr == "" || *raftAddr == "" {
		fmt.Fprintln(stderr, "troupe join: --id, --http-addr and --raft-addr are required")
		return 2
	}
	c, err := newClient(*addr, 15*time.Second, tlsCfg, creds)
	if err != nil {
		fmt.Fprintf(stderr, "troupe join: %v\n", err)
		return 2
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body := joinRequest{ID: *id, HTTPAddr: *httpAddr, RaftAddr: *raftAddr, Voter: !*learner}
	var out client.ClusterMember
	if _, err := c.Do(ctx, "POST", "/v1/cluster/members", body, &out, creds.options()...); err != nil {
		fmt.Fprintf(stderr, "troupe join: %v\n", creds.explain(err))
		return 1
	}
	fmt.Fprintf(stdout, "added %s (voter: %v, raft %s, http %s)\n", out.ID, out.Voter, out.RaftAddr, out.HTTPAddr)
	return 0
}
