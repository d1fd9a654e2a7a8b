package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Memory per idle document: docs-create fills a fresh node with
// documents of docBytes of text each, over 64 connections (each create
// a durable write; the node batches them into log entries), none of
// them opened since. The live heap after a forced GC, less the heap
// before and the texts' bytes, divided by the count, is what a
// document costs beyond its text; a text held twice would show here as
// a whole docBytes more. Then the node restarts on the same data dir,
// timed until it answers /readyz and a document reads back whole.

// docBytes is the length of each document's text.
const docBytes = 1024

// docMemoryResult is the cost of idle documents and of restarting with
// them.
type docMemoryResult struct {
	Docs        int
	HeapBefore  float64
	HeapAfter   float64
	LoadSeconds float64
	// FeedBytes is what the change feed's history holds, by its own
	// count (troupe_watch_history_bytes): bounded by --watch-history
	// (100 000 changes), so a node-wide cost rather than a document's.
	FeedBytes float64
	// Ready is the restart until /readyz; ReadBack until a document read
	// back whole after it (from the same start).
	Ready, ReadBack time.Duration
	Cmd             string
}

// perDoc is the live heap per document beyond its text.
func (m *docMemoryResult) perDoc() float64 {
	return (m.HeapAfter-m.HeapBefore)/float64(m.Docs) - docBytes
}

// logCacheBytes is the most the raft log cache holds (cluster's
// cacheBudget): full after a load of this size, so a node-wide cost.
const logCacheBytes = 16 << 20

// perDocOwn is perDoc less the node-wide buffers that fill up whatever
// the documents: the change feed's history, by its own count (with it,
// withFeed), and the raft log cache at its bound (an upper bound of what
// it holds: the figure without it is a lower bound of a document's own).
func (m *docMemoryResult) perDocOwn() (withFeed, own float64) {
	withFeed = m.perDoc() - logCacheBytes/float64(m.Docs)
	return withFeed, withFeed - m.FeedBytes/float64(m.Docs)
}

// measureDocMemory creates docs documents on a fresh node, reads its
// live heap, and restarts it.
func measureDocMemory(bin string, docs int) (*docMemoryResult, error) {
	n, err := newNode(bin)
	if err != nil {
		return nil, err
	}
	defer n.remove()
	// docs-create's documents have one owner.
	n.extra = []string{"--max-documents-per-user", strconv.Itoa(max(docs+1000, 10000))}
	if _, err := n.start(); err != nil {
		return nil, err
	}
	m := &docMemoryResult{}
	if m.HeapBefore, err = liveHeap(n); err != nil {
		return nil, err
	}
	args := []string{"bench", "--addr", "http://" + n.addr, "--scenario", "docs-create", "--doc-bytes", strconv.Itoa(docBytes),
		"--connections", "64", "--requests", strconv.Itoa(docs), "--duration", "10m", "--warmup", "0s", "--json"}
	res, cmd, err := runBench(bin, args)
	if err != nil {
		return nil, err
	}
	if res.Errors > 0 {
		return nil, fmt.Errorf("creating documents: %d errors", res.Errors)
	}
	// Connections may finish a request or two past the count.
	m.Docs, m.LoadSeconds, m.Cmd = int(res.ByStatus["201"]), res.DurationS, cmd
	if m.HeapAfter, err = liveHeap(n); err != nil {
		return nil, err
	}
	if m.FeedBytes, err = nodeMetric(n, "troupe_watch_history_bytes"); err != nil {
		return nil, err
	}
	id, err := firstDoc(n)
	if err != nil {
		return nil, err
	}
	n.stop()
	begin := time.Now()
	if m.Ready, err = n.start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ok, err := docReadsBack(n, id)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("document %s did not read back after the restart: %v", id, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.ReadBack = time.Since(begin)
	return m, nil
}

// firstDoc is the id of the first document listed (the --insecure
// node's caller is an admin: it lists them all).
func firstDoc(n *node) (string, error) {
	resp, err := http.Get("http://" + n.addr + "/v1/docs?limit=1")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var page struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return "", fmt.Errorf("cannot list the documents: %w", err)
	}
	if len(page.Items) == 0 {
		return "", fmt.Errorf("no document listed")
	}
	return page.Items[0].ID, nil
}

// docReadsBack reports whether document id reads back with its whole
// text.
func docReadsBack(n *node, id string) (bool, error) {
	resp, err := http.Get("http://" + n.addr + "/v1/docs/" + id)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET /v1/docs/%s: %d", id, resp.StatusCode)
	}
	var d struct {
		Content string `json:"content"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return false, err
	}
	if len(d.Content) != docBytes {
		return false, fmt.Errorf("document %s read back with %d bytes of text, not %d", id, len(d.Content), docBytes)
	}
	return true, nil
}

// writeDocMemory writes the memory-per-document section.
// goOut, the Go benchmarks' output, may hold the in-process figure.
func writeDocMemory(w func(string, ...any), m *docMemoryResult, goOut string) {
	w("## Memory per idle document\n\n")
	w("%d documents of %d B of text each, created through the API on a fresh node (`docs-create`, 64\n", m.Docs, docBytes)
	w("connections, %.0f documents/s), none opened since: live heap %.0f MB after a forced GC (%.0f MB\n",
		float64(m.Docs)/m.LoadSeconds, m.HeapAfter/1e6, m.HeapBefore/1e6)
	w("before), so **%.0f B per document beyond its text** (target ≤ 500 B, the text held once: a second\n", m.perDoc())
	w("copy would add %d B). That figure holds two node-wide buffers that fill whatever the documents:\n", docBytes)
	w("the change feed's history, %.0f B a document here (`troupe_watch_history_bytes`: the last 100 000\n", m.FeedBytes/float64(m.Docs))
	w("changes, `--watch-history`), and the raft log cache, at most %d MiB (%.0f B a document here).\n", logCacheBytes>>20, logCacheBytes/float64(m.Docs))
	withFeed, own := m.perDocOwn()
	w("Without the log cache: **%.0f B per document**; without the feed's history too, what a document\n", withFeed)
	w("costs of its own: **%.0f B per document** (the cache counted full: a lower bound). Restart\n", own)
	w("(SIGTERM, start on the same data dir, snapshot read and log replay) until `/readyz`:\n")
	w("**%.2f s**; until a document reads back whole: **%.2f s**. Command: `%s`.\n",
		m.Ready.Seconds(), m.ReadBack.Seconds(), m.Cmd)
	if v, ok := benchMetric(goOut, "BenchmarkIdleDocMemory", "B/doc"); ok {
		w("In process, the actors and storage alone (`BenchmarkIdleDocMemory`, below: 10 000 documents of\n")
		w("1 KiB, no raft log cache, no change feed): **%.0f B per document beyond its text**.\n", v)
	}
	w("\n")
}
