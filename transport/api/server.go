// Package api is troupe's HTTP API, the front end of a node: a fasthttp
// server whose routes authenticate, rate-limit and hand each request to
// its handler; handlers that parse and validate requests, turn writes
// into commands for the node and reads into messages for the owning
// actors; the JSON codec; and the one table that maps every outcome to
// the codes of API.md. It holds no state of its own, and reaches the node
// only through the interfaces it declares (Node, Docs, Users).
package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupe-db/troupe/actors"
	"github.com/troupe-db/troupe/internal/feed"
	"github.com/troupe-db/troupe/internal/tracing"
	"github.com/troupe-db/troupe/replica"
	"github.com/troupe-db/troupe/storage"
	"github.com/troupe-db/troupe/transport/auth"
	"github.com/troupe-db/troupe/transport/stream"
	"github.com/troupe-db/troupe/transport/web"
)

// Node is what the transport needs from the node that replicates the
// state (package cluster, wired in by cmd/troupe): proposing commands,
// the read barrier, membership, status and the replicated settings it
// reads. Its errors are replica's.
type Node interface {
	Stamps(k int) uint64
	// Propose, ProposeRestamped and ReadBarrier take the request's trace
	// context (context.Background() when there is none): their spans
	// hang below its span.
	Propose(ctx context.Context, cmd *storage.Command, deadline time.Time) (storage.Result, uint64, error)
	ProposeRestamped(ctx context.Context, cmds []*storage.Command, deadline time.Time) []replica.Proposal
	// AdmitKeyed refuses a write with a request id while the node's
	// idempotency window is full (a *replica.WindowFullError); Propose
	// checks it too, a follower before it forwards.
	AdmitKeyed(cmd *storage.Command) error
	ReadBarrier(ctx context.Context, c replica.Consistency, minIndex uint64, deadline time.Time) error
	Ready() error
	// NotInitialised says why this node has no state to serve yet (it is
	// catching up on the log, or the cluster was never initialised): an
	// error wrapping replica.ErrNotReady.
	NotInitialised() error
	Status(httpAddr string) replica.Status
	IsLeader() bool
	LeaderHTTP() string
	LeaderReadIndex() (uint64, error)
	StateHash() (replica.StateHash, error)
	Identity() replica.Identity
	TakeSnapshot(deadline time.Time) (uint64, error)
	Backup() *storage.Snapshot
	AddMember(m storage.Member, voter bool, deadline time.Time) error
	RemoveMember(id string, deadline time.Time) error
	Auth() *storage.AuthState
	Policies() map[string]storage.Policy
	// OnAuthNarrowed adds a function told of users whose tokens may have
	// lost rights, as this node applies the change ("": anyone's); the
	// returned function removes it.
	OnAuthNarrowed(fn func(userID string)) (remove func())
	RotateKey(deadline time.Time) (kid string, index uint64, err error)
	// AppliedIndex is the index of the last command this node applied.
	AppliedIndex() uint64
	// Watch subscribes to the change feed after p (a *feed.GoneError
	// when some of those changes are no longer kept); WaitWatchable
	// waits until the feed holds every change up to index (else
	// feed.ErrNotYet at deadline).
	Watch(p feed.Position) (*feed.Subscription, error)
	WaitWatchable(index uint64, deadline time.Time) error
	// Webhooks are the webhooks in id order; Webhook one of them (nil:
	// none). They must not be changed.
	Webhooks() []*storage.Webhook
	Webhook(id string) *storage.Webhook
}

// Docs is what the transport needs from the document actors
// (actors.Docs): reads, subscriptions with presence, and the hooks that
// tell it of narrowed readers and remote presence.
type Docs interface {
	Get(id string, deadline time.Time) (*storage.Doc, error)
	Latest(id string) *storage.Doc
	// List is a page of the documents user may read (an admin: all), in
	// id order after after, reflecting every command applied when asked.
	List(user string, admin bool, after string, limit int, deadline time.Time) ([]*storage.Doc, bool, error)
	Owned(userID string) int
	// NamedBytes is what userID's named versions count, over the
	// documents it owns.
	NamedBytes(userID string) int
	Collaborators(id string, deadline time.Time) []string
	Subscribe(id string, after uint64, hasAfter bool, user, clientID string, deadline time.Time) (*actors.Subscriber, error)
	Unsubscribe(id string, sub *actors.Subscriber)
	Revoke(id string, sub *actors.Subscriber, reason string)
	Cursor(id string, sub *actors.Subscriber, pos, anchor int)
	SetMaxPresence(n int)
	PresenceRefused() int64
	OnPresence(fn func(docID string, p actors.Presence))
	RemotePresence(id string, p actors.Presence)
	OnReadersNarrowed(fn func(docID string)) (remove func())
}

