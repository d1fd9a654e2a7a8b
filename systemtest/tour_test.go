package systemtest

// TestReadmeTour runs README.md's commands, read from README.md itself, in
// order, against real processes. The parsing is in readme_test.go, the bash
// session in shell_test.go; this file decides how each kind of command is
// run and what is checked of it.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troupe-db/troupe/cluster/clustertest"
)

const (
	// commandTimeout is how long one README command may take, besides the
	// --wait it gives itself.
	commandTimeout = 20 * time.Second
	// streamTimeout is how long an event stream has to replay the changes
	// made before it.
	streamTimeout = 15 * time.Second
)

// TestReadmeTour runs, as a reader would: `make run`'s command line from
// the Makefile (secure, in a fresh checkout directory), the ```sh block of
// "A quick tour with curl" in one bash session, Ctrl-C on the node; then
// the ```sh blocks of "Clusters of three" in another session, and the
// backup, restore and start of the restored node the prose of that section
// gives. Every address is moved to a free port on 127.0.0.1.
//
// Each command must succeed (exit 0, every HTTP answer 2xx) unless the
// README says otherwise, and its output must be what the README's
// "# →" comment after it says (status, the fields it names, headers).
// Servers (`troupe serve`, `make run`) are processes of the test; a stream
// the README ends with Ctrl-C is interrupted once it has replayed the
// document's changes.
func TestReadmeTour(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	for _, tool := range []string{"bash", "curl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s, which the README's commands use, is not installed: %v", tool, err)
			}
			t.Skipf("%s, which the README's commands use, is not installed", tool)
		}
	}
	tr := newTour(t)

	tr.section("The two commands")
	tr.restartAfterTour(tr.section("A quick tour with curl"))

	s := tr.section("Clusters of three")
	tr.backupAndRestore(s)
	tr.checkLogs()
}

// tour is the state of one run through the README.
type tour struct {
	t        *testing.T
	readme   string
	makefile string
	dir      string            // the checkout the commands run in: bin/troupe, data dirs, the backup
	ports    map[string]string // a port of the README → the 127.0.0.1 address used instead
	env      []string          // the shells' environment
	nodes    map[string]*node  // the servers running, by the README address they serve
	started  []*node           // every server started
	outputs  []tourOutput      // the commands run so far, for placeholders

	httpDefault, raftDefault string // the README's defaults of --http-addr and --raft-addr
}

func newTour(t *testing.T) *tour {
	tr := &tour{t: t, ports: map[string]string{}, nodes: map[string]*node{}, dir: t.TempDir()}
	for name, dst := range map[string]*string{"README.md": &tr.readme, "Makefile": &tr.makefile} {
		b, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			t.Fatal(err)
		}
		*dst = string(b)
	}
	var err error
	if tr.httpDefault, err = configDefault(tr.readme, "--http-addr"); err != nil {
		t.Fatal(err)
	}
	if tr.raftDefault, err = configDefault(tr.readme, "--raft-addr"); err != nil {
		t.Fatal(err)
	}
	// The checkout: bin/troupe is the binary under test, and bin/ is first
	// on PATH, for the prose's `troupe ...` and for the curl wrapper.
	bin := filepath.Join(tr.dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(troupeBin, filepath.Join(bin, "troupe")); err != nil {
		t.Fatal(err)
	}
	installCurlWrapper(t, bin)
	for _, kv := range cleanEnv() {
		if path, ok := strings.CutPrefix(kv, "PATH="); ok {
			kv = "PATH=" + bin + string(os.PathListSeparator) + path
		}
		tr.env = append(tr.env, kv)
	}
	return tr
}

