package cluster

import (
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/storage"
)

// Group proposing: the commands proposed while the leader stores a log
// entry go into the next entry together, as one CmdMulti.
//
// Raft groups entries itself (each write cycle stores whatever queued
// during the last), but it pays for every entry: a future, the leader
// loop's bookkeeping, raft-wal's framing and checksum, go-msgpack on the
// way to each follower and back out of it, a place in the followers'
// logs, the FSM's hand-off, and a goroutine woken per entry when it is
// applied. One entry for a cycle's commands pays those once.
//
// The gate: at most one entry of the group waits for the leader's log
// store at a time. Commands arriving meanwhile queue; when the store
// returns (raft's dispatchLogs, seen by the log store wrapper), the
// first queued proposer is woken to propose the whole queue as the next
// entry. A proposer that finds the gate open and nothing queued proposes
// its command at once, so a lone writer waits for nothing.
//
// Whoever proposes a batch (the lead) waits for its entries to be applied
// and hands every command its outcome, so the FSM wakes one goroutine per
// entry rather than one per command.
//
// Stopping: raft v1.8 leaves a future unanswered if it shuts down while
// the future sits in its apply or FSM queue. So the node closes the group
// first (no new batch is taken), waits while raft still runs until every
// batch in flight is settled (close), and only then stops raft; proposers
// still queued are let go with an unknown outcome.

// maxEntryBytes bounds a group entry; a command larger than it goes in an
// entry of its own.
const maxEntryBytes = 1 << 20

// proposal is one caller's commands (one, or a forwarded batch: they stay
// in one group entry or consecutive ones, in order) and their outcomes.
type proposal struct {
	cmds     [][]byte // encoded commands
	deadline time.Time
	// wake is signalled once: lead (propose the queue) or done (the
	// outcomes are in).
	wake chan wakeReason
	out  []outcome
}

type wakeReason uint8

const (
	wakeLead wakeReason = iota
	wakeDone
)

// outcome is where one command ended up: its result's Pending, once the
// FSM applied its entry, and the entry's index; or an error.
type outcome struct {
	pending *actors.Pending
	index   uint64
	err     error
	// commands is how many commands the entry carried (group commit),
	// for the commit span.
	commands int
}

// proposalGroup is a node's queue of proposals and its gate.
type proposalGroup struct {
	mu     sync.Mutex
	queue  []*proposal
	inGate bool   // a group entry waits for the log store
	seq    uint64 // sequence of the latest entry, the one behind a shut gate
	// leading is set while a woken lead has not proposed yet: the store
	// must not wake a second one.
	leading bool
	// commands counts the commands of each group entry proposed
	// (troupe_raft_entry_commands): group commit at work.
	commands *metrics.PrometheusHistogram

	closed  bool           // no batch may be taken any more
	flight  sync.WaitGroup // batches taken and not settled
	abandon chan struct{}  // closed when queued proposers are let go
}

// submit queues p and, if the gate is open, proposes the queue in the
// caller's goroutine. It returns true once p's outcomes are in, false if
// the node let it go while stopping (p may then still be written to, and
// woken).
func (n *Node) submit(p *proposal) bool {
	g := &n.group
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.queue = append(g.queue, p)
	if g.inGate || g.leading {
		g.mu.Unlock()
		select {
		case w := <-p.wake:
			if w == wakeDone {
				return true
			}
		case <-g.abandon:
			return false
		}
		g.mu.Lock()
		if g.closed {
			// Woken to lead as the group closed: the queue is let go.
			g.leading = false
			g.mu.Unlock()
			return false
		}
	}
	batch, seq := g.take()
	g.mu.Unlock()
	n.lead(batch, seq)
	return true
}

// close takes no more batches, waits up to wait for those in flight to
// be settled (raft must still run), then lets queued proposers go.
func (g *proposalGroup) close(wait time.Duration) {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.flight.Wait(); close(done) }()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	close(g.abandon)
}

// take empties the queue into a batch and closes the gate behind the
// entry about to be made of it, numbered seq; g.mu is held.
func (g *proposalGroup) take() (batch []*proposal, seq uint64) {
	batch = g.queue
	g.queue = nil
	g.leading = false
	g.flight.Add(1)
	g.seq++
	g.inGate = true
	return batch, g.seq
}

