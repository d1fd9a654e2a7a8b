package stream

import (
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	json "github.com/goccy/go-json"

	"github.com/troupe-db/troupe/actors"
)

type post struct {
	addr, path string
	batch      PresenceBatch
}

// TestRelaySendsToEveryOtherMember: a local change of presence goes to
// every member but this node, at the presence path.
func TestRelaySendsToEveryOtherMember(t *testing.T) {
	posts := make(chan post, 16)
	r := NewRelay(RelayConfig{
		Peers: func() ([]string, int) { return []string{"a:1", "self:1", "b:1"}, 1 },
		Post: func(addr, path string, body []byte) error {
			var b PresenceBatch
			if err := json.Unmarshal(body, &b); err != nil {
				t.Errorf("report to %s: %v", addr, err)
			}
			posts <- post{addr, path, b}
			return nil
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	defer r.Close()
	r.Local("d1", actors.Presence{User: "u1", ClientID: "tab", State: "cursor", Pos: 7})
	var got []string
	for range 2 {
		select {
		case p := <-posts:
			if p.path != PresencePath {
				t.Errorf("posted to %s", p.path)
			}
			want := PresenceItem{Doc: "d1", User: "u1", ClientID: "tab", State: "cursor", Pos: 7}
			if len(p.batch.Items) == 0 || p.batch.Items[0] != want {
				t.Errorf("report to %s: %+v, want %+v first", p.addr, p.batch.Items, want)
			}
			got = append(got, p.addr)
		case <-time.After(5 * time.Second):
			t.Fatalf("reports within 5s: %v, want a:1 and b:1", got)
		}
	}
	sort.Strings(got)
	if got[0] != "a:1" || got[1] != "b:1" {
		t.Fatalf("reported to %v, want a:1 and b:1", got)
	}
}

// A selection travels between nodes as pos and anchor; a cursor without
// one (or from a node that did not send anchors) selects nothing.
func TestPresenceItemSelection(t *testing.T) {
	for _, p := range []actors.Presence{
		{User: "u", ClientID: "c", State: "cursor", Pos: 4, Selected: true, Anchor: 9},
		{User: "u", ClientID: "c", State: "cursor", Pos: 4, Selected: true, Anchor: 0},
		{User: "u", ClientID: "c", State: "cursor", Pos: 4},
		{User: "u", ClientID: "c", State: "join"},
	} {
		it := itemOf("d", p)
		if (it.Anchor != nil) != p.Selected {
			t.Fatalf("%+v reported as %+v", p, it)
		}
		body, err := json.Marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		var back PresenceItem
		if err := json.Unmarshal(body, &back); err != nil {
			t.Fatal(err)
		}
		if got := back.Presence(); got != p {
			t.Fatalf("%+v came back as %+v (%s)", p, got, body)
		}
	}
	old := PresenceItem{Doc: "d", User: "u", ClientID: "c", State: "cursor", Pos: 3}
	if p := old.Presence(); p.Selected {
		t.Fatalf("a cursor without an anchor: %+v", p)
	}
	for _, anchor := range []int{-1, 3} {
		old.Anchor = &anchor
		if p := old.Presence(); p.Selected {
			t.Fatalf("anchor %d: %+v", anchor, p)
		}
	}
}
