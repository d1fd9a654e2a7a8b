package systemtest

// The browser editor (transport/web) end to end: a secure three-node
// cluster, and headless Chromium driven over the DevTools Protocol by
// chromedp (a Go driver: no Selenium, no Node.js). Two tabs on two
// different nodes log in through the page, open one document and type into
// it at the same time; both must end with the same text, holding every
// character typed, and equal to what every node serves.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium. Without it the test is skipped,
// except in CI (CI set), where .ci/run installs it and its absence fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium not found (.ci/run installs it with apt-get install chromium): %v", err)
		}
		t.Skip("chromium not found; install it (apt-get install chromium) to run the browser tests")
	}
	return path
}

// tab is one browser tab showing the editor served by one node.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
	node *node

	mu     sync.Mutex
	errors []string // uncaught exceptions and console errors of the page
}

func newTab(t *testing.T, browser context.Context, name string, n *node) *tab {
	tb := &tab{t: t, name: name, node: n}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithListener(tb.listen))
	t.Cleanup(cancel)
	// The first run opens the tab, which lives as long as the context of
	// that run: this one, without a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: cannot open a tab: %v", name, err)
	}
	tb.ctx = ctx
	return tb
}

func (tb *tab) listen(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		tb.mu.Lock()
		tb.errors = append(tb.errors, "exception: "+describeException(ev.ExceptionDetails))
		tb.mu.Unlock()
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeWarning {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		tb.mu.Lock()
		tb.errors = append(tb.errors, "console."+string(ev.Type)+": "+strings.Join(parts, " "))
		tb.mu.Unlock()
	}
}

func describeException(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "?"
	}
	s := d.Text
	if d.Exception != nil {
		s += " " + d.Exception.Description
	}
	return fmt.Sprintf("%s (line %d)", s, d.LineNumber)
}

// do runs actions, failing the test on an error.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %s: %v (page status: %s)", tb.name, what, err, tb.status())
	}
}

// eval evaluates a JavaScript expression into out.
func (tb *tab) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// status is the page's status line, for failure messages.
func (tb *tab) status() string {
	var s string
	if err := tb.eval(`document.querySelector('footer').innerText.replace(/\s+/g, ' ')`, &s); err != nil {
		return "(" + err.Error() + ")"
	}
	return s
}

