package bench

import (
	"net"

	"github.com/valyala/fasthttp"
)

// floorBody is the size and shape of a user record as the API returns it.
var floorBody = []byte(`{"id":"06h0l2qie400001i","name":"Bench User 1234","email":"b1a2b3c4-12-1234@bench.example.com","role":"user","version":1,"created_at":"2026-11-23T22:33:52.497Z","updated_at":"2026-11-23T22:33:52.497Z"}`)

// FloorServer is a bare fasthttp server that answers every request at
// once with a fixed user-sized JSON body: 201 for POST /v1/users (a
// create, as the API answers it), 200 otherwise (batches, rate-limit
// checks and reads answer 200 in the API too). A
// scenario against it measures the ceiling of this machine, the client
// and the HTTP stack, with no database behind.
type FloorServer struct{ srv *fasthttp.Server }

// NewFloorServer returns a floor server.
func NewFloorServer() *FloorServer {
	return &FloorServer{srv: &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if ctx.IsPost() && string(ctx.Path()) == "/v1/users" {
				ctx.SetStatusCode(fasthttp.StatusCreated)
			}
			ctx.SetContentType("application/json")
			ctx.SetBody(floorBody)
		},
		Name:                  "troupe-floor",
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
	}}
}

// Serve serves on ln until Shutdown.
func (f *FloorServer) Serve(ln net.Listener) error { return f.srv.Serve(ln) }

// Shutdown stops the server.
func (f *FloorServer) Shutdown() error { return f.srv.Shutdown() }
