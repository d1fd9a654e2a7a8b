package bench

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Sign-in (Config.SignIn): before timing, each connection gets a user of
// its own and that user's access token, so that a secure node verifies a
// different token on every connection, as it does with real clients. The
// run's --token (an admin's) creates the users; each is an admin itself,
// so that every scenario's requests stay allowed (users-create creates
// users; users-get reads any user by id), and the workload is the same
// as on an --insecure node but for the authentication.

// signInPassword is every signed-in bench user's password.
const signInPassword = "bench password"

// signInBatch is how many users one batch creates: the node hashes each
// password (argon2id, tens of ms), so a batch stays well within a
// request's deadline.
const signInBatch = 8

// signInEmail is the email of connection i's user in this run.
func (r *Runner) signInEmail(i int) string {
	return "bench-" + r.runID + "-conn" + strconv.Itoa(i) + "@bench.example.com"
}

// signInBody is a batch create of the users of connections from to to-1.
func (r *Runner) signInBody(from, to int) string {
	var b strings.Builder
	b.WriteString(`{"users":[`)
	for i := from; i < to; i++ {
		if i > from {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"Bench Connection %d","email":%q,"password":%q,"role":"admin"}`, i, r.signInEmail(i), signInPassword)
	}
	b.WriteString("]}")
	return b.String()
}

// signIn creates one admin user per connection with the run's token and
// logs each in, returning the access tokens by connection.
func (r *Runner) signIn() ([]string, error) {
	client := r.client(r.cfg.Addrs[0])
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	do := func(path, body, token string) error {
		req.Reset()
		req.Header.SetHost(r.cfg.Addrs[0])
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		setJSON(req, "POST", path)
		req.SetBodyString(body)
		if err := client.DoTimeout(req, resp, time.Minute); err != nil {
			return fmt.Errorf("sign-in: POST %s: %w", path, err)
		}
		if resp.StatusCode() != fasthttp.StatusOK {
			return fmt.Errorf("sign-in: POST %s: %d %s", path, resp.StatusCode(), resp.Body())
		}
		return nil
	}
	n := r.cfg.Connections
	for from := 0; from < n; from += signInBatch {
		to := min(n, from+signInBatch)
		if err := do("/v1/users/batch", r.signInBody(from, to), r.cfg.Token); err != nil {
			return nil, err
		}
		if err := batchCreated(resp.Body(), to-from); err != nil {
			return nil, fmt.Errorf("sign-in: creating the connections' users: %w", err)
		}
	}
	tokens := make([]string, n)
	for i := range n {
		body := fmt.Sprintf(`{"email":%q,"password":%q}`, r.signInEmail(i), signInPassword)
		if err := do("/v1/auth/login", body, ""); err != nil {
			return nil, err
		}
		tk, err := accessToken(resp.Body())
		if err != nil {
			return nil, fmt.Errorf("sign-in: login of connection %d: %w", i, err)
		}
		tokens[i] = tk
	}
	return tokens, nil
}

// batchCreated checks that a batch answer created all n users.
func batchCreated(body []byte, n int) error {
	var out struct {
		Results []struct {
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("cannot read the batch answer: %w", err)
	}
	if len(out.Results) != n {
		return fmt.Errorf("the batch answered %d results for %d users", len(out.Results), n)
	}
	for i, it := range out.Results {
		if it.Status != fasthttp.StatusCreated {
			return fmt.Errorf("user %d of the batch: %d %s", i, it.Status, it.Error)
		}
	}
	return nil
}

// accessToken reads a login answer's access token.
func accessToken(body []byte) (string, error) {
	var tk struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tk); err != nil {
		return "", fmt.Errorf("cannot read the login answer: %w", err)
	}
	if tk.AccessToken == "" {
		return "", fmt.Errorf("the login answer has no access_token: %s", body)
	}
	return tk.AccessToken, nil
}

// authorizeWorker adds the bearer token of w's connection: its own with
// Config.SignIn, else the run's, if any.
func (r *Runner) authorizeWorker(w *worker, req *fasthttp.Request) {
	if w.token != "" {
		req.Header.Set("Authorization", "Bearer "+w.token)
		return
	}
	r.authorize(req)
}
