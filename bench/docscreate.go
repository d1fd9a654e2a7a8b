package bench

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"
)

// ensureOwner gives the run a user to own the documents it creates: a
// run with a token acts as its user; without one (an --insecure node,
// where the anonymous admin owns nothing) it registers a bench user and
// takes its token. do sends one request and leaves its answer in resp.
func ensureOwner(r *Runner, do func(method, path, body string, want int) error, resp *fasthttp.Response) error {
	if r.cfg.Token != "" {
		return nil
	}
	email := "bench-" + r.runID + "@bench.example.com"
	if err := do("POST", "/v1/auth/register", `{"name":"Bench","email":"`+email+`","password":"`+signInPassword+`"}`, 201); err != nil {
		return err
	}
	if err := do("POST", "/v1/auth/login", `{"email":"`+email+`","password":"`+signInPassword+`"}`, 200); err != nil {
		return err
	}
	var tk struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(resp.Body(), &tk); err != nil {
		return fmt.Errorf("setup: login: %w", err)
	}
	r.cfg.Token = tk.AccessToken
	return nil
}

// setupDocOwner is docs-create's setup: the documents' owner.
func setupDocOwner(r *Runner) error {
	do, resp, release := r.setupCaller()
	defer release()
	return ensureOwner(r, do, resp)
}

// nextDocCreate creates a document whose content is cfg.DocBytes bytes
// of text (appendDocText).
func nextDocCreate(r *Runner, w *worker, req *fasthttp.Request) int {
	setJSON(req, "POST", "/v1/docs")
	w.seq++
	b := append(w.buf[:0], `{"title":"Bench `...)
	b = strconv.AppendInt(b, int64(w.id), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, w.seq, 10)
	b = append(b, `","content":"`...)
	b = appendDocText(b, w.rng.Uint64(), r.cfg.DocBytes)
	w.buf = append(b, `"}`...)
	req.SetBodyRaw(w.buf)
	return fasthttp.StatusCreated
}

// appendDocText appends n bytes of lower-case ASCII text drawn from seed
// (words of letters between spaces): JSON-safe as it is, one byte per
// code point, and different in every document so that nothing can share
// it.
func appendDocText(b []byte, seed uint64, n int) []byte {
	x := seed | 1
	for i := range n {
		// xorshift64: cheap, and enough to make texts differ.
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		if i%8 == 7 {
			b = append(b, ' ')
			continue
		}
		b = append(b, byte('a'+x%26))
	}
	return b
}
