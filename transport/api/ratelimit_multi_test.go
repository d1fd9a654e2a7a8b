package api

import (
	"testing"
)

// quickAgrees checks that a body the quick way takes is one the general
// decoder takes as a multi-check of the same checks.
func quickAgrees(t *testing.T, body []byte) {
	items := make([]quickCheckItem, 0, maxMultiCheck)
	// Stale fields in the array must not leak into the next body.
	for range 3 {
		items = append(items, quickCheckItem{Policy: "stale", Key: "stale", Cost: new(uint32(7)), LeaseMs: new(int64(9))})
	}
	items = items[:0]
	got, ok := quickDecode(body, &items)
	if !ok {
		return
	}
	var req checkRequest
	if e := decodeJSON(body, &req); e != nil {
		t.Fatalf("%q: quick took it, the general decoder refused it: %v", body, e)
	}
	if req.Policy != nil || req.Key != nil || req.Cost != nil || req.LeaseMs != nil || req.Checks == nil || len(*req.Checks) != len(got) {
		t.Fatalf("%q: quick %d checks, general %+v", body, len(got), req)
	}
	for i, g := range *req.Checks {
		q := got[i]
		same := g.Policy != nil && *g.Policy == q.Policy && g.Key != nil && *g.Key == q.Key &&
			(g.Cost == nil) == (q.Cost == nil) && (g.Cost == nil || *g.Cost == *q.Cost) &&
			(g.LeaseMs == nil) == (q.LeaseMs == nil) && (g.LeaseMs == nil || *g.LeaseMs == *q.LeaseMs)
		if !same {
			t.Fatalf("%q: check %d: quick %+v, general %+v", body, i, q, g)
		}
	}
}

var quickSeeds = []string{
	`{"checks":[{"policy":"p","key":"k"}]}`,
	`{"checks":[{"policy":"p","key":"k","cost":2,"lease_ms":1000},{"key":"k2","policy":"q"}]}`,
	` { "checks" : [ { "policy" : "p" , "key" : "a\"b\u00e9" } ] } `,
	`{"checks":[]}`,
	`{"checks":null}`,
	`{"policy":"checks","key":"k"}`,
	`{"policy":"p","key":"k","checks":[{"policy":"p","key":"k"}]}`,
	`{"checks":[{"policy":"","key":"k"}]}`,
	`{"checks":[{"policy":"p"}]}`,
	`{"checks":[{"policy":"p","key":"k","extra":1}]}`,
	`{"checks":[{"policy":"p","key":"k","cost":-1}]}`,
	`{"checks":[{"policy":"p","key":"k","cost":4294967296}]}`,
	`{"checks":[{"policy":"p","key":"k"}]}garbage`,
	`{"checks":[{"policy":"p","key":"k"},{"policy":"p","key":"k"}],"checks":[{"policy":"x","key":"y"}]}`,
	`{"checks":[{"policy":"p","key":"k","key":"k2"}]}`,
	"{\"checks\":[{\"policy\":\"p\",\"key\":\"\xff\"}]}",
}

func TestQuickMultiCheckDecode(t *testing.T) {
	for _, s := range quickSeeds {
		quickAgrees(t, []byte(s))
	}
	items := make([]quickCheckItem, 0, maxMultiCheck)
	for _, s := range []string{quickSeeds[0], quickSeeds[1], quickSeeds[2]} {
		if _, ok := quickDecode([]byte(s), &items); !ok {
			t.Fatalf("%s: not taken", s)
		}
	}
	// Both fields required, no single-check field, 1 to 100 checks: the
	// rest goes the general way.
	for _, s := range quickSeeds[3:] {
		if s == quickSeeds[13] || s == quickSeeds[14] {
			continue // the decoder's way with repeated names: compared above
		}
		if _, ok := quickDecode([]byte(s), &items); ok {
			t.Fatalf("%s: taken", s)
		}
	}
}

// FuzzQuickMultiCheckDecode: whatever the quick way takes, the general
// decoder takes as the same checks.
func FuzzQuickMultiCheckDecode(f *testing.F) {
	for _, s := range quickSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { quickAgrees(t, body) })
}
