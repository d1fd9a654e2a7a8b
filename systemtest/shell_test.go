//go:build unix

package systemtest

// A shell is one bash session that runs the README's commands one at a
// time, as a reader pasting them into a terminal would: variables and
// exports carry over from one command to the next. Each command's stdout
// and stderr go to files of its own, and bash's stdout carries only the
// test's end-of-command marks, read by one goroutine into a channel.
//
// `curl` in the session is a wrapper (curlWrapper) that execs the real curl
// with each response's status line and headers dumped into the command's
// directory, and connects to 127.0.0.1 only. When the test ends, bash's
// stdin is closed and a curl still running is killed, so bash exits; bash
// runs in a process group of its own, killed if it has not exited 5 s
// later.

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type shell struct {
	work  string // a directory per command: its output and curl's headers
	cmd   *exec.Cmd
	stdin io.WriteCloser
	marks chan string // lines bash printed: the end-of-command marks
	n     int         // commands sent
}

// shellResult is what one command did.
type shellResult struct {
	Code           int
	Stdout, Stderr []byte
	Curls          []curlResponse // one per curl run, in no particular order
}

// curlResponse is a response's status and headers as curl received them.
type curlResponse struct {
	Status int
	Header http.Header
}

// curlWrapper is the `curl` a shell finds first on its PATH.
const curlWrapper = `#!/bin/sh
# curl with each response's status line and headers kept for the test
# (-D); whatever host a URL names, it connects to 127.0.0.1 (on the URL's
# port), never through a proxy. Its pid (the shell's, which exec hands to
# curl) is left for the test's Ctrl-C.
: >"$TOUR_CURL_DIR/pid.$$"
exec %s --noproxy '*' --connect-to ::127.0.0.1: -D "$(mktemp "$TOUR_CURL_DIR/headers.XXXXXX")" "$@"
`

// installCurlWrapper writes the wrapper into binDir.
func installCurlWrapper(t *testing.T, binDir string) {
	t.Helper()
	real, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	if err := os.WriteFile(filepath.Join(binDir, "curl"), []byte(fmt.Sprintf(curlWrapper, strconv.Quote(real))), 0o755); err != nil {
		t.Fatal(err)
	}
}

// startShell starts bash in dir with env; pipefail is on, so that a
// failing curl in a pipeline fails its command.
func startShell(t *testing.T, dir string, env []string) *shell {
	t.Helper()
	s := &shell{work: t.TempDir(), marks: make(chan string, 16)}
	s.cmd = exec.Command("bash", "--noprofile", "--norc")
	s.cmd.Dir = dir
	s.cmd.Env = env
	attr := sysProcAttr()
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	attr.Setpgid = true
	s.cmd.SysProcAttr = attr
	errLog, err := os.Create(filepath.Join(s.work, "bash.err"))
	if err != nil {
		t.Fatal(err)
	}
	defer errLog.Close()
	s.cmd.Stderr = errLog
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("cannot start bash: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.marks <- sc.Text()
		}
		close(s.marks)
		_ = s.cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = s.stdin.Close() // bash exits at the end of its input...
		// ...once the command it runs has ended: a curl still running is
		// killed, and bash, its parent, reaps it.
		s.killCurls()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			// Whatever is left of the session goes with its process group.
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			if b, _ := os.ReadFile(errLog.Name()); len(b) > 0 {
				t.Logf("bash's own stderr:\n%s", b)
			}
		}
	})
	if err := s.send("set -o pipefail\n"); err != nil {
		t.Fatal(err)
	}
	return s
}

// killCurls kills the curls of the session that still run: those whose
// parent is bash (a pid a curl left may since be another's).
func (s *shell) killCurls() {
	files, _ := filepath.Glob(filepath.Join(s.work, "c*", "curl", "pid.*"))
	for _, f := range files {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Ext(f), "."))
		if err == nil && parentPID(pid) == s.cmd.Process.Pid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// parentPID is the parent of process pid, from /proc; 0 if unknown.
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func (s *shell) send(text string) error {
	if _, err := io.WriteString(s.stdin, text); err != nil {
		return fmt.Errorf("cannot write to bash: %w", err)
	}
	return nil
}

// next prepares the directory of the next command and returns it with the
// lines that set it up.
func (s *shell) next() (int, string, string, error) {
	s.n++
	d := filepath.Join(s.work, fmt.Sprintf("c%03d", s.n))
	if err := os.MkdirAll(filepath.Join(d, "curl"), 0o755); err != nil {
		return 0, "", "", err
	}
	return s.n, d, fmt.Sprintf("export TOUR_CURL_DIR=%s\n", strconv.Quote(filepath.Join(d, "curl"))), nil
}

