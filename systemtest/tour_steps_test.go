//go:build unix

package systemtest

// The steps of the README tour that are more than a command and its
// output: a stream ended with Ctrl-C, the backup and restore the prose
// gives, the restart after the tour, and what the nodes' logs name.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"time"
)

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

// watchStream runs a change-feed command the README ends with Ctrl-C: it
// must answer 200 with an event stream of changes, ids "<index>-<n>" in
// increasing order, that holds the creation of every user the tour
// created before it; then it is interrupted.
func (tr *tour) watchStream(s *shell, c tourCommand, text string) {
	t := tr.t
	t.Helper()
	want := map[string]bool{}
	for _, o := range tr.outputs {
		var u struct {
			ID string `json:"id"`
		}
		if strings.Contains(o.Readme, "-XPOST") && strings.Contains(o.Readme, "/v1/users ") && json.Unmarshal(o.Out, &u) == nil && u.ID != "" {
			want[u.ID] = true
		}
	}
	if len(want) == 0 {
		t.Fatalf("README.md:%d: no user was created before the change feed's command", c.Line)
	}
	j, err := s.start(text)
	if err != nil {
		t.Fatalf("README.md:%d: %s: %v", c.Line, c.Text, err)
	}
	type change struct {
		Index uint64 `json:"index"`
		N     uint32 `json:"n"`
		Kind  string `json:"kind"`
		Op    string `json:"op"`
		ID    string `json:"id"`
	}
	created := map[string]bool{}
	deadline := time.Now().Add(streamTimeout)
	for {
		events := sseEvents(j.stdout())
		clear(created)
		var last change
		for i, ev := range events {
			var ch change
			if ev["event"] != "change" || json.Unmarshal([]byte(ev["data"]), &ch) != nil || ev["id"] != fmt.Sprintf("%d-%d", ch.Index, ch.N) ||
				i > 0 && (ch.Index < last.Index || ch.Index == last.Index && ch.N <= last.N) {
				_ = j.interrupt()
				t.Fatalf("README.md:%d: event %d: %v (after %+v)", c.Line, i, ev, last)
			}
			last = ch
			if ch.Kind == "user" && ch.Op == "created" {
				created[ch.ID] = true
			}
		}
		missing := 0
		for id := range want {
			if !created[id] {
				missing++
			}
		}
		if missing == 0 && len(s.result(j.dir).Curls) > 0 {
			break
		}
		if time.Now().After(deadline) {
			_ = j.interrupt()
			t.Fatalf("README.md:%d: %s: %d of the %d users created before are missing from the feed within %v; output %q",
				c.Line, c.Text, missing, len(want), streamTimeout, j.stdout())
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
	t.Logf("README.md:%d: ok: the %d users created before are in the feed, then Ctrl-C: %s", c.Line, len(want), shorten(text, 160))
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

// checkLogs: a node names an admin-password file only where there is one,
// of mode 0600 as the README says; its log holds neither that password nor
// the one it was given in TROUPE_ADMIN_PASSWORD.
func (tr *tour) checkLogs() {
	t := tr.t
	t.Helper()
	named := regexp.MustCompile(`[^\s="']*admin-password\b`)
	for _, n := range tr.started {
		log := n.logTail()
		var secrets []string
		for _, kv := range n.Cmd.Env {
			if pw, ok := strings.CutPrefix(kv, "TROUPE_ADMIN_PASSWORD="); ok {
				secrets = append(secrets, pw)
			}
		}
		for _, f := range named.FindAllString(log, -1) {
			path := f
			if !filepath.IsAbs(path) {
				path = filepath.Join(tr.dir, f)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("node %s (%s) names %s, which cannot be read: %v", n.cfg.ID, n.URL, f, err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("node %s (%s) names %s, of mode %v; the README says 0600", n.cfg.ID, n.URL, f, fi.Mode().Perm())
			}
			secrets = append(secrets, strings.TrimSpace(string(b)))
			t.Logf("node %s names %s: there, mode 0600", n.cfg.ID, f)
		}
		for _, pw := range secrets {
			if pw != "" && strings.Contains(log, pw) {
				t.Fatalf("node %s (%s) logs the first admin's password", n.cfg.ID, n.URL)
			}
		}
	}
}
