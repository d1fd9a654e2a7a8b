package api

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// serveSSEConn is serveSSE for the change-feed streams: the same
// response (200, text/event-stream, not cached or buffered by proxies,
// the headers set before), but written by body straight to the
// connection, which the stream then holds (it is closed when body
// returns): each send is one chunk of the chunked body in one write.
//
// Why: fasthttp's stream writer goes through a pipe that its response
// writer reads 4 KiB at a time, each read a chunk and a flush, so a
// watcher's 40 KB of changes every 10 ms were a dozen write system
// calls; with 64 watchers those were half the node's CPU
// (docs/BENCHMARKS-notes.md, the watch row).
func serveSSEConn(ctx *fasthttp.RequestCtx, body func(send func(b []byte) bool)) {
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	ctx.Response.Header.SetContentLength(-1) // chunked
	ctx.SetConnectionClose()                 // the stream's end closes the connection
	head := append([]byte(nil), ctx.Response.Header.Header()...)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		out := head
		write := func() bool {
			_ = c.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
			_, err := c.Write(out)
			out = out[:0]
			return err == nil
		}
		ok := true
		body(func(b []byte) bool {
			if !ok {
				return false
			}
			out = appendChunk(out, b)
			ok = write()
			return ok
		})
		if ok {
			out = append(out, "0\r\n\r\n"...) // the body's end
			write()
		}
	})
}

// appendChunk appends b as one chunk of a chunked body (none if b is
// empty: an empty chunk would end the body).
func appendChunk(out, b []byte) []byte {
	if len(b) == 0 {
		return out
	}
	out = strconv.AppendInt(out, int64(len(b)), 16)
	out = append(out, "\r\n"...)
	out = append(out, b...)
	return append(out, "\r\n"...)
}
