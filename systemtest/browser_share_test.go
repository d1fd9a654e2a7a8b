package systemtest

// Viewers and share links in the browser editor, in headless Chromium
// against one secure node: a viewer member's page is read-only (typing
// changes nothing, here or on the server); the owner creates links in the
// share dialog and copies their addresses; a viewer link opens the
// document without signing in and shows the owner's changes live; the same
// link's address made to say role=editor is read-only all the same (the
// server's "access" decides, not the address); an editor link lets its
// guest type and the owner sees it; revoking a link in the dialog ends
// its guest's stream and the page says so, as removing a member ends the
// member's; a revoked or expired link's page says why it cannot open.
// Every wait is a poll with a deadline.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// signIn opens document docID in the tab through the sign-in form.
func (tb *tab) signIn(docID, email, password string) {
	tb.t.Helper()
	tb.do("log in and open the document",
		chromedp.Navigate(tb.node.URL+"/#/doc/"+docID),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("login-email"), email),
		chromedp.SendKeys(chromedp.ID("login-password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("editor-view")),
	)
	tb.waitIdle(15 * time.Second)
}

// allowClipboard lets the tab's page write and read the clipboard, as a
// user's click on a permission prompt would, and keeps it focused (a
// clipboard is only for the focused page).
func (tb *tab) allowClipboard() {
	tb.t.Helper()
	tb.do("allow the clipboard", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, name := range []string{"clipboard-read", "clipboard-write"} {
			if _, err := cdp.Call(ctx, t, browser.SetPermission, browser.SetPermissionParams{
				Permission: &browser.PermissionDescriptor{Name: name}, Setting: browser.PermissionSettingGranted, Origin: tb.node.URL}); err != nil {
				return err
			}
		}
		_, err := cdp.Call(ctx, t, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
		return err
	}))
}

// createLink creates a share link of role in the owner's share dialog,
// copies its address with the dialog's button (allowClipboard first) and
// returns it.
func (tb *tab) createLink(role string) string {
	tb.t.Helper()
	tb.do("create a "+role+" link",
		chromedp.Click(chromedp.ID("share")),
		chromedp.WaitVisible(chromedp.ID("share-form")),
		chromedp.SetValue(chromedp.ID("share-role"), role),
		chromedp.Click(chromedp.ID("share-create")),
		chromedp.WaitVisible(chromedp.ID("share-url")),
	)
	var addr string
	if err := tb.eval(`document.getElementById('share-url').value`, &addr); err != nil {
		tb.t.Fatal(err)
	}
	u, err := url.Parse(addr)
	if err != nil || u.Path != "/" || !strings.HasPrefix(u.Fragment, "/doc/") {
		tb.t.Fatalf("the dialog shows %q (%v), not a share URL", addr, err)
	}
	tb.do("copy the address", chromedp.Click(chromedp.ID("share-copy")))
	tb.poll("the address copied", `document.getElementById('share-copy').textContent === 'Copied'`, 10*time.Second)
	var copied string
	if err := tb.eval(`navigator.clipboard.readText()`, &copied); err != nil || copied != addr {
		tb.t.Fatalf("the clipboard holds %q (%v), want %q", copied, err, addr)
	}
	tb.do("close the dialog", chromedp.Click(chromedp.ID("share-close")), chromedp.WaitNotVisible(chromedp.ID("share-dialog")))
	return addr
}

// serverText is the document's text and version as the node serves it.
func serverText(t *testing.T, n *node, docID string, header map[string]string) (string, uint64) {
	t.Helper()
	r := n.do(t, "GET", "/v1/docs/"+docID, nil, header)
	expectStatus(t, r, 200)
	var d struct {
		Content string `json:"content"`
		Version uint64 `json:"version"`
	}
	if err := json.Unmarshal(r.Body, &d); err != nil {
		t.Fatal(err)
	}
	return d.Content, d.Version
}

// The browser tests' people: Ada owns a document, Bob is its viewer.
const adaEmail, bobEmail, password = "ada@example.com", "bob@example.com", "analytical engine"

// adaAndBob starts a secure node (password hashing made cheap) and a
// browser, registers Ada and Bob, and gives Ada a document of title and
// content with Bob as its viewer: the node, the browser, the document's
// id, Bob's id and Ada's authorization header.
func adaAndBob(t *testing.T, title, content string) (n *node, browser context.Context, docID, bobID string, ada map[string]string) {
	t.Helper()
	requireBinary(t)
	chrome := chromiumPath(t)
	cfg := newNodeConfig(t, "n1")
	cfg.Secure = true
	cfg.ExtraArgs = append(cfg.ExtraArgs, "--argon2-memory-kib", "1024", "--argon2-time", "1")
	n = startNode(t, cfg)
	browser = startBrowser(t, chrome)
	for _, u := range [][2]string{{"Ada", adaEmail}, {"Bob", bobEmail}} {
		expectStatus(t, n.do(t, "POST", "/v1/auth/register", map[string]string{"name": u[0], "email": u[1], "password": password}, nil), 201)
	}
	ada = bearer(login(t, n, adaEmail, password).AccessToken)
	r := n.do(t, "POST", "/v1/docs", map[string]string{"title": title, "content": content}, ada)
	expectStatus(t, r, 201)
	var doc, bob struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	r = n.do(t, "GET", "/v1/auth/me", nil, bearer(login(t, n, bobEmail, password).AccessToken))
	expectStatus(t, r, 200)
	if err := json.Unmarshal(r.Body, &bob); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, n.do(t, "PUT", "/v1/docs/"+doc.ID+"/members/"+bob.ID, map[string]string{"role": "viewer"}, ada), 204)
	return n, browser, doc.ID, bob.ID, ada
}

