package client

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// cutProxy forwards TCP connections to a node until Cut, which drops
// every connection it carries and refuses new ones: a node that dies,
// as a client sees it.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(p.Cut)
	return p
}

func (p *cutProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) Cut() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestWatchResumesOnAnotherNode: a watch whose node goes away goes on
// from the next node after the last change it yielded: every change once,
// in order.
func TestWatchResumesOnAnotherNode(t *testing.T) {
	base := startNode(t)
	addr := strings.TrimPrefix(base, "http://")
	a, b := newCutProxy(t, addr), newCutProxy(t, addr)
	c := newTestClient(t, testConfig(a.URL(), b.URL()))
	ctx := testCtx(t)
	page, meta, err := c.ListUsers(ctx, ListOptions{})
	if err != nil || meta.Index == 0 || len(page.Items) != 1 {
		t.Fatalf("listing: %+v %+v %v", page, meta, err)
	}
	const n = 40
	created := make(chan struct{}) // the creates are done, answers and all
	go func() {
		defer close(created)
		for i := range n {
			if _, _, err := c.CreateUser(ctx, NewUser{Name: "U", Email: fmt.Sprintf("u%d@example.com", i), Password: "password1"}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var got []Change
	for ch, err := range c.Watch(ctx, meta.Index, "users") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ch)
		if len(got) == n/2 {
			a.Cut() // the node the watch reads from goes away
		}
		if len(got) == n {
			break
		}
	}
	// The last create's change can arrive before its answer: wait for the
	// answers, so that none is cut off when the test's context ends.
	<-created
	seen := map[string]bool{}
	for i, ch := range got {
		if ch.Kind != "user" || ch.Op != "created" || seen[ch.ID] {
			t.Fatalf("change %d: %+v (duplicate: %v)", i, ch, seen[ch.ID])
		}
		seen[ch.ID] = true
		if i > 0 && ch.Index <= got[i-1].Index {
			t.Fatalf("change %d at %s after %s", i, ch.EventID(), got[i-1].EventID())
		}
	}

	// From before what a node keeps: gone, at once.
	for _, err := range c.Watch(ctx, 0, "bogus") {
		if e := apiErr(t, err); e.Status != 400 || e.Field() != "kinds" {
			t.Fatalf("bad kinds: %v", err)
		}
		break
	}
}
