package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// Queue is the shared spool stream behind the queue.Queue interface.
type Queue struct {
	c         *Conn
	layout    layout
	stream    jetstream.Stream
	maxEvents int
	maxBytes  int64
	now       func() time.Time
	log       *slog.Logger
	// publish is the conn's publish, apart so that tests can make the
	// stream refuse writes.
	publish func(context.Context, []outgoing) error
	// failed is the last append that failed for a reason other than a
	// full stream (nil: none since one succeeded): readiness reports it
	// for failureHold.
	failed atomic.Pointer[appendFailure]

	statsMu sync.Mutex
	stats   queue.Stats // cached for a second: every gauge of a scrape asks
	statsAt time.Time

	mu        sync.Mutex
	receivers map[string]*receiver
}

var _ queue.Queue = (*Queue)(nil)

// Limits are the stream's limits: spool.max_events and spool.max_bytes.
type Limits struct {
	MaxEvents int
	MaxBytes  int64
}

// OpenQueue makes sure the stream exists with c's settings and limits,
// creating it or bringing an existing one to them, and returns it as a
// queue. now is its clock (nil: time.Now).
func (c *Conn) OpenQueue(ctx context.Context, limits Limits, now func() time.Time) (*Queue, error) {
	if now == nil {
		now = time.Now
	}
	q := &Queue{c: c, layout: layout{prefix: c.cfg.SubjectPrefix, partitions: c.cfg.Partitions},
		maxEvents: limits.MaxEvents, maxBytes: limits.MaxBytes, now: now, log: c.log,
		publish: c.publish, receivers: map[string]*receiver{}}
	if err := setUp(ctx, c.log, q.ensureStream); err != nil {
		return nil, err
	}
	return q, nil
}

// ensureStream creates the stream, or brings an existing one to the
// config's limits. The partition count is only changed while no message
// waits: messages laid out in the old count would otherwise lose their
// order.
func (q *Queue) ensureStream(ctx context.Context) error {
	c := q.c.cfg
	want := jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "hookbridge's shared spool: one message per event and sink target",
		Subjects:    []string{q.layout.all()},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     int64(q.maxEvents),
		MaxBytes:    q.maxBytes,
		MaxAge:      c.MaxAge,
		Duplicates:  c.Duplicates,
		Replicas:    c.Replicas,
		Storage:     q.c.storage(),
		Metadata:    map[string]string{partitionsKey: strconv.Itoa(c.Partitions)},
	}
	js := q.c.js
	st, err := js.Stream(ctx, c.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = js.Stream(ctx, c.Stream) // another replica was first
		}
	}
	if err != nil {
		return fmt.Errorf("spool: stream %s: %w", c.Stream, err)
	}
	q.stream = st
	have := st.CachedInfo().Config
	if have.Retention != jetstream.WorkQueuePolicy || len(have.Subjects) != 1 || have.Subjects[0] != want.Subjects[0] {
		return fmt.Errorf("spool: stream %s exists but is not hookbridge's (retention %v, subjects %v; want workqueue on %s): name another with spool.stream", c.Stream, have.Retention, have.Subjects, want.Subjects[0])
	}
	if p := have.Metadata[partitionsKey]; p != "" && p != want.Metadata[partitionsKey] {
		st, err := readStats(ctx, q.stream, q.layout, c.Stream)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if st.Pending > 0 {
			return fmt.Errorf("spool.partitions: stream %s holds %d waiting messages laid out in %s partitions; run with partitions: %s until it is empty, then change it", c.Stream, st.Pending, p, p)
		}
		q.log.Info("spool: the stream is empty; changing its partition count", "from", p, "to", c.Partitions)
		if err := q.dropLanesFrom(ctx, c.Partitions); err != nil {
			return err
		}
	}
	if !sameStreamConfig(have, want) {
		if q.stream, err = js.UpdateStream(ctx, want); err != nil {
			return fmt.Errorf("spool: update stream %s to the config's limits: %w", c.Stream, err)
		}
	}
	return nil
}

// dropLanesFrom deletes the consumers of lanes n and up, which a smaller
// partition count leaves without messages.
func (q *Queue) dropLanesFrom(ctx context.Context, n int) error {
	names := q.stream.ConsumerNames(ctx)
	var stale []string
	for name := range names.Name() {
		if p, ok := consumerLane(name); ok && p >= n {
			stale = append(stale, name)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("spool: list the stream's consumers: %w", err)
	}
	for _, name := range stale {
		if err := q.stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("spool: delete consumer %s of a partition no longer used: %w", name, err)
		}
	}
	return nil
}

// sameStreamConfig compares the settings hookbridge manages.
func sameStreamConfig(a, b jetstream.StreamConfig) bool {
	return a.MaxMsgs == b.MaxMsgs && a.MaxBytes == b.MaxBytes && a.MaxAge == b.MaxAge &&
		a.Duplicates == b.Duplicates && a.Replicas == b.Replicas && a.Storage == b.Storage &&
		a.Discard == b.Discard && a.Metadata[partitionsKey] == b.Metadata[partitionsKey]
}

