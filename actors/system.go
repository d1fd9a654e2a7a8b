// Package actors holds troupe's protoactor actors: each owns a storage
// value and alone changes it. The FSM (package cluster) hands them
// commands in log order; HTTP handlers ask them for reads. Nothing here
// speaks HTTP or Raft.
package actors

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/asynkron/protoactor-go/actor"
)

// System is one node's actor system with its logging and metrics.
type System struct {
	sys    *actor.ActorSystem
	root   *actor.RootContext
	log    *slog.Logger
	closed atomic.Bool
	disp   *workerDispatcher

	panics      *metrics.Counter
	deadLetters *metrics.Counter
	// Messages sent to state actors and not yet taken from a mailbox, and
	// the number of live state actors.
	mailboxDepth atomic.Int64
	actorCount   atomic.Int64
}

// NewSystem starts an actor system that logs through logger (protoactor's
// own logging included, dead letters counted instead of logged) and
// reports into set.
func NewSystem(logger *slog.Logger, set *metrics.Set) *System {
	s := &System{
		log:         logger,
		panics:      set.NewCounter(`troupe_actor_panics_total`),
		deadLetters: set.NewCounter(`troupe_actor_dead_letters_total`),
	}
	set.NewGauge(`troupe_actor_mailbox_depth`, func() float64 { return float64(s.mailboxDepth.Load()) })
	set.NewGauge(`troupe_actors`, func() float64 { return float64(s.actorCount.Load()) })
	protoLog := slog.New(&protoHandler{inner: logger.Handler().WithAttrs([]slog.Attr{slog.String("component", "actor")}), deadLetters: s.deadLetters})
	s.sys = actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return protoLog }),
		actor.WithDeadLetterRequestLogging(false),
	)
	s.root = s.sys.Root
	s.disp = newWorkerDispatcher(0, 4096, 300)
	return s
}

// Shutdown stops the actor system. Callers stop their actors first.
// It is safe to call more than once.
func (s *System) Shutdown() {
	if s.closed.CompareAndSwap(false, true) {
		s.sys.Shutdown()
		s.disp.stop()
	}
}

// spawn starts a top-level actor that restarts on failure, indefinitely:
// state actors keep their state outside the actor value (see shardActor),
// so a restart loses nothing, and they are never stopped by supervision.
func (s *System) spawn(producer actor.Producer) *actor.PID {
	return s.spawnOn(s.disp, producer)
}

// spawnInline is spawn for an actor whose mailbox is run by the goroutine
// that sends to it while it is idle, rather than by a worker: see
// inlineDispatcher.
func (s *System) spawnInline(producer actor.Producer) *actor.PID {
	return s.spawnOn(inlineDispatcher{}, producer)
}

func (s *System) spawnOn(d actor.Dispatcher, producer actor.Producer) *actor.PID {
	props := actor.PropsFromProducer(producer,
		actor.WithDispatcher(d),
		actor.WithGuardian(actor.NewOneForOneStrategy(0x7fffffff, 0, func(reason any) actor.Directive {
			s.panics.Inc()
			s.log.Error("actor panicked; restarting it", slog.Any("reason", reason))
			return actor.RestartDirective
		})),
	)
	return s.root.Spawn(props)
}

// stop stops the actors and waits until they have.
func (s *System) stop(pids []*actor.PID) {
	futures := make([]*actor.Future, 0, len(pids))
	for _, p := range pids {
		futures = append(futures, s.root.StopFuture(p))
	}
	for _, f := range futures {
		_ = f.Wait()
	}
}

// protoHandler adapts protoactor's logging: dead letters are counted, not
// logged (a stopped actor receiving late messages is routine), and
// protoactor's chatty lifecycle lines go to debug.
type protoHandler struct {
	inner       slog.Handler
	deadLetters *metrics.Counter
}

func (h *protoHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l) || l == slog.LevelInfo
}

func (h *protoHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "DeadLetter") {
		h.deadLetters.Inc()
		return nil
	}
	if r.Level == slog.LevelInfo {
		r.Level = slog.LevelDebug
	}
	if !h.inner.Enabled(ctx, r.Level) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h *protoHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return &protoHandler{inner: h.inner.WithAttrs(a), deadLetters: h.deadLetters}
}

func (h *protoHandler) WithGroup(name string) slog.Handler {
	return &protoHandler{inner: h.inner.WithGroup(name), deadLetters: h.deadLetters}
}
