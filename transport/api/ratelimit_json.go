package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/storage"
)

// The answers of POST /v1/ratelimit/check written by hand, byte for byte
// what json.Marshal writes for checkResponse and multiCheckResponse (a
// test compares them): decisions are the hottest answers of the API,
// and the encoder cost more than the decision (a reflection walk and an
// allocation per answer).

// writeCheck writes one check's answer.
func writeCheck(ctx *fasthttp.RequestCtx, d *storage.Decision) {
	var buf [160]byte
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.ResetBody()
	ctx.Response.AppendBody(appendCheckJSON(buf[:0], d))
}

// writeMultiCheck writes a multi-check's answer, one result at a time
// into the response's own buffer.
func writeMultiCheck(ctx *fasthttp.RequestCtx, allowed bool, out []storage.Decision) {
	var buf [160]byte
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.ResetBody()
	ctx.Response.AppendBody(appendMultiCheckJSON(buf[:0], allowed, out, ctx.Response.AppendBody))
}

// appendMultiCheckJSON appends json.Marshal(multiCheckResponse) to b,
// handing b to flush (and starting again from b[:0]) before each result
// when flush is not nil; it returns what is left to write.
func appendMultiCheckJSON(b []byte, allowed bool, out []storage.Decision, flush func([]byte)) []byte {
	b = append(b, `{"allowed":`...)
	b = strconv.AppendBool(b, allowed)
	b = append(b, `,"results":[`...)
	var lim limitDigits
	for i := range out {
		if flush != nil {
			flush(b)
			b = b[:0]
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = appendResultJSON(b, &out[i], &lim)
	}
	return append(b, "]}"...)
}

// limitDigits is the last limit a multi-check's answer wrote, in digits:
// its results mostly share one policy, and writing numbers was a tenth
// of a multi-check's instructions.
type limitDigits struct {
	v      uint32
	digits []byte
	buf    [10]byte
}

// appendCheckJSON appends json.Marshal(toCheckResponse(d)) to b.
func appendCheckJSON(b []byte, d *storage.Decision) []byte {
	return appendResultJSON(b, d, nil)
}

// appendResultJSON is appendCheckJSON, taking the limit's digits from
// lim when it wrote the same limit before (lim may be nil).
func appendResultJSON(b []byte, d *storage.Decision, lim *limitDigits) []byte {
	b = append(b, `{"allowed":`...)
	b = strconv.AppendBool(b, d.Allowed)
	b = append(b, `,"limit":`...)
	switch {
	case lim == nil:
		b = strconv.AppendUint(b, uint64(d.Limit), 10)
	case lim.digits != nil && lim.v == d.Limit:
		b = append(b, lim.digits...)
	default:
		lim.v, lim.digits = d.Limit, strconv.AppendUint(lim.buf[:0], uint64(d.Limit), 10)
		b = append(b, lim.digits...)
	}
	b = append(b, `,"remaining":`...)
	b = strconv.AppendUint(b, uint64(d.Remaining), 10)
	b = append(b, `,"reset_ms":`...)
	b = strconv.AppendInt(b, ceilDiv(d.ResetNs, int64(time.Millisecond)), 10)
	b = append(b, `,"retry_after_ms":`...)
	b = strconv.AppendInt(b, ceilDiv(d.RetryAfterNs, int64(time.Millisecond)), 10)
	if d.LeaseID != 0 {
		// 16 hex digits: nothing to escape.
		b = append(b, `,"lease_id":"`...)
		b = appendLeaseID(b, d.LeaseID)
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendLeaseID appends formatLeaseID(id).
func appendLeaseID(b []byte, id uint64) []byte {
	const hex = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hex[id>>uint(shift)&0xf])
	}
	return b
}