// waitIdle waits until the page has no unsent edits and its socket is open.
func (tb *tab) waitIdle(timeout time.Duration) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.troupe && window.troupe.idle()`,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		tb.t.Fatalf("%s: not idle within %v: %v (status: %s)", tb.name, timeout, err, tb.status())
	}
}

// pageState is what the page knows of the open document.
type pageState struct {
	Text    string `json:"text"`
	Shown   string `json:"shown"`
	Version uint64 `json:"version"`
	Idle    bool   `json:"idle"`
	People  int    `json:"people"`
	Conn    string `json:"conn"`
	Stats   struct {
		Changes     int `json:"changes"`
		Transformed int `json:"transformed"`
		Acks        int `json:"acks"`
		Resent      int `json:"resent"`
		Connects    int `json:"connects"`
		Resyncs     int `json:"resyncs"`
		Reloads     int `json:"reloads"`
	} `json:"stats"`
}

func (tb *tab) state() (pageState, error) {
	var st pageState
	err := tb.eval(`({text: troupe.state.text, shown: troupe.shown(),
		version: troupe.state.version, idle: troupe.idle(),
		people: document.querySelectorAll('#people li').length,
		conn: document.getElementById('conn').dataset.state, stats: troupe.state.stats})`, &st)
	return st, err
}

// typeWords types word count times, each time at a random place (a code
// point boundary), with small random pauses; every fifth time it also
// inserts an emoji as an input method would. drop(i) says when to cut the
// page's WebSocket. It returns what it typed.
func (tb *tab) typeWords(word, emoji string, count int, drop func(i int) string) (string, error) {
	var typed strings.Builder
	rng := rand.New(rand.NewPCG(uint64(len(word)), uint64(time.Now().UnixNano())))
	for i := range count {
		var caret int
		if err := tb.eval(`(() => {
			const cp = Math.floor(Math.random() * (Array.from(troupe.shown()).length + 1));
			troupe.select(cp);
			return cp;
		})()`, &caret); err != nil {
			return typed.String(), fmt.Errorf("moving the caret: %w", err)
		}
		ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
		err := chromedp.Do(ctx, chromedp.KeyEvent(word))
		if err == nil && i%5 == 4 {
			err = chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: emoji})
				return err
			}))
			if err == nil {
				typed.WriteString(emoji)
			}
		}
		cancel()
		if err != nil {
			return typed.String(), fmt.Errorf("typing: %w", err)
		}
		typed.WriteString(word)
		switch drop(i) {
		case "close":
			// The socket goes away between edits.
			if err := tb.eval(`troupe.dropSocket()`, nil); err != nil {
				return typed.String(), err
			}
		case "reset":
			// As the server's reset (a stream cut off): the page catches
			// up from GET /ops?since and reconnects.
			if err := tb.eval(`troupe.receive({type: 'reset', doc: {}})`, nil); err != nil {
				return typed.String(), err
			}
		case "close-in-flight":
			// An edit is sent and the socket closed at once: its ack is
			// likely lost, and the page must send it again with its seq.
			if err := tb.eval(`(() => {
				troupe.insert('Z');
				const inflight = troupe.state.inflight;
				troupe.dropSocket();
				return !!inflight;
			})()`, nil); err != nil {
				return typed.String(), err
			}
			typed.WriteString("Z")
		}
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
	}
	return typed.String(), nil
}

func runeCounts(s string) map[rune]int {
	m := map[rune]int{}
	for _, r := range s {
		m[r]++
	}
	return m
}

func diffCounts(got, want map[rune]int) string {
	var out []string
	for r, n := range want {
		if got[r] != n {
			out = append(out, fmt.Sprintf("%q: %d, want %d", r, got[r], n))
		}
	}
	for r, n := range got {
		if _, ok := want[r]; !ok {
			out = append(out, fmt.Sprintf("%q: %d, want 0", r, n))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// TestBrowserEditor: two tabs on two nodes edit one document at once,
// with their WebSockets cut mid-typing, and converge.
func TestBrowserEditor(t *testing.T) {
	requireBinary(t)
	chrome := chromiumPath(t)
	start := time.Now()

	nodes, _ := startSecureCluster(t)
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser); err != nil { // starts the browser
		t.Fatalf("cannot start %s: %v", chrome, err)
	}

	const email, password = "grace@example.com", "correct horse battery"
	// Tab A (on the leader) registers through the page and creates the
	// document; tab B (on a follower) logs in and opens it from the list.
	a := newTab(t, browser, "tab A on node a", nodes[0])
	b := newTab(t, browser, "tab B on node c", nodes[2])
	a.do("register",
		chromedp.Navigate(a.node.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("register-form")),
		chromedp.SendKeys(chromedp.ID("reg-name"), "Grace"),
		chromedp.SendKeys(chromedp.ID("reg-email"), email),
		chromedp.SendKeys(chromedp.ID("reg-password"), password),
		chromedp.Click(chromedp.ID("reg-submit")),
		chromedp.WaitVisible(chromedp.ID("docs-view")),
	)
	a.do("create a document",
		chromedp.SendKeys(chromedp.ID("new-title"), "Shared notes"),
		chromedp.Click(chromedp.ID("new-doc-submit")),
		chromedp.WaitVisible(chromedp.ID("editor-view")),
	)
	a.waitIdle(10 * time.Second)
	var docID string
	if err := a.eval(`decodeURIComponent(location.hash.slice('#/doc/'.length))`, &docID); err != nil || docID == "" {
		t.Fatalf("document id from the page: %q %v", docID, err)
	}

	// The client's diff and transform, checked in the page itself.
	var fails []string
	if err := a.eval(`new Promise((resolve, reject) => {
		const s = document.createElement('script');
		s.src = '/assets/selftest.js';
		s.onload = () => resolve(window.troupeSelfTest());
		s.onerror = () => reject(new Error('cannot load selftest.js'));
		document.head.append(s);
	})`, &fails); err != nil {
		t.Fatalf("self-test: %v", err)
	}
	if len(fails) > 0 {
		t.Fatalf("the page's OT self-test failed:\n%s", strings.Join(fails, "\n"))
	}

	b.do("log in and open the document",
		chromedp.Navigate(b.node.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("login-email"), email),
		chromedp.SendKeys(chromedp.ID("login-password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("docs-view")),
		chromedp.Click(chromedp.ID("refresh-docs")),
	)
	// The list may be drawn twice (after the login and after the refresh):
	// find and click its entry in one step.
	b.do("open the document from the list",
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Poll[bool](`(() => {
				const b = document.querySelector('button[data-doc-id="`+docID+`"]');
				if (b) b.click();
				return !!b;
			})()`, chromedp.WithPollingInterval(20*time.Millisecond))(ctx, t)
			return err
		}),
		chromedp.WaitVisible(chromedp.ID("editor-view")),
	)
	b.waitIdle(10 * time.Second)
	t.Logf("both tabs open %s after %v", docID, time.Since(start).Round(time.Millisecond))

	// Both type at once: different letters, so that every character can
	// be counted in the end; sockets are cut on both sides mid-typing.
	const count = 20
	words := map[*tab][2]string{a: {"kiwi ", "🥝"}, b: {"lemon.", "🍋"}}
	drops := map[*tab]func(int) string{
		a: func(i int) string {
			switch i {
			case 6:
				return "close"
			case 13:
				return "close-in-flight"
			}
			return ""
		},
		b: func(i int) string {
			switch i {
			case 4:
				return "reset"
			case 9:
				return "close-in-flight"
			case 15:
				return "close"
			}
			return ""
		},
	}
	typed := map[*tab]string{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	typingStart := time.Now()
	for _, tb := range []*tab{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := words[tb]
			s, err := tb.typeWords(w[0], w[1], count, drops[tb])
			mu.Lock()
			typed[tb] = s
			mu.Unlock()
			if err != nil {
				t.Errorf("%s: %v", tb.name, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("typing took %v", time.Since(typingStart).Round(time.Millisecond))
	if t.Failed() {
		t.FailNow()
	}

	// Both settle: no unsent edits, the same version, the same text.
	var sa, sb pageState
	deadline := time.Now().Add(15 * time.Second)
	for {
		var errA, errB error
		sa, errA = a.state()
		sb, errB = b.state()
		if errA == nil && errB == nil && sa.Idle && sb.Idle && sa.Version == sb.Version && sa.Text == sb.Text {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tabs did not converge within 15 s:\nA (%v): %+v\n   status: %s\nB (%v): %+v\n   status: %s",
				errA, sa, a.status(), errB, sb, b.status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if sa.Shown != sa.Text || sb.Shown != sb.Text {
		t.Fatalf("an editor shows other than its page's text:\nA %q / %q\nB %q / %q", sa.Shown, sa.Text, sb.Shown, sb.Text)
	}
	want := runeCounts(typed[a] + typed[b])
	if d := diffCounts(runeCounts(sa.Text), want); d != "" {
		t.Fatalf("the final text does not hold exactly what was typed (%s):\n%q", d, sa.Text)
	}
	t.Logf("converged at version %d with %d code points", sa.Version, len([]rune(sa.Text)))
	for _, x := range []struct {
		tb *tab
		st pageState
	}{{a, sa}, {b, sb}} {
		t.Logf("%s: %+v", x.tb.name, x.st.Stats)
		// Both sockets were cut twice (B's a third time by a reset);
		// nothing needed a reload.
		if x.st.Stats.Connects < 3 || x.st.Stats.Reloads != 0 {
			t.Errorf("%s: %d connections (want ≥ 3), %d reloads (want 0); status: %s", x.tb.name, x.st.Stats.Connects, x.st.Stats.Reloads, x.tb.status())
		}
	}
	if sb.Stats.Resyncs != 1 {
		t.Errorf("tab B resynchronised %d times after one reset", sb.Stats.Resyncs)
	}
	if sa.Stats.Transformed+sb.Stats.Transformed == 0 {
		t.Errorf("no remote change ever met a local edit in flight: the typing was not concurrent")
	}

	// Every node serves the same document.
	expectNodesServe(t, nodes, email, password, docID, sa.Text, sa.Version)

	// Presence: each tab lists itself and the other (over two nodes).
	for _, tb := range []*tab{a, b} {
		eventually(t, tb.name+" listing both collaborators", 10*time.Second, func() bool {
			st, err := tb.state()
			return err == nil && st.People == 2 && st.Conn == "open"
		})
	}
	for _, tb := range []*tab{a, b} {
		tb.mu.Lock()
		errs := tb.errors
		tb.mu.Unlock()
		if len(errs) > 0 {
			t.Errorf("%s logged errors:\n%s", tb.name, strings.Join(errs, "\n"))
		}
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// expectNodesServe checks that every node serves document docID at
// version with text, as the tabs show it.
func expectNodesServe(t *testing.T, nodes []*node, email, password, docID, text string, version uint64) {
	t.Helper()
	tokens := login(t, nodes[1], email, password)
	for _, n := range nodes {
		r := n.do(t, "GET", "/v1/docs/"+docID, nil, bearer(tokens.AccessToken))
		expectStatus(t, r, 200)
		var d struct {
			Content string `json:"content"`
			Version uint64 `json:"version"`
		}
		if err := json.Unmarshal(r.Body, &d); err != nil {
			t.Fatal(err)
		}
		if d.Content != text || d.Version != version {
			t.Fatalf("node %s serves version %d %q; the tabs show version %d %q", n.cfg.ID, d.Version, d.Content, version, text)
		}
	}
}
