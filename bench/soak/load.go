package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/troupe-db/troupe/bench"
)

// The soak's load: four troupe bench scenarios at once, in process (each
// a bench.Runner, so that the sampler takes their intervals at the same
// instant as it samples the nodes), SSE subscribers joining and leaving,
// and the record of every acknowledged write for the final read-back.
//
// Goroutines: each Runner's own; one per SSE subscriber; acks is written
// from the runners' workers under its mutex.

// soakScenario is one scenario of the mix.
type soakScenario struct {
	Name   string // as shown in the report
	Config bench.Config
	Fixed  float64 // the soak's rate unless --load gives a share of Max
	Max    float64 // closed-loop throughput measured with the others running
	Rate   float64 // the open-loop rate of the soak
	runner *bench.Runner
	result *bench.Result
	acks   *acks // the soak's record of acknowledged writes (shared)
}

// population is how many users users-churn keeps in all: small enough
// that the soak reaches its steady state within its first minute.
const population = 5000

// docLength is the letters each document is created with and held at
// (bench.Config.DocLength): a few pages, so that the documents, like the
// users, stop growing and the memory rule judges troupe, not the data.
const docLength = 16 << 10

// The fixed rates, requests/s: about 40% of what the whole mix reached
// closed loop on a quiet 2-CPU machine (1 878 / 2 188 / 3 411 / 9 451,
// 2026-12-07), near the rates of the first passing runs, so that the
// p99 rule compares a steady machine with itself rather than one near
// saturation, and two runs compare with each other.
const (
	churnRate = 700
	getRate   = 800
	wsRate    = 1200
	rlRate    = 4000
)

// mix is the soak's scenarios against addrs; token is the document
// owner's (docs-ws runs as that user; the others as the anonymous admin
// of an --insecure node).
func mix(addrs []string, token string) []*soakScenario {
	base := bench.DefaultConfig()
	base.Addrs, base.Connections, base.Timeout = addrs, 32, 10*time.Second
	churn, get, ws, rl := base, base, base, base
	churn.Scenario, churn.Users, churn.Idempotency = "users-churn", population, true
	get.Scenario = "users-get"
	ws.Scenario, ws.Connections, ws.Docs, ws.DocLength, ws.Token = "docs-ws", 64, 64, docLength, token
	rl.Scenario = "ratelimit-check"
	return []*soakScenario{
		{Name: "keyed user writes", Config: churn, Fixed: churnRate},
		{Name: "user reads", Config: get, Fixed: getRate},
		{Name: "WebSocket edits", Config: ws, Fixed: wsRate},
		{Name: "rate-limit checks", Config: rl, Fixed: rlRate},
	}
}

// acks is every write the cluster acknowledged.
type acks struct {
	mu    sync.Mutex
	users map[string]fate
	docs  map[string]*docAcks
}

type docAcks struct {
	top uint64 // the highest version acknowledged
	n   int64  // ops acknowledged
}

// fate is what the acknowledgements say of a user; each is final over
// the ones before it.
type fate uint8

const (
	created  fate = iota + 1 // the create was acknowledged: it must be there
	deleting                 // a delete was sent, not acknowledged: either
	deleted                  // the delete was acknowledged: it must be gone
)

func newAcks() *acks { return &acks{users: map[string]fate{}, docs: map[string]*docAcks{}} }

func (a *acks) record(x bench.Ack) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case x.User != "":
		f := created
		if x.Deleting {
			f = deleting
		} else if x.Deleted {
			f = deleted
		}
		a.users[x.User] = max(a.users[x.User], f)
	case x.Doc != "":
		d := a.docs[x.Doc]
		if d == nil {
			d = &docAcks{}
			a.docs[x.Doc] = d
		}
		d.top = max(d.top, x.Version)
		d.n++
	}
}

// subscribers are SSE clients that join a random document's stream on a
// random node, stay 2–20 s, leave, and join again.
type subscribers struct {
	joins, events, failures, open atomic.Int64
	client                        *http.Client
}

func (s *subscribers) take() SSEPoint {
	return SSEPoint{Joins: s.joins.Swap(0), Events: s.events.Swap(0), Failures: s.failures.Swap(0), Open: s.open.Load()}
}

// run keeps n subscribers going until ctx ends; wait for the group,
// then close.
func (s *subscribers) run(ctx context.Context, n int, addrs, docs []string, token string) *sync.WaitGroup {
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: n}}
	s.client = client
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for ctx.Err() == nil {
				hold := 2*time.Second + time.Duration(rng.Int64N(int64(18*time.Second)))
				s.once(ctx, client, addrs[rng.IntN(len(addrs))], docs[rng.IntN(len(docs))], token, hold)
			}
		}()
	}
	return &wg
}

// close closes the connections the subscribers left idle.
func (s *subscribers) close() {
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
}

