package api

import (
	"bytes"
	"sync"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

// A multi-check's body decoded the quick way: its checks' policy and key
// as plain strings, into a slice kept from one request to the next, so
// that decoding takes two allocations a check (the strings) where the
// general decoder (checkRequest: pointers, to tell a missing field from
// an empty one, and a slice grown from nothing) took four and the
// slice's growth — the largest part of a multi-check's cost in the
// handler (docs/BENCHMARKS-notes.md, rate limits). Any body it does not
// take whole — not a multi-check of 1 to 100 checks with a policy and a
// key each, besides the general decoder's own refusals — goes the
// general way, which words every error as before: both ways decide
// exactly the same checks.

// checksField is in every multi-check's body (and in a few other bodies,
// which the quick way hands back).
var checksField = []byte(`"checks"`)

// quickCheckItem is a check of a multi-check: a missing policy or key
// reads as empty, which the quick way hands to the general one.
type quickCheckItem struct {
	Policy  string  `json:"policy"`
	Key     string  `json:"key"`
	Cost    *uint32 `json:"cost"`
	LeaseMs *int64  `json:"lease_ms"`
}

// quickMultiCheck is a multi-check's body; the single check's fields are
// here so that a body mixing both goes the general way (which refuses
// it).
type quickMultiCheck struct {
	Policy  *string          `json:"policy"`
	Key     *string          `json:"key"`
	Cost    *uint32          `json:"cost"`
	LeaseMs *int64           `json:"lease_ms"`
	Checks  []quickCheckItem `json:"checks"`
}

var quickItemsPool = sync.Pool{New: func() any {
	s := make([]quickCheckItem, 0, maxMultiCheck)
	return &s
}}

// fastMultiCheck answers body the quick way and reports true, or reports
// false having written nothing.
func (s *Server) fastMultiCheck(ctx *fasthttp.RequestCtx, body []byte) bool {
	items := quickItemsPool.Get().(*[]quickCheckItem)
	defer quickItemsPool.Put(items)
	checks, ok := quickDecode(body, items)
	if !ok {
		return false
	}
	var it checkItem
	s.multiCheck(ctx, len(checks), func(i int) *checkItem {
		q := &checks[i]
		it = checkItem{Policy: &q.Policy, Key: &q.Key, Cost: q.Cost, LeaseMs: q.LeaseMs}
		return &it
	})
	return true
}

// quickDecode decodes a multi-check's checks into items' array (ok
// false: not a body the quick way takes).
func quickDecode(body []byte, items *[]quickCheckItem) ([]quickCheckItem, bool) {
	if !utf8.Valid(body) || len(bytes.TrimSpace(body)) == 0 {
		return nil, false
	}
	// No element keeps a field of an earlier request: the decoder may
	// fill an element in place.
	clear((*items)[:cap(*items)])
	req := quickMultiCheck{Checks: (*items)[:0]}
	if json.UnmarshalWithOption(body, &req, disallowUnknownFields) != nil {
		return nil, false
	}
	if req.Policy != nil || req.Key != nil || req.Cost != nil || req.LeaseMs != nil || len(req.Checks) == 0 || len(req.Checks) > maxMultiCheck {
		return nil, false
	}
	for i := range req.Checks {
		if req.Checks[i].Policy == "" || req.Checks[i].Key == "" {
			return nil, false
		}
	}
	if cap(req.Checks) == maxMultiCheck {
		*items = req.Checks[:0] // the decoder's array, if it kept ours
	}
	return req.Checks, true
}
