package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ShareDB: its npm packages installed into a scratch directory outside
// the repository (nothing vendored); the server and the load client are
// the two scripts beside this file (sharedb/), run by node with NODE_PATH
// pointing at the scratch directory's node_modules.

// sharedbPackages are installed as `npm install <spec>…`; the versions
// actually installed are read back from node_modules for the report.
func sharedbPackages(version string) []string {
	return []string{"sharedb@" + version, "ot-text-unicode@4", "ws@8", "@teamwork/websocket-json-stream@2"}
}

type sharedbTools struct {
	node       string
	dir        string            // the scratch directory
	versions   map[string]string // package → installed version
	installCmd string
	nodeVer    string
}

// installShareDB installs the packages into scratch/sharedb-<version>
// (once: a later run finds them). An error means the peer is skipped.
func installShareDB(scratch, version string) (*sharedbTools, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("no node on PATH (Node 18+ and npm are needed): %w", err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return nil, fmt.Errorf("no npm on PATH: %w", err)
	}
	t := &sharedbTools{node: node, dir: filepath.Join(scratch, "sharedb-"+version)}
	pkgs := sharedbPackages(version)
	t.installCmd = "npm install --no-audit --no-fund --no-save " + strings.Join(pkgs, " ")
	if out, err := exec.Command(node, "--version").Output(); err == nil {
		t.nodeVer = strings.TrimSpace(string(out))
	}
	if t.versions, err = installedVersions(t.dir, pkgs); err != nil {
		if err := os.MkdirAll(t.dir, 0o755); err != nil {
			return nil, err
		}
		// A package.json of its own keeps npm from looking for one in
		// the directories above.
		pj := filepath.Join(t.dir, "package.json")
		if !isFile(pj) {
			if err := os.WriteFile(pj, []byte(`{"name":"troupe-peers-sharedb","private":true}`+"\n"), 0o644); err != nil {
				return nil, err
			}
		}
		fmt.Fprintf(os.Stderr, "  (in %s) %s\n", t.dir, t.installCmd)
		cmd := exec.Command(npm, append([]string{"install", "--no-audit", "--no-fund", "--no-save"}, pkgs...)...)
		cmd.Dir = t.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", t.installCmd, err, tail(string(out), 1500))
		}
		if t.versions, err = installedVersions(t.dir, pkgs); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// installedVersions reads each package's version from node_modules.
func installedVersions(dir string, specs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, spec := range specs {
		name := spec[:strings.LastIndex(spec, "@")]
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", filepath.FromSlash(name), "package.json"))
		if err != nil {
			return nil, fmt.Errorf("%s is not installed: %w", name, err)
		}
		var p struct{ Version string }
		if err := json.Unmarshal(b, &p); err != nil || p.Version == "" {
			return nil, fmt.Errorf("cannot read %s's version: %v", name, err)
		}
		out[name] = p.Version
	}
	return out, nil
}

// scriptDir is where server.js and load.js are: bench/peers/sharedb,
// relative to the repository root (make runs from there).
const scriptDir = "bench/peers/sharedb"

func (t *sharedbTools) env() []string {
	return []string{"NODE_PATH=" + filepath.Join(t.dir, "node_modules")}
}

// startShareDB runs server.js on a free loopback port.
func startShareDB(t *sharedbTools, root string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	p, err := startProc(root, "sharedb", t.node, []string{filepath.Join(scriptDir, "server.js"), "--port", port}, t.env())
	if err != nil {
		return nil, "", err
	}
	if err := p.waitReady(time.Minute, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, addr, nil
}

// sharedbResult is the JSON line load.js prints.
type sharedbResult struct {
	System     string  `json:"system"`
	Clients    int     `json:"clients"`
	Docs       int     `json:"docs"`
	DurationS  float64 `json:"duration_s"`
	Ops        int64   `json:"ops"`
	OpsPerS    float64 `json:"ops_per_s"`
	EventsPerS float64 `json:"events_per_s"`
	Errors     int64   `json:"errors"`
	LatencyUS  struct {
		P50  float64 `json:"p50"`
		P90  float64 `json:"p90"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p999"`
		Max  float64 `json:"max"`
	} `json:"latency_us"`
	FirstRPS float64 `json:"first_rps"`
	LastRPS  float64 `json:"last_rps"`
}

// parseShareDBResult reads load.js's output: its last line is the result.
func parseShareDBResult(out []byte) (*sharedbResult, error) {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	var r sharedbResult
	if err := json.Unmarshal(lines[len(lines)-1], &r); err != nil {
		return nil, fmt.Errorf("cannot parse the ShareDB load result: %w", err)
	}
	if r.System != "sharedb" || r.DurationS <= 0 || r.Clients < 1 {
		return nil, fmt.Errorf("not a ShareDB load result: %.200s", lines[len(lines)-1])
	}
	return &r, nil
}

// runShareDBLoad runs load.js against addr: clients on docs documents
// for d after a warmup of one second.
func runShareDBLoad(t *sharedbTools, addr string, clients, docs int, d time.Duration) (*sharedbResult, string, error) {
	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	args := []string{filepath.Join(scriptDir, "load.js"), "--url", "ws://" + addr,
		"--clients", strconv.Itoa(clients), "--docs", strconv.Itoa(docs), "--duration", secs, "--warmup", "1"}
	shown := append([]string{"node"}, args...)
	shown[3] = "ws://127.0.0.1:9100"
	line := strings.Join(shown, " ")
	cmd := exec.Command(t.node, args...)
	cmd.Env = append(os.Environ(), t.env()...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, line, fmt.Errorf("%s: %w\n%s", line, err, tail(stderr.String(), 1500))
	}
	r, err := parseShareDBResult(stdout.Bytes())
	if err != nil {
		return nil, line, err
	}
	return r, line, nil
}