// Append implements queue.Queue: each record goes to its task's lane under
// its message id, so that a repeat within the stream's duplicates window
// is stored once, and Append returns once NATS acknowledged them all
// (replicated, with replicas: 3).
func (q *Queue) Append(ctx context.Context, recs []queue.Record) error {
	msgs := make([]outgoing, len(recs))
	for i := range recs {
		msgs[i] = outgoing{subject: q.layout.subjectOf(&recs[i]), id: msgID(&recs[i]), data: queue.Marshal(&recs[i])}
	}
	err := q.publish(ctx, msgs)
	switch {
	case err == nil:
		if q.failed.Load() != nil {
			q.failed.Store(nil)
		}
	case !errors.Is(err, queue.ErrFull) && !errors.Is(err, context.Canceled):
		// A full stream is a limit Ready reports by itself; a cancelled
		// append says nothing of the stream. A publish that timed out
		// does: no PubAck within publish_timeout.
		q.failed.Store(&appendFailure{at: q.now(), err: err})
	}
	return err
}

// appendFailure is an append the stream refused.
type appendFailure struct {
	at  time.Time
	err error
}

// failureHold is how long after an append the stream refused (its
// server's disk full, no quorum, an I/O error) the queue reports itself
// not ready. A shared stream is not probed with writes of its own: after
// the hold, the next webhook's append is the probe, and a failing one
// starts the hold again.
const failureHold = 5 * time.Second

// Stats implements queue.Queue, reading the stream at most once a second.
func (q *Queue) Stats(ctx context.Context) (queue.Stats, error) {
	q.statsMu.Lock()
	defer q.statsMu.Unlock()
	if q.now().Sub(q.statsAt) < time.Second {
		return q.stats, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := readStats(ctx, q.stream, q.layout, q.c.cfg.Stream)
	if err != nil {
		return queue.Stats{}, err
	}
	q.stats, q.statsAt = st, q.now()
	return st, nil
}

// readStats counts the messages waiting for each sink, and the dead
// letters, from the stream's per-subject counts; Oldest is the first
// waiting message's time (dead letters, kept for days, do not count).
// PendingBytes is the whole stream's, dead letters included.
func readStats(ctx context.Context, stream jetstream.Stream, l layout, name string) (queue.Stats, error) {
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(l.all()))
	if err != nil {
		return queue.Stats{}, fmt.Errorf("stream %s: %w", name, err)
	}
	st := queue.Stats{BySink: map[string]int{}, PendingBytes: int64(info.State.Bytes)}
	for subj, n := range info.State.Subjects {
		switch sink, dead, ok := l.parse(subj); {
		case !ok:
		case dead:
			st.Dead += int(n)
		default:
			st.Pending += int(n)
			st.BySink[sink] += int(n)
		}
	}
	if st.Pending > 0 {
		first, err := stream.GetMsg(ctx, info.State.FirstSeq, jetstream.WithGetMsgSubject(l.anyWaiting()))
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return queue.Stats{}, fmt.Errorf("stream %s: the oldest waiting message: %w", name, err)
		}
		if first != nil {
			st.Oldest = first.Time
		}
	}
	return st, nil
}

// Ready implements queue.Queue: connected to NATS, and the stream not
// full.
func (q *Queue) Ready(ctx context.Context) error {
	if !q.c.nc.IsConnected() {
		return fmt.Errorf("not connected to the spool's NATS (%s)", q.c.nc.Status())
	}
	st, err := q.Stats(ctx)
	if err != nil {
		return err
	}
	if st.Pending+st.Dead >= q.maxEvents || st.PendingBytes >= q.maxBytes {
		return fmt.Errorf("spool stream %s is full: %d messages, %d bytes", q.c.cfg.Stream, st.Pending+st.Dead, st.PendingBytes)
	}
	if f := q.failed.Load(); f != nil {
		if since := q.now().Sub(f.at); since < failureHold {
			return fmt.Errorf("spool stream %s refused a write %s ago: %w", q.c.cfg.Stream, since.Round(time.Millisecond), f.err)
		}
	}
	return nil
}

// Shared implements queue.Queue: every replica delivers from the stream.
func (q *Queue) Shared() bool { return true }

// Receiver implements queue.Queue.
func (q *Queue) Receiver(sink string) queue.Receiver {
	q.mu.Lock()
	defer q.mu.Unlock()
	r, ok := q.receivers[sink]
	if !ok {
		// At most one message per lane is handed to any replica at a
		// time, so in never fills.
		r = &receiver{q: q, sink: sink, in: make(chan pulled, q.layout.partitions)}
		q.receivers[sink] = r
	}
	return r
}
