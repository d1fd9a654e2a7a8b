package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// h2Conn is the load generator's own gRPC client for unary calls of one
// method: an HTTP/2 connection (golang.org/x/net/http2's framer and
// hpack, the pieces grpc-go's transport is made of) that sends requests
// already marshalled and framed, and reads the answers' frames on one
// goroutine. It exists because the load generator shares the cores with
// the service it measures: grpc-go's client spends ≈ 20 µs of CPU a call
// (docs/BENCHMARKS-notes.md), about what the service spends, so a
// measurement with it mostly measures the client; an Envoy's C++ client
// spends a fraction of that. This one spends a few µs. The service and
// the floor are unchanged grpc-go servers.
//
// Goroutines: callers of call (any number at once) add their frames to
// the connection's write buffer under wmu; the writer goroutine writes
// the buffer to the socket (so calls sent together share a write); the
// reader goroutine owns the
// framer that reads, the hpack decoder and the receive window, and
// hands each answer to its caller through the stream's h2Call.
type h2Conn struct {
	nc net.Conn

	wmu     sync.Mutex
	wcond   *sync.Cond // signalled when the send window grows or the conn fails
	wbuf    *bytes.Buffer
	spare   *bytes.Buffer // the buffer being written while wbuf fills
	wake    chan struct{} // wakes the writer goroutine (buffered: one pending wake)
	wfr     *http2.Framer // writes into wbuf
	nextID  uint32
	window  int64 // connection-level send window
	first   []byte
	headers []byte // the header block after the first: every field indexed
	streams map[uint32]*h2Call
	err     error // why the connection failed; set once
}

// h2Call is a caller's call in flight, reused for its next: once done
// has a value (or the caller gave up on it while still in streams) the
// reader holds no reference to it.
type h2Call struct {
	timer   *time.Timer
	done    chan struct{} // one value when answered (buffered: the reader never waits)
	data    []byte        // the answer's message bytes, gRPC-framed
	status  string        // grpc-status of the trailers
	message string        // grpc-message
	err     error
}

// errH2Timeout is a call not answered within its timeout (the stream is
// reset, the connection stays).
var errH2Timeout = errors.New("timeout")

// h2Status is a call answered with a non-zero grpc-status.
type h2Status struct{ code, message string }

func (e *h2Status) Error() string {
	return "grpc-status " + e.code + ": " + e.message
}

// h2ReceiveWindow is the receive window the client grants per stream and
// for the connection; WINDOW_UPDATE is sent when half of it is used.
const h2ReceiveWindow = 1 << 20

// dialH2 opens an HTTP/2 connection to addr for calls of path (a gRPC
// method, "/pkg.Service/Method"), each sent with the given extra
// metadata (lower-case names) and a grpc-timeout of timeout.
func dialH2(addr, path string, metadata [][2]string, timeout time.Duration) (*h2Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &h2Conn{nc: nc, wbuf: new(bytes.Buffer), spare: new(bytes.Buffer), nextID: 1, window: 65535,
		streams: make(map[uint32]*h2Call), wake: make(chan struct{}, 1)}
	c.wcond = sync.NewCond(&c.wmu)
	c.wfr = http2.NewFramer(h2Out{c}, nil)
	rfr := http2.NewFramer(nil, bufio.NewReaderSize(nc, 64<<10))
	rfr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rfr.SetReuseFrames()
	// The handshake: our preface and settings, then the server's
	// settings, before any call (the header blocks depend on them).
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	c.wbuf.WriteString(http2.ClientPreface)
	_ = c.wfr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2ReceiveWindow},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	_ = c.wfr.WriteWindowUpdate(0, h2ReceiveWindow-65535)
	if _, err := nc.Write(c.wbuf.Bytes()); err != nil {
		nc.Close()
		return nil, err
	}
	c.wbuf.Reset()
	f, err := rfr.ReadFrame()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("reading the server's settings: %w", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		nc.Close()
		return nil, fmt.Errorf("the server opened with %v, not its settings", f.Header().Type)
	}
	tableSize := uint32(4096)
	if v, ok := sf.Value(http2.SettingHeaderTableSize); ok {
		tableSize = v
	}
	_ = c.wfr.WriteSettingsAck()
	_ = nc.SetDeadline(time.Time{})
	c.first, c.headers = headerBlocks(addr, path, metadata, timeout, tableSize)
	go c.read(rfr)
	go c.writeLoop()
	return c, nil
}