// section runs the ```sh blocks of a README section in one new shell, and
// returns the shell.
func (tr *tour) section(title string) *shell {
	t := tr.t
	t.Helper()
	lines, err := readmeSection(tr.readme, title)
	if err != nil {
		t.Fatal(err)
	}
	blocks, _, err := shBlocks(lines)
	if err != nil || len(blocks) == 0 {
		t.Fatalf("README.md, %q: no ```sh block (%v)", title, err)
	}
	s := startShell(t, tr.dir, tr.env)
	for _, b := range blocks {
		cmds, err := parseCommands(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cmds {
			tr.run(s, c)
		}
	}
	return s
}

// run runs one README command in s.
func (tr *tour) run(s *shell, c tourCommand) {
	t := tr.t
	t.Helper()
	text, err := tr.rewrite(c.Text)
	if err == nil {
		text, err = fillPlaceholders(text, tr.outputs)
	}
	if err != nil {
		t.Fatalf("README.md:%d: %s: %v", c.Line, c.Text, err)
	}
	words := strings.Fields(text)
	switch {
	case words[0] == "make":
		tr.make(s, c, words)
	case len(words) > 1 && filepath.Base(words[0]) == "troupe" && words[1] == "serve":
		tr.serve(s, c, text)
	case strings.HasSuffix(text, "&"):
		t.Fatalf("README.md:%d: %s: the test runs only `troupe serve` in the background", c.Line, c.Text)
	case strings.Contains(c.Comment, "Ctrl-C"):
		tr.stream(s, c, text)
	default:
		tr.command(s, c, text)
	}
}

var (
	readmeAddr = regexp.MustCompile(`\b(?:localhost|127\.0\.0\.1):([0-9]{1,5})\b`)
	// anyHost finds what names a host: a URL's, a host:port, a
	// dotted name before a path, localhost.
	anyHost = regexp.MustCompile(`(?i)https?://([^/:\s"']+)|\b([a-z0-9.-]+):[0-9]+\b|\b([a-z0-9-]+(?:\.[a-z0-9-]+)+)/|\b(localhost)\b`)
)

// addr returns the address used for the README's address a (a port on
// localhost or 127.0.0.1): a free port on 127.0.0.1, the same one every
// time a is named.
func (tr *tour) addr(a string) string {
	m := readmeAddr.FindStringSubmatch(a)
	if m == nil {
		tr.t.Fatalf("%q is not an address on this machine", a)
	}
	if _, ok := tr.ports[m[1]]; !ok {
		tr.ports[m[1]] = clustertest.FreeAddr(tr.t)
	}
	return tr.ports[m[1]]
}

// rewrite moves every address of a command to its free port, and refuses a
// command that would reach any host but 127.0.0.1.
func (tr *tour) rewrite(text string) (string, error) {
	out := readmeAddr.ReplaceAllStringFunc(text, tr.addr)
	for _, m := range anyHost.FindAllStringSubmatch(out, -1) {
		if host := m[1] + m[2] + m[3] + m[4]; host != "127.0.0.1" {
			return "", fmt.Errorf("it names %s: the tour reaches only 127.0.0.1", m[0])
		}
	}
	return out, nil
}

// make stands in for the make targets the README names.
func (tr *tour) make(s *shell, c tourCommand, words []string) {
	t := tr.t
	t.Helper()
	if len(words) != 2 {
		t.Fatalf("README.md:%d: %s: want `make TARGET`", c.Line, c.Text)
	}
	switch words[1] {
	case "run": // what it runs, not the build before it
		line, err := makeRecipe(tr.makefile, "run")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("README.md:%d: %s: runs %s", c.Line, c.Text, line)
		text, err := tr.rewrite(line)
		if err != nil {
			t.Fatalf("Makefile, run: %v", err)
		}
		tr.serve(s, tourCommand{Line: c.Line, Text: line}, text)
		// "`make run` prints the address to use ... and how to log in."
		n := tr.nodeAt(tr.httpDefault)
		if log := n.logTail(); !strings.Contains(log, n.URL) || !strings.Contains(log, "/v1/auth/login") {
			t.Fatalf("README.md:%d: make run does not print the address %s and how to log in:\n%s", c.Line, n.URL, log)
		}
	case "build": // TestMain built the binary bin/troupe links to
		t.Logf("README.md:%d: %s: bin/troupe is the binary the tests built", c.Line, c.Text)
	case "test": // the suite this test belongs to
		t.Logf("README.md:%d: %s: not run (it runs this test)", c.Line, c.Text)
	default:
		t.Fatalf("README.md:%d: %s: the tour does not know what make %s stands for", c.Line, c.Text, words[1])
	}
}

// serve starts a `troupe serve` command as a process of the test, with the
// environment the shell has exported. A command the README puts in the
// background (`&`) is left to start; any other is waited for until ready,
// as the reader waits for the node to say it is serving.
func (tr *tour) serve(s *shell, c tourCommand, text string) {
	t := tr.t
	t.Helper()
	background := strings.HasSuffix(text, "&")
	words, err := shellWords(strings.TrimSpace(strings.TrimSuffix(text, "&")))
	if err != nil {
		t.Fatalf("README.md:%d: %v", c.Line, err)
	}
	switch words[0] {
	case "troupe", "bin/troupe", "./bin/troupe":
	default:
		t.Fatalf("README.md:%d: %s: the binary is bin/troupe", c.Line, c.Text)
	}
	flags := map[string]string{}
	for i := 2; i < len(words); i++ {
		if k, v, ok := strings.Cut(words[i], "="); ok && strings.HasPrefix(k, "--") {
			flags[k] = v
		} else if strings.HasPrefix(words[i], "--") && i+1 < len(words) && !strings.HasPrefix(words[i+1], "--") {
			flags[words[i]] = words[i+1]
			i++
		}
	}
	vars, err := s.env(commandTimeout)
	if err != nil {
		t.Fatalf("README.md:%d: the shell's environment: %v", c.Line, err)
	}
	env := cleanEnv()
	for k, v := range vars {
		if strings.HasPrefix(k, "TROUPE_") {
			env = append(env, k+"="+v)
		}
	}
	// The defaults are the README's ports too: moved with the others.
	for flag, def := range map[string]string{"--http-addr": tr.httpDefault, "--raft-addr": tr.raftDefault} {
		if _, ok := flags[flag]; !ok {
			name := "TROUPE_" + strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(flag, "--"), "-", "_"))
			if _, ok := vars[name]; ok {
				t.Fatalf("README.md:%d: %s comes from the environment; the tour cannot move it", c.Line, name)
			}
			flags[flag] = tr.addr(def)
			env = append(env, name+"="+flags[flag])
		}
	}
	id := flags["--node-id"]
	if id == "" {
		id = fmt.Sprintf("line%d", c.Line)
	}
	cmd := exec.Command(filepath.Join(tr.dir, "bin", "troupe"), words[1:]...)
	cmd.Dir = tr.dir
	cmd.Env = env
	n, err := spawn(t, nodeConfig{ID: id, HTTPAddr: flags["--http-addr"]}, cmd)
	if err != nil {
		t.Fatalf("README.md:%d: %v", c.Line, err)
	}
	tr.nodes[flags["--http-addr"]] = n
	tr.started = append(tr.started, n)
	if !background {
		if err := n.waitReady(readyTimeout); err != nil {
			t.Fatalf("README.md:%d: %s: %v", c.Line, c.Text, err)
		}
	}
	t.Logf("README.md:%d: started %s", c.Line, text)
}

