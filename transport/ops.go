package transport

import (
	"net/http"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	if err := s.node.Ready(); err != nil {
		e := newError("unavailable", err.Error())
		writeError(ctx, e)
		return
	}
	writeJSON(ctx, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) metrics(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	s.set.WritePrometheus(ctx)
	metrics.WriteProcessMetrics(ctx)
}

func (s *Server) clusterStatus(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, http.StatusOK, s.node.Status(s.cfg.AdvertiseHTTP))
}
