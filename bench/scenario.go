package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// scenario builds the requests of one workload. setup runs before timing
// starts (e.g. creating the users a read scenario reads); next fills the
// worker's next request and returns the status that counts as success.
type scenario struct {
	description string
	setup       func(r *Runner) error
	next        func(r *Runner, w *worker, req *fasthttp.Request) int
	// after, if set, sees each answer (not timed), e.g. to track state.
	after func(r *Runner, w *worker, resp *fasthttp.Response)
	// loop, if set, drives a worker in place of next and after: a
	// scenario that is not one HTTP request per turn (docs-ws). It
	// returns when r.stop is set; closed loop only, and no floor.
	loop func(r *Runner, w *worker)
	// writes: every request is a write (Config.FollowLeader applies).
	writes bool
	// paced: a loop scenario that takes --rate (its ops wait for r.due).
	paced bool
	// acked, if set, reports an acknowledged write to Config.OnAck.
	acked func(r *Runner, resp *fasthttp.Response)
	// keyed: the scenario writes over HTTP, so its writes can carry an
	// Idempotency-Key (Config.Idempotency applies).
	keyed bool
	// grpc: a loop scenario that calls the node's gRPC rate-limit
	// service (Config.GRPCAddr); its floor is a bare gRPC server.
	grpc bool
}

var scenarios = map[string]scenario{
	"users-create": {
		description: "durable user creates, one per request",
		next:        nextCreate,
		acked:       ackedUser,
		writes:      true,
		keyed:       true,
	},
	"users-churn": {
		description: "durable creates and deletes over a bounded population: each connection keeps its share of --users, deleting its oldest before it creates past it",
		next:        nextChurn,
		after:       afterChurn,
		writes:      true,
		keyed:       true,
	},
	"users-get": {
		description: "linearizable reads of existing users by id",
		setup:       setupUsers,
		next:        func(r *Runner, w *worker, req *fasthttp.Request) int { return nextGet(r, w, req, "") },
	},
	"users-get-stale": {
		description: "stale (node-local) reads of existing users by id",
		setup:       setupUsers,
		next: func(r *Runner, w *worker, req *fasthttp.Request) int {
			return nextGet(r, w, req, "?consistency=stale")
		},
	},
	"users-mixed": {
		description: "90% linearizable reads, 10% creates",
		setup:       setupUsers,
		next: func(r *Runner, w *worker, req *fasthttp.Request) int {
			if w.rng.IntN(10) == 0 {
				return nextCreate(r, w, req)
			}
			return nextGet(r, w, req, "")
		},
		keyed: true,
	},
	"users-batch": {
		description: "batch creates (--batch-size users per request, one log entry each)",
		next:        nextBatch,
		writes:      true,
		keyed:       true,
	},
	"docs-ops": {
		description: "collaborative edits: each connection is a client inserting into one of --docs documents against the version it last had acknowledged (transformed past the others')",
		setup:       setupDocs,
		next:        nextDocOp,
		after:       afterDocOp,
		writes:      true,
		keyed:       true,
	},
	"docs-create": {
		description: "durable document creates, each with --doc-bytes bytes of text (distinct in every document)",
		setup:       setupDocOwner,
		next:        nextDocCreate,
		writes:      true,
		keyed:       true,
	},
	"docs-ws": {
		description: "collaborative edits over WebSockets: each connection is a client of one of --docs documents, one insert in flight (latency to its ack), reading every change of its document (events_rps)",
		setup:       setupDocs,
		loop:        docsWSLoop,
		paced:       true,
	},
	"watch": {
		description: "durable user creates while --watchers streams of the change feed (GET /v1/watch) read every one: watch_lag_ms is when a watcher read a change minus its time; run open loop (--rate) at half the users-create maximum, and again with --watchers 0",
		setup:       setupWatchers,
		next:        nextCreate,
		acked:       ackedUser,
		writes:      true,
		keyed:       true,
	},
	"ratelimit-check": {
		description: "rate-limit decisions (POST /v1/ratelimit/check) over 10k keys of a generous policy",
		setup:       setupPolicy,
		next:        nextCheck,
	},
	"ratelimit-batch": {
		description: "multi-checks (POST /v1/ratelimit/check {\"checks\":[…]}, all or nothing) of --checks distinct keys each, of 10k keys of a generous policy; items are decisions",
		setup:       setupPolicy,
		next:        nextMultiCheck,
	},
	"ratelimit-grpc": {
		description: "Envoy's rate-limit service (ShouldRateLimit on --grpc-addr): each connection is one stream in flight, one descriptor of 10k keys per request, 32 streams per gRPC connection (two connections at 64, as an Envoy on two cores keeps)",
		setup:       setupEnvoyPolicy,
		loop:        grpcLoop,
		paced:       true,
		grpc:        true,
	},
}