// Users is what the transport needs from the user shards.
type Users interface {
	HomeShardFor(email string) uint16
	Get(id string, deadline time.Time) (*storage.User, error)
	// GetProfile is Get without the authentication state: for answers.
	GetProfile(id string, deadline time.Time) (*storage.User, error)
	// TokenState is what an access token of session sid is checked
	// against in the user's record, read as Get reads it.
	TokenState(id, sid string, deadline time.Time) (storage.TokenState, error)
	FindEmail(email string, deadline time.Time) (*storage.User, error)
	EmailTakenIfIdle(email, exceptID string) bool
	List(after, q string, limit int, deadline time.Time) ([]*storage.User, bool, error)
	Count(q string, deadline time.Time) (int, error)
	// Total is the users this node holds, from the shards' last applied
	// state, without asking them (Config.MaxUsers's check).
	Total() int64
}

// Server serves the HTTP API of one node.
type Server struct {
	cfg    Config
	log    *slog.Logger
	node   Node
	docs   Docs
	users  func() Users // nil result until the cluster is initialised
	set    *metrics.Set
	http   *fasthttp.Server
	fwd    forwarder
	cmdFwd cmdForwarder

	// limiter makes the decisions: the local one, or the global one
	// that sends them to each key's owner.
	limiter, localLimiter Limiter
	global                *globalLimiter
	policies              policyCache    // pointers to the named policies (ratelimit.go)
	ws                    stream.Sockets // open WebSockets, closed on shutdown
	streams               *stream.Registry
	unhook                []func() // removes the hooks New added to the node
	conns                 *connLimit
	wsMetrics             wsMetrics
	presence              *stream.Relay
	members               atomic.Pointer[ownerSet] // see memberView
	membersMu             sync.Mutex

	tokens        *auth.Tokens
	revoked       revokedTokens // access tokens found revoked after a barrier
	loginThrottle *auth.Throttle
	hasher        *auth.Hasher
	authMetrics   authMetrics
	docLimits     docLimitMetrics
	usersRefused  *metrics.Counter // troupe_user_limit_refusals_total
	proof         authProof

	routesStats sync.Map // route name → *routeMetrics

	traces *tracing.Provider // nil: tracing is off (see tracing.go)
	tracer trace.Tracer      // traces' tracer, nil when off
	nodeID string            // for the spans
}

