package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

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
	opened, err := OpenSinks(ctx, cfg, log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	ingress, err := NewIngress(cfg, router, NewSyncDeliverer(opened), log, nil)
	if err != nil {
		ln.Close()
		return nil, errors.Join(err, CloseSinks(ctx, opened))
	}
	s := &Service{
		Config: cfg, Router: router, Ingress: ingress, Sinks: opened,
		log: log, ln: ln, served: make(chan error, 1),
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

// Shutdown stops accepting webhooks, waits for those in flight until ctx
// ends, then closes the sinks.
func (s *Service) Shutdown(ctx context.Context) error {
	err := s.server.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("webhooks still in flight at the shutdown timeout: %w", err)
	}
	return errors.Join(err, CloseSinks(context.WithoutCancel(ctx), s.Sinks))
}