// stored opens the gate: the leader's log store returned (for the gated
// entry or one before it) and the leader loop is about to look for the
// next entry. The first queued proposer is woken to propose the queue.
func (g *proposalGroup) stored() {
	g.mu.Lock()
	g.open(g.seq)
	g.mu.Unlock()
}

// open opens the gate if entry seq is the one behind it and wakes the
// first queued proposer to lead; g.mu is held.
func (g *proposalGroup) open(seq uint64) {
	if !g.inGate || g.seq != seq {
		return
	}
	g.inGate = false
	if len(g.queue) > 0 && !g.leading {
		g.leading = true
		g.queue[0].wake <- wakeLead
	}
}

// lead proposes batch (the caller's own proposal is in it) as group
// entries, waits for each to be applied and hands every proposal its
// outcomes, then wakes them; the caller's own is filled in, not woken.
func (n *Node) lead(batch []*proposal, seq uint64) {
	g := &n.group
	defer g.flight.Done()
	for _, e := range n.proposeEntries(batch) {
		n.settle(e)
	}
	// An entry that never reached the log store (refused, or raft shut
	// down) must not keep the gate shut.
	g.mu.Lock()
	g.open(seq)
	g.mu.Unlock()
	for _, p := range batch[1:] {
		p.wake <- wakeDone
	}
}

// groupEntry is one log entry of a batch and the commands it carries.
type groupEntry struct {
	future raft.ApplyFuture
	parts  []*outcome
}

// proposeEntries puts batch into raft's queue as entries of at most
// storage.MaxMulti commands and maxEntryBytes each, in order.
func (n *Node) proposeEntries(batch []*proposal) []groupEntry {
	// How long raft may take to find room for the entries in its queue:
	// until the latest deadline, so that one caller about to give up does
	// not fail the others.
	deadline := batch[0].deadline
	for _, p := range batch[1:] {
		if p.deadline.After(deadline) {
			deadline = p.deadline
		}
	}
	timeout := max(time.Until(deadline), time.Millisecond)
	var entries []groupEntry
	var cmds [][]byte
	var parts []*outcome
	size := 0
	flush := func() {
		if len(cmds) == 0 {
			return
		}
		var data []byte
		if len(cmds) == 1 {
			data = cmds[0]
		} else {
			data = storage.EncodeMulti(make([]byte, 0, size+16), cmds)
		}
		entries = append(entries, groupEntry{future: n.raft.Apply(data, timeout), parts: parts})
		n.group.commands.Update(float64(len(cmds)))
		for _, o := range parts {
			o.commands = len(cmds)
		}
		cmds, parts, size = nil, nil, 0
	}
	for _, p := range batch {
		for i, c := range p.cmds {
			if len(cmds) == storage.MaxMulti || len(cmds) > 0 && size+len(c) > maxEntryBytes {
				flush()
			}
			cmds = append(cmds, c)
			parts = append(parts, &p.out[i])
			size += len(c) + 4
		}
	}
	flush()
	return entries
}

// settle waits until entry e is applied here (or failed) and records each
// of its commands' outcome.
func (n *Node) settle(e groupEntry) {
	err := futureError(e.future)
	var resp any
	var index uint64
	if err == nil {
		resp, index = e.future.Response(), e.future.Index()
	}
	for i, o := range e.parts {
		o.index, o.err = index, err
		if err != nil {
			continue
		}
		switch r := resp.(type) {
		case *actors.Pending:
			// One command, or a multi refused as a whole (a node that
			// stopped applying, an undecodable entry): the same result
			// for each.
			o.pending = r
		case []*actors.Pending:
			if len(r) == len(e.parts) {
				o.pending = r[i]
			} else {
				o.err = errOutcome("%d results for %d commands", len(r), len(e.parts))
			}
		default:
			o.err = errOutcome("unexpected apply response %T", resp)
		}
	}
}

// result waits, until deadline, for the result of a command whose outcome
// is in.
func (o *outcome) result(deadline time.Time) (storage.Result, uint64, error) {
	if o.err != nil {
		return storage.Result{}, o.index, o.err
	}
	select {
	case <-o.pending.Done():
		return o.pending.Result(), o.index, nil
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-o.pending.Done():
		return o.pending.Result(), o.index, nil
	case <-t.C:
		return storage.Result{}, o.index, errOutcome("committed at index %d but not applied in time", o.index)
	}
}
