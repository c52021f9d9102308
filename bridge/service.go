// Package bridge is hookbridge's composition: it builds a generation (the
// router, the webhook handler, the sinks and the delivery) from a config,
// starts the webhook and admin listeners, reloads and shuts down. Every
// stage lives in a package of its own under bridge/; this one only wires
// them.
package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/net/netutil"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/delivery"
	"github.com/hookbridge/hookbridge/bridge/ingress"
	"github.com/hookbridge/hookbridge/bridge/metrics"
	"github.com/hookbridge/hookbridge/bridge/redact"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/telemetry"
	"github.com/hookbridge/hookbridge/sinks"
)

// Service is a running hookbridge: its webhook and admin listeners, the
// spool, and the current generation of config, router, handler and
// sinks. cmd/hookbridge only parses flags and signals around it, so tests
// can run the whole path in-process.
//
// Reload builds a new generation beside the running one and swaps it in
// atomically: requests in flight finish on the generation they started
// on, and sinks whose configuration did not change are carried over.
type Service struct {
	opts     Options
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *metrics.Metrics
	server   *http.Server
	admin    *http.Server
	ln       net.Listener
	adminLn  net.Listener
	served   chan error
	spool    *spool // nil unless the config's spool is used
	gen      atomic.Pointer[generation]
	budget   *ingress.Budget // what requests in flight may hold, across reloads
	reloadMu sync.Mutex
	draining atomic.Bool
}

// Options are a Service's settings beside its config.
type Options struct {
	// Log receives the service's log; nil discards it.
	Log *slog.Logger
	// SkipProbe opens every sink, at start and at each reload, without
	// contacting its broker (serve -skip-probe).
	SkipProbe bool
	// Scrubber, when set, is told the secrets of every config the
	// service loads (cfg's at Start, each reload's), so that the
	// scrubbing Log is wrapped in (Scrubber.Handler) knows them before
	// anything built from them can be logged. Secrets are never
	// forgotten: a rotated-out one stays scrubbed.
	Scrubber *redact.Scrubber
	// Version is hookbridge's version, reported as service.version on
	// spans.
	Version string
}

// generation is everything one config builds.
type generation struct {
	cfg     *config.Config
	router  *route.Router
	ingress *ingress.Handler
	sinks   map[string]sinks.Sink // as opened: what a reload carries over and closes
	counted map[string]sinks.Sink // the same, counted in metrics: what delivery publishes to
	spooler *delivery.Spool       // nil without a spool
	// telemetry traces the generation's webhooks and publishes: the
	// previous generation's when the telemetry block is unchanged but
	// for task_id_attribute, a new provider otherwise.
	telemetry *telemetry.Provider

	// mu is held for reading by every request served by this generation;
	// a reload takes it for writing to wait for them before closing what
	// the new generation does not keep.
	mu      sync.RWMutex
	retired bool
}

// Start opens the spool and the sinks, builds the router and the webhook
// handler and starts serving webhooks on cfg.Server.Listen and the admin
// endpoints on cfg.Server.AdminListen. Stop it with Shutdown.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*Service, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	log := opts.Log
	if opts.Scrubber != nil {
		opts.Scrubber.Add(cfg.Secrets()...)
	}
	s := &Service{opts: opts, log: log, registry: prometheus.NewRegistry(), served: make(chan error, 2),
		budget: ingress.NewBudget(cfg.Server)}
	var err error
	if s.metrics, err = metrics.New(s.registry); err != nil {
		return nil, err
	}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if s.ln, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
		return nil, fmt.Errorf("webhook listener: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.Server.AdminListen); err != nil {
		s.ln.Close()
		return nil, fmt.Errorf("admin listener (server.admin_listen): %w", err)
	}
	// Past max_connections, connections wait in the kernel's accept
	// backlog: each open one costs its header buffer and goroutine
	// whatever it sends (config.Server.WorstCaseMemory).
	s.ln = netutil.LimitListener(s.ln, cfg.Server.MaxConnections)
	if cfg.Server.TLS.Enabled() {
		certs, err := newCertReloader(cfg.Server.TLS, log)
		if err != nil {
			s.closeListeners()
			return nil, err
		}
		s.ln = tls.NewListener(s.ln, certs.tlsConfig())
	} else {
		s.ln = ingress.ScanFraming(s.ln)
	}
	if s.spool, err = openSpool(ctx, cfg, log, s.metrics); err != nil {
		s.closeListeners()
		return nil, err
	}
	if s.spool.delivers() {
		if err := s.metrics.WatchSpool(s.spool.queue.Stats); err != nil {
			s.closeListeners()
			return nil, errors.Join(err, s.spool.closeAll())
		}
	}
	g, err := s.build(ctx, cfg, nil)
	if err != nil {
		s.closeListeners()
		return nil, errors.Join(err, s.spool.closeAll())
	}
	s.gen.Store(g)
	if g.spooler != nil {
		if st, err := s.spool.queue.Stats(ctx); err == nil {
			log.Info("spool open", append(s.spool.where, "waiting", st.Pending, "dead_letters", st.Dead)...)
		}
		g.spooler.Start(context.WithoutCancel(ctx))
	}

	s.server = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ConnContext:       ingress.ConnContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s.admin = &http.Server{
		Handler:           s.adminHandler(cfg.Server.Pprof),
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() { s.served <- s.server.Serve(s.ln) }()
	go func() { s.served <- s.admin.Serve(s.adminLn) }()
	s.logRoutes(g)
	for _, w := range cfg.MemoryWarnings(config.MemoryLimits()) {
		log.Warn(w)
	}
	log.Info("hookbridge listening", "addr", s.ln.Addr().String(), "admin", s.adminLn.Addr().String(),
		"delivery", cfg.Delivery, "sources", len(cfg.Sources), "sinks", len(cfg.Sinks), "tracing", g.telemetry.Describe())
	return s, nil
}