// nodeAt returns the server started for the README's address a.
func (tr *tour) nodeAt(a string) *node {
	tr.t.Helper()
	n := tr.nodes[tr.addr(a)]
	if n == nil {
		tr.t.Fatalf("no server was started on the README's %s", a)
	}
	return n
}

// commandWait is a command's own --wait.
var commandWait = regexp.MustCompile(`--wait[ =]([0-9a-z.]+)`)

// command runs one command in the shell and checks it.
func (tr *tour) command(s *shell, c tourCommand, text string) {
	t := tr.t
	t.Helper()
	timeout := commandTimeout
	if m := commandWait.FindStringSubmatch(text); m != nil {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("README.md:%d: %s: --wait %s: %v", c.Line, c.Text, m[1], err)
		}
		timeout += d
	}
	start := time.Now()
	res, err := s.run(text, timeout)
	if err != nil {
		t.Fatalf("README.md:%d: %s: %v", c.Line, c.Text, err)
	}
	if res.Code != 0 {
		t.Fatalf("README.md:%d: %s: exit code %d\nstdout: %s\nstderr: %s", c.Line, c.Text, res.Code, res.Stdout, res.Stderr)
	}
	body := tr.check(c, res)
	tr.outputs = append(tr.outputs, tourOutput{Readme: c.Text, Out: body})
	t.Logf("README.md:%d: ok in %v: %s", c.Line, time.Since(start).Round(time.Millisecond), shorten(text, 160))
}

