package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/ingress"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/bridge/queue/jetstream"
	"github.com/hookbridge/hookbridge/bridge/queue/local"
)

// spool is what the config's spool section opens at start and keeps
// across reloads: the queue behind delivery: spool, and with
// server.replay_cache: nats the replay bucket every replica shares.
type spool struct {
	queue  queue.Queue       // nil when no route spools at start
	replay *jetstream.Replay // nil unless server.replay_cache: nats
	where  []any             // where it is, for the log
	close  func() error      // what it opened
}

// openSpool opens what cfg's spool section is used for, or returns a
// spool holding nothing.
func openSpool(ctx context.Context, cfg *config.Config, log *slog.Logger) (*spool, error) {
	sp := cfg.Spool
	switch {
	case sp.Backend == config.SpoolJetStream && (cfg.UsesSpool() || cfg.Server.ReplayCache == config.ReplayNATS):
		conn, err := jetstream.Dial(sp.JetStream, cfg.Server.PublishTimeout, log)
		if err != nil {
			return nil, err
		}
		s := &spool{close: conn.Close, where: []any{"backend", sp.Backend, "stream", sp.JetStream.Stream,
			"nats", sp.JetStream.Redacted(), "partitions", sp.JetStream.Partitions}}
		if cfg.UsesSpool() {
			q, err := conn.OpenQueue(ctx, jetstream.Limits{MaxEvents: sp.MaxEvents, MaxBytes: sp.MaxBytes}, nil)
			if err != nil {
				return nil, errors.Join(err, conn.Close())
			}
			s.queue = q
		}
		if cfg.Server.ReplayCache == config.ReplayNATS {
			if s.replay, err = conn.OpenReplay(ctx, cfg.LongestReplayRetention()); err != nil {
				return nil, errors.Join(err, conn.Close())
			}
		}
		return s, nil
	case cfg.UsesSpool():
		q, err := local.OpenQueue(sp.Dir, local.Options{MaxBytes: sp.MaxBytes, MaxEvents: sp.MaxEvents})
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		return &spool{queue: q, close: q.Close, where: []any{"backend", sp.Backend, "dir", sp.Dir}}, nil
	}
	return nil, nil
}

// delivers reports whether s holds a queue to deliver from.
func (s *spool) delivers() bool { return s != nil && s.queue != nil }

// sharedReplay is the replay bucket, nil (an untyped nil interface) when
// there is none.
func (s *spool) sharedReplay() ingress.SharedReplay {
	if s == nil || s.replay == nil {
		return nil
	}
	return s.replay
}

// closeAll closes what s opened; nil does nothing.
func (s *spool) closeAll() error {
	if s == nil {
		return nil
	}
	return s.close()
}

// OpenSpoolAdmin opens the spool cfg names for hookbridge spool
// ls|replay|drop: the local file (while no hookbridge serves from it) or
// the shared stream (while the replicas run; it must exist).
func OpenSpoolAdmin(ctx context.Context, cfg *config.Config) (queue.Admin, error) {
	sp := cfg.Spool
	if sp.Backend != config.SpoolJetStream {
		a, err := local.OpenAdmin(sp.Dir, local.Options{MaxBytes: sp.MaxBytes, MaxEvents: sp.MaxEvents})
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		return a, nil
	}
	conn, err := jetstream.Dial(sp.JetStream, cfg.Server.PublishTimeout, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	a, err := conn.OpenAdmin(ctx)
	if err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	return a, nil
}
