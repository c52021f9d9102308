package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/hookbridge/hookbridge/bridge/spool"
	"github.com/hookbridge/hookbridge/sinks"
)

// Service is a running hookbridge: its sinks, router and webhook server,
// built from one Config. cmd/hookbridge only parses flags and signals
// around it, so tests can run the whole path in-process.
type Service struct {
	Config  *Config
	Router  *Router
	Ingress *Ingress
	Sinks   map[string]sinks.Sink
	// Spooler delivers spooled events; nil when no route uses the spool.
	Spooler *Spooler

	store  *spool.Store
	log    *slog.Logger
	server *http.Server
	ln     net.Listener
	served chan error
}

// Start opens the sinks, builds the router and ingress and starts serving
// webhooks on cfg.Server.Listen. Stop it with Shutdown.
func Start(ctx context.Context, cfg *Config, log *slog.Logger) (*Service, error) {
	router, err := NewRouter(cfg.Routes)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return nil, fmt.Errorf("webhook listener: %w", err)
	}
	var store *spool.Store
	if cfg.UsesSpool() {
		store, err = OpenSpool(cfg)
		if err != nil {
			ln.Close()
			return nil, err
		}
	}
	opened, err := OpenSinks(ctx, cfg, log)
	if err != nil {
		ln.Close()
		return nil, errors.Join(err, closeStore(store))
	}
	var deliverer Deliverer = NewSyncDeliverer(opened)
	var spooler *Spooler
	if store != nil {
		spooler = NewSpooler(cfg, store, opened, log, nil)
		deliverer = spooler
	}
	ingress, err := NewIngress(cfg, router, deliverer, log, nil)
	if err != nil {
		ln.Close()
		return nil, errors.Join(err, CloseSinks(ctx, opened), closeStore(store))
	}
	if spooler != nil {
		spooler.Start(context.WithoutCancel(ctx))
	}
	s := &Service{
		Config: cfg, Router: router, Ingress: ingress, Sinks: opened, Spooler: spooler,
		store: store, log: log, ln: ln, served: make(chan error, 1),
		server: &http.Server{
			Handler:           ingress,
			ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
			ReadTimeout:       cfg.Server.ReadTimeout,
			WriteTimeout:      cfg.Server.WriteTimeout,
			IdleTimeout:       cfg.Server.IdleTimeout,
			MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
	go func() { s.served <- s.server.Serve(ln) }()
	for _, row := range router.Table() {
		log.Info("route", "status", row.Status, "route", row.Route, "sink", row.Sink, "target", row.Target)
	}
	log.Info("hookbridge listening", "addr", ln.Addr().String(), "sources", len(cfg.Sources), "sinks", len(cfg.Sinks))
	return s, nil
}

// Addr is the webhook listener's address.
func (s *Service) Addr() net.Addr { return s.ln.Addr() }

// Done receives the server's error if it stops serving on its own, such as
// a listener failure.
func (s *Service) Done() <-chan error { return s.served }

// Shutdown stops accepting webhooks and waits for those in flight; with a
// spool it keeps delivering until the spool is empty or ctx ends, leaving
// the rest for the next start; then it closes the sinks.
func (s *Service) Shutdown(ctx context.Context) error {
	err := s.server.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("webhooks still in flight at the shutdown timeout: %w", err)
	}
	var drainErr error
	if s.Spooler != nil {
		if drainErr = s.Spooler.Drain(ctx); drainErr != nil {
			s.log.Warn("shutdown timeout reached with messages in the spool", "err", drainErr)
			drainErr = nil // kept durably: not a failure
		}
		s.Spooler.Stop()
	}
	return errors.Join(err, drainErr, CloseSinks(context.WithoutCancel(ctx), s.Sinks), closeStore(s.store))
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