// awaitMark waits for "@@done N VALUE" and returns VALUE.
func (s *shell) awaitMark(n int, timeout time.Duration) (int, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	prefix := fmt.Sprintf("@@done %d ", n)
	for {
		select {
		case l, ok := <-s.marks:
			if !ok {
				return 0, fmt.Errorf("bash exited")
			}
			if v, found := strings.CutPrefix(l, prefix); found {
				return strconv.Atoi(v)
			}
		case <-timer.C:
			return 0, fmt.Errorf("not done within %v", timeout)
		}
	}
}

// run runs one command in the session and waits for it at most timeout.
// Its stdin is /dev/null.
func (s *shell) run(text string, timeout time.Duration) (shellResult, error) {
	j, err := s.start(text)
	if err != nil {
		return shellResult{}, err
	}
	return j.wait(timeout)
}

// job is a command started in the session, running in its foreground.
type job struct {
	s   *shell
	n   int
	dir string
}

// start sends one command to the session without waiting for it.
func (s *shell) start(text string) (*job, error) {
	n, d, setup, err := s.next()
	if err != nil {
		return nil, err
	}
	q := strconv.Quote
	script := fmt.Sprintf("%s{\n%s\n} >%s 2>%s </dev/null\necho \"@@done %d $?\"\n",
		setup, text, q(filepath.Join(d, "out")), q(filepath.Join(d, "err")), n)
	if err := s.send(script); err != nil {
		return nil, err
	}
	return &job{s: s, n: n, dir: d}, nil
}

// wait waits at most timeout for the job to end and returns what it did.
func (j *job) wait(timeout time.Duration) (shellResult, error) {
	code, err := j.s.awaitMark(j.n, timeout)
	res := j.s.result(j.dir)
	res.Code = code
	if err != nil {
		return res, fmt.Errorf("%w (stdout so far %q, stderr %q)", err, res.Stdout, res.Stderr)
	}
	return res, nil
}

// stdout returns what the job has written so far.
func (j *job) stdout() []byte {
	b, _ := os.ReadFile(filepath.Join(j.dir, "out"))
	return b
}

// interrupt sends SIGINT to each curl of the job, as the reader's Ctrl-C
// does (the curl wrapper records its pid, which exec keeps for curl).
func (j *job) interrupt() error {
	pids, _ := filepath.Glob(filepath.Join(j.dir, "curl", "pid.*"))
	if len(pids) == 0 {
		return fmt.Errorf("no curl to interrupt")
	}
	for _, f := range pids {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Ext(f), "."))
		if err != nil {
			return err
		}
		if err := syscall.Kill(pid, syscall.SIGINT); err != nil && err != syscall.ESRCH {
			return fmt.Errorf("cannot interrupt curl (pid %d): %w", pid, err)
		}
	}
	return nil
}

// env returns the session's environment variables.
func (s *shell) env(timeout time.Duration) (map[string]string, error) {
	res, err := s.run("env -0", timeout)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	for _, kv := range strings.Split(string(res.Stdout), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	return vars, nil
}

// result reads what a command left in its directory.
func (s *shell) result(d string) shellResult {
	var res shellResult
	res.Stdout, _ = os.ReadFile(filepath.Join(d, "out"))
	res.Stderr, _ = os.ReadFile(filepath.Join(d, "err"))
	dumps, _ := filepath.Glob(filepath.Join(d, "curl", "headers.*"))
	slices.Sort(dumps)
	for _, f := range dumps {
		if r, err := readHeaderDump(f); err == nil {
			res.Curls = append(res.Curls, r)
		}
	}
	return res
}

// readHeaderDump reads a file curl wrote with -D: a status line and
// headers. A dump without a status line (curl failed to connect) is an
// error.
func readHeaderDump(path string) (curlResponse, error) {
	f, err := os.Open(path)
	if err != nil {
		return curlResponse{}, err
	}
	defer f.Close()
	tp := textproto.NewReader(bufio.NewReader(f))
	line, err := tp.ReadLine()
	if err != nil {
		return curlResponse{}, fmt.Errorf("%s: no status line: %w", path, err)
	}
	_, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if err != nil {
		return curlResponse{}, fmt.Errorf("%s: cannot read status line %q", path, line)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil && err != io.EOF {
		return curlResponse{}, fmt.Errorf("%s: %w", path, err)
	}
	return curlResponse{Status: status, Header: http.Header(h)}, nil
}