// New returns a server for node and its documents; users returns the
// user shards or nil.
func New(cfg Config, logger *slog.Logger, set *metrics.Set, node Node, docs Docs, users func() Users) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.AdvertiseHTTP == "" {
		cfg.AdvertiseHTTP = cfg.HTTPAddr
	}
	s := &Server{cfg: cfg, log: logger, node: node, docs: docs, users: users, set: set,
		hasher: auth.NewHasher(cfg.Argon2, cfg.HashConcurrency), fwd: forwarder{timeout: cfg.RequestTimeout + 5*time.Second, tls: cfg.PeerTLS},
		loginThrottle: auth.NewThrottle(cfg.LoginFailuresPerMinute, 100_000, nil),
		authMetrics:   newAuthMetrics(set),
		docLimits:     newDocLimitMetrics(set),
		usersRefused:  set.NewCounter(`troupe_user_limit_refusals_total`),
	}
	s.cmdFwd.init(s)
	s.traces, s.tracer, s.nodeID = cfg.Tracing, cfg.Tracing.Tracer(), cfg.Tracing.NodeID()
	s.presence = stream.NewRelay(stream.RelayConfig{Peers: s.peers, Post: s.postPresence, Log: logger})
	docs.OnPresence(s.presence.Local)
	s.streams = stream.NewRegistry(stream.Config{MaxStreams: cfg.MaxStreams, MaxStreamsPerUser: cfg.MaxStreamsPerUser,
		Denied: s.streamDenied, Revoke: docs.Revoke}, set)
	s.conns = newConnLimit(cfg.MaxConnections, set)
	s.conns.exempt = s.fromMember
	s.wsMetrics = newWSMetrics(set)
	docs.SetMaxPresence(cfg.MaxPresence)
	s.unhook = append(s.unhook, docs.OnReadersNarrowed(s.streams.DocNarrowed), node.OnAuthNarrowed(s.streams.UserNarrowed))
	set.NewGauge(`troupe_presence_refused_total`, func() float64 { return float64(docs.PresenceRefused()) })
	if cfg.Limiter != nil {
		s.limiter, s.localLimiter = cfg.Limiter, cfg.Limiter
		if cfg.RateLimitGlobal {
			s.global = newGlobalLimiter(s, cfg.Limiter, set)
			s.limiter = s.global
		}
	}
	s.tokens = auth.NewTokens(node.Auth, cfg.AccessTTL, cfg.TokenLeeway, nil)
	s.set.NewGauge(`troupe_auth_revoked_tokens_known`, func() float64 { return float64(s.revoked.len()) })
	s.http = &fasthttp.Server{
		Handler:               s.routes(),
		Name:                  "troupe",
		NoDefaultServerHeader: true,
		MaxRequestBodySize:    cfg.MaxBodyBytes,
		// fasthttp reads the request line and headers into this buffer;
		// what does not fit is ErrSmallBuffer (parseError: 431).
		ReadBufferSize:  cfg.MaxHeaderBytes,
		ReadTimeout:     cfg.ReadTimeout,
		WriteTimeout:    cfg.WriteTimeout,
		IdleTimeout:     cfg.IdleTimeout,
		CloseOnShutdown: true,
		ErrorHandler:    s.parseError,
		Logger:          fasthttpLogger{logger},
		TLSConfig:       cfg.TLS,
	}
	return s, nil
}

