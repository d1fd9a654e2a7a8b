// Package feed is the change feed: one ordered record of every change to
// users, documents, rate-limit policies and members, as this node applies
// the log. The FSM hands it each applied command with its pending result
// (Record) at almost no cost; the feed's own goroutine waits for the
// results in log order, turns them into Changes and keeps the newest in a
// bounded ring. Watchers (the /v1/watch streams) and any other reader
// (Since) read every change after a Position, in order.
//
// A change's Position is its log entry's index and its place among the
// entry's changes, so it is the same on every node: every node applies
// the same log, and everything a change holds comes from the command and
// the deterministic result of applying it (its time is the command's).
package feed

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/troupe-db/troupe/storage"
)

// Kind is what a change is about.
type Kind uint8

// Kinds of change. The order is that of AllKinds.
const (
	KindUser Kind = 1 << iota
	KindDoc
	KindPolicy
	KindMember
)

// AllKinds is every kind.
const AllKinds = KindUser | KindDoc | KindPolicy | KindMember

// String is the kind's name in a change ("user", "doc", ...).
func (k Kind) String() string {
	switch k {
	case KindUser:
		return "user"
	case KindDoc:
		return "doc"
	case KindPolicy:
		return "policy"
	case KindMember:
		return "member"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Op is what happened.
type Op uint8

// Ops.
const (
	OpCreated Op = iota + 1
	OpUpdated
	OpDeleted
)

func (o Op) String() string {
	switch o {
	case OpCreated:
		return "created"
	case OpUpdated:
		return "updated"
	case OpDeleted:
		return "deleted"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Position is where a change is in the log: the index of its entry and
// its place among the entry's changes (from 0).
type Position struct {
	Index uint64
	N     uint32
}

// After is the position just after every change of entry index: a
// watcher from index asks for the changes after it.
func After(index uint64) Position { return Position{Index: index, N: math.MaxUint32} }

// Less orders positions as the log does.
func (p Position) Less(q Position) bool {
	return p.Index < q.Index || p.Index == q.Index && p.N < q.N
}

// String is the position as an event id, "<index>-<n>" ("<index>" for
// After(index)).
func (p Position) String() string {
	if p.N == math.MaxUint32 {
		return strconv.FormatUint(p.Index, 10)
	}
	return strconv.FormatUint(p.Index, 10) + "-" + strconv.FormatUint(uint64(p.N), 10)
}

// ParsePosition reads an event id: "<index>-<n>" (after that change) or
// "<index>" (after every change of that entry). Both numbers are decimal
// without sign; n is below 2^32-1.
func ParsePosition(s string) (Position, error) {
	idx, n, hasN := strings.Cut(s, "-")
	i, err := parseDecimal(idx, math.MaxUint64)
	if err != nil {
		return Position{}, fmt.Errorf("%q is not an event id: <index>-<n> or <index>, integers from 0 to %d", s, uint64(math.MaxUint64))
	}
	if !hasN {
		return After(i), nil
	}
	k, err := parseDecimal(n, math.MaxUint32-1)
	if err != nil {
		return Position{}, fmt.Errorf("%q is not an event id: <index>-<n>, n an integer from 0 to %d", s, math.MaxUint32-1)
	}
	return Position{Index: i, N: uint32(k)}, nil
}

// parseDecimal reads an unsigned decimal integer no larger than max:
// digits only (no sign, no spaces), at most 20 of them.
func parseDecimal(s string, max uint64) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > max {
		return 0, strconv.ErrRange
	}
	return v, nil
}

// ParseIndex reads a log index: a decimal integer without sign, from 0
// to 2^64-1.
func ParseIndex(s string) (uint64, error) {
	i, err := parseDecimal(s, math.MaxUint64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a log index: an integer from 0 to %d", s, uint64(math.MaxUint64))
	}
	return i, nil
}

// ParseKinds reads a kinds list: comma-separated names among "users",
// "docs", "policies", "members" (each once at most; the singular
// "user", "doc", "policy", "member" too). An empty list is an error.
func ParseKinds(s string) (Kind, error) {
	if s == "" {
		return 0, fmt.Errorf("kinds is empty: name some of users, docs, policies, members")
	}
	var ks Kind
	for name := range strings.SplitSeq(s, ",") {
		var k Kind
		switch name {
		case "users", "user":
			k = KindUser
		case "docs", "doc":
			k = KindDoc
		case "policies", "policy":
			k = KindPolicy
		case "members", "member":
			k = KindMember
		default:
			if len(name) > 32 {
				name = name[:32] + "…"
			}
			return 0, fmt.Errorf("kinds: %q is not one of users, docs, policies, members", name)
		}
		if ks&k != 0 {
			return 0, fmt.Errorf("kinds: %s is named twice", k)
		}
		ks |= k
	}
	return ks, nil
}

// Names are the kinds' names as ParseKinds reads them, in order.
func (k Kind) Names() []string {
	var out []string
	for _, x := range []struct {
		k    Kind
		name string
	}{{KindUser, "users"}, {KindDoc, "docs"}, {KindPolicy, "policies"}, {KindMember, "members"}} {
		if k&x.k != 0 {
			out = append(out, x.name)
		}
	}
	return out
}

// Change is one change. It never changes once in the feed (but for the
// cache of its rendering), so readers share it.
type Change struct {
	Position
	Kind Kind
	Op   Op
	ID   string
	// Version is the user's or document's version after the change (0
	// for policies and members, which have none).
	Version uint64
	AtMs    int64 // the command's time, Unix milliseconds

	// The record after the change (a deleted document: the last state, to
	// decide who may hear of it; other deletions: nil). Users come without
	// password hash or sessions, documents as their listing (no text, no
	// history).
	User   *storage.User
	Doc    *storage.Doc
	Policy *storage.Policy
	Member *storage.Member
	// LostReader is a user who could read the document before this change
	// and cannot after (an editor removed): this change is the last one
	// that user hears of the document.
	LostReader string

	rendered atomic.Pointer[[]byte]
}

// Rendered returns render(c), computed once and kept: every watcher of a
// change sends the same bytes.
func (c *Change) Rendered(render func(*Change) []byte) []byte {
	if b := c.rendered.Load(); b != nil {
		return *b
	}
	b := render(c)
	c.rendered.Store(&b)
	return b
}
