package systemtest

// Named versions in the browser editor, in headless Chromium against one
// secure node: Ada names the current version in her history panel (page
// A); both pages edit further; she restores the named version from the
// panel's list, and both pages show its text. Bob, a viewer member, sees
// the named versions in his panel without the form to name one, nor a
// restore or a delete. Every wait is a poll with a deadline.

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// click finds the element of selector in the page and clicks it, in one
// step (a list drawn again between finding and clicking would lose it).
func (tb *tab) click(what, selector string) {
	tb.t.Helper()
	var ok bool
	if err := tb.eval(fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		if (!el) return false;
		el.click();
		return true;
	})()`, selector), &ok); err != nil || !ok {
		tb.t.Fatalf("%s: %s: no %s (%v)", tb.name, what, selector, err)
	}
}

func TestBrowserNamedVersions(t *testing.T) {
	n, browser, docID, _, ada := adaAndBob(t, "Drafts", "first words")

	a := newTab(t, browser, "Ada's tab A", n)
	b := newTab(t, browser, "Ada's tab B", n)
	a.signIn(docID, adaEmail, password)
	b.signIn(docID, adaEmail, password)
	a.typeAt(-1, " and more")
	named := converge(t, 15*time.Second, a, b)

	// Page A names the current version in its history panel.
	a.do("open the history", chromedp.Click(chromedp.ID("history")), chromedp.WaitVisible(chromedp.ID("name-form")))
	a.do("name the version",
		chromedp.SendKeys(chromedp.ID("version-name"), "before the rewrite"),
		chromedp.Click(chromedp.ID("name-version")))
	item := fmt.Sprintf(`#named-list li[data-version="%d"]`, named.Version)
	a.poll("the named version listed", fmt.Sprintf(`(() => {
		const li = document.querySelector('%s');
		return !!li && li.querySelector('.name').textContent === 'before the rewrite' &&
			!!li.querySelector('button.restore-named') && !!li.querySelector('button.delete-named');
	})()`, item), 10*time.Second)
	r := n.do(t, "GET", "/v1/docs/"+docID+"/versions", nil, ada)
	expectStatus(t, r, 200)
	var list struct {
		Items []struct {
			Version uint64 `json:"version"`
			Name    string `json:"name"`
		} `json:"items"`
	}
	if err := json.Unmarshal(r.Body, &list); err != nil || len(list.Items) != 1 || list.Items[0].Version != named.Version || list.Items[0].Name != "before the rewrite" {
		t.Fatalf("the server lists %s (%v)", r.Body, err)
	}

	// Both pages edit further.
	a.typeAt(0, "Rewritten: ")
	b.typeAt(-1, " (B was here)")
	st := converge(t, 15*time.Second, a, b)
	if st.Text == named.Text {
		t.Fatal("the edits after the named version changed nothing")
	}

	// Restore it from the panel's list: both pages show its text.
	// Found and clicked in one step: the list is drawn again as changes come in.
	a.click("restore the named version", item+" button.restore-named")
	st = convergePast(t, 15*time.Second, st.Version, a, b)
	if st.Text != named.Text {
		t.Fatalf("after restoring the named version %d: version %d %q, want %q", named.Version, st.Version, st.Text, named.Text)
	}
	if text, _ := serverText(t, n, docID, ada); text != named.Text {
		t.Fatalf("the server has %q, want %q", text, named.Text)
	}

	// Bob, a viewer, sees the list, and nothing that would change it.
	v := newTab(t, browser, "Bob's tab", n)
	v.signIn(docID, bobEmail, password)
	v.do("open the history", chromedp.Click(chromedp.ID("history")))
	v.poll("the named version listed, read-only", fmt.Sprintf(`(() => {
		const li = document.querySelector('%s');
		return troupe.state.readOnly && !!li && document.getElementById('name-form').hidden &&
			!li.querySelector('button.restore-named') && !li.querySelector('button.delete-named');
	})()`, item), 10*time.Second)

	// Ada deletes the name from her panel: the list empties.
	a.click("delete the name", item+" button.delete-named")
	a.poll("the list empty", `document.querySelectorAll('#named-list li').length === 0 && !document.getElementById('named-none').hidden`, 10*time.Second)
	r = n.do(t, "GET", "/v1/docs/"+docID+"/versions", nil, ada)
	expectStatus(t, r, 200)
	if err := json.Unmarshal(r.Body, &list); err != nil || len(list.Items) != 0 {
		t.Fatalf("the server lists %s after the delete (%v)", r.Body, err)
	}
}
