package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// The secure default: what users run. A node with authentication on
// (no --insecure) and the default rate limit on, at a limit no
// connection reaches, so that every request pays for a token check and
// a limiter decision and none is refused. Each of the 64 connections is
// signed in as a user of its own (troupe bench --sign-in), so the node
// verifies 64 different tokens, and the limiter keeps 64 buckets.

// secureRateLimit is the secure node's --rate-limit: the default
// policy, per user, far above what one connection sends (a connection
// answered in 1 ms sends 1000 requests a second).
const secureRateLimit = "1000000/1s"

// secureRuns are the rows of the secure node.
type secureRuns struct {
	// insecure is users-create on a fresh --insecure node just before,
	// what the secure creates are compared with.
	insecure      *run
	creates, gets *run
	// policy is the RateLimit-Policy header the node answered with: the
	// limiter was on.
	policy string
	// pairs are the creates' (insecure, secure) pairs, each on fresh
	// nodes: the rows' own first.
	pairs [][2]*result
}

// rows are the secure rows, creates first.
func (s *secureRuns) rows() []*run { return []*run{s.creates, s.gets} }

// refused counts the answers the rate limiter refused (429) in a row.
func refused(r *result) int64 { return r.ByStatus["429"] }

// securePairs is how many pairs of creates, insecure then secure, each
// on fresh nodes, the creates' ratio is the median of (the rows' own pair
// included): one pair differs by more than the target's margin from the
// next on this kind of machine.
const securePairs = 5

// runSecure starts a secure node, signs in as its first admin and runs
// users-create then users-get at 64 connections, each connection signed
// in as its own user, next to the floor; then more pairs of creates,
// insecure and secure on fresh nodes, without floors.
func runSecure(bin, dur string) (*secureRuns, error) {
	insecure, err := runInsecureCreates(bin, dur, true)
	if err != nil {
		return nil, err
	}
	n, url, token, policy, err := startSecureNode(bin)
	if err != nil {
		return nil, err
	}
	defer n.remove()
	s := &secureRuns{policy: policy, insecure: insecure}
	s.creates = &run{label: "users-create, 64 connections, secure default", args: secureArgs(url, dur, token, "users-create", true),
		short: "users-create, 64 connections, secure default"}
	s.gets = &run{label: "users-get (linearizable), 64 connections, secure default", args: secureArgs(url, dur, token, "users-get", true),
		short: "users-get (linearizable), 64 connections, secure default"}
	for _, r := range s.rows() {
		fmt.Fprintf(os.Stderr, "→ %s\n", r.label)
		if r.res, r.cmd, err = runBench(bin, r.args); err != nil {
			return nil, err
		}
		r.cmd = "troupe serve --rate-limit " + secureRateLimit + " …; " + hideToken(r.cmd, token)
	}
	s.pairs = append(s.pairs, [2]*result{insecure.res, s.creates.res})
	for i := 1; i < securePairs; i++ {
		pair, err := runCreatePair(bin, dur)
		if err != nil {
			return nil, err
		}
		s.pairs = append(s.pairs, pair)
	}
	s.creates.targetRPS = 0.9 * insecure.res.ThroughputRPS
	s.gets.targetRatio = 0.75
	return s, nil
}

// runInsecureCreates runs users-create at 64 connections on a fresh
// --insecure --rate-limit off node.
func runInsecureCreates(bin, dur string, floor bool) (*run, error) {
	plain, err := startNodeProc(bin)
	if err != nil {
		return nil, err
	}
	defer plain.remove()
	r := &run{label: "users-create, 64 connections, `--insecure --rate-limit off` (a fresh node, just before)",
		args: createArgs("http://"+plain.addr, dur, 0)}
	if floor {
		r.args = append(r.args, "--compare-floor")
	}
	fmt.Fprintf(os.Stderr, "→ %s\n", r.label)
	r.res, r.cmd, err = runBench(bin, r.args)
	return r, err
}

// startSecureNode starts a fresh secure node and logs in as its first
// admin: the node, its URL, the admin's token and the node's
// RateLimit-Policy.
func startSecureNode(bin string) (n *node, url, token, policy string, err error) {
	if n, err = newNode(bin); err != nil {
		return nil, "", "", "", err
	}
	var pw [12]byte
	_, _ = rand.Read(pw[:])
	password := hex.EncodeToString(pw[:])
	n.secure = true
	n.env = []string{"TROUPE_ADMIN_EMAIL=admin@troupe.local", "TROUPE_ADMIN_PASSWORD=" + password}
	if _, err = n.start(); err != nil {
		n.remove()
		return nil, "", "", "", err
	}
	url = "http://" + n.addr
	if token, policy, err = adminLogin(url, "admin@troupe.local", password); err == nil && policy == "" {
		err = fmt.Errorf("the secure node answered without RateLimit-Policy: its rate limit is off")
	}
	if err != nil {
		n.remove()
		return nil, "", "", "", err
	}
	return n, url, token, policy, nil
}

// secureArgs is troupe bench's command line for a secure scenario, every
// connection signed in as a user of its own.
func secureArgs(url, dur, token, scenario string, floor bool) []string {
	args := []string{"bench", "--addr", url, "--duration", dur, "--warmup", "1s", "--json", "--sign-in", "--token", token,
		"--scenario", scenario, "--connections", "64"}
	if floor {
		args = append(args, "--compare-floor")
	}
	return args
}