// headerBlocks are the HPACK blocks of a call's headers: the first call's,
// which adds every field to the server's dynamic table, and every later
// call's, which refers to them by index (as grpc-go's and Envoy's
// clients do after their first call). A server whose table is smaller
// than the fields gets them as literals every time.
func headerBlocks(authority, path string, metadata [][2]string, timeout time.Duration, tableSize uint32) (first, later []byte) {
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: path}, {Name: ":authority", Value: authority},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
		{Name: "grpc-timeout", Value: strconv.FormatInt(max(timeout.Milliseconds(), 1), 10) + "m"},
	}
	for _, md := range metadata {
		fields = append(fields, hpack.HeaderField{Name: md[0], Value: md[1]})
	}
	var size uint32
	for _, f := range fields {
		size += f.Size()
	}
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	if size > tableSize {
		enc.SetMaxDynamicTableSizeLimit(0) // no indexing: the same literals every call
	}
	encode := func() []byte {
		buf.Reset()
		for _, f := range fields {
			_ = enc.WriteField(f)
		}
		return bytes.Clone(buf.Bytes())
	}
	first = encode()
	return first, encode()
}

// newH2Call returns a call for one caller to make calls with, one at a
// time.
func newH2Call() *h2Call {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &h2Call{done: make(chan struct{}, 1), timer: t}
}

// call sends one framed request message with call (the caller's, reused
// call after call) and waits at most timeout for its answer, returning
// the answer's message without the 5-byte gRPC prefix (valid until the
// next call with the same h2Call).
func (c *h2Conn) call(call *h2Call, msg []byte, timeout time.Duration) ([]byte, error) {
	call.data, call.status, call.message, call.err = call.data[:0], "", "", nil
	c.wmu.Lock()
	for c.err == nil && c.window < int64(len(msg)) {
		c.wcond.Wait()
	}
	if c.err != nil {
		err := c.err
		c.wmu.Unlock()
		return nil, err
	}
	id := c.nextID
	c.nextID += 2
	c.streams[id] = call
	c.window -= int64(len(msg))
	block := c.headers
	if id == 1 {
		block = c.first
	}
	_ = c.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true})
	_ = c.wfr.WriteData(id, true, msg)
	c.flushLocked()
	c.wmu.Unlock()

	call.timer.Reset(timeout)
	select {
	case <-call.done:
		call.timer.Stop() // no stale value after Stop (Go ≥ 1.23 timers)
	case <-call.timer.C:
		c.wmu.Lock()
		if _, ok := c.streams[id]; ok {
			delete(c.streams, id)
			_ = c.wfr.WriteRSTStream(id, http2.ErrCodeCancel)
			c.flushLocked()
			c.wmu.Unlock()
			return nil, errH2Timeout
		}
		c.wmu.Unlock()
		<-call.done // answered as the timer fired
	}
	if call.err != nil {
		return nil, call.err
	}
	if call.status != "0" {
		return nil, &h2Status{code: call.status, message: call.message}
	}
	if len(call.data) < 5 || call.data[0] != 0 || int(binary.BigEndian.Uint32(call.data[1:5])) != len(call.data)-5 {
		return nil, fmt.Errorf("the answer is not one uncompressed gRPC message (%d bytes)", len(call.data))
	}
	return call.data[5:], nil
}

// flushLocked has the writer goroutine write what wbuf holds. Called
// with wmu held.
func (c *h2Conn) flushLocked() {
	select {
	case c.wake <- struct{}{}:
	default: // already woken: it writes this too
	}
}

// writeLoop is the writer goroutine: woken by flushLocked, it first
// lets the callers that are ready to run add their frames (a yield, as
// grpc-go's own writer does), then writes everything at once, until the
// connection fails.
func (c *h2Conn) writeLoop() {
	for range c.wake {
		runtime.Gosched()
		c.wmu.Lock()
		if c.err != nil {
			c.wmu.Unlock()
			return
		}
		c.wbuf, c.spare = c.spare, c.wbuf
		out := c.spare
		c.wmu.Unlock()
		if out.Len() == 0 {
			continue
		}
		_, err := c.nc.Write(out.Bytes())
		out.Reset()
		if err != nil {
			c.wmu.Lock()
			c.failLocked(err)
			c.wmu.Unlock()
			return
		}
	}
}

// failLocked ends every call in flight and every later one with err.
func (c *h2Conn) failLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	for id, call := range c.streams {
		call.err = err
		call.done <- struct{}{}
		delete(c.streams, id)
	}
	c.wcond.Broadcast()
	c.flushLocked() // the writer sees err and returns
	_ = c.nc.Close()
}

