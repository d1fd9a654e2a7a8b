package api

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/peer"
)

// Command forwarding: a create that reaches a follower is parsed,
// authorised and validated there, and only its command travels to the
// leader, in batches: every write waiting at a follower shares one
// node-to-node request, so the leader does neither the JSON nor an HTTP
// exchange per forwarded write. The leader checks the caller's token
// again (as it would for a forwarded HTTP request), stamps each command
// afresh (ids derive from the leader's stamps) and proposes the batch at
// once, so the commands share group commits. The follower renders the
// answer from the result.
//
// Every forwarded command carries a request id (from the client's
// Idempotency-Key, or made here), so a retry after an attempt whose
// outcome is unknown never applies twice: the FSM answers a known request
// id with the recorded result.

// forwardCommandsPath is the leader's route for forwarded commands.
const forwardCommandsPath = "/internal/v1/commands"

const (
	maxForwardBatch    = 256     // commands per request to the leader
	maxForwardBytes    = 1 << 18 // and bytes
	forwardBatchesInFl = 4       // requests in flight per leader
)

// Per-command status in the leader's answer.
const (
	fwdApplied   = 0 // the result follows
	fwdNotLeader = 1 // never entered the log: retry elsewhere
	fwdUnknown   = 2 // may or may not have been applied: retry with the same request id
)

var errForwardUnsupported = errors.New("the leader does not take forwarded commands")

// fwdItem is one command waiting at a follower.
type fwdItem struct {
	cred  fwdCredentials
	cmd   []byte
	reply chan fwdReply // cap 1: the sender never blocks on it
	// trace is the trace context of the forward (nil: none); the first
	// item's that has one goes with the batch, as its traceparent.
	trace context.Context
}

type fwdReply struct {
	status byte
	index  uint64
	res    storage.Result
	err    error // transport failure (status fwdUnknown)
}

// cmdForwarder batches the commands of one node to its leader(s).
type cmdForwarder struct {
	s *Server
	b peer.Batcher[*fwdItem]
}

func (f *cmdForwarder) init(s *Server) {
	f.s = s
	f.b = peer.Batcher[*fwdItem]{
		MaxItems: maxForwardBatch, MaxBytes: maxForwardBytes, InFlight: forwardBatchesInFl,
		Size: func(it *fwdItem) int { return len(it.cmd) },
		Send: f.send,
	}
}

func (f *cmdForwarder) close() { f.b.Close() }

// send makes one request to the leader and answers every item.
func (f *cmdForwarder) send(leader string, batch []*fwdItem) {
	s := f.s
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	body := binary.AppendUvarint(make([]byte, 0, 64*len(batch)), uint64(len(batch)))
	for _, it := range batch {
		body = it.cred.append(body)
		body = appendBytes(body, it.cmd)
	}
	s.peerPost(req, leader, forwardCommandsPath, "application/octet-stream", body)
	var tctx context.Context
	for _, it := range batch {
		if it.trace != nil {
			tctx = it.trace
			break
		}
	}
	s.injectTrace(tctx, req)
	err := s.fwd.client(leader).DoTimeout(req, resp, s.cfg.RequestTimeout+5*time.Second)
	var replies []fwdReply
	switch {
	case err != nil:
	case resp.StatusCode() == http.StatusNotFound || resp.StatusCode() == http.StatusForbidden:
		err = errForwardUnsupported
	case resp.StatusCode() != http.StatusOK:
		err = fmt.Errorf("leader answered %d", resp.StatusCode())
	default:
		replies, err = decodeForwardReplies(resp.Body(), len(batch))
	}
	for i, it := range batch {
		if err != nil {
			it.reply <- fwdReply{status: fwdUnknown, err: err}
			continue
		}
		it.reply <- replies[i]
	}
}

// forwardCommand has the leader propose cmd (built on this follower) and
// returns its result and index. It retries, with the same request id,
// until the deadline.
func (s *Server) forwardCommand(ctx *fasthttp.RequestCtx, cmd *storage.Command, deadline time.Time) (storage.Result, uint64, error) {
	token, hasToken := bearerToken(ctx)
	return s.forwardCommandAs(s.traceCtx(ctx), fwdCredentials{token: token, hasToken: hasToken, share: shareToken(ctx)}, cmd, deadline)
}

// fwdCredentials are what a forwarded command's caller showed: its
// access token (hasToken: one was given) and its share token ("" none),
// which the leader checks again.
type fwdCredentials struct {
	token    string
	hasToken bool
	share    string
}

// Flags of fwdCredentials on the wire: a byte, the token, then the share
// token if fwdShare is set.
const (
	fwdHasToken = 1
	fwdShare    = 2
)

func (c *fwdCredentials) append(b []byte) []byte {
	flags := byte(0)
	if c.hasToken {
		flags |= fwdHasToken
	}
	if c.share != "" {
		flags |= fwdShare
	}
	b = appendBytes(append(b, flags), []byte(c.token))
	if c.share != "" {
		b = appendBytes(b, []byte(c.share))
	}
	return b
}