// once holds one stream for hold (or until it breaks).
func (s *subscribers) once(ctx context.Context, client *http.Client, addr, doc, token string, hold time.Duration) {
	sctx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	u := "http://" + addr + "/v1/docs/" + url.PathEscape(doc) + "/events?access_token=" + url.QueryEscape(token)
	req, err := http.NewRequestWithContext(sctx, "GET", u, nil)
	if err != nil {
		s.failures.Add(1)
		return
	}
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		if err == nil {
			resp.Body.Close()
		}
		if ctx.Err() == nil {
			s.failures.Add(1)
			pauseCtx(ctx, 200*time.Millisecond) // a node down: do not spin
		}
		return
	}
	defer resp.Body.Close()
	s.joins.Add(1)
	s.open.Add(1)
	defer s.open.Add(-1)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if sc.Text() == "event: change" {
			s.events.Add(1)
		}
	}
	// A stream that ended before its time was cut (a node killed).
	if sctx.Err() == nil {
		s.failures.Add(1)
	}
}

func pauseCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// lettersFit reports whether a document created with start letters can
// hold n letters at version v when every version inserted or deleted
// exactly one.
func lettersFit(n, start int, v uint64) bool {
	d := uint64(max(n-start, start-n))
	return d <= v && (v-d)%2 == 0
}

// readBack reads every acknowledged write back (linearizable reads,
// spread over the nodes) and compares the nodes' state hashes.
func readBack(ctx context.Context, addrs []string, a *acks, token string, docLetters int) ReadBack {
	a.mu.Lock()
	defer a.mu.Unlock()
	var rb ReadBack
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()

	type job struct {
		id      string
		deleted bool
	}
	// A user whose delete went unanswered may be there or not: not read.
	jobs := make(chan job, 1024)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := addrs[w%len(addrs)]
			for j := range jobs {
				status := getStatus(ctx, client, "http://"+addr+"/v1/users/"+url.PathEscape(j.id), "")
				mu.Lock()
				switch {
				case status == 0:
					rb.Unreadable++
				case !j.deleted && status == http.StatusNotFound:
					rb.Missing = append(rb.Missing, j.id)
				case j.deleted && status == http.StatusOK:
					rb.Resurrected = append(rb.Resurrected, j.id)
				case status != http.StatusOK && status != http.StatusNotFound:
					rb.Unreadable++
				}
				mu.Unlock()
			}
		}()
	}
	for id, f := range a.users {
		rb.Users++
		switch f {
		case deleting:
			rb.Unsure++
			continue
		case deleted:
			rb.Deleted++
		}
		jobs <- job{id, f == deleted}
	}
	close(jobs)
	wg.Wait()

	for id, d := range a.docs {
		rb.Docs++
		rb.Ops += d.n
		var doc struct {
			Version uint64 `json:"version"`
			Content string `json:"content"`
		}
		if err := getJSON(ctx, client, "http://"+addrs[0]+"/v1/docs/"+url.PathEscape(id), token, &doc); err != nil {
			rb.DocsBad = append(rb.DocsBad, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		// A document holds every acknowledged op. Each op of the mix
		// inserts or deletes one letter of a document created with
		// docLetters letters at version 0: at version v it holds
		// docLetters ± v letters, an even number of steps from v. This
		// needs one writer a document (mix: as many clients as
		// documents): two clients' concurrent deletes of one letter
		// would transform into one delete and an empty change.
		if n := utf8.RuneCountInString(doc.Content); doc.Version < d.top || uint64(d.n) > doc.Version || !lettersFit(n, docLetters, doc.Version) {
			rb.DocsBad = append(rb.DocsBad, fmt.Sprintf("%s: version %d, %d letters; acknowledged %d ops up to version %d", id, doc.Version, n, d.n, d.top))
		}
	}
	rb.Replicas = compareReplicas(ctx, client, addrs)
	return rb
}

// getStatus answers a GET's status, trying again on errors and 5xx (a
// node restarting) for up to a minute; 0 if it never answered.
func getStatus(ctx context.Context, client *http.Client, u, token string) int {
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return 0
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return resp.StatusCode
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0
		}
		pauseCtx(ctx, 200*time.Millisecond)
	}
}

func getJSON(ctx context.Context, client *http.Client, u, token string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %d %s", u, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// compareReplicas polls GET /v1/cluster/hash on every node until they
// report the same index (the load has stopped; they converge), then
// compares the hashes. "" means they agree.
func compareReplicas(ctx context.Context, client *http.Client, addrs []string) string {
	deadline := time.Now().Add(2 * time.Minute)
	last := ""
	for {
		type stateHash struct {
			Index uint64 `json:"index"`
			Hash  string `json:"hash"`
		}
		hs := make([]stateHash, len(addrs))
		sameIndex, ok := true, true
		for i, a := range addrs {
			if err := getJSON(ctx, client, "http://"+a+"/v1/cluster/hash", "", &hs[i]); err != nil {
				ok, last = false, err.Error()
				break
			}
			sameIndex = sameIndex && hs[i].Index == hs[0].Index
		}
		if ok && sameIndex {
			for i := range hs {
				if hs[i].Hash != hs[0].Hash {
					return fmt.Sprintf("at index %d, %s reports hash %.12s… and %s %.12s…", hs[0].Index, addrs[0], hs[0].Hash, addrs[i], hs[i].Hash)
				}
			}
			return ""
		}
		if ok {
			last = fmt.Sprintf("the nodes did not reach the same index (%v)", hs)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return last
		}
		pauseCtx(ctx, 500*time.Millisecond)
	}
}
