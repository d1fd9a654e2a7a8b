package systemtest

// The editor's collaboration features in headless Chromium, one document
// and two tabs on two nodes of a secure cluster, step by step: the tabs
// converge; each draws the other's caret where it is, and its selection;
// undo takes back only the tab's own edit and redo makes it again;
// restoring a version from the history panel reaches both tabs; a tab cut
// off the network keeps typing, shows its pending changes, reloads (from
// its service worker) without losing them, and converges with the other
// once back. Every wait is a poll with a deadline.

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
)

// startBrowser starts headless Chromium for the test.
func startBrowser(t *testing.T, chrome string) context.Context {
	t.Helper()
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
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("cannot start %s: %v", chrome, err)
	}
	return browser
}

// poll waits until the expression is true in the page.
func (tb *tab) poll(what, expr string, timeout time.Duration) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr,
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		tb.t.Fatalf("%s: %s: not within %v: %v (status: %s)", tb.name, what, timeout, err, tb.status())
	}
}

// typeAt puts the caret at code point cp (-1: the end) and types text
// with the keyboard.
func (tb *tab) typeAt(cp int, text string) {
	tb.t.Helper()
	if err := tb.tryTypeAt(cp, text); err != nil {
		tb.t.Fatalf("%s: %v (page status: %s)", tb.name, err, tb.status())
	}
}

func (tb *tab) tryTypeAt(cp int, text string) error {
	if err := tb.eval(fmt.Sprintf(`(() => {
		const cp = %d;
		troupe.select(cp < 0 ? Array.from(troupe.shown()).length : cp);
	})()`, cp), nil); err != nil {
		return fmt.Errorf("moving the caret: %w", err)
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.KeyEvent(text)); err != nil {
		return fmt.Errorf("typing %q: %w", text, err)
	}
	return nil
}

// emulateNetworkConditions is the DevTools command that cuts a page off
// the network (or brings it back): deprecated, but understood by every
// Chromium so far, where its successor's parameters changed between
// versions (so cdproto no longer has it).
var emulateNetworkConditions = cdp.Command[emulateNetworkParams, cdp.Empty]{Method: "Network.emulateNetworkConditions"}

type emulateNetworkParams struct {
	Offline            bool    `json:"offline"`
	Latency            float64 `json:"latency"`
	DownloadThroughput float64 `json:"downloadThroughput"`
	UploadThroughput   float64 `json:"uploadThroughput"`
}

// setOffline cuts the tab off the network or brings it back, as the
// browser's network emulation does (navigator.onLine follows).
func (tb *tab) setOffline(offline bool) {
	tb.t.Helper()
	tb.do(fmt.Sprintf("offline=%v", offline), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulateNetworkConditions, emulateNetworkParams{Offline: offline, DownloadThroughput: -1, UploadThroughput: -1})
		return err
	}))
}

// converge waits until the tabs have sent everything, show the same
// version and text, and their editors show their text.
func converge(t *testing.T, timeout time.Duration, tabs ...*tab) pageState {
	t.Helper()
	return convergePast(t, timeout, 0, tabs...)
}

