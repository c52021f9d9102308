package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookbridge/hookbridge/bridge/spool"
	"github.com/hookbridge/hookbridge/sinks"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// Service is a running hookbridge: its webhook and admin listeners, the
// spool, and the current generation of config, router, ingress and sinks.
// cmd/hookbridge only parses flags and signals around it, so tests can run
// the whole path in-process.
//
// Reload builds a new generation beside the running one and swaps it in
// atomically: requests in flight finish on the generation they started
// on, and sinks whose configuration did not change are carried over.
type Service struct {
	// Metrics is the service's Prometheus registry and metrics.
	Metrics *Metrics
	// SkipProbe makes reloads open new sinks without probing their brokers
	// (serve -skip-probe).
	SkipProbe bool

	log      *slog.Logger
	server   *http.Server
	admin    *http.Server
	ln       net.Listener
	adminLn  net.Listener
	served   chan error
	store    *spool.Store    // the local spool; nil unless a route uses it
	jsSpool  *JetStreamSpool // the jetstream spool (or replay bucket); nil unless used
	gen      atomic.Pointer[generation]
	slots    chan struct{} // one per webhook being handled: server.max_concurrent_requests
	reloadMu sync.Mutex
	draining atomic.Bool
}

// generation is everything one config builds.
type generation struct {
	cfg     *Config
	router  *Router
	ingress *Ingress
	sinks   map[string]sinks.Sink // instrumented
	spooler SpoolDeliverer        // nil without a spool

	// mu is held for reading by every request served by this generation;
	// a reload takes it for writing to wait for them before closing what
	// the new generation does not keep.
	mu      sync.RWMutex
	retired bool
}

