package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookbridge/hookbridge/bridge/spool"
	"github.com/hookbridge/hookbridge/sinks"
)

// Spooler is the Deliverer behind delivery: spool. Deliver appends an
// event's deliveries to the durable spool and returns once they are
// fsynced; one dispatcher per sink then publishes them in the background,
// retrying with backoff, and removes each only after its sink confirmed
// it. Deliveries of sync routes are published before Deliver returns, as
// SyncDeliverer does.
type Spooler struct {
	store       *spool.Store
	sync        *SyncDeliverer
	dispatchers map[string]*dispatcher
	log         *slog.Logger

	stop    context.CancelFunc
	running sync.WaitGroup
	counters
}

// NewSpooler builds the dispatchers for cfg's sinks over store. Start
// them with Start.
func NewSpooler(cfg *Config, store *spool.Store, open map[string]sinks.Sink, log *slog.Logger, now func() time.Time) *Spooler {
	if now == nil {
		now = time.Now
	}
	s := &Spooler{store: store, sync: NewSyncDeliverer(open), dispatchers: map[string]*dispatcher{}, log: log}
	for _, sc := range cfg.Sinks {
		d := &dispatcher{
			name: sc.Name, sink: open[sc.Name], store: store, retry: sc.Retry,
			publishTimeout: cfg.Server.PublishTimeout, wake: make(chan struct{}, 1),
			log: log.With("sink", sc.Name), now: now, spooler: s,
		}
		if dl := sc.DeadLetter; dl != nil {
			d.deadSink, d.deadTarget = dl.Sink, dl.Target
		}
		s.dispatchers[sc.Name] = d
	}
	return s
}

// Start runs the dispatchers until Stop. Whatever the spool holds from
// before is delivered first: the dispatchers read it in order.
func (s *Spooler) Start(ctx context.Context) {
	ctx, s.stop = context.WithCancel(ctx)
	if names, err := s.store.Sinks(); err == nil {
		for _, name := range names {
			if _, ok := s.dispatchers[name]; !ok {
				s.log.Warn("the spool holds messages for a sink the config no longer has: they wait until it returns (hookbridge spool ls shows them)", "sink", name)
			}
		}
	}
	for _, d := range s.dispatchers {
		s.running.Go(func() { d.run(ctx) })
	}
}

// Deliver implements Deliverer.
func (s *Spooler) Deliver(ctx context.Context, ev *Event, deliveries []Delivery) error {
	var now []Delivery
	records := make([]spool.Record, 0, len(deliveries))
	received := time.Now()
	for _, d := range deliveries {
		if d.Sync {
			now = append(now, d)
			continue
		}
		records = append(records, recordOf(ev, d, received))
	}
	if len(records) > 0 {
		if err := s.store.Append(records); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		for _, r := range records {
			s.wake(r.Sink)
		}
	}
	if len(now) > 0 {
		return s.sync.Deliver(ctx, ev, now)
	}
	return nil
}

// IsFull reports whether err says the spool is full.
func IsFull(err error) bool { return errors.Is(err, spool.ErrFull) }

// wakeAll makes every dispatcher look at the spool now.
func (s *Spooler) wakeAll() {
	for name := range s.dispatchers {
		s.wake(name)
	}
}

