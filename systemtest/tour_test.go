//go:build unix

package systemtest

// TestReadmeTour runs README.md's commands, read from README.md itself, in
// order, against real processes. README.md is read in readme_test.go and
// outputs are checked against it in readme_check_test.go; the bash session
// is shell_test.go. This file decides how each kind of command is run and
// checked; tour_steps_test.go has the steps that are more than a command.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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
// "A quick tour with curl" in one bash session, Ctrl-C on the node and
// `make run` again (the same state); then the ```sh blocks of "Clusters of
// three" in another session, and the backup, restore and start of the
// restored node the prose of that section gives. Every address is moved to
// a free port on 127.0.0.1, the same for every mention of one address.
// Last, no node's log names an admin-password file that is not there, or
// holds the password.
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
	case strings.Contains(c.Comment, "Ctrl-C") && strings.Contains(text, "/v1/watch"):
		tr.watchStream(s, c, text)
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

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