// Start opens the spool and the sinks, builds the router and ingress and
// starts serving webhooks on cfg.Server.Listen and the admin endpoints on
// cfg.Server.AdminListen. Stop it with Shutdown.
func Start(ctx context.Context, cfg *Config, log *slog.Logger) (*Service, error) {
	s := &Service{Metrics: NewMetrics(), log: log, served: make(chan error, 2),
		slots: make(chan struct{}, cfg.Server.MaxConcurrentRequests)}
	var err error
	if s.ln, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
		return nil, fmt.Errorf("webhook listener: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.Server.AdminListen); err != nil {
		s.ln.Close()
		return nil, fmt.Errorf("admin listener (server.admin_listen): %w", err)
	}
	if cfg.Server.TLS.Enabled() {
		certs, err := newCertReloader(cfg.Server.TLS, log)
		if err != nil {
			s.closeListeners()
			return nil, err
		}
		s.ln = tls.NewListener(s.ln, certs.tlsConfig())
	}
	switch {
	case cfg.Spool.Backend == SpoolJetStream && (cfg.UsesSpool() || cfg.Server.ReplayCache == ReplayNATS):
		if s.jsSpool, err = OpenJetStreamSpool(ctx, cfg, log); err != nil {
			s.closeListeners()
			return nil, err
		}
	case cfg.UsesSpool():
		if s.store, err = OpenSpool(cfg); err != nil {
			s.closeListeners()
			return nil, err
		}
	}
	if cfg.UsesSpool() {
		s.Metrics.registerSpool(s.spoolStats)
	}
	g, err := s.build(ctx, cfg, nil)
	if err != nil {
		s.closeListeners()
		return nil, errors.Join(err, s.closeSpool())
	}
	s.gen.Store(g)
	if g.spooler != nil {
		if st, err := s.stats(ctx); err == nil {
			where := []any{"dir", cfg.Spool.Dir}
			if s.jsSpool != nil {
				where = []any{"stream", cfg.Spool.Stream, "nats", natssink.Redact(cfg.Spool.URL), "partitions", cfg.Spool.Partitions}
			}
			log.Info("spool open", append(where, "backend", cfg.Spool.Backend, "waiting", st.Pending, "dead_letters", st.Dead)...)
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
	log.Info("hookbridge listening", "addr", s.ln.Addr().String(), "admin", s.adminLn.Addr().String(),
		"delivery", cfg.Delivery, "sources", len(cfg.Sources), "sinks", len(cfg.Sinks))
	return s, nil
}

// build makes a generation for cfg. Sinks of prev whose configuration is
// unchanged are reused; the others are opened anew.
func (s *Service) build(ctx context.Context, cfg *Config, prev *generation) (*generation, error) {
	router, err := NewRouter(cfg.Routes)
	if err != nil {
		return nil, err
	}
	if cfg.UsesSpool() && s.store == nil && s.jsSpool == nil {
		return nil, errors.New("delivery: spool needs the spool, which opens at start: restart hookbridge to use it")
	}
	if s.SkipProbe {
		cfg.SkipProbes()
	}
	g := &generation{cfg: cfg, router: router, sinks: map[string]sinks.Sink{}}
	toOpen := &Config{Routes: cfg.Routes}
	for _, sc := range cfg.Sinks {
		if old, ok := prev.sink(sc); ok {
			g.sinks[sc.Name] = old
		} else {
			toOpen.Sinks = append(toOpen.Sinks, sc)
		}
	}
	opened, err := OpenSinks(ctx, toOpen, s.log)
	if err != nil {
		return nil, err
	}
	for name, sk := range opened {
		g.sinks[name] = newInstrumented(sk, name, s.Metrics)
	}
	var d Deliverer = NewSyncDeliverer(g.sinks)
	switch {
	case s.store != nil:
		sp := NewSpooler(cfg, s.store, g.sinks, s.log, nil)
		sp.metrics = s.Metrics
		g.spooler, d = sp, sp
	case s.jsSpool != nil && s.jsSpool.stream != nil:
		// Like the local spool's, the dispatchers run even when no route
		// spools any more: what the stream holds still goes out.
		sp := NewJetStreamSpooler(cfg, s.jsSpool, g.sinks, s.log)
		sp.metrics = s.Metrics
		g.spooler, d = sp, sp
	}
	if g.ingress, err = NewIngress(cfg, router, d, s.log, nil); err != nil {
		return nil, errors.Join(err, CloseSinks(ctx, opened))
	}
	g.ingress.setMetrics(s.Metrics)
	if s.jsSpool != nil && s.jsSpool.replay != nil {
		g.ingress.shareReplay(s.jsSpool.replay)
	}
	// Remembered event ids outlive a reload, or a retry after it would be
	// published again.
	if prev != nil {
		for path, src := range g.ingress.sources {
			if old, ok := prev.ingress.sources[path]; ok && old.name == src.name && old.replay != nil && src.replay != nil && old.replay.window == src.replay.window {
				src.replay = old.replay
			}
		}
	}
	return g, nil
}

// sink returns prev's sink for sc if its kind and options are unchanged.
func (g *generation) sink(sc SinkConfig) (sinks.Sink, bool) {
	if g == nil {
		return nil, false
	}
	for _, old := range g.cfg.Sinks {
		if old.Name == sc.Name && old.Type == sc.Type && reflect.DeepEqual(old.Options, sc.Options) {
			sk, ok := g.sinks[sc.Name]
			return sk, ok
		}
	}
	return nil, false
}

// ServeHTTP serves a webhook on the current generation.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		// Full: answer at once rather than pile up goroutines and memory.
		g := s.gen.Load()
		g.ingress.count(g.ingress.sources[r.URL.Path], ResultOverloaded)
		w.Header().Set("Retry-After", g.ingress.retryAfter)
		writeError(w, http.StatusServiceUnavailable, "too many webhooks at once; retry later")
		return
	}
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
func (s *Service) Reload(ctx context.Context, cfg *Config) error {
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
	if g.spooler != nil {
		g.spooler.wakeAll() // what old requests appended after the swap
	}
	var closeErrs []error
	for name, sk := range old.sinks {
		if g.sinks[name] != sk {
			if err := sk.Close(context.WithoutCancel(ctx)); err != nil {
				closeErrs = append(closeErrs, fmt.Errorf("close sink %q: %w", name, err))
			}
		}
	}
	s.Metrics.reloads.WithLabelValues("success").Inc()
	s.Metrics.reloadOK.Set(1)
	if len(restart) > 0 {
		s.log.Warn("config reloaded, but these settings take effect only at the next start", "keys", strings.Join(restart, ", "))
	}
	s.log.Info("config reloaded", "routes", len(cfg.Routes), "sinks", len(cfg.Sinks), "sources", len(cfg.Sources))
	s.logRoutes(g)
	return errors.Join(closeErrs...)
}

// reloadFailed records a reload that left the running config in place.
func (s *Service) reloadFailed(err error) {
	s.Metrics.reloads.WithLabelValues("failure").Inc()
	s.Metrics.reloadOK.Set(0)
	s.log.Error("config reload failed; the running config stays", "err", err)
}

func (s *Service) logRoutes(g *generation) {
	for _, row := range g.router.Table() {
		s.log.Info("route", "status", row.Status, "route", row.Route, "sink", row.Sink, "target", row.Target)
	}
}

// Addr is the webhook listener's address.
func (s *Service) Addr() net.Addr { return s.ln.Addr() }

// AdminAddr is the admin listener's address.
func (s *Service) AdminAddr() net.Addr { return s.adminLn.Addr() }

// Config returns the running configuration.
func (s *Service) Config() *Config { return s.gen.Load().cfg }

// Sinks returns the running sinks by name (instrumented: see Unwrap).
func (s *Service) Sinks() map[string]sinks.Sink { return s.gen.Load().sinks }

// Spooler returns the running spooler, nil without a spool.
func (s *Service) Spooler() SpoolDeliverer { return s.gen.Load().spooler }

// Ingress returns the running webhook handler.
func (s *Service) Ingress() *Ingress { return s.gen.Load().ingress }

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
	adminErr := s.admin.Close()
	return errors.Join(err, adminErr, CloseSinks(context.WithoutCancel(ctx), g.sinks), s.closeSpool())
}