func (s *Server) routes() fasthttp.RequestHandler {
	r := router.New()
	route := func(method, path string, level access, h fasthttp.RequestHandler) {
		if strings.HasPrefix(path, "/v1/") {
			// The default policy runs after authentication (it counts
			// by user when there is one).
			h = s.traceDefaultLimit(s.limitDefault, h)
		}
		r.Handle(method, path, s.handle(method+" "+path, s.guard(level, h)))
	}
	route("GET", "/healthz", public, s.healthz)
	route("GET", "/readyz", public, s.readyz)
	route("GET", "/metrics", public, s.metrics)
	route("GET", "/", public, web.Handler())
	route("GET", "/assets/{file}", public, web.Handler())
	// Node to node: these check the cluster secret themselves.
	route("GET", replica.IdentityPath, public, s.identity)
	route("GET", replica.ReadIndexPath, public, s.readIndex)
	route("POST", forwardCommandsPath, public, s.forwardedCommands)
	route("POST", decidePath, public, s.decide)
	route("POST", stream.PresencePath, public, s.receivePresence)

	route("POST", "/v1/auth/register", public, s.leaderOnly(s.register))
	route("POST", "/v1/auth/login", public, s.throttledLogin(s.leaderOnly(s.login)))
	route("POST", "/v1/auth/refresh", public, s.leaderOnly(s.refresh))
	route("POST", "/v1/auth/logout", signedIn, s.leaderOnly(s.logout))
	route("GET", "/v1/auth/me", signedIn, s.me)
	route("POST", "/v1/auth/keys/rotate", adminOnly, s.leaderOnly(s.rotateKey))

	route("GET", "/v1/cluster", peerOrAdmin, s.clusterStatus)
	route("GET", "/v1/cluster/hash", peerOrAdmin, s.stateHash)
	route("GET", "/v1/cluster/backup", peerOrAdmin, s.backup)
	route("POST", "/v1/cluster/snapshot", peerOrAdmin, s.snapshot)
	route("POST", "/v1/cluster/members", peerOrAdmin, s.leaderOnly(s.addMember))
	route("DELETE", "/v1/cluster/members/{id}", peerOrAdmin, s.leaderOnly(s.removeMember))

	// A follower validates creates itself and forwards only the command.
	route("POST", "/v1/users", adminOnly, s.createUser)
	route("GET", "/v1/users", adminOnly, s.listUsers)
	route("GET", "/v1/users/count", adminOnly, s.countUsers)
	route("POST", "/v1/users/batch", adminOnly, s.leaderOnly(s.batchUsers))
	route("GET", "/v1/ratelimit/policies", adminOnly, s.listPolicies)
	route("PUT", "/v1/ratelimit/policies/{name}", adminOnly, s.leaderOnly(s.putPolicy))
	route("DELETE", "/v1/ratelimit/policies/{name}", adminOnly, s.leaderOnly(s.deletePolicy))
	route("POST", "/v1/ratelimit/check", signedIn, s.traceCheck(s.check))
	route("POST", "/v1/ratelimit/release", signedIn, s.release)
	route("GET", "/v1/ratelimit/policies/{name}/keys/{key:*}", signedIn, s.peekKey)
	route("DELETE", "/v1/ratelimit/policies/{name}/keys/{key:*}", signedIn, s.resetKey)

	route("POST", "/v1/docs", signedIn, s.leaderOnly(s.createDoc))
	route("GET", "/v1/docs", signedIn, s.listDocs)
	// One document's routes: a share link of that document may stand in
	// for, or add to, the access token (share.go).
	route("GET", "/v1/docs/{id}", docRoute, s.getDoc)
	route("PATCH", "/v1/docs/{id}", docRoute, s.leaderOnly(s.patchDoc))
	route("DELETE", "/v1/docs/{id}", docRoute, s.leaderOnly(s.deleteDoc))
	route("PUT", "/v1/docs/{id}/editors/{user_id}", docRoute, s.leaderOnly(s.docEditor(false)))
	route("DELETE", "/v1/docs/{id}/editors/{user_id}", docRoute, s.leaderOnly(s.docEditor(true)))
	route("PUT", "/v1/docs/{id}/members/{user_id}", docRoute, s.leaderOnly(s.docMember(false)))
	route("DELETE", "/v1/docs/{id}/members/{user_id}", docRoute, s.leaderOnly(s.docMember(true)))
	route("POST", "/v1/docs/{id}/links", docRoute, s.leaderOnly(s.createLink))
	route("GET", "/v1/docs/{id}/links", docRoute, s.listLinks)
	route("DELETE", "/v1/docs/{id}/links/{link_id}", docRoute, s.leaderOnly(s.revokeLink))
	route("POST", "/v1/docs/{id}/ops", docRoute, s.leaderOnly(s.submitOps))
	route("GET", "/v1/docs/{id}/ops", docRoute, s.docChanges)
	route("GET", "/v1/docs/{id}/history", docRoute, s.docHistory)
	route("POST", "/v1/docs/{id}/restore", docRoute, s.leaderOnly(s.restoreDoc))
	route("POST", "/v1/docs/{id}/versions", docRoute, s.leaderOnly(s.nameVersion))
	route("GET", "/v1/docs/{id}/versions", docRoute, s.listVersions)
	route("DELETE", "/v1/docs/{id}/versions/{version}", docRoute, s.leaderOnly(s.deleteVersion))
	route("GET", "/v1/docs/{id}/events", docRoute, s.docEvents)
	route("GET", "/v1/docs/{id}/ws", docRoute, s.docWS)
	route("GET", "/v1/watch", signedIn, s.watchSSE)
	route("GET", "/v1/watch/ws", signedIn, s.watchWS)
	route("POST", "/v1/webhooks", adminOnly, s.leaderOnly(s.createWebhook))
	route("GET", "/v1/webhooks", adminOnly, s.listWebhooks)
	route("GET", "/v1/webhooks/{id}", adminOnly, s.getWebhook)
	route("PATCH", "/v1/webhooks/{id}", adminOnly, s.leaderOnly(s.patchWebhook))
	route("DELETE", "/v1/webhooks/{id}", adminOnly, s.leaderOnly(s.deleteWebhook))
	route("POST", "/v1/webhooks/{id}/test", adminOnly, s.testWebhook)

	// Self or admin: checked by the handlers, which know the id.
	route("GET", "/v1/users/{id}", signedIn, s.getUser)
	route("PATCH", "/v1/users/{id}", signedIn, s.leaderOnly(s.patchUser))
	route("DELETE", "/v1/users/{id}", signedIn, s.leaderOnly(s.deleteUser))
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.NotFound = s.handle("not found", func(ctx *fasthttp.RequestCtx) {
		writeError(ctx, newError("not_found", "no such route: "+string(ctx.Method())+" "+string(ctx.Path())))
	})
	r.MethodNotAllowed = s.handle("method not allowed", func(ctx *fasthttp.RequestCtx) {
		writeError(ctx, newError("method_not_allowed", "method "+string(ctx.Method())+" is not allowed on "+string(ctx.Path())))
	})
	r.PanicHandler = func(ctx *fasthttp.RequestCtx, v any) {
		s.reqLog(ctx).Error("handler panicked", slog.String("route", string(ctx.Path())), slog.Any("panic", v))
		writeError(ctx, newError("internal", "internal error"))
	}
	return r.Handler
}

