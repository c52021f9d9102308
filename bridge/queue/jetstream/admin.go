package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// Admin is `hookbridge spool ls|replay|drop` on the shared stream: the same
// operations as on a local spool file, while the replicas run. A record's
// Seq is its stream sequence.
type Admin struct {
	c      *Conn
	layout layout
	stream jetstream.Stream
}

var _ queue.Admin = (*Admin)(nil)

// OpenAdmin finds the stream c's config names. Unlike a replica it creates
// nothing: a stream that does not exist is an error.
func (c *Conn) OpenAdmin(ctx context.Context) (*Admin, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	st, err := c.js.Stream(ctx, c.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("spool: no stream %s on %s: no replica has started with this config yet", c.cfg.Stream, c.cfg.Redacted())
	}
	if err != nil {
		return nil, fmt.Errorf("spool: stream %s: %w", c.cfg.Stream, err)
	}
	return &Admin{c: c, layout: layout{prefix: c.cfg.SubjectPrefix, partitions: c.cfg.Partitions}, stream: st}, nil
}

// bound limits one request to NATS.
func (a *Admin) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.c.timeout)
}

// Stats implements queue.Admin.
func (a *Admin) Stats(ctx context.Context) (queue.Stats, error) {
	ctx, cancel := a.bound(ctx)
	defer cancel()
	return readStats(ctx, a.stream, a.layout, a.c.cfg.Stream)
}

// Pending implements queue.Admin.
func (a *Admin) Pending(ctx context.Context, sink string, after uint64, n int) ([]queue.Record, error) {
	return a.scan(ctx, a.layout.waitingFor(sink), after, n)
}

// Dead implements queue.Admin.
func (a *Admin) Dead(ctx context.Context, after uint64, n int) ([]queue.Record, error) {
	return a.scan(ctx, a.layout.anyDead(), after, n)
}

// scan reads up to n records on subjects matching filter, from sequence
// after+1 on.
func (a *Admin) scan(ctx context.Context, filter string, after uint64, n int) ([]queue.Record, error) {
	var recs []queue.Record
	for len(recs) < n {
		mctx, cancel := a.bound(ctx)
		m, err := a.stream.GetMsg(mctx, after+1, jetstream.WithGetMsgSubject(filter))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return recs, fmt.Errorf("stream %s: %w", a.c.cfg.Stream, err)
		}
		r, err := queue.Unmarshal(m.Sequence, m.Data)
		if err != nil {
			r = queue.Record{Seq: m.Sequence, Reason: "unreadable: " + err.Error()}
		}
		recs = append(recs, r)
		after = m.Sequence
	}
	return recs, nil
}

// Replay implements queue.Admin: each dead letter goes to its sink's lane
// with its attempts reset and its max_age counting afresh, and leaves the
// dead letters once NATS stored it.
func (a *Admin) Replay(ctx context.Context, seqs []uint64) (int, error) {
	done := 0
	for _, seq := range seqs {
		m, err := a.lookup(ctx, seq, a.layout.deadPrefix())
		if err != nil {
			return done, err
		}
		if m == nil {
			continue
		}
		r, err := queue.Unmarshal(seq, m.Data)
		if err != nil {
			return done, fmt.Errorf("dead letter %d is not a spool record (drop it): %w", seq, err)
		}
		r.Attempts, r.NextTry, r.LastError, r.Reason, r.Died = 0, time.Time{}, "", "", time.Time{}
		r.Received = time.Now() // retry.max_age counts from here, or it would die again at once
		out := outgoing{subject: a.layout.subjectOf(&r), id: replayMsgID(&r, seq), data: queue.Marshal(&r)}
		mctx, cancel := a.bound(ctx)
		err = a.c.publish(mctx, []outgoing{out})
		if err == nil {
			err = a.stream.DeleteMsg(mctx, seq)
		}
		cancel()
		if err != nil {
			return done, fmt.Errorf("replay %d: %w", seq, err)
		}
		done++
	}
	return done, nil
}

// Drop implements queue.Admin.
func (a *Admin) Drop(ctx context.Context, seqs []uint64) (int, error) {
	return a.drop(ctx, seqs, a.layout.deadPrefix())
}

// DropPending implements queue.Admin.
func (a *Admin) DropPending(ctx context.Context, sink string, seqs []uint64) (int, error) {
	return a.drop(ctx, seqs, a.layout.waitingPrefix(sink))
}

// PurgePending implements queue.Admin: the sink's subjects are purged at
// once, and the count is of what waited just before.
func (a *Admin) PurgePending(ctx context.Context, sink string) (int, error) {
	before, err := a.Stats(ctx)
	if err != nil {
		return 0, err
	}
	pctx, cancel := a.bound(ctx)
	defer cancel()
	if err := a.stream.Purge(pctx, jetstream.WithPurgeSubject(a.layout.waitingFor(sink))); err != nil {
		return 0, fmt.Errorf("stream %s: %w", a.c.cfg.Stream, err)
	}
	return before.BySink[sink], nil
}

// Shared implements queue.Admin: the running replicas deliver what is
// replayed.
func (a *Admin) Shared() bool { return true }

// Close implements queue.Admin.
func (a *Admin) Close() error { return a.c.Close() }

func (a *Admin) drop(ctx context.Context, seqs []uint64, prefix string) (int, error) {
	done := 0
	for _, seq := range seqs {
		m, err := a.lookup(ctx, seq, prefix)
		if err != nil {
			return done, err
		}
		if m == nil {
			continue
		}
		dctx, cancel := a.bound(ctx)
		err = a.stream.DeleteMsg(dctx, seq)
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
func (a *Admin) lookup(ctx context.Context, seq uint64, prefix string) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := a.bound(ctx)
	defer cancel()
	m, err := a.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", a.c.cfg.Stream, err)
	}
	if !strings.HasPrefix(m.Subject, prefix) {
		return nil, nil
	}
	return m, nil
}