// build makes a generation for cfg. Sinks of prev whose configuration is
// unchanged are reused; the others are opened anew.
func (s *Service) build(ctx context.Context, cfg *config.Config, prev *generation) (*generation, error) {
	if cfg.UsesSpool() && !s.spool.delivers() {
		return nil, errors.New("delivery: spool needs the spool, which opens at start: restart hookbridge to use it")
	}
	if s.opts.SkipProbe {
		cfg.SkipProbes()
	}
	g := &generation{cfg: cfg, router: route.New(cfg.Rules()), sinks: map[string]sinks.Sink{}, counted: map[string]sinks.Sink{}}
	if prev != nil && sameExport(prev.cfg.Telemetry, cfg.Telemetry) {
		g.telemetry = prev.telemetry
	} else {
		var err error
		if g.telemetry, err = telemetry.New(ctx, cfg.Telemetry, telemetry.Options{Version: s.opts.Version}); err != nil {
			return nil, err
		}
	}
	var opened []string
	closeOpened := func() error {
		var errs []error
		for _, name := range opened {
			errs = append(errs, closeSink(context.WithoutCancel(ctx), name, g.sinks[name]))
		}
		if prev == nil || g.telemetry != prev.telemetry {
			errs = append(errs, g.telemetry.Shutdown(context.WithoutCancel(ctx)))
		}
		return errors.Join(errs...)
	}
	for _, sc := range cfg.Sinks {
		if old, ok := prev.sameSink(sc); ok {
			g.sinks[sc.Name], g.counted[sc.Name] = prev.sinks[sc.Name], old
			continue
		}
		sk, err := sc.Options.Open(ctx, cfg.TargetTemplates(sc.Name), s.log.With("sink", sc.Name))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("sink %q: %w", sc.Name, err), closeOpened())
		}
		opened = append(opened, sc.Name)
		g.sinks[sc.Name], g.counted[sc.Name] = sk, s.metrics.Instrument(sc.Name, sk)
	}
	tracing := delivery.NewTracing(g.telemetry.Tracer(), cfg)
	var d ingress.Deliverer = delivery.NewSync(g.counted, tracing)
	if s.spool.delivers() {
		// Like the queue, the dispatchers outlive a reload to sync
		// delivery: what the queue still holds goes out.
		g.spooler = delivery.NewSpool(s.spool.queue, cfg.Sinks, g.counted, delivery.Options{
			PublishTimeout: cfg.Server.PublishTimeout, Metrics: s.metrics, Log: s.log, Tracing: tracing})
		d = g.spooler
	}
	var prevIngress *ingress.Handler
	if prev != nil {
		prevIngress = prev.ingress
	}
	var err error
	g.ingress, err = ingress.New(cfg, ingress.Options{Router: g.router, Deliverer: d, Metrics: s.metrics,
		Shared: s.spool.sharedReplay(), Previous: prevIngress, Budget: s.budget, Tracer: g.telemetry.Tracer(), Log: s.log})
	if err != nil {
		return nil, errors.Join(err, closeOpened())
	}
	return g, nil
}