// benchPolicy is the policy ratelimit-check asks about: generous enough
// that decisions are mostly "allowed", as on a healthy service.
const (
	benchPolicy     = "bench"
	benchPolicyKeys = 10_000
)

// setupPolicy creates (or replaces) the bench policy on the cluster.
func setupPolicy(r *Runner) error {
	client := r.client(r.cfg.Addrs[0])
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetHost(r.cfg.Addrs[0])
	r.authorize(req)
	setJSON(req, "PUT", "/v1/ratelimit/policies/"+benchPolicy)
	req.SetBodyString(`{"limit":1000000,"window_ms":1000}`)
	if err := client.DoTimeout(req, resp, r.cfg.Timeout); err != nil {
		return fmt.Errorf("setup: creating the bench policy: %w", err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("setup: creating the bench policy: %d %s", resp.StatusCode(), resp.Body())
	}
	// Every target must know the policy before timing starts.
	return r.waitEveryNode("know the bench policy", func(req *fasthttp.Request) {
		setJSON(req, "POST", "/v1/ratelimit/check")
		req.SetBodyString(`{"policy":"` + benchPolicy + `","key":"setup"}`)
	})
}

func nextCheck(r *Runner, w *worker, req *fasthttp.Request) int {
	setJSON(req, "POST", "/v1/ratelimit/check")
	b := append(w.buf[:0], `{"policy":"`+benchPolicy+`","key":"k`...)
	b = strconv.AppendInt(b, int64(w.rng.IntN(benchPolicyKeys)), 10)
	w.buf = append(b, `"}`...)
	req.SetBodyRaw(w.buf)
	return fasthttp.StatusOK
}

// nextMultiCheck asks for cfg.Checks distinct keys at once.
func nextMultiCheck(r *Runner, w *worker, req *fasthttp.Request) int {
	setJSON(req, "POST", "/v1/ratelimit/check")
	b := append(w.buf[:0], `{"checks":[`...)
	first := w.rng.IntN(benchPolicyKeys)
	for i := range r.cfg.Checks {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"policy":"`+benchPolicy+`","key":"k`...)
		// Consecutive keys from a random start: distinct, and hashed to
		// the bucket actors independently.
		b = strconv.AppendInt(b, int64((first+i)%benchPolicyKeys), 10)
		b = append(b, `"}`...)
	}
	w.buf = append(b, "]}"...)
	req.SetBodyRaw(w.buf)
	return fasthttp.StatusOK
}

// setupCaller is how a setup step calls the first node: do sends one
// request and checks its status, resp holds the answer, release frees
// both.
func (r *Runner) setupCaller() (do func(method, path, body string, want int) error, resp *fasthttp.Response, release func()) {
	client := r.client(r.cfg.Addrs[0])
	req := fasthttp.AcquireRequest()
	resp = fasthttp.AcquireResponse()
	do = func(method, path, body string, want int) error {
		req.Reset()
		req.Header.SetHost(r.cfg.Addrs[0])
		r.authorize(req)
		setJSON(req, method, path)
		req.SetBodyString(body)
		if err := client.DoTimeout(req, resp, r.cfg.Timeout); err != nil {
			return fmt.Errorf("setup: %s %s: %w", method, path, err)
		}
		if resp.StatusCode() != want {
			return fmt.Errorf("setup: %s %s: %d %s", method, path, resp.StatusCode(), resp.Body())
		}
		return nil
	}
	return do, resp, func() {
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}

// setupDocs creates cfg.Docs documents at version 0, owned by the run's
// user (ensureOwner): empty, or of cfg.DocLength letters.
func setupDocs(r *Runner) error {
	do, resp, release := r.setupCaller()
	defer release()
	if err := ensureOwner(r, do, resp); err != nil {
		return err
	}
	for i := 0; i < r.cfg.Docs; i++ {
		body := append([]byte(`{"title":"Bench `), strconv.Itoa(i)...)
		if r.cfg.DocLength > 0 {
			body = appendDocText(append(body, `","content":"`...), uint64(i)+1, r.cfg.DocLength)
		}
		if err := do("POST", "/v1/docs", string(append(body, `"}`...)), 201); err != nil {
			return err
		}
		var d struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(resp.Body(), &d); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		r.docIDs = append(r.docIDs, d.ID)
	}
	return nil
}

func nextDocOp(r *Runner, w *worker, req *fasthttp.Request) int {
	id := "floor" // the floor server has no setup and answers any path
	if len(r.docIDs) > 0 {
		id = r.docIDs[w.id%len(r.docIDs)]
	}
	setJSON(req, "POST", "/v1/docs/"+id+"/ops")
	if w.docSeq == 0 {
		w.docSeq = 1
	}
	b := append(w.buf[:0], `{"client_id":"`...)
	b = append(b, r.runID...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(w.id), 10)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, w.docSeq, 10)
	b = append(b, `,"base_version":`...)
	b = strconv.AppendUint(b, w.docVersion, 10)
	b = append(b, `,"ops":[{"op":"insert","pos":0,"text":"x"}]}`...)
	w.buf = b
	req.SetBodyRaw(w.buf)
	return fasthttp.StatusOK
}

// afterDocOp moves the worker on after an acknowledged submit (a refused
// one is tried again with the same seq).
func afterDocOp(_ *Runner, w *worker, resp *fasthttp.Response) {
	if resp.StatusCode() != fasthttp.StatusOK {
		return
	}
	var res struct {
		Version uint64 `json:"version"`
	}
	if json.Unmarshal(resp.Body(), &res) == nil {
		w.docVersion = res.Version
		w.docSeq++
	}
}

// authorize adds the bearer token, if the run has one.
func (r *Runner) authorize(req *fasthttp.Request) {
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
}

// ScenarioNames lists the scenarios, sorted.
func ScenarioNames() []string {
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ScenarioDescription describes a scenario.
func ScenarioDescription(name string) string { return scenarios[name].description }

// writeScenarios lists the scenarios whose every request is a write.
func writeScenarios() []string {
	var out []string
	for _, n := range ScenarioNames() {
		if scenarios[n].writes {
			out = append(out, n)
		}
	}
	return out
}

// KeyedScenarios lists the scenarios whose writes can carry an
// Idempotency-Key.
func KeyedScenarios() []string {
	var out []string
	for _, n := range ScenarioNames() {
		if scenarios[n].keyed {
			out = append(out, n)
		}
	}
	return out
}

// setIdempotencyKey gives a write a key no other request of any run
// has: the run id, the connection and the connection's count of keys.
func (r *Runner) setIdempotencyKey(w *worker, req *fasthttp.Request) {
	w.keys++
	b := append(w.keyBuf[:0], "bench-"...)
	b = append(b, r.runID...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(w.id), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, w.keys, 10)
	w.keyBuf = b
	req.Header.SetBytesV("Idempotency-Key", b)
}

// HasFloor says whether a scenario can run against the floor server (a
// plain HTTP one, and a bare gRPC rate-limit service: not the WebSocket
// scenario).
func HasFloor(name string) bool { return scenarios[name].loop == nil || scenarios[name].grpc }

// IsGRPC says whether a scenario calls the node's gRPC rate-limit
// service (and so needs Config.GRPCAddr).
func IsGRPC(name string) bool { return scenarios[name].grpc }

func setJSON(req *fasthttp.Request, method, path string) {
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.Header.SetContentType("application/json")
}

// appendUser appends one create body with an email unique to this run,
// worker and sequence number.
func appendUser(b []byte, r *Runner, w *worker) []byte {
	w.seq++
	b = append(b, `{"name":"Bench User `...)
	b = strconv.AppendUint(b, w.seq, 10)
	b = append(b, `","email":"b`...)
	b = append(b, r.runID...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(w.id), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, w.seq, 10)
	return append(b, `@bench.example.com"}`...)
}

func nextCreate(r *Runner, w *worker, req *fasthttp.Request) int {
	setJSON(req, "POST", "/v1/users")
	w.buf = appendUser(w.buf[:0], r, w)
	req.SetBodyRaw(w.buf)
	return fasthttp.StatusCreated
}

// ackedUser reports the id of a created user.
func ackedUser(r *Runner, resp *fasthttp.Response) {
	if id := userID(resp.Body()); id != "" {
		r.cfg.OnAck(Ack{User: id})
	}
}

// userID is the id of the user a create answered with, or "".
func userID(body []byte) string {
	var u struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &u) != nil {
		return ""
	}
	return u.ID
}

func nextBatch(r *Runner, w *worker, req *fasthttp.Request) int {
	setJSON(req, "POST", "/v1/users/batch")
	b := append(w.buf[:0], `{"users":[`...)
	for i := 0; i < r.cfg.BatchSize; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendUser(b, r, w)
	}
	w.buf = append(b, "]}"...)
	req.SetBodyRaw(w.buf)
	return fasthttp.StatusOK
}

