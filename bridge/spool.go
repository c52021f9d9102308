package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/ingress"
	"github.com/hookbridge/hookbridge/bridge/metrics"
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
func openSpool(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (*spool, error) {
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
		q, err := local.OpenQueue(sp.Dir, local.Options{MaxBytes: sp.MaxBytes, MaxEvents: sp.MaxEvents, ObserveSync: m.SpoolSynced, Log: log})
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		rec := q.Recovery()
		logRecovery(log, sp.Dir, rec)
		if err := m.WatchSpoolLog(func() int64 { return q.LogStats().Bytes }, rec.TornWrites); err != nil {
			return nil, errors.Join(err, q.Close())
		}
		return &spool{queue: q, close: q.Close, where: []any{"backend", sp.Backend, "dir", sp.Dir}}, nil
	}
	return nil, nil
}

// logRecovery says what opening the local spool found: always how much
// it replayed, and loudly what it cut off or migrated.
func logRecovery(log *slog.Logger, dir string, r local.Recovery) {
	if r.Migrated > 0 || r.Unreadable > 0 {
		log.Warn("spool: moved the records of an earlier version's spool file into the log; the old file is kept beside it, delete it once you are satisfied",
			"dir", dir, "migrated", r.Migrated, "kept_as", local.LegacyFile+local.MigratedSuffix)
	}
	if r.Unreadable > 0 {
		log.Error("spool: records of the earlier version's spool file could not be read and were not migrated; they stay in the old file",
			"dir", dir, "unreadable", r.Unreadable, "file", local.LegacyFile+local.MigratedSuffix)
	}
	if r.TornWrites > 0 {
		log.Warn("spool: cut off the end of the log, a write that a crash interrupted; it was never acknowledged, so nothing answered 200 is lost",
			"dir", dir, "torn_writes", r.TornWrites, "bytes", r.TornBytes)
	}
	log.Info("spool log replayed", "dir", dir, "segments", r.Segments, "bytes", r.Bytes,
		"waiting", r.Pending, "dead_letters", r.Dead, "took", r.Took.Round(time.Millisecond))
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