func (d *fwdDecoder) credentials() fwdCredentials {
	flags := d.byte1()
	if flags&^(fwdHasToken|fwdShare) != 0 {
		d.err = errBadForward
	}
	c := fwdCredentials{hasToken: flags&fwdHasToken != 0, token: string(d.bytes())}
	if flags&fwdShare != 0 {
		c.share = string(d.bytes())
	}
	return c
}

// forwardCommandAs is forwardCommand for a caller known by its tokens
// (a WebSocket, whose request context is gone), in the trace of tctx.
func (s *Server) forwardCommandAs(tctx context.Context, cred fwdCredentials, cmd *storage.Command, deadline time.Time) (storage.Result, uint64, error) {
	if err := s.node.AdmitKeyed(cmd); err != nil {
		return storage.Result{}, 0, err // before it costs the leader anything
	}
	tctx, span := tracing.Child(tctx, "forward command to leader", trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	var itemTrace context.Context // the forward's trace context, if any
	if trace.SpanContextFromContext(tctx).IsValid() {
		itemTrace = tctx
	}
	leaderWait := time.Now().Add(s.cfg.LeaderWait)
	tried := false // an attempt may have reached a leader's log
	var data []byte
	for {
		if s.node.IsLeader() {
			// This node leads now: its own stamps.
			cmd.Restamp(s.node.Stamps(cmd.StampCount()))
			res, idx, err := s.node.Propose(tctx, cmd, deadline)
			if !errors.Is(err, replica.ErrNotLeader) {
				return res, idx, err
			}
		} else if leader := s.node.LeaderHTTP(); leader != "" && leader != s.cfg.AdvertiseHTTP {
			queue, ok := s.cmdFwd.b.Queue(leader)
			if !ok {
				return storage.Result{}, 0, replica.ErrShutdown
			}
			if data == nil {
				data = storage.EncodeCommand(nil, cmd)
			}
			it := &fwdItem{cred: cred, cmd: data, reply: make(chan fwdReply, 1), trace: itemTrace}
			if span.IsRecording() {
				span.SetAttributes(attribute.String("troupe.leader", leader))
			}
			t := time.NewTimer(time.Until(deadline))
			select {
			case queue <- it:
			case <-t.C:
				return storage.Result{}, 0, forwardFailure(tried)
			}
			tried = true
			var r fwdReply
			select {
			case r = <-it.reply:
				t.Stop()
			case <-t.C:
				return storage.Result{}, 0, forwardFailure(true)
			}
			switch r.status {
			case fwdApplied:
				return r.res, r.index, nil
			case fwdNotLeader:
				// Not in any log from this attempt; earlier ones may be.
			default:
				if errors.Is(r.err, errForwardUnsupported) {
					return storage.Result{}, 0, r.err
				}
				if r.err != nil {
					s.log.Debug("forwarding a command to the leader failed; retrying", slog.String("leader", leader), slog.Any("err", r.err))
				}
			}
		}
		if time.Now().After(deadline) || !tried && time.Now().After(leaderWait) {
			return storage.Result{}, 0, forwardFailure(tried)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// canForwardCommands reports whether this node can prove to the leader
// that it is a member (see forwardedCommands).
func (s *Server) canForwardCommands() bool {
	return s.forwardProof() != "" || s.cfg.ClusterSecret != "" || s.fwd.tls != nil
}

func forwardFailure(mayHaveApplied bool) error {
	if mayHaveApplied {
		return fmt.Errorf("%w: forwarded to the leader without an answer in time", replica.ErrOutcomeUnknown)
	}
	return replica.ErrNotLeader
}

// forwardedRequestID gives a forwarded command without an Idempotency-Key
// a request id of its own, scoped like a client's key.
func forwardedRequestID(ctx *fasthttp.RequestCtx) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	scope := "-"
	if c := callerOf(ctx); c.signedIn() {
		scope = c.uid
	}
	return scope + ":fwd-" + hex.EncodeToString(b[:])
}

// forwardedCommands is the leader's side: it answers every command of
// the batch, in order.
func (s *Server) forwardedCommands(ctx *fasthttp.RequestCtx) {
	if !s.peerProven(ctx) && !s.forwardedByPeer(ctx) {
		writeError(ctx, newError("forbidden", "only members of this cluster may forward commands"))
		return
	}
	d := fwdDecoder{b: ctx.PostBody()}
	n := d.uvarint()
	if d.err != nil || n == 0 || n > maxForwardBatch {
		writeError(ctx, badRequest("bad forwarded batch", ""))
		return
	}
	replies := make([]fwdReply, n)
	cmds := make([]*storage.Command, 0, n)
	pos := make([]int, 0, n)
	for i := range replies {
		cred := d.credentials()
		raw := d.bytes()
		if d.err != nil {
			writeError(ctx, badRequest("bad forwarded batch", ""))
			return
		}
		cmd, err := storage.DecodeCommand(raw)
		if err != nil || (cmd.Kind != storage.CmdUserCreate && cmd.Kind != storage.CmdDocSubmit) || (cmd.Kind == storage.CmdDocSubmit && cmd.Doc == nil) {
			replies[i].res = storage.Result{Err: &storage.Error{Kind: storage.KindBadRequest, Message: "not a command that may be forwarded"}}
			continue
		}
		// The caller's rights, as the leader makes them out from the
		// tokens: POST /v1/users is for admins; a submit acts as its
		// caller and its share link (apply checks Doc.Access).
		c, e := s.forwardedCaller(ctx, cred, cmd)
		if e == nil && cmd.Kind == storage.CmdUserCreate && !c.admin {
			e = newError("forbidden", "this route is for admins")
		}
		if e == nil && cmd.Kind == storage.CmdDocSubmit {
			dc := c.docCaller(cmd.Doc.DocID)
			cmd.Doc.Caller, cmd.Doc.Admin, cmd.Doc.Link = dc.User, dc.Admin, dc.Link
		}
		if e != nil {
			kind := storage.KindUnauthenticated
			if e.Code == "forbidden" {
				kind = storage.KindForbidden
			}
			if e.Code == "link_expired" {
				e.Code = "unauthenticated"
			}
			if e.Code != "unauthenticated" && e.Code != "forbidden" {
				replies[i].status = fwdNotLeader // unavailable here: try again
				continue
			}
			replies[i].res = storage.Result{Err: &storage.Error{Kind: kind, Message: e.Message}}
			continue
		}
		cmds = append(cmds, cmd)
		pos = append(pos, i)
	}
	if d.end() != nil {
		writeError(ctx, badRequest("bad forwarded batch", ""))
		return
	}
	for j, p := range s.node.ProposeRestamped(s.traceCtx(ctx), cmds, s.deadline()) {
		r := &replies[pos[j]]
		switch {
		case p.Err == nil:
			r.res, r.index = p.Result, p.Index
		case errors.Is(p.Err, replica.ErrNotLeader):
			r.status = fwdNotLeader
		default:
			// Also a keyed command this leader's full idempotency
			// window refused (the follower checked its own first; the
			// two differ by the writes in flight): not applied, and
			// a retry with the same key is safe either way.
			r.status = fwdUnknown
		}
	}
	out := binary.AppendUvarint(make([]byte, 0, 128*len(replies)), uint64(len(replies)))
	var res []byte
	for i := range replies {
		r := &replies[i]
		out = append(out, r.status)
		if r.status != fwdApplied {
			continue
		}
		out = binary.AppendUvarint(out, r.index)
		res = storage.AppendResult(res[:0], &r.res)
		out = appendBytes(out, res)
	}
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("application/octet-stream")
	ctx.SetBody(out)
}

// forwardedCaller is the caller of a forwarded command, from the tokens
// it showed: the access token's user (or nobody, for a guest), with the
// share link of the command's document if it showed a share token.
func (s *Server) forwardedCaller(ctx *fasthttp.RequestCtx, cred fwdCredentials, cmd *storage.Command) (*caller, *apiError) {
	if cred.share == "" || cmd.Kind != storage.CmdDocSubmit {
		return s.tokenCaller(cred.token, cred.hasToken)
	}
	c := &caller{}
	if cred.hasToken {
		u, e := s.tokenCaller(cred.token, true)
		if e != nil {
			return nil, e
		}
		cc := *u
		c = &cc
	}
	link, e := s.resolveShare(s.traceCtx(ctx), cmd.Doc.DocID, cred.share, s.deadline())
	if e != nil {
		return nil, e
	}
	c.link = link
	return c, nil
}

func decodeForwardReplies(b []byte, n int) ([]fwdReply, error) {
	d := fwdDecoder{b: b}
	if got := d.uvarint(); d.err != nil || got != uint64(n) {
		return nil, errors.New("the leader's answer does not match the batch")
	}
	out := make([]fwdReply, n)
	for i := range out {
		r := &out[i]
		r.status = d.byte1()
		switch r.status {
		case fwdApplied:
			r.index = d.uvarint()
			raw := d.bytes()
			if d.err != nil {
				break
			}
			res, err := storage.DecodeResult(raw)
			if err != nil {
				return nil, err
			}
			r.res = res
		case fwdNotLeader, fwdUnknown:
		default:
			return nil, fmt.Errorf("unknown forwarding status %d", r.status)
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return out, nil
}

func appendBytes(dst, p []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(p)))
	return append(dst, p...)
}

// fwdDecoder reads the forwarding encoding with a sticky error.
type fwdDecoder struct {
	b   []byte
	err error
}

var errBadForward = errors.New("bad forwarding encoding")

func (d *fwdDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadForward
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *fwdDecoder) byte1() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errBadForward
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// bytes returns a length-prefixed slice, aliasing the input.
func (d *fwdDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errBadForward
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *fwdDecoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errBadForward
	}
	return d.err
}