// runCreatePair runs users-create on a fresh insecure node, then on a
// fresh secure one: one more draw of the secure / insecure ratio.
func runCreatePair(bin, dur string) ([2]*result, error) {
	insecure, err := runInsecureCreates(bin, dur, false)
	if err != nil {
		return [2]*result{}, err
	}
	n, url, token, _, err := startSecureNode(bin)
	if err != nil {
		return [2]*result{}, err
	}
	defer n.remove()
	fmt.Fprintf(os.Stderr, "→ users-create, 64 connections, secure default (one more pair)\n")
	res, _, err := runBench(bin, secureArgs(url, dur, token, "users-create", false))
	return [2]*result{insecure.res, res}, err
}

// hideToken shows a command without its access token.
func hideToken(cmd, token string) string { return strings.ReplaceAll(cmd, token, "$TOKEN") }

// adminLogin logs in and returns the access token and the answer's
// RateLimit-Policy header (empty when the node limits nothing).
func adminLogin(url, email, password string) (string, string, error) {
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	resp, err := http.Post(url+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", "", fmt.Errorf("cannot log in to the secure node: %w", err)
	}
	defer resp.Body.Close()
	var tk struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tk); err != nil || resp.StatusCode != http.StatusOK || tk.AccessToken == "" {
		return "", "", fmt.Errorf("cannot log in to the secure node: %d %v", resp.StatusCode, err)
	}
	return tk.AccessToken, resp.Header.Get("RateLimit-Policy"), nil
}

// pairRatios are secure creates / insecure creates, pair by pair.
func (s *secureRuns) pairRatios() []float64 {
	pairs := s.pairs
	if len(pairs) == 0 {
		pairs = [][2]*result{{s.insecure.res, s.creates.res}}
	}
	out := make([]float64, len(pairs))
	for i, p := range pairs {
		out[i] = p[1].ThroughputRPS / p[0].ThroughputRPS
	}
	return out
}

// pairOf is pair i (the rows' own when none were kept).
func (s *secureRuns) pairOf(i int) [2]*result {
	if len(s.pairs) == 0 {
		return [2]*result{s.insecure.res, s.creates.res}
	}
	return s.pairs[i]
}

// createRatio is the median of the pairs' secure / insecure creates.
func (s *secureRuns) createRatio() float64 {
	r := slices.Sorted(slices.Values(s.pairRatios()))
	if len(r)%2 == 1 {
		return r[len(r)/2]
	}
	return (r[len(r)/2-1] + r[len(r)/2]) / 2
}

// writeSecure writes the secure-default section.
func writeSecure(w func(string, ...any), s *secureRuns) {
	w("## The secure default\n\n")
	w("What users run: a node with authentication on (no `--insecure`) and the default rate limit on\n")
	w("(`--rate-limit %s`: the default policy per user, far above what one connection sends; its answers\n", secureRateLimit)
	w("carried `RateLimit-Policy: %s`). Each of the 64 connections is signed in as a user of its own\n", s.policy)
	w("(`troupe bench --sign-in`: 64 admins, created and logged in before timing), so the node verifies\n")
	w("a different JWT on every connection and the limiter decides for 64 users. The floor is sent a\n")
	w("token of the same size. The insecure creates ran on a fresh node just before, as the secure ones;\n")
	w("%d pairs of creates in all (insecure then secure, each on fresh nodes, the later ones without floors):\n", max(len(s.pairs), 1))
	w("one pair's ratio moves by more than the target's margin on this kind of machine, so the median is reported.\n\n")
	w("| scenario | req/s | p50 ms | p99 ms | p99.9 ms | floor req/s | ratio | refused (429) | stolen |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range append([]*run{s.insecure}, s.rows()...) {
		fr, ratio := "—", "—"
		if r.res.Floor != nil {
			fr, ratio = fmt.Sprintf("%.0f", r.res.Floor.ThroughputRPS), fmt.Sprintf("%.2f", r.res.FloorRatio)
		}
		w("| %s | %.0f | %s | %s | %s | %s | %s | %d | %s |\n", r.label, r.res.ThroughputRPS, ms(r.res.LatencyUS.P50),
			ms(r.res.LatencyUS.P99), ms(r.res.LatencyUS.P999), fr, ratio, refused(r.res), pct(r.res.Steal))
	}
	w("\n")
	w("- secure users-get / floor: **%.2f** (target ≥ 0.75)\n", s.gets.res.FloorRatio)
	var each []string
	for i, p := range s.pairRatios() {
		each = append(each, fmt.Sprintf("%.2f (%.0f / %.0f)", p, s.pairOf(i)[1].ThroughputRPS, s.pairOf(i)[0].ThroughputRPS))
	}
	w("- secure creates / insecure creates, each pair on fresh nodes one after the other: **%.2f**, the median of %s (target ≥ 0.9)\n",
		s.createRatio(), strings.Join(each, ", "))
	w("- refused by the rate limit: %d of %d secure requests (the limit is set not to refuse)\n\n",
		refused(s.creates.res)+refused(s.gets.res), s.creates.res.Requests+s.gets.res.Requests)
	w("```sh\n")
	for _, r := range append([]*run{s.insecure}, s.rows()...) {
		w("%s\n", r.cmd)
	}
	w("```\n\n")
}

// sectionOnly runs one section of the report and prints it.
func sectionOnly(name, bin string, d time.Duration) error {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	switch name {
	case "secure":
		s, err := runSecure(bin, d.String())
		if err != nil {
			return err
		}
		writeSecure(w, s)
	case "docs-memory":
		m, err := measureDocMemory(bin, memDocs)
		if err != nil {
			return err
		}
		writeDocMemory(w, m, "")
	}
	_, err := os.Stdout.WriteString(b.String())
	return err
}
