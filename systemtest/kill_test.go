package systemtest

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestKill9KeepsAcknowledgedWrites creates users from many connections,
// kills the node with SIGKILL while writes are in flight, restarts it on the
// same data dir and checks that every write answered 201 survived: an
// acknowledged write is durable (ARCHITECTURE.md, Consistency).
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	n := startNode(t, newNodeConfig(t, "n1"))

	const (
		workers      = 16
		maxRequests  = 20000
		loadDuration = 2 * time.Second
		maxOvershoot = 1000
		maxReported  = 10
	)
	type ack struct{ id, name, email string }
	type workerResult struct {
		acks      []ack
		statuses  map[int]int // non-201 statuses seen
		samples   []string    // first few unexpected answers or errors before the kill
		afterKill int         // transport errors after the kill (expected)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		sent         atomic.Int64
		killed       atomic.Bool
		limitOnce    sync.Once
		limitReached = make(chan struct{})
		results      = make([]workerResult, workers)
		wg           sync.WaitGroup
	)
	for w := range workers {
		res := &results[w]
		res.statuses = map[int]int{}
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				// Reaching maxRequests triggers the kill; the workers keep
				// writing until it lands (a few more requests), so that
				// writes are in flight when the process dies.
				if k := sent.Add(1); k >= maxRequests {
					limitOnce.Do(func() { close(limitReached) })
					if k > maxRequests+maxOvershoot {
						<-ctx.Done()
						return
					}
				}
				name := fmt.Sprintf("Kill Worker %02d Item %05d", w, i)
				email := fmt.Sprintf("kill-%02d-%05d@example.com", w, i)
				r, err := n.send(ctx, http.MethodPost, "/v1/users", map[string]string{"name": name, "email": email}, nil)
				if err != nil {
					if killed.Load() || ctx.Err() != nil {
						res.afterKill++
						return
					}
					if len(res.samples) < maxReported {
						res.samples = append(res.samples, fmt.Sprintf("POST /v1/users (%s) before the kill: %v", email, err))
					}
					continue
				}
				if r.Status != http.StatusCreated {
					res.statuses[r.Status]++
					if len(res.samples) < maxReported {
						res.samples = append(res.samples, r.String())
					}
					continue
				}
				u, err := parseUser(r.Body)
				if err != nil || u.Name != name || u.Email != email {
					if len(res.samples) < maxReported {
						res.samples = append(res.samples, fmt.Sprintf("201 with a wrong body for %s / %s (%v): %s", name, email, err, r.Body))
					}
					continue
				}
				res.acks = append(res.acks, ack{u.ID, name, email})
			}
		})
	}

	select {
	case <-time.After(loadDuration):
	case <-limitReached:
	}
	killed.Store(true)
	n.Kill(t)
	cancel()
	wg.Wait()

	var (
		acks      []ack
		statuses  = map[int]int{}
		afterKill int
		samples   []string
	)
	for _, res := range results {
		acks = append(acks, res.acks...)
		for s, c := range res.statuses {
			statuses[s] += c
		}
		afterKill += res.afterKill
		samples = append(samples, res.samples...)
	}
	t.Logf("load: %d requests started, %d acknowledged (201), other statuses %v, %d failed in flight at the kill",
		min(sent.Load(), maxRequests+maxOvershoot), len(acks), statuses, afterKill)
	if len(samples) > 0 {
		sort.Strings(samples)
		if len(samples) > maxReported {
			samples = samples[:maxReported]
		}
		t.Errorf("unexpected answers before the kill, e.g.:\n%s", joinLines(samples))
	}
	if len(acks) == 0 {
		t.Fatal("no write was acknowledged before the kill")
	}

	n = n.Restart(t)

	var (
		checked  atomic.Int64
		mu       sync.Mutex
		failures []string
		next     atomic.Int64
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(acks) {
					return
				}
				a := acks[i]
				r, err := n.send(context.Background(), http.MethodGet, userPath(a.id), nil, nil)
				var problem string
				switch {
				case err != nil:
					problem = fmt.Sprintf("GET %s: %v", userPath(a.id), err)
				case r.Status != http.StatusOK:
					problem = fmt.Sprintf("acknowledged user lost: %s", r)
				default:
					u, err := parseUser(r.Body)
					if err != nil || u.Name != a.name || u.Email != a.email {
						problem = fmt.Sprintf("GET %s: want name %q, email %q; got %s (%v)", userPath(a.id), a.name, a.email, r.Body, err)
					}
				}
				checked.Add(1)
				if problem != "" {
					mu.Lock()
					failures = append(failures, problem)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	t.Logf("checked %d acknowledged users after kill -9 and restart: %d missing or wrong", checked.Load(), len(failures))
	if len(failures) > 0 {
		sort.Strings(failures)
		shown := failures[:min(len(failures), maxReported)]
		t.Errorf("%d of %d acknowledged users did not survive kill -9, e.g.:\n%s", len(failures), len(acks), joinLines(shown))
	}

	// Writes that were in flight may or may not have committed; the
	// acknowledged ones and the admin must be counted.
	r := n.do(t, http.MethodGet, "/v1/users/count", nil, nil)
	expectStatus(t, r, http.StatusOK)
	var c struct {
		Count int64 `json:"count"`
	}
	if err := decodeStrict(r.Body, &c); err != nil {
		t.Fatalf("%s: not a count body (%v)", r, err)
	}
	if lo, hi := int64(len(acks))+1, min(sent.Load(), maxRequests+maxOvershoot)+1; c.Count < lo || c.Count > hi {
		t.Errorf("%s: want between %d (acknowledged users + admin) and %d (requests sent + admin)", r, lo, hi)
	}
}

func joinLines(lines []string) string {
	s := ""
	for _, l := range lines {
		s += "  " + l + "\n"
	}
	return s
}