func (s *Spooler) wake(sink string) {
	if d, ok := s.dispatchers[sink]; ok {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// Drain waits until the spool holds nothing for the configured sinks, or
// ctx ends; the dispatchers keep delivering meanwhile. It reports what is
// left.
func (s *Spooler) Drain(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := s.store.Stats()
		if err != nil {
			return err
		}
		left := 0
		for name := range s.dispatchers {
			left += st.BySink[name]
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d messages left in the spool for the next start", left)
		case <-tick.C:
		}
	}
}

// Stop ends the dispatchers and waits for them. What they had not
// delivered stays in the spool.
func (s *Spooler) Stop() {
	if s.stop != nil {
		s.stop()
	}
	s.running.Wait()
}

// dispatcher delivers one sink's spooled messages.
//
// Order: messages are read in spool order, and at most one message per
// task id is in flight or waiting for a retry at a time, so a task's
// events reach the sink in the order they were accepted even across
// retries; other tasks' messages go on meanwhile. Messages without a task
// id are not ordered.
type dispatcher struct {
	name           string
	sink           sinks.Sink
	store          *spool.Store
	retry          RetryConfig
	deadSink       string // "" when dead letters stay in the spool only
	deadTarget     string
	publishTimeout time.Duration
	wake           chan struct{}
	log            *slog.Logger
	now            func() time.Time
	spooler        *Spooler
}

// Limits of one delivery round: how many messages one Publish carries, and
// how far the spool is read looking for due ones.
const (
	roundMessages = 256
	roundScan     = 10000
)

func (d *dispatcher) run(ctx context.Context) {
	storeFailures := 0
	for ctx.Err() == nil {
		ready, next, err := d.collect()
		if err != nil {
			storeFailures++
			d.log.Error("read the spool", "err", err)
			next = d.now().Add(backoff(d.retry, storeFailures))
		} else {
			storeFailures = 0
		}
		if len(ready) > 0 {
			d.deliver(ctx, ready)
			continue
		}
		var timer *time.Timer
		var due <-chan time.Time // nil: nothing waits, sleep until woken
		if !next.IsZero() {
			timer = time.NewTimer(max(next.Sub(d.now()), time.Millisecond))
			due = timer.C
		}
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// collect returns the messages to publish now, and when the next waiting
// one is due (zero if none waits).
func (d *dispatcher) collect() (due []spool.Record, next time.Time, err error) {
	now := d.now()
	taken := map[string]bool{} // task ids that already have their first message in this round
	picked := 0
	choose := func(key []byte, nextTry time.Time) (take, stop bool) {
		if len(key) > 0 {
			if taken[string(key)] {
				return false, false // an earlier message of this task goes first
			}
			taken[string(key)] = true
		}
		if nextTry.After(now) {
			if next.IsZero() || nextTry.Before(next) {
				next = nextTry
			}
			return false, false
		}
		picked++
		return true, picked == roundMessages
	}
	var after uint64
	for scanned := 0; len(due) < roundMessages && scanned < roundScan; {
		recs, last, looked, err := d.store.PendingDue(d.name, after, 512, choose)
		if err != nil {
			return nil, time.Time{}, err
		}
		if looked == 0 {
			break
		}
		due = append(due, recs...)
		after, scanned = last, scanned+looked
	}
	return due, next, nil
}

func (d *dispatcher) deliver(ctx context.Context, recs []spool.Record) {
	err := publishRecords(ctx, d.sink, d.publishTimeout, recs)
	now := d.now()
	var done []uint64
	for i, r := range recs {
		e := sinks.MessageErr(err, i)
		switch {
		case e == nil:
			done = append(done, r.Seq)
		case ctx.Err() != nil:
			// Shutting down: not the message's fault, not an attempt.
		default:
			if reason := d.retry.giveUp(e, r.Attempts+1, now.Sub(r.Received)); reason != "" {
				d.kill(r, reason)
				continue
			}
			d.spooler.countRetry(d.name)
			if err := d.store.Retry(d.name, r.Seq, now.Add(backoff(d.retry, r.Attempts+1)), e.Error()); err != nil {
				d.log.Error("record a failed attempt in the spool", "seq", r.Seq, "err", err)
			}
			if r.Attempts == 0 {
				d.log.Warn("publish failed; retrying from the spool", "id", r.Message.ID, "target", r.Message.Target, "err", e)
			}
		}
	}
	// Removed with the next commit rather than waited for: a crash before
	// it publishes them again, a duplicate, never a loss.
	d.store.DoneLater(d.name, done)
}

// kill dead-letters r: it moves to the spool's dead letters and, when the
// sink has a dead_letter target, a copy carrying the reason is queued for
// that target in the same transaction.
func (d *dispatcher) kill(r spool.Record, reason string) {
	var forward *spool.Record
	if d.deadSink != "" && !r.DeadLetter {
		m := deadLetterCopy(r.Message, d.deadTarget, d.name, reason)
		forward = &spool.Record{Sink: d.deadSink, Message: m, Received: d.now(), DeadLetter: true}
	}
	if err := d.store.Kill(d.name, r.Seq, reason, forward); err != nil {
		d.log.Error("dead-letter a message in the spool", "seq", r.Seq, "err", err)
		return
	}
	d.spooler.countDead(d.name)
	d.log.Warn("message dead-lettered", "id", r.Message.ID, "target", r.Message.Target,
		"attempts", r.Attempts+1, "reason", reason, "dead_letter_sink", d.deadSink)
	if forward != nil {
		d.spooler.wake(d.deadSink)
	}
}

// SpoolDeliverer is what a generation runs behind delivery: spool: the
// local Spooler or the JetStreamSpooler.
type SpoolDeliverer interface {
	Deliverer
	// Start runs the dispatchers until Stop.
	Start(ctx context.Context)
	// Stop ends the dispatchers and waits for them; what they had not
	// delivered stays in the spool.
	Stop()
	// Drain waits until this replica has nothing left to deliver, or ctx
	// ends.
	Drain(ctx context.Context) error
	// DeadLetters and Retries count since start.
	DeadLetters() uint64
	Retries() uint64
	// wakeAll makes every dispatcher look for work now.
	wakeAll()
}

// counters counts a spooler's retries and dead letters, in metrics too.
type counters struct {
	metrics *Metrics      // nil in unit tests
	dead    atomic.Uint64 // messages dead-lettered since start
	retries atomic.Uint64 // failed publish attempts that will be retried, since start
}

// DeadLetters returns how many messages were dead-lettered since start.
func (c *counters) DeadLetters() uint64 { return c.dead.Load() }

// Retries returns how many failed publishes were scheduled for a retry
// since start.
func (c *counters) Retries() uint64 { return c.retries.Load() }

func (c *counters) countRetry(sink string) {
	c.retries.Add(1)
	if c.metrics != nil {
		c.metrics.retries.WithLabelValues(sink).Inc()
	}
}

func (c *counters) countDead(sink string) {
	c.dead.Add(1)
	if c.metrics != nil {
		c.metrics.deadLetters.WithLabelValues(sink).Inc()
	}
}

// recordOf is the spool record of ev's delivery d, accepted at received.
func recordOf(ev *Event, d Delivery, received time.Time) spool.Record {
	return spool.Record{
		Sink:     d.Sink,
		Message:  sinks.Message{Target: d.Target, Key: ev.TaskID, ID: ev.ID, Attrs: ev.Attrs, Body: ev.JSON},
		Received: received,
	}
}

// publishRecords is a dispatcher's one publish of a round, for both
// spools: recs' messages to sink, within timeout.
func publishRecords(ctx context.Context, sink sinks.Sink, timeout time.Duration, recs []spool.Record) error {
	if sink == nil {
		return errors.New("no such sink in the config")
	}
	msgs := make([]sinks.Message, len(recs))
	for i, r := range recs {
		msgs[i] = r.Message
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return sink.Publish(ctx, msgs)
}

// giveUp returns why a message that failed with e on its attempt-th
// attempt, age after its webhook was accepted, is dead-lettered now, or
// "" to retry it.
func (r RetryConfig) giveUp(e error, attempt int, age time.Duration) string {
	switch {
	case sinks.IsPermanent(e):
		return "the sink refuses it: " + e.Error()
	case r.MaxAttempts > 0 && attempt >= r.MaxAttempts:
		return fmt.Sprintf("undelivered after %d attempts: %v", attempt, e)
	case age >= r.MaxAge:
		return fmt.Sprintf("undelivered after max_age %v: %v", r.MaxAge, e)
	}
	return ""
}

// deadLetterCopy is m readdressed to a dead-letter target, carrying which
// sink gave up on it and why, as attributes and, since the body is the
// structured CloudEvent, in the body too, for sinks that carry no headers
// (files).
func deadLetterCopy(m sinks.Message, target, sink, reason string) sinks.Message {
	m.Target = target
	extra := []sinks.Attr{{Name: "deadlettersink", Value: sink}, {Name: "deadletterreason", Value: reason}}
	m.Attrs = append(append([]sinks.Attr(nil), m.Attrs...), extra...)
	if len(m.Body) > 1 && m.Body[0] == '{' {
		body := []byte{'{'}
		for _, a := range extra {
			body = AppendQuote(body, a.Name)
			body = append(body, ':')
			body = AppendQuote(body, a.Value)
			body = append(body, ',')
		}
		m.Body = append(body, m.Body[1:]...)
	}
	return m
}

// backoff is the wait after the n-th failure: min_backoff doubled n-1
// times, capped at max_backoff, less up to half of it at random so that
// retries of many messages spread out.
func backoff(r RetryConfig, n int) time.Duration {
	d := r.MinBackoff
	for i := 1; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.MaxBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/2+1))
}