func TestBrowserShareLinks(t *testing.T) {
	start := time.Now()
	// Ada owns a document; Bob is its viewer.
	n, browser, docID, bobID, ada := adaAndBob(t, "Notes", "hello world")

	owner := newTab(t, browser, "Ada's tab", n)
	viewer := newTab(t, browser, "Bob's tab", n)
	owner.signIn(docID, adaEmail, password)
	owner.allowClipboard()
	viewer.signIn(docID, bobEmail, password)

	// Bob's page is read-only, and says so; it offers no sharing.
	readOnly := `troupe.state.readOnly && document.getElementById('access').textContent === 'read-only' &&
		!document.getElementById('access').hidden && document.getElementById('undo').disabled &&
		document.getElementById('redo').disabled && document.getElementById('restore-version').disabled &&
		document.querySelector('.cm-content').getAttribute('contenteditable') === 'false'`
	viewer.poll("a read-only page", readOnly+` && document.getElementById('share').hidden`, 10*time.Second)
	owner.poll("the owner's page is editable, with a share button", `!troupe.state.readOnly &&
		document.getElementById('access').hidden && !document.getElementById('share').hidden`, 10*time.Second)
	// Bob types; then Ada does. Once Bob's page shows Ada's edit, it would
	// have shown (and sent) his before it: it holds only hers.
	viewer.typeAt(-1, "typed by a viewer")
	viewer.do("undo", chromedp.KeyEvent("z", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	owner.typeAt(0, "owner: ")
	st := converge(t, 15*time.Second, owner, viewer)
	if st.Text != "owner: hello world" {
		t.Fatalf("after the viewer typed and the owner wrote: %q", st.Text)
	}
	if text, _ := serverText(t, n, docID, ada); text != st.Text {
		t.Fatalf("the server has %q, the tabs %q", text, st.Text)
	}

	// A viewer link opens the document without signing in, read-only,
	// and shows what the owner writes as it is written.
	viewURL := owner.createLink("viewer")
	if !strings.Contains(viewURL, "role=viewer") {
		t.Fatalf("a viewer link's address %q does not say its role", viewURL)
	}
	owner.do("list the links", chromedp.Click(chromedp.ID("share")))
	owner.poll("the link listed", `document.querySelectorAll('#share-links li[data-link-id]').length === 1`, 10*time.Second)
	var viewLink string
	if err := owner.eval(`document.querySelector('#share-links li[data-link-id]').dataset.linkId`, &viewLink); err != nil {
		t.Fatal(err)
	}
	owner.do("close the dialog", chromedp.Click(chromedp.ID("share-close")), chromedp.WaitNotVisible(chromedp.ID("share-dialog")))

	guest := newTab(t, browser, "the viewer link's tab", n)
	guest.do("open the viewer link", chromedp.Navigate(viewURL), chromedp.WaitVisible(chromedp.ID("editor-view")))
	guest.waitIdle(15 * time.Second)
	guest.poll("the guest's read-only page, without the sign-in form", readOnly+` &&
		document.getElementById('auth-view').hidden && troupe.shown() === `+fmt.Sprintf("%q", st.Text), 10*time.Second)
	owner.typeAt(-1, " and more")
	st = converge(t, 15*time.Second, owner, viewer, guest)
	if st.Text != "owner: hello world and more" {
		t.Fatalf("after the owner wrote more: %q", st.Text)
	}
	// Ada sees the guest as the server names it.
	guestName := "guest-" + viewLink[:4]
	owner.poll("the guest in presence", fmt.Sprintf(`[...document.querySelectorAll('#people li')].some((li) => li.textContent.startsWith(%q))`, guestName), 10*time.Second)
	guest.poll("the guest's own line, and the owner's", `document.getElementById('user-name').textContent.includes('guest') &&
		document.querySelector('#people li').textContent.startsWith('You (a guest)') &&
		[...document.querySelectorAll('#people li')].some((li) => li.textContent.startsWith('the owner'))`, 10*time.Second)

	// The server decides: the viewer link's address made to say
	// role=editor shows a read-only page all the same, from the start
	// (the document's "access" says viewer), and typing changes nothing.
	lying := strings.Replace(viewURL, "role=viewer", "role=editor", 1)
	if lying == viewURL {
		t.Fatalf("cannot change the role in %q", viewURL)
	}
	blind := newTab(t, browser, "the viewer link's tab that says editor", n)
	blind.do("open the viewer link said to be an editor's", chromedp.Navigate(lying), chromedp.WaitVisible(chromedp.ID("editor-view")))
	blind.waitIdle(15 * time.Second)
	blind.poll("a read-only page before any edit is tried", readOnly+` && troupe.shown() === `+fmt.Sprintf("%q", st.Text), 10*time.Second)
	blind.typeAt(-1, " refused")
	if after := converge(t, 15*time.Second, owner, guest, blind); after.Text != st.Text {
		t.Fatalf("after typing through a viewer link: %q, want %q", after.Text, st.Text)
	}
	if text, _ := serverText(t, n, docID, ada); text != st.Text {
		t.Fatalf("the server has %q after an edit through a viewer link, want %q", text, st.Text)
	}

	// An editor link's guest types, and Ada sees it.
	editURL := owner.createLink("editor")
	editor := newTab(t, browser, "the editor link's tab", n)
	editor.do("open the editor link", chromedp.Navigate(editURL), chromedp.WaitVisible(chromedp.ID("editor-view")))
	editor.waitIdle(15 * time.Second)
	editor.poll("an editable page", `!troupe.state.readOnly && document.getElementById('access').hidden &&
		document.getElementById('auth-view').hidden && document.getElementById('share').hidden`, 10*time.Second)
	editor.typeAt(-1, " by a guest")
	st = converge(t, 15*time.Second, owner, viewer, guest, editor)
	if st.Text != "owner: hello world and more by a guest" {
		t.Fatalf("after the editor guest typed: %q", st.Text)
	}
	if text, _ := serverText(t, n, docID, ada); text != st.Text {
		t.Fatalf("the server has %q, the tabs %q", text, st.Text)
	}

	// Ada revokes the viewer link in the dialog: its guest's stream ends
	// and the page says why; the editor link's guest stays.
	owner.do("open the share dialog", chromedp.Click(chromedp.ID("share")))
	// The dialog lists the links as they load, and may draw the list
	// again meanwhile: the button is found and clicked in one step in the
	// page, not found first and clicked by a node id that may be gone.
	owner.poll("the viewer link's revoke button clicked", `(b => b ? (b.click(), true) : false)(
		document.querySelector('#share-links li[data-link-id="`+viewLink+`"] button.revoke'))`, 10*time.Second)
	owner.poll("the link gone from the list", `document.querySelectorAll('#share-links li[data-link-id]').length === 1 &&
		!document.querySelector('#share-links li[data-link-id="`+viewLink+`"]')`, 10*time.Second)
	owner.do("close the dialog", chromedp.Click(chromedp.ID("share-close")))
	guest.poll("the revoked guest's page ended", `!troupe.state.ws && document.getElementById('conn').dataset.state === 'closed' &&
		/revoked/.test(document.getElementById('status').textContent)&&
		document.querySelector('.cm-content').getAttribute('contenteditable') === 'false'`, 10*time.Second)
	owner.typeAt(-1, "!")
	converge(t, 15*time.Second, owner, viewer, editor)
	// Opened again, the revoked link says so, and asks no sign-in.
	guest.do("reload the revoked link", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("editor-view")))
	guest.poll("the revoked link's message", `/no longer valid/.test(document.getElementById('status').textContent) &&
		document.getElementById('auth-view').hidden`, 10*time.Second)

	// Bob, no longer a member, is told so and his page stops.
	expectStatus(t, n.do(t, "DELETE", "/v1/docs/"+docID+"/members/"+bobID, nil, ada), 204)
	removed := time.Now()
	viewer.poll("the former member's page ended", `!troupe.state.ws && document.getElementById('conn').dataset.state === 'closed' &&
		/no longer have access/.test(document.getElementById('status').textContent)`, 20*time.Second)
	t.Logf("the former member's page ended after %v", time.Since(removed).Round(time.Millisecond))

	// An expired link's page says it expired.
	r := n.do(t, "POST", "/v1/docs/"+docID+"/links", map[string]any{"role": "viewer", "expires_in_s": 1}, ada)
	expectStatus(t, r, 201)
	var short struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.Body, &short); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the short link expired", 10*time.Second, func() bool {
		r, err := n.send(t.Context(), "GET", "/v1/docs/"+docID, nil, map[string]string{"X-Troupe-Share": short.Token})
		return err == nil && r.Status == 401 && strings.Contains(string(r.Body), "link_expired")
	})
	late := newTab(t, browser, "the expired link's tab", n)
	late.do("open the expired link", chromedp.Navigate(n.URL+"/#/doc/"+docID+"?share="+short.Token+"&role=viewer"),
		chromedp.WaitVisible(chromedp.ID("editor-view")))
	late.poll("the expired link's message", `/expired/.test(document.getElementById('status').textContent) &&
		document.getElementById('auth-view').hidden`, 10*time.Second)

	for _, tb := range []*tab{owner, viewer, guest, blind, editor, late} {
		tb.mu.Lock()
		errs := tb.errors
		tb.mu.Unlock()
		if len(errs) > 0 {
			t.Errorf("%s logged errors:\n%s", tb.name, strings.Join(errs, "\n"))
		}
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}