// check checks a command's HTTP answers against what the README says of
// them, and returns the body of its output.
func (tr *tour) check(c tourCommand, res shellResult) []byte {
	t := tr.t
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("README.md:%d: %s: %s", c.Line, c.Text, fmt.Sprintf(format, args...))
	}
	body := res.Stdout
	if _, after, ok := strings.Cut(string(body), "\r\n\r\n"); ok && strings.HasPrefix(string(body), "HTTP/") { // curl -i
		body = []byte(after)
	}
	want := c.Expect
	if strings.Contains(c.Text, "curl ") && len(res.Curls) == 0 {
		fail("curl got no answer: %s", res.Stderr)
	}
	for _, r := range res.Curls {
		switch {
		case want != nil && want.Status != 0 && r.Status != want.Status:
			fail("status %d, the README says %d (line %d); body %s", r.Status, want.Status, want.Line, body)
		case (want == nil || want.Status == 0) && (r.Status < 200 || r.Status > 299):
			fail("status %d: the README gives this command as one that works; body %s", r.Status, body)
		}
	}
	if want == nil || (want.Body == "" && len(want.Headers) == 0) {
		return body
	}
	if len(res.Curls) != 1 {
		fail("the README says what it returns (line %d), but it made %d requests", want.Line, len(res.Curls))
	}
	if want.Body != "" {
		if err := checkBody(want.Body, body); err != nil {
			fail("%v (line %d)", err, want.Line)
		}
	}
	for _, h := range want.Headers {
		re, err := headerPattern(h[1], body)
		if err != nil {
			fail("%v (line %d)", err, want.Line)
		}
		if got := res.Curls[0].Header.Get(h[0]); !re.MatchString(got) {
			fail("header %s is %q, the README says %s (line %d)", h[0], got, h[1], want.Line)
		}
	}
	return body
}