// close ends the connection; calls in flight fail.
func (c *h2Conn) close() {
	c.wmu.Lock()
	c.failLocked(errors.New("connection closed"))
	c.wmu.Unlock()
}

// read is the reader goroutine: it answers the server's settings and
// pings, keeps the windows and completes calls, until the connection
// fails.
func (c *h2Conn) read(fr *http2.Framer) {
	var received int64 // connection-level bytes since the last WINDOW_UPDATE
	answering := make(map[uint32]*h2Call)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			c.fail(answering, fmt.Errorf("reading from the server: %w", err))
			return
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			call := answering[f.StreamID]
			if call == nil {
				c.wmu.Lock()
				call = c.streams[f.StreamID]
				delete(c.streams, f.StreamID)
				c.wmu.Unlock()
				if call == nil {
					continue // a call given up on (timed out)
				}
				answering[f.StreamID] = call
				if st := f.PseudoValue("status"); st != "200" {
					call.err = fmt.Errorf("HTTP status %s", st)
				}
			}
			for _, hf := range f.RegularFields() {
				switch hf.Name {
				case "grpc-status":
					call.status = hf.Value
				case "grpc-message":
					call.message = hf.Value
				}
			}
			if f.StreamEnded() {
				c.complete(answering, f.StreamID, call)
			}
		case *http2.DataFrame:
			received += int64(len(f.Data()))
			if call := answering[f.StreamID]; call != nil {
				call.data = append(call.data, f.Data()...)
				if f.StreamEnded() {
					c.complete(answering, f.StreamID, call)
				}
			}
			if received >= h2ReceiveWindow/2 {
				c.write(func(w *http2.Framer) { _ = w.WriteWindowUpdate(0, uint32(received)) })
				received = 0
			}
		case *http2.RSTStreamFrame:
			if call := answering[f.StreamID]; call != nil {
				call.err = fmt.Errorf("stream reset by the server: %v", f.ErrCode)
				c.complete(answering, f.StreamID, call)
			} else {
				c.wmu.Lock()
				if call := c.streams[f.StreamID]; call != nil {
					delete(c.streams, f.StreamID)
					call.err = fmt.Errorf("stream reset by the server: %v", f.ErrCode)
					call.done <- struct{}{}
				}
				c.wmu.Unlock()
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func(w *http2.Framer) { _ = w.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				c.write(func(w *http2.Framer) { _ = w.WritePing(true, data) })
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				c.wmu.Lock()
				c.window += int64(f.Increment)
				c.wcond.Broadcast()
				c.wmu.Unlock()
			}
		case *http2.GoAwayFrame:
			c.fail(answering, fmt.Errorf("the server went away: %v %s", f.ErrCode, f.DebugData()))
			return
		}
	}
}

// fail ends the connection from the reader: the calls being answered
// fail with err too.
func (c *h2Conn) fail(answering map[uint32]*h2Call, err error) {
	c.wmu.Lock()
	c.failLocked(err)
	c.wmu.Unlock()
	for id, call := range answering {
		call.err = err
		c.complete(answering, id, call)
	}
}

// complete hands a finished stream's answer to its caller.
func (c *h2Conn) complete(answering map[uint32]*h2Call, id uint32, call *h2Call) {
	delete(answering, id)
	if call.err == nil && call.status == "" {
		call.err = errors.New("the answer ended without a grpc-status")
	}
	call.done <- struct{}{}
}

// write sends the frames f writes (from the reader goroutine).
func (c *h2Conn) write(f func(*http2.Framer)) {
	c.wmu.Lock()
	if c.err == nil {
		f(c.wfr)
		c.flushLocked()
	}
	c.wmu.Unlock()
}

// h2Out is where the write framer writes a frame: the connection's
// current write buffer (swapped while a flush writes the other).
type h2Out struct{ c *h2Conn }

func (o h2Out) Write(p []byte) (int, error) { return o.c.wbuf.Write(p) }

// grpcFrame is m marshalled with gRPC's 5-byte prefix (uncompressed).
func grpcFrame(m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...), nil
}

// overallCode reads field 1 (overall_code) of a RateLimitResponse
// without decoding the rest; 0 (UNKNOWN) when absent.
func overallCode(msg []byte) (int32, error) {
	var code int32
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		msg = msg[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(msg)
			if n < 0 {
				return 0, protowire.ParseError(n)
			}
			code = int32(v)
			msg = msg[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, msg)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		msg = msg[n:]
	}
	return code, nil
}
