package nats

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded starts an in-process nats-server with JetStream, the same
// server a standalone deployment runs, so the default config needs nothing
// else installed.
func startEmbedded(cfg EmbeddedConfig, log *slog.Logger) (*server.Server, error) {
	hp, err := listenAddr(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats: embedded.listen: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "hookbridge-embedded",
		Host:       hp.host,
		Port:       hp.port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true, // hookbridge handles signals itself
	})
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{log.With("component", "embedded-nats")}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats: embedded server did not start listening on %s within 10s: is the port in use? change embedded.listen", cfg.Listen)
	}
	return srv, nil
}

// serverLogger routes nats-server's log to slog: its notices (start-up
// banners) at debug, its warnings and errors as such.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