func nextGet(r *Runner, w *worker, req *fasthttp.Request, query string) int {
	req.Header.SetMethod("GET")
	w.buf = append(append(append(w.buf[:0], "/v1/users/"...), r.ids[w.rng.IntN(len(r.ids))]...), query...)
	req.SetRequestURIBytes(w.buf)
	return fasthttp.StatusOK
}

// setupUsers creates cfg.Users users in batches and keeps their ids.
func setupUsers(r *Runner) error {
	client := r.client(r.cfg.Addrs[0])
	w := &worker{id: -1, rng: rand.New(rand.NewPCG(1, 2))}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for len(r.ids) < r.cfg.Users {
		n := min(1000, r.cfg.Users-len(r.ids))
		req.Reset()
		req.Header.SetHost(r.cfg.Addrs[0])
		r.authorize(req)
		setJSON(req, "POST", "/v1/users/batch")
		b := []byte(`{"users":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendUser(b, r, w)
		}
		req.SetBodyRaw(append(b, "]}"...))
		if err := client.DoTimeout(req, resp, time.Minute); err != nil {
			return fmt.Errorf("cannot create the users to read: %w", err)
		}
		if resp.StatusCode() != fasthttp.StatusOK {
			return fmt.Errorf("cannot create the users to read: %d %s", resp.StatusCode(), resp.Body())
		}
		var out struct {
			Results []struct {
				Status int
				User   struct{ ID string }
			}
		}
		if err := json.Unmarshal(resp.Body(), &out); err != nil {
			return fmt.Errorf("cannot read the batch answer: %w", err)
		}
		for _, it := range out.Results {
			if it.Status == fasthttp.StatusCreated {
				r.ids = append(r.ids, it.User.ID)
			}
		}
		if len(out.Results) != n {
			return fmt.Errorf("batch answered %d results for %d users", len(out.Results), n)
		}
	}
	// Reads after setup must find every user on every node: wait until
	// each target has applied the setup (a stale read of the last id).
	return r.waitEveryNode("catch up with the setup", func(req *fasthttp.Request) {
		req.Header.SetMethod("GET")
		req.SetRequestURI("/v1/users/" + r.ids[len(r.ids)-1] + "?consistency=stale")
	})
}

// waitEveryNode repeats the request fill builds against every target
// until it answers 200 (30 s at most each), before timing starts.
func (r *Runner) waitEveryNode(what string, fill func(req *fasthttp.Request)) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for _, addr := range r.cfg.Addrs {
		c := r.client(addr)
		deadline := time.Now().Add(30 * time.Second)
		for {
			req.Reset()
			req.Header.SetHost(addr)
			r.authorize(req)
			fill(req)
			if err := c.DoTimeout(req, resp, 5*time.Second); err == nil && resp.StatusCode() == 200 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("setup: %s did not %s", addr, what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