// routeMetrics are one route's request counters (by status) and latency.
// Counters are created on first use and then found without locking.
type routeMetrics struct {
	route    string
	latency  *metrics.PrometheusHistogram
	byStatus [600]atomic.Pointer[metrics.Counter]
}

// latencyBuckets are the request latency histogram's: standard Prometheus
// `le` buckets (any Prometheus computes quantiles from them), 50 µs to 13 s.
var latencyBuckets = metrics.ExponentialBuckets(50e-6, 2, 19)

func (s *Server) routeMetrics(route string) *routeMetrics {
	if m, ok := s.routesStats.Load(route); ok {
		return m.(*routeMetrics)
	}
	m := &routeMetrics{
		route:   route,
		latency: s.set.GetOrCreatePrometheusHistogramExt(`troupe_http_request_duration_seconds{route="`+route+`"}`, latencyBuckets),
	}
	actual, _ := s.routesStats.LoadOrStore(route, m)
	return actual.(*routeMetrics)
}

func (m *routeMetrics) count(set *metrics.Set, status int) {
	if status < 100 || status >= len(m.byStatus) {
		status = 599
	}
	c := m.byStatus[status].Load()
	if c == nil {
		// GetOrCreate returns the same counter to racing first users.
		c = set.GetOrCreateCounter(`troupe_http_requests_total{route="` + m.route + `",status="` + strconv.Itoa(status) + `"}`)
		m.byStatus[status].Store(c)
	}
	c.Inc()
}

// untracedRoutes get no span even with tracing on.
var untracedRoutes = map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true}

// handle wraps a handler with metrics and, with tracing on, its span.
func (s *Server) handle(route string, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	m := s.routeMetrics(route)
	_, path, _ := strings.Cut(route, " ") // "" for "not found"…
	// Probes and scrapes come every few seconds and tell nothing a trace
	// would: they are not traced.
	traced := s.tracer != nil && !untracedRoutes[route]
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		var span trace.Span
		if traced {
			span = s.startRequestSpan(ctx, route)
		}
		if leader := s.node.LeaderHTTP(); leader != "" {
			ctx.Response.Header.Set("X-Troupe-Leader", leader)
		}
		h(ctx)
		m.latency.UpdateDuration(start)
		m.count(s.set, ctx.Response.StatusCode())
		if span != nil {
			s.endRequestSpan(ctx, span, path)
		}
	}
}

// parseError answers requests fasthttp could not read, in the API's shape.
func (s *Server) parseError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		writeError(ctx, newError("payload_too_large", fmt.Sprintf("the request body exceeds %d bytes", s.cfg.MaxBodyBytes)))
		return
	}
	var small *fasthttp.ErrSmallBuffer
	if errors.As(err, &small) {
		writeError(ctx, newError("request_header_fields_too_large", fmt.Sprintf("the request line and headers exceed %d bytes", s.cfg.MaxHeaderBytes)))
		return
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		// No request arrived within the read timeout: most often a
		// connection a client's pool opened and never used. An answer
		// would reach that client as a response to a request it has not
		// sent yet, so the connection is closed without one, as fasthttp
		// closes an idle keep-alive connection.
		_ = ctx.Conn().Close()
		return
	}
	writeError(ctx, newError("bad_request", "cannot parse the HTTP request"))
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	return s.http.Serve(s.conns.listener(ln))
}

// Shutdown stops accepting connections and waits for in-flight requests
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	// WebSockets are hijacked: the HTTP server does not wait for them.
	s.ws.CloseAll()
	err := s.http.ShutdownWithContext(ctx)
	s.presence.Close()
	for _, remove := range s.unhook {
		remove()
	}
	s.streams.Close()
	s.conns.wait()
	s.fwd.close()
	s.cmdFwd.close()
	if s.global != nil {
		s.global.close()
	}
	return err
}

func (s *Server) deadline() time.Time { return time.Now().Add(s.cfg.RequestTimeout) }

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...), slog.String("component", "http"))
}