// sameExport reports whether two telemetry blocks export the same way:
// equal but for task_id_attribute, which a generation applies on its
// own.
func sameExport(a, b config.Telemetry) bool {
	if (a.SamplerArg == nil) != (b.SamplerArg == nil) || (a.SamplerArg != nil && *a.SamplerArg != *b.SamplerArg) {
		return false
	}
	a.SamplerArg, b.SamplerArg = nil, nil
	a.TaskIDAttribute = b.TaskIDAttribute
	return a == b
}

// sameSink returns the counted sink of g for sc if its type and options
// are unchanged.
func (g *generation) sameSink(sc config.Sink) (sinks.Sink, bool) {
	if g == nil {
		return nil, false
	}
	for _, old := range g.cfg.Sinks {
		if old.Name == sc.Name && old.Type == sc.Type && reflect.DeepEqual(old.Options, sc.Options) {
			sk, ok := g.counted[sc.Name]
			return sk, ok
		}
	}
	return nil, false
}

// ServeHTTP serves a webhook on the current generation. The handler
// takes its read and delivery slots from the service's budget.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for {
		g := s.gen.Load()
		g.mu.RLock()
		if g.retired {
			// Swapped out between the load and the lock: use the new one.
			g.mu.RUnlock()
			continue
		}
		g.ingress.ServeHTTP(w, r)
		g.mu.RUnlock()
		return
	}
}

