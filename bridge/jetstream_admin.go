package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/spool"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// JetStreamAdmin is `hookbridge spool ls|replay|drop` on the jetstream
// spool: the same operations as on a local spool file, on the shared
// stream, while the replicas run. A record's Seq is its stream sequence.
type JetStreamAdmin struct {
	j       *JetStreamSpool
	timeout time.Duration
}

// OpenJetStreamAdmin connects to the stream cfg.Spool names. Unlike a
// replica it creates nothing: a stream that does not exist is an error.
func OpenJetStreamAdmin(ctx context.Context, cfg *Config) (*JetStreamAdmin, error) {
	log := slog.New(slog.DiscardHandler)
	j, err := connectJetStream(cfg, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Spool.ConnectTimeout)
	defer cancel()
	if j.stream, err = j.js.Stream(ctx, cfg.Spool.Stream); err != nil {
		j.nc.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("spool: no stream %s on %s: no replica has started with this config yet", cfg.Spool.Stream, natssink.Redact(cfg.Spool.URL))
		}
		return nil, fmt.Errorf("spool: stream %s: %w", cfg.Spool.Stream, err)
	}
	return &JetStreamAdmin{j: j, timeout: cfg.Server.PublishTimeout}, nil
}

func (a *JetStreamAdmin) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.timeout)
}

// Stats counts what waits and the dead letters.
func (a *JetStreamAdmin) Stats() (spool.Stats, error) {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.j.readStats(ctx)
}

// Pending returns up to n messages waiting for sink, after stream
// sequence after, oldest first.
func (a *JetStreamAdmin) Pending(sink string, after uint64, n int) ([]spool.Record, error) {
	return a.scan(a.j.cfg.SubjectPrefix+".q."+sink+".>", after, n)
}

// Dead returns up to n dead letters after stream sequence after, oldest
// first.
func (a *JetStreamAdmin) Dead(after uint64, n int) ([]spool.Record, error) {
	return a.scan(a.j.cfg.SubjectPrefix+".dead.>", after, n)
}

// scan reads up to n records on subjects matching filter, from sequence
// after+1 on.
func (a *JetStreamAdmin) scan(filter string, after uint64, n int) ([]spool.Record, error) {
	var recs []spool.Record
	for len(recs) < n {
		ctx, cancel := a.ctx()
		m, err := a.j.stream.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(filter))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return recs, fmt.Errorf("stream %s: %w", a.j.cfg.Stream, err)
		}
		r, err := spool.Unmarshal(m.Sequence, m.Data)
		if err != nil {
			r = spool.Record{Seq: m.Sequence, Reason: "unreadable: " + err.Error()}
		}
		recs = append(recs, r)
		after = m.Sequence
	}
	return recs, nil
}

// Replay puts dead letters back in line: each goes to its sink's
// partition with its attempts reset, and leaves the dead letters once NATS
// stored it. Sequences that are not dead letters are skipped.
func (a *JetStreamAdmin) Replay(seqs []uint64) (int, error) {
	done := 0
	for _, seq := range seqs {
		m, err := a.lookup(seq, a.j.cfg.SubjectPrefix+".dead.")
		if err != nil {
			return done, err
		}
		if m == nil {
			continue
		}
		r, err := spool.Unmarshal(seq, m.Data)
		if err != nil {
			return done, fmt.Errorf("dead letter %d is not a spool record (drop it): %w", seq, err)
		}
		r.Attempts, r.NextTry, r.LastError, r.Reason, r.Died = 0, time.Time{}, "", "", time.Time{}
		r.Received = time.Now() // retry.max_age counts from here, or it would die again at once
		rec := jsRecord{
			subject: a.j.subject(r.Sink, a.j.partition(r.Message.Key, r.Message.ID)),
			// Its own id: the original's may still be in the stream's
			// duplicates window.
			msgID: r.Message.ID + ":" + r.Sink + ":" + r.Message.Target + ":replay:" + strconv.FormatUint(seq, 10),
			rec:   r,
		}
		ctx, cancel := a.ctx()
		err = a.j.append(ctx, []jsRecord{rec})
		if err == nil {
			err = a.j.stream.DeleteMsg(ctx, seq)
		}
		cancel()
		if err != nil {
			return done, fmt.Errorf("replay %d: %w", seq, err)
		}
		done++
	}
	return done, nil
}

// Drop deletes dead letters; other sequences are skipped.
func (a *JetStreamAdmin) Drop(seqs []uint64) (int, error) {
	return a.drop(seqs, a.j.cfg.SubjectPrefix+".dead.")
}

// DropPending deletes messages waiting for sink; other sequences are
// skipped.
func (a *JetStreamAdmin) DropPending(sink string, seqs []uint64) (int, error) {
	return a.drop(seqs, a.j.cfg.SubjectPrefix+".q."+sink+".")
}

// PurgePending deletes every message waiting for sink at once, and
// returns how many were waiting just before.
func (a *JetStreamAdmin) PurgePending(sink string) (int, error) {
	before, err := a.Stats()
	if err != nil {
		return 0, err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	if err := a.j.stream.Purge(ctx, jetstream.WithPurgeSubject(a.j.cfg.SubjectPrefix+".q."+sink+".>")); err != nil {
		return 0, fmt.Errorf("stream %s: %w", a.j.cfg.Stream, err)
	}
	return before.BySink[sink], nil
}

func (a *JetStreamAdmin) drop(seqs []uint64, prefix string) (int, error) {
	done := 0
	for _, seq := range seqs {
		m, err := a.lookup(seq, prefix)
		if err != nil {
			return done, err
		}
		if m == nil {
			continue
		}
		ctx, cancel := a.ctx()
		err = a.j.stream.DeleteMsg(ctx, seq)
		cancel()
		if err != nil {
			return done, fmt.Errorf("drop %d: %w", seq, err)
		}
		done++
	}
	return done, nil
}

// lookup reads the message at seq if its subject starts with prefix, or
// returns nil.
func (a *JetStreamAdmin) lookup(seq uint64, prefix string) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := a.ctx()
	defer cancel()
	m, err := a.j.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", a.j.cfg.Stream, err)
	}
	if !strings.HasPrefix(m.Subject, prefix) {
		return nil, nil
	}
	return m, nil
}

// Close closes the connection.
func (a *JetStreamAdmin) Close() error { return a.j.Close() }