// stream runs a command the README ends with Ctrl-C: it must answer 200
// with an event stream that replays the document changes acknowledged
// before it (each command's {"version":V,"ops":[...]}), as events V in
// order; then it is interrupted.
func (tr *tour) stream(s *shell, c tourCommand, text string) {
	t := tr.t
	t.Helper()
	type change struct {
		Version uint64          `json:"version"`
		Ops     json.RawMessage `json:"ops"`
	}
	var acked []change
	for _, o := range tr.outputs {
		var ch change
		if strings.Contains(o.Readme, "/ops ") && json.Unmarshal(o.Out, &ch) == nil && ch.Version > 0 {
			acked = append(acked, ch)
		}
	}
	j, err := s.start(text)
	if err != nil {
		t.Fatalf("README.md:%d: %s: %v", c.Line, c.Text, err)
	}
	var events []map[string]string
	deadline := time.Now().Add(streamTimeout)
	for {
		out := j.stdout()
		events = sseEvents(out)
		if len(events) >= len(acked) && len(s.result(j.dir).Curls) > 0 {
			break
		}
		if time.Now().After(deadline) {
			_ = j.interrupt()
			res, _ := j.wait(commandTimeout)
			t.Fatalf("README.md:%d: %s: %d events within %v, want the %d changes before it replayed; output %q, stderr %q",
				c.Line, c.Text, len(events), streamTimeout, len(acked), out, res.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := j.interrupt(); err != nil {
		t.Fatalf("README.md:%d: %s: Ctrl-C: %v", c.Line, c.Text, err)
	}
	res, err := j.wait(commandTimeout)
	if err != nil {
		t.Fatalf("README.md:%d: %s: after Ctrl-C: %v", c.Line, c.Text, err)
	}
	if len(res.Curls) != 1 || res.Curls[0].Status != http.StatusOK || !strings.HasPrefix(res.Curls[0].Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("README.md:%d: %s: want one 200 text/event-stream answer, got %+v", c.Line, c.Text, res.Curls)
	}
	for i, ch := range acked {
		var data change
		if err := json.Unmarshal([]byte(events[i]["data"]), &data); err != nil {
			t.Fatalf("README.md:%d: event %d: data %q: %v", c.Line, i, events[i]["data"], err)
		}
		var wantOps, gotOps any
		_ = json.Unmarshal(ch.Ops, &wantOps)
		_ = json.Unmarshal(data.Ops, &gotOps)
		if events[i]["id"] != fmt.Sprint(ch.Version) || data.Version != ch.Version || !reflect.DeepEqual(wantOps, gotOps) {
			t.Fatalf("README.md:%d: event %d is %v, want the change acknowledged earlier: version %d, ops %s", c.Line, i, events[i], ch.Version, ch.Ops)
		}
	}
	t.Logf("README.md:%d: ok: %d changes replayed, then Ctrl-C: %s", c.Line, len(acked), shorten(text, 160))
}

// sseEvents returns the complete events of a text/event-stream, each as
// its fields (comments left out; data lines joined).
func sseEvents(b []byte) []map[string]string {
	var events []map[string]string
	blocks := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n\n")
	for _, blk := range blocks[:len(blocks)-1] { // the last is not complete yet
		ev := map[string]string{}
		for _, l := range strings.Split(blk, "\n") {
			if l == "" || strings.HasPrefix(l, ":") {
				continue
			}
			k, v, _ := strings.Cut(l, ":")
			v = strings.TrimPrefix(v, " ")
			if k == "data" && ev[k] != "" {
				v = ev[k] + "\n" + v
			}
			ev[k] = v
		}
		if len(ev) > 0 {
			events = append(events, ev)
		}
	}
	return events
}

// backupAndRestore runs the backup, the restore and the restored node's
// start that the prose of "Clusters of three" gives, in the cluster's
// shell, and checks the README's word: the restored data dir "boots a new
// one-node cluster holding the backup".
func (tr *tour) backupAndRestore(s *shell) {
	t := tr.t
	t.Helper()
	lines, err := readmeSection(tr.readme, "Clusters of three")
	if err != nil {
		t.Fatal(err)
	}
	_, prose, err := shBlocks(lines)
	if err != nil {
		t.Fatal(err)
	}
	spans := codeSpans(prose)
	find := func(from int, prefix string) int {
		for i := from; i < len(spans); i++ {
			if strings.HasPrefix(spans[i].Text, prefix) {
				return i
			}
		}
		t.Fatalf("README.md, \"Clusters of three\": no `%s...` (the tour runs the backup, the restore and the restored node's start given there)", prefix)
		return 0
	}
	backup := find(0, "troupe backup ")
	restore := find(backup+1, "troupe restore ")
	serve := find(restore+1, "troupe serve ")
	beside := find(serve+1, "--http-addr ")
	for _, i := range []int{backup, restore} {
		tr.run(s, tourCommand{Line: spans[i].No, Text: spans[i].Text})
	}
	// Beside the running cluster: on the other ports the README gives.
	tr.run(s, tourCommand{Line: spans[serve].No, Text: spans[serve].Text + " " + spans[beside].Text})

	words := strings.Fields(spans[backup].Text)
	from := ""
	for i, w := range words[:len(words)-1] {
		if w == "--addr" {
			from = strings.TrimPrefix(words[i+1], "http://")
		}
	}
	src := tr.nodeAt(from)
	dst := tr.nodeAt(regexp.MustCompile(`--http-addr[ =](\S+)`).FindStringSubmatch(spans[beside].Text)[1])
	vars, err := s.env(commandTimeout)
	if err != nil {
		t.Fatal(err)
	}
	peer := map[string]string{"X-Troupe-Cluster-Secret": vars["TROUPE_CLUSTER_SECRET"]}
	var before, after stateHash
	for _, x := range []struct {
		n *node
		h *stateHash
	}{{src, &before}, {dst, &after}} {
		r := x.n.do(t, "GET", "/v1/cluster/hash", nil, peer)
		expectStatus(t, r, 200)
		if err := json.Unmarshal(r.Body, x.h); err != nil {
			t.Fatal(err)
		}
	}
	if before.Hash != after.Hash {
		t.Fatalf("README.md:%d: the restored node does not hold the backup of %s: hash %+v, the cluster's %+v", spans[serve].No, from, after, before)
	}
	r := dst.do(t, "GET", "/v1/cluster", nil, peer)
	expectStatus(t, r, 200)
	var st clusterStatus
	if err := json.Unmarshal(r.Body, &st); err != nil || len(st.Members) != 1 || st.Leader == nil {
		t.Fatalf("README.md:%d: the restored node is not a one-node cluster with a leader: %s (%v)", spans[serve].No, r.Body, err)
	}
}

// restartAfterTour does what the prose after the tour says: "Stop the
// node with Ctrl-C (or SIGTERM): it ... exits 0. Start it again with `make
// run` and everything is there": the same state hash, asked with the
// tour's $TOKEN, before and after.
func (tr *tour) restartAfterTour(s *shell) {
	t := tr.t
	t.Helper()
	lines, err := readmeSection(tr.readme, "A quick tour with curl")
	if err != nil {
		t.Fatal(err)
	}
	_, prose, _ := shBlocks(lines)
	var again *mdLine
	for _, sp := range codeSpans(prose) {
		if sp.Text == "make run" {
			again = &sp
			break
		}
	}
	if again == nil {
		t.Fatal("README.md, \"A quick tour with curl\": the prose after the tour no longer says to start the node again with `make run`")
	}
	res, err := s.run(`printf %s "$TOKEN"`, commandTimeout)
	if err != nil || len(res.Stdout) == 0 {
		t.Fatalf("the tour's $TOKEN: %q %v", res.Stdout, err)
	}
	auth := map[string]string{"Authorization": "Bearer " + string(res.Stdout)}
	hash := func(n *node) stateHash {
		t.Helper()
		r := n.do(t, "GET", "/v1/cluster/hash", nil, auth)
		expectStatus(t, r, 200)
		var h stateHash
		if err := json.Unmarshal(r.Body, &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	before := hash(tr.nodeAt(tr.httpDefault))
	tr.interruptNode(tr.nodeAt(tr.httpDefault))
	tr.make(s, tourCommand{Line: again.No, Text: again.Text}, strings.Fields(again.Text))
	if after := hash(tr.nodeAt(tr.httpDefault)); after.Hash != before.Hash {
		t.Fatalf("README.md:%d: after Ctrl-C and make run the state is %+v, before it was %+v", again.No, after, before)
	}
	t.Logf("README.md:%d: Ctrl-C, make run: the same state (hash %s)", again.No, before.Hash)
}

// interruptNode stops a server as the README's Ctrl-C does, and requires
// it to exit 0 within stopTimeout.
func (tr *tour) interruptNode(n *node) {
	t := tr.t
	t.Helper()
	if err := n.Cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.done:
	case <-time.After(stopTimeout):
		t.Fatalf("node %s did not exit within %v of Ctrl-C (SIGINT)", n.cfg.ID, stopTimeout)
	}
	if code := n.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("node %s exited with %s after Ctrl-C, the README says 0", n.cfg.ID, n.exitDescription())
	}
}

// checkLogs: a node's log never holds the first admin's password, and
// names an admin-password file only where there is one.
func (tr *tour) checkLogs() {
	t := tr.t
	t.Helper()
	named := regexp.MustCompile(`[^\s="']*admin-password\b`)
	for _, n := range tr.started {
		log := n.logTail()
		for _, f := range named.FindAllString(log, -1) {
			path := f
			if !filepath.IsAbs(path) {
				path = filepath.Join(tr.dir, f)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("node %s (%s) names %s, which cannot be read: %v", n.cfg.ID, n.URL, f, err)
			}
			if pw := strings.TrimSpace(string(b)); pw != "" && strings.Contains(log, pw) {
				t.Fatalf("node %s (%s) logs the password of %s", n.cfg.ID, n.URL, f)
			}
		}
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
