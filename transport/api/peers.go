package api

import (
	"net/http"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/troupe-db/troupe/transport/stream"
)

// What this node sends its peers besides Raft, and the presence they
// report to it (the relay itself is package stream's).

// peerPost makes req a POST of body to another node's internal route at
// addr, carrying this node's membership proof (the forwarding proof and,
// when set, the cluster secret; over HTTPS also its certificate).
func (s *Server) peerPost(req *fasthttp.Request, addr, path, contentType string, body []byte) {
	scheme := "http://"
	if s.fwd.tls != nil {
		scheme = "https://"
	}
	req.SetRequestURI(scheme + addr + path)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType(contentType)
	if proof := s.forwardProof(); proof != "" {
		req.Header.Set(forwardedHeader, proof)
	}
	if s.cfg.ClusterSecret != "" {
		req.Header.Set("X-Troupe-Cluster-Secret", s.cfg.ClusterSecret)
	}
	req.SetBodyRaw(body)
}

// peers are the members' HTTP addresses and this node's place among them.
func (s *Server) peers() ([]string, int) {
	o := s.memberView()
	return o.addrs, o.self
}

// postPresence delivers a presence report to the member at addr, within
// a second (best-effort: the next renewal repairs a lost one).
func (s *Server) postPresence(addr, path string, body []byte) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	s.peerPost(req, addr, path, "application/json", body)
	return s.fwd.client(addr).DoTimeout(req, resp, time.Second)
}

// receivePresence is the route other nodes report presence to.
func (s *Server) receivePresence(ctx *fasthttp.RequestCtx) {
	if !s.peerProven(ctx) && !s.forwardedByPeer(ctx) {
		writeError(ctx, newError("forbidden", "only members of this cluster may report presence"))
		return
	}
	var b stream.PresenceBatch
	if e := decodeJSON(ctx.PostBody(), &b); e != nil {
		writeError(ctx, e)
		return
	}
	if len(b.Items) > stream.MaxPresenceItems {
		writeError(ctx, badRequest("too many items", "items"))
		return
	}
	docs := s.docs
	for _, it := range b.Items {
		switch it.State {
		case "join", "cursor", "leave":
		default:
			continue
		}
		docs.RemotePresence(it.Doc, it.Presence())
	}
	ctx.SetStatusCode(http.StatusNoContent)
}