// Reload swaps in a generation built from cfg. Settings that only take
// effect at start (listeners, the spool) keep their running values, with a
// warning. On error the running generation stays.
func (s *Service) Reload(ctx context.Context, cfg *config.Config) error {
	if s.opts.Scrubber != nil {
		s.opts.Scrubber.Add(cfg.Secrets()...) // before anything built from them can log
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.gen.Load()
	var restart []string
	keep := func(key string, changed bool) {
		if changed {
			restart = append(restart, key)
		}
	}
	keep("server.listen", cfg.Server.Listen != old.cfg.Server.Listen)
	keep("server.admin_listen", cfg.Server.AdminListen != old.cfg.Server.AdminListen)
	keep("server.pprof", cfg.Server.Pprof != old.cfg.Server.Pprof)
	keep("server.tls", cfg.Server.TLS != old.cfg.Server.TLS)
	keep("server.max_concurrent_requests", cfg.Server.MaxConcurrentRequests != old.cfg.Server.MaxConcurrentRequests)
	keep("server.max_connections", cfg.Server.MaxConnections != old.cfg.Server.MaxConnections)
	keep("server.max_concurrent_reads", cfg.Server.MaxConcurrentReads != old.cfg.Server.MaxConcurrentReads)
	keep("server.max_buffered_bytes", cfg.Server.MaxBufferedBytes != old.cfg.Server.MaxBufferedBytes)
	keep("server.body_read_timeout", cfg.Server.BodyReadTimeout != old.cfg.Server.BodyReadTimeout)
	keep("server.min_body_rate", cfg.Server.MinBodyRate != old.cfg.Server.MinBodyRate)
	keep("spool", cfg.Spool != old.cfg.Spool)
	keep("server.replay_cache", cfg.Server.ReplayCache != old.cfg.Server.ReplayCache)
	cfg.Server.Listen, cfg.Server.AdminListen, cfg.Server.Pprof, cfg.Server.TLS, cfg.Spool, cfg.Server.ReplayCache =
		old.cfg.Server.Listen, old.cfg.Server.AdminListen, old.cfg.Server.Pprof, old.cfg.Server.TLS, old.cfg.Spool, old.cfg.Server.ReplayCache

	g, err := s.build(ctx, cfg, old)
	if err != nil {
		s.reloadFailed(err)
		return err
	}
	// One dispatcher per sink at a time: the old ones stop before the new
	// ones start. What they had in flight is retried by the new ones.
	if old.spooler != nil {
		old.spooler.Stop()
	}
	if g.spooler != nil {
		g.spooler.Start(context.WithoutCancel(ctx))
	}
	s.gen.Store(g)

	// Wait for the requests still on the old generation, then close the
	// sinks only it used.
	old.mu.Lock()
	old.retired = true
	old.mu.Unlock()
	var closeErrs []error
	for name, sk := range old.sinks {
		if g.sinks[name] != sk {
			closeErrs = append(closeErrs, closeSink(context.WithoutCancel(ctx), name, sk))
		}
	}
	if g.telemetry != old.telemetry {
		// The old generation's requests and dispatchers are done: flush
		// their spans to where they were going.
		closeErrs = append(closeErrs, old.telemetry.Shutdown(context.WithoutCancel(ctx)))
		s.log.Info("tracing changed", "tracing", g.telemetry.Describe())
	}
	s.metrics.Reloaded(true)
	if len(restart) > 0 {
		s.log.Warn("config reloaded, but these settings take effect only at the next start", "keys", strings.Join(restart, ", "))
	}
	s.log.Info("config reloaded", "routes", len(cfg.Routes), "sinks", len(cfg.Sinks), "sources", len(cfg.Sources))
	s.logRoutes(g)
	return errors.Join(closeErrs...)
}

// reloadFailed records a reload that left the running config in place.
func (s *Service) reloadFailed(err error) {
	s.metrics.Reloaded(false)
	s.log.Error("config reload failed; the running config stays", "err", err)
}

func (s *Service) logRoutes(g *generation) {
	for _, row := range g.router.Table() {
		attrs := []any{"status", row.Status, "route", row.Route, "sink", row.Sink, "target", row.Target, "sync", row.Sync}
		if row.When != "" {
			attrs = append(attrs, "when", row.When)
		}
		s.log.Info("route", attrs...)
	}
}

// Addr is the webhook listener's address.
func (s *Service) Addr() net.Addr { return s.ln.Addr() }

// AdminAddr is the admin listener's address.
func (s *Service) AdminAddr() net.Addr { return s.adminLn.Addr() }

// Config returns the running configuration.
func (s *Service) Config() *config.Config { return s.gen.Load().cfg }

// Sinks returns the running sinks by name, as their packages opened them.
func (s *Service) Sinks() map[string]sinks.Sink { return s.gen.Load().sinks }

// Spooler returns the running spool delivery, nil without a spool.
func (s *Service) Spooler() *delivery.Spool { return s.gen.Load().spooler }

// Ingress returns the running webhook handler.
func (s *Service) Ingress() *ingress.Handler { return s.gen.Load().ingress }

// Done receives a server's error if it stops serving on its own, such as
// a listener failure.
func (s *Service) Done() <-chan error { return s.served }

// Shutdown stops accepting webhooks and waits for those in flight; with a
// spool it keeps delivering until the spool is empty or ctx ends, leaving
// the rest for the next start; then it closes the sinks.
func (s *Service) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	err := s.server.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("webhooks still in flight at the shutdown timeout: %w", err)
	}
	g := s.gen.Load()
	if g.spooler != nil {
		if derr := g.spooler.Drain(ctx); derr != nil {
			s.log.Warn("shutdown timeout reached with messages in the spool", "err", derr)
		}
		g.spooler.Stop()
	}
	errs := []error{err, s.admin.Close()}
	for name, sk := range g.sinks {
		errs = append(errs, closeSink(context.WithoutCancel(ctx), name, sk))
	}
	// Last, so the spans of the webhooks drained above are flushed.
	return errors.Join(append(errs, s.spool.closeAll(), g.telemetry.Shutdown(ctx))...)
}

// closeSink closes a sink, flushing what it holds.
func closeSink(ctx context.Context, name string, sk sinks.Sink) error {
	if err := sk.Close(ctx); err != nil {
		return fmt.Errorf("close sink %q: %w", name, err)
	}
	return nil
}

func (s *Service) closeListeners() {
	s.ln.Close()
	s.adminLn.Close()
}

// Ready reports why the service should not take webhooks now, or nil: it
// is shutting down, the spool cannot take more, or a sink that sync routes
// wait for has lost its broker (spooled sinks may be down: the spool
// rides that out).
func (s *Service) Ready() error {
	if s.draining.Load() {
		return errDraining
	}
	g := s.gen.Load()
	if s.spool.delivers() {
		if err := s.spool.queue.Ready(context.Background()); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	var errs []error
	for _, r := range g.cfg.Routes {
		if r.Delivery != config.DeliverySync {
			continue
		}
		for _, t := range r.To {
			if rd, ok := g.sinks[t.Sink].(sinks.Readier); ok {
				if err := rd.Ready(); err != nil {
					errs = append(errs, fmt.Errorf("sink %q: %w", t.Sink, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

var errDraining = errors.New("shutting down")