func (s *Service) closeListeners() {
	s.ln.Close()
	s.adminLn.Close()
}

// adminHandler serves the admin endpoints.
func (s *Service) adminHandler(withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc(HealthzPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, []byte("{\"status\":\"ok\"}\n"))
	})
	mux.HandleFunc(ReadyzPath, func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, []byte("{\"status\":\"ready\"}\n"))
	})
	if withPprof {
		mux.HandleFunc(PprofPath, pprof.Index)
		mux.HandleFunc(PprofPath+"cmdline", pprof.Cmdline)
		mux.HandleFunc(PprofPath+"profile", pprof.Profile)
		mux.HandleFunc(PprofPath+"symbol", pprof.Symbol)
		mux.HandleFunc(PprofPath+"trace", pprof.Trace)
	}
	return mux
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
	switch {
	case s.jsSpool != nil && g.spooler != nil:
		if err := s.jsSpool.Ready(context.Background()); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	case s.store != nil:
		st, err := s.store.Stats()
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if c := g.cfg.Spool; (c.MaxEvents > 0 && st.Pending >= c.MaxEvents) || (c.MaxBytes > 0 && st.PendingBytes >= c.MaxBytes) {
			return fmt.Errorf("spool is full: %d messages, %d bytes waiting", st.Pending, st.PendingBytes)
		}
	}
	var errs []error
	for _, r := range g.cfg.Routes {
		if r.Delivery != DeliverySync {
			continue
		}
		for _, t := range r.To {
			if err := sinkReady(g.sinks[t.Sink]); err != nil {
				errs = append(errs, fmt.Errorf("sink %q: %w", t.Sink, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Service) spoolStats() (spoolStats, error) {
	st, err := s.stats(context.Background())
	return spoolStats{Pending: st.Pending, PendingBytes: st.PendingBytes, Oldest: st.Oldest, Dead: st.Dead}, err
}

// stats reads the spool's counts, from whichever backend runs.
func (s *Service) stats(ctx context.Context) (spool.Stats, error) {
	if s.jsSpool != nil {
		return s.jsSpool.Stats(ctx)
	}
	return s.store.Stats()
}

// closeSpool closes whichever spool is open.
func (s *Service) closeSpool() error {
	return errors.Join(closeStore(s.store), s.jsSpool.Close())
}

// UsesSpool reports whether any route delivers through the spool.
func (c *Config) UsesSpool() bool {
	for _, r := range c.Routes {
		if r.Delivery == DeliverySpool {
			return true
		}
	}
	return false
}

// OpenSpool opens the spool cfg.Spool describes.
func OpenSpool(cfg *Config) (*spool.Store, error) {
	st, err := spool.Open(cfg.Spool.Dir, spool.Options{MaxBytes: cfg.Spool.MaxBytes, MaxEvents: cfg.Spool.MaxEvents})
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return st, nil
}

func closeStore(st *spool.Store) error {
	if st == nil {
		return nil
	}
	return st.Close()
}