// convergePast is converge at a version after the version after.
func convergePast(t *testing.T, timeout time.Duration, after uint64, tabs ...*tab) pageState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		states := make([]pageState, len(tabs))
		errs := make([]error, len(tabs))
		ok := true
		for i, tb := range tabs {
			states[i], errs[i] = tb.state()
			s := states[i]
			ok = ok && errs[i] == nil && s.Idle && s.Shown == s.Text && s.Version > after &&
				s.Version == states[0].Version && s.Text == states[0].Text
		}
		if ok {
			return states[0]
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for i, tb := range tabs {
				fmt.Fprintf(&b, "\n%s (%v): %+v\n   status: %s", tb.name, errs[i], states[i], tb.status())
			}
			t.Fatalf("the tabs did not converge within %v:%s", timeout, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBrowserEditorCollaboration(t *testing.T) {
	requireBinary(t)
	chrome := chromiumPath(t)
	start := time.Now()
	nodes, _ := startSecureCluster(t)
	browser := startBrowser(t, chrome)

	const email, password = "ada@example.com", "analytical engine"
	a := newTab(t, browser, "tab A on node a", nodes[0])
	b := newTab(t, browser, "tab B on node c", nodes[2])
	a.do("register and create a document",
		chromedp.Navigate(a.node.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("register-form")),
		chromedp.SendKeys(chromedp.ID("reg-name"), "Ada"),
		chromedp.SendKeys(chromedp.ID("reg-email"), email),
		chromedp.SendKeys(chromedp.ID("reg-password"), password),
		chromedp.Click(chromedp.ID("reg-submit")),
		chromedp.WaitVisible(chromedp.ID("docs-view")),
		chromedp.SendKeys(chromedp.ID("new-title"), "Plans"),
		chromedp.Click(chromedp.ID("new-doc-submit")),
		chromedp.WaitVisible(chromedp.ID("editor-view")),
	)
	a.waitIdle(10 * time.Second)
	var docID string
	if err := a.eval(`decodeURIComponent(location.hash.slice('#/doc/'.length))`, &docID); err != nil || docID == "" {
		t.Fatalf("document id from the page: %q %v", docID, err)
	}
	b.do("log in and open the document",
		chromedp.Navigate(b.node.URL+"/#/doc/"+docID),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("login-email"), email),
		chromedp.SendKeys(chromedp.ID("login-password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("editor-view")),
	)
	b.waitIdle(10 * time.Second)
	t.Logf("both tabs open %s after %v", docID, time.Since(start).Round(time.Millisecond))

	// Both type at once; they converge on a text holding both.
	typedB := make(chan error, 1)
	go func() { typedB <- b.tryTypeAt(-1, "beta beta ") }()
	a.typeAt(0, "alpha alpha ")
	if err := <-typedB; err != nil {
		t.Fatalf("%s: %v", b.name, err)
	}
	st := converge(t, 15*time.Second, a, b)
	// Typed at one place at once, the letters may interleave.
	if d := diffCounts(runeCounts(st.Text), runeCounts("alpha alpha beta beta ")); d != "" {
		t.Fatalf("converged on %q, which does not hold exactly what was typed (%s)", st.Text, d)
	}

	// A draws B's caret where B put it, with B's name; and B draws A's.
	var aID, bID string
	if err := a.eval(`troupe.state.clientId`, &aID); err != nil {
		t.Fatal(err)
	}
	if err := b.eval(`troupe.state.clientId`, &bID); err != nil {
		t.Fatal(err)
	}
	if err := b.eval(`troupe.select(6)`, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.eval(`troupe.select(2)`, nil); err != nil {
		t.Fatal(err)
	}
	caretAt := func(tb *tab, id string, pos int, name string) {
		tb.poll("the caret of "+id+" at "+fmt.Sprint(pos), fmt.Sprintf(`(() => {
			const el = document.querySelector('.cm-content .cm-remote-caret[data-client-id="%s"]');
			return !!el && troupe.caretOf(%q) === %d && el.textContent === %q && /troupe-colour-\d+/.test(el.className);
		})()`, id, id, pos, name), 10*time.Second)
	}
	caretAt(a, bID, 6, "Ada")
	caretAt(b, aID, 2, "Ada")
	// The caret follows B as it moves.
	if err := b.eval(`troupe.select(9)`, nil); err != nil {
		t.Fatal(err)
	}
	caretAt(a, bID, 9, "Ada")
	// B's selection is drawn too: B selects code points 3 to 8 (its caret
	// at 3), and A shows those characters marked, B's caret before them.
	if err := b.eval(`troupe.select(8, 3)`, nil); err != nil {
		t.Fatal(err)
	}
	caretAt(a, bID, 3, "Ada")
	a.poll("B's selection", fmt.Sprintf(`(() => {
		const marked = [...document.querySelectorAll('.cm-content .cm-remote-selection[data-client-id="%s"]')];
		return marked.length > 0 && marked.map((el) => el.textContent).join('') === Array.from(troupe.shown()).slice(3, 8).join('');
	})()`, bID), 10*time.Second)
	if err := b.eval(`troupe.select(9)`, nil); err != nil {
		t.Fatal(err)
	}
	a.poll("B's selection gone", fmt.Sprintf(`!document.querySelector('.cm-remote-selection[data-client-id="%s"]')`, bID), 10*time.Second)

	// Undo in A takes back A's last edit and keeps B's later one. The
	// edit is one insert (as a paste): typed key by key, a loaded machine
	// could space the keys beyond the 500 ms that make one undo step.
	if err := a.eval(`troupe.select(0), troupe.insert('UNDO-ME ')`, nil); err != nil {
		t.Fatal(err)
	}
	converge(t, 15*time.Second, a, b)
	b.typeAt(-1, "kept-by-B")
	withBoth := converge(t, 15*time.Second, a, b)
	a.do("undo", chromedp.Click(chromedp.ID("undo")))
	st = converge(t, 15*time.Second, a, b)
	if want := strings.Replace(withBoth.Text, "UNDO-ME ", "", 1); st.Text != want {
		t.Fatalf("after undo in A: %q, want %q", st.Text, want)
	}
	// Redo (Ctrl+Y in the text) makes it again.
	a.do("redo", chromedp.KeyEvent("y", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	st = converge(t, 15*time.Second, a, b)
	if st.Text != withBoth.Text {
		t.Fatalf("after redo in A: %q, want %q", st.Text, withBoth.Text)
	}

	// Restoring a version from A's history panel reaches both tabs.
	restoreTo := st
	a.typeAt(0, "later ")
	b.typeAt(-1, " and more")
	st = converge(t, 15*time.Second, a, b)
	if st.Text == restoreTo.Text {
		t.Fatal("the edits after the version to restore changed nothing")
	}
	item := fmt.Sprintf(`#history-list button[data-version="%d"]`, restoreTo.Version)
	a.do("open the history", chromedp.Click(chromedp.ID("history")))
	a.poll("the history lists version "+fmt.Sprint(restoreTo.Version), `!!document.querySelector('`+item+`')`, 10*time.Second)
	a.do("preview the version", chromedp.Click(chromedp.CSS(item)))
	a.poll("the preview of the version", fmt.Sprintf(`!document.getElementById('history-preview').hidden &&
		document.getElementById('preview-text').textContent === %q`, restoreTo.Text), 10*time.Second)
	a.do("restore it", chromedp.Click(chromedp.ID("restore-version")))
	st = convergePast(t, 15*time.Second, st.Version, a, b)
	if st.Text != restoreTo.Text || st.Version <= restoreTo.Version {
		t.Fatalf("after restoring version %d: version %d %q, want %q", restoreTo.Version, st.Version, st.Text, restoreTo.Text)
	}
	t.Logf("restored version %d as version %d", restoreTo.Version, st.Version)

	// B goes offline; both type; B reloads while offline; both type
	// again; B comes back: the same text on both, holding everything.
	b.poll("the service worker controls the page", `!!navigator.serviceWorker.controller`, 15*time.Second)
	before := st.Text
	b.setOffline(true)
	b.poll("the page knows it is offline", `troupe.state.offline && !troupe.state.ws`, 10*time.Second)
	a.typeAt(0, "A1-online ")
	b.typeAt(-1, " B1-offline")
	pending := regexp.MustCompile(`^offline — [1-9][0-9]* changes? pending$`)
	b.poll("the offline indicator", `(() => {
		const el = document.getElementById('offline');
		return !el.hidden && `+jsRegexp(pending)+`.test(el.textContent);
	})()`, 10*time.Second)
	a.waitIdle(10 * time.Second)
	b.do("reload while offline", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("editor-view")))
	b.poll("the unsent edit restored after the reload", `troupe.state.stats.restored === 1 &&
		troupe.shown().includes(' B1-offline') && !document.getElementById('offline').hidden`, 15*time.Second)
	var shown string
	if err := b.eval(`document.getElementById('offline').textContent`, &shown); err != nil || !pending.MatchString(shown) {
		t.Fatalf("after the reload the indicator says %q (%v)", shown, err)
	}
	b.typeAt(0, "B2-after-reload ")
	a.typeAt(-1, " A2-online")
	b.setOffline(false)
	st = converge(t, 20*time.Second, a, b)
	want := runeCounts(before + "A1-online " + " B1-offline" + "B2-after-reload " + " A2-online")
	if d := diffCounts(runeCounts(st.Text), want); d != "" {
		t.Fatalf("after B came back: the text does not hold exactly what was typed (%s):\n%q", d, st.Text)
	}
	for _, s := range []string{"A1-online ", " B1-offline", "B2-after-reload ", " A2-online"} {
		if !strings.Contains(st.Text, s) {
			t.Fatalf("after B came back: %q lacks %q", st.Text, s)
		}
	}
	t.Logf("converged after the offline spell at version %d: %q", st.Version, st.Text)

	// What the tabs show is what every node serves.
	expectNodesServe(t, nodes, email, password, docID, st.Text, st.Version)
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

// jsRegexp writes a Go regexp of the simple kind used here as a
// JavaScript literal.
func jsRegexp(re *regexp.Regexp) string {
	return "new RegExp(" + fmt.Sprintf("%q", re.String()) + ")"
}
