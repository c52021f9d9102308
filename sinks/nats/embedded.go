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
	fatal := make(chan string, 1)
	srv.SetLoggerV2(serverLogger{log.With("component", "embedded-nats"), fatal}, false, false, false)
	go srv.Start()
	// Start gives up with a fatal log line, not an error, when it cannot
	// listen or start JetStream: watch for that rather than wait it out.
	deadline := time.Now().Add(startTimeout)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-fatal:
			srv.Shutdown()
			return nil, fmt.Errorf("nats: embedded server: %s: check embedded.listen (is the port in use?) and embedded.store_dir", msg)
		default:
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			return nil, fmt.Errorf("nats: embedded server did not start listening on %s within %v: is the port in use? change embedded.listen", cfg.Listen, startTimeout)
		}
	}
	return srv, nil
}

// startTimeout bounds the embedded server's start-up.
const startTimeout = 10 * time.Second

// serverLogger routes nats-server's log to slog: its notices (start-up
// banners) at debug, its warnings and errors as such.
// Its first fatal message goes to fatal too.
type serverLogger struct {
	log   *slog.Logger
	fatal chan<- string
}

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l serverLogger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
