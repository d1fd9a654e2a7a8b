package api

import (
	"bytes"
	"math"
	"sync"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

// A multi-check's body decoded the quick way: a scanner written for its
// one shape ({"checks":[{"policy","key","cost"?,"lease_ms"?},…]}, any
// order of fields, JSON whitespace anywhere), without reflection, into a
// slice kept from one request to the next, with the checks' policy
// names shared when they repeat: a key a string, a repeated policy
// nothing, where the general decoder (checkRequest: pointers, to tell a
// missing field from an empty one, and a slice grown from nothing) took
// four allocations a check and most of the handler's time
// (docs/BENCHMARKS-notes.md, rate limits). Any body it does not take
// whole — anything but a multi-check of 1 to 100 checks with a non-empty
// policy and key each, a field given twice, a null, a number with a
// fraction or an exponent, field names in another case — goes the
// general way, which words every error as before: both ways decide
// exactly the same checks (a fuzz target compares them). A string with
// an escape is the one part handed to the general decoder.

// checksField is in every multi-check's body (and in a few other bodies,
// which the quick way hands back).
var checksField = []byte(`"checks"`)

// quickCheckItem is a check of a multi-check; Cost and LeaseMs, when
// given, point at cost and leaseMs.
type quickCheckItem struct {
	Policy  string
	Key     string
	Cost    *uint32
	LeaseMs *int64
	cost    uint32
	leaseMs int64
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
	if !utf8.Valid(body) {
		return nil, false
	}
	d := quickScanner{b: body}
	out := (*items)[:0]
	if !d.lit('{') || !d.name("checks") || !d.lit(':') || !d.lit('[') {
		return nil, false
	}
	for {
		if len(out) == cap(out) || len(out) == maxMultiCheck {
			return nil, false
		}
		out = append(out, quickCheckItem{})
		if !d.item(&out[len(out)-1], out) {
			return nil, false
		}
		if d.lit(',') {
			continue
		}
		if d.lit(']') {
			break
		}
		return nil, false
	}
	if !d.lit('}') {
		return nil, false
	}
	d.ws()
	if d.i != len(d.b) {
		return nil, false
	}
	return out, true
}

// quickScanner reads a multi-check's body from b[i:].
type quickScanner struct {
	b []byte
	i int
}

func (d *quickScanner) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// lit takes the byte c after whitespace (mostly none: looked for
// first).
func (d *quickScanner) lit(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// name takes the field name want (as written, without escapes).
func (d *quickScanner) name(want string) bool {
	d.ws()
	if d.i+len(want)+2 > len(d.b) || d.b[d.i] != '"' || string(d.b[d.i+1:d.i+1+len(want)]) != want || d.b[d.i+1+len(want)] != '"' {
		return false
	}
	d.i += len(want) + 2
	return true
}

// field takes a field name and its colon: the name as written (no
// escapes), or "" when it is not one.
func (d *quickScanner) field() string {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return ""
	}
	end := bytes.IndexByte(d.b[d.i+1:], '"')
	if end < 0 {
		return ""
	}
	name := d.b[d.i+1 : d.i+1+end]
	d.i += end + 2
	if !d.lit(':') {
		return ""
	}
	switch string(name) {
	case "policy":
		return "policy"
	case "key":
		return "key"
	case "cost":
		return "cost"
	case "lease_ms":
		return "lease_ms"
	}
	return ""
}

// item takes one check into q; earlier are the checks before it, whose
// policy names it shares when it repeats one.
func (d *quickScanner) item(q *quickCheckItem, earlier []quickCheckItem) bool {
	if !d.lit('{') {
		return false
	}
	var hasPolicy, hasKey bool
	for {
		switch d.field() {
		case "policy":
			if hasPolicy {
				return false
			}
			hasPolicy = true
			prev := ""
			if len(earlier) > 1 {
				prev = earlier[len(earlier)-2].Policy
			}
			p, ok := d.str(prev)
			if !ok {
				return false
			}
			q.Policy = p
		case "key":
			if hasKey {
				return false
			}
			hasKey = true
			k, ok := d.str("")
			if !ok {
				return false
			}
			q.Key = k
		case "cost":
			if q.Cost != nil {
				return false
			}
			v, ok := d.int(false)
			if !ok || v > math.MaxUint32 {
				return false
			}
			q.cost = uint32(v)
			q.Cost = &q.cost
		case "lease_ms":
			if q.LeaseMs != nil {
				return false
			}
			v, ok := d.int(true)
			if !ok {
				return false
			}
			q.leaseMs = v
			q.LeaseMs = &q.leaseMs
		default:
			return false
		}
		if d.lit(',') {
			continue
		}
		if d.lit('}') {
			return q.Policy != "" && q.Key != ""
		}
		return false
	}
}

// str takes a string value: same when it equals same (so that repeated
// policy names share one string), else a new string.
func (d *quickScanner) str(same string) (string, bool) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return "", false
	}
	start := d.i
	end := bytes.IndexByte(d.b[start+1:], '"')
	if end < 0 {
		return "", false
	}
	raw := d.b[start+1 : start+1+end]
	for _, c := range raw {
		if c == '\\' {
			return d.escaped(start)
		}
		if c < 0x20 {
			return "", false
		}
	}
	d.i = start + end + 2
	if same != "" && string(raw) == same {
		return same, true
	}
	return string(raw), true
}

// escaped takes a string value with an escape, which starts at b[start],
// through the general decoder.
func (d *quickScanner) escaped(start int) (string, bool) {
	for j := start + 1; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			var v string
			if json.Unmarshal(d.b[start:j+1], &v) != nil {
				return "", false
			}
			d.i = j + 1
			return v, true
		case c == '\\':
			j++ // the escaped byte, which may be a quote
		case c < 0x20:
			return "", false
		}
	}
	return "", false
}

// int takes an integer value: digits without a leading zero, a minus
// sign when signed allows it; no fraction, no exponent, no overflow of
// an int64.
func (d *quickScanner) int(signed bool) (int64, bool) {
	d.ws()
	neg := false
	if signed && d.i < len(d.b) && d.b[d.i] == '-' {
		neg = true
		d.i++
	}
	start := d.i
	var v int64
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		if v > (math.MaxInt64-9)/10 {
			return 0, false
		}
		v = v*10 + int64(d.b[d.i]-'0')
		d.i++
	}
	n := d.i - start
	if n == 0 || n > 1 && d.b[start] == '0' {
		return 0, false
	}
	if d.i < len(d.b) {
		switch d.b[d.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	if neg {
		v = -v
	}
	return v, true
}
