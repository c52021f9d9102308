package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/metrics"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/sinks"
)

// Spool delivers through a queue.Queue (delivery: spool). Deliver appends
// an event's deliveries to the queue and returns once they are kept; one
// dispatcher per sink then publishes them in the background, retrying
// with backoff, and removes each only after its sink confirmed it.
// Deliveries of sync routes are published before Deliver returns, as Sync
// does.
//
// The same dispatcher serves every queue: the local file and the shared
// JetStream stream differ only behind queue.Receiver.
type Spool struct {
	queue       queue.Queue
	sync        *Sync
	dispatchers map[string]*dispatcher
	opts        Options

	stop    context.CancelFunc
	running sync.WaitGroup

	dead    atomic.Uint64 // messages dead-lettered since start
	retries atomic.Uint64 // failed publishes that will be retried, since start
}

// Options are a Spool's settings beside its sinks.
type Options struct {
	// PublishTimeout bounds one Publish to a sink (server.publish_timeout).
	PublishTimeout time.Duration
	// Metrics counts retries and dead letters; nil counts nothing.
	Metrics *metrics.Metrics
	// Log receives the dispatchers' warnings; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Tracing makes the producer spans of publishes; nil makes none.
	Tracing *Tracing
}

// NewSpool builds a dispatcher for each of the configured sinks over q,
// publishing to open (by sink name). Start them with Start.
func NewSpool(q queue.Queue, configured []config.Sink, open map[string]sinks.Sink, opts Options) *Spool {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Spool{queue: q, sync: NewSync(open, opts.Tracing), dispatchers: map[string]*dispatcher{}, opts: opts}
	for _, sc := range configured {
		d := &dispatcher{name: sc.Name, sink: open[sc.Name], receiver: q.Receiver(sc.Name), retry: sc.Retry,
			log: opts.Log.With("sink", sc.Name), spool: s}
		if dl := sc.DeadLetter; dl != nil {
			d.deadSink, d.deadTarget = dl.Sink, dl.Target
		}
		s.dispatchers[sc.Name] = d
	}
	return s
}

// Deliver appends ev's spooled deliveries to the queue and publishes its
// sync ones; it returns nil once all of them are kept. A full queue gives
// an error wrapping queue.ErrFull.
func (s *Spool) Deliver(ctx context.Context, ev *event.Event, deliveries []route.Delivery) error {
	var now []route.Delivery
	records := make([]queue.Record, 0, len(deliveries))
	received := s.opts.Now()
	var tc sinks.TraceContext
	if s.opts.Tracing != nil {
		tc = queuedTrace(ctx) // the publishes, later, continue this span
	}
	for _, d := range deliveries {
		if d.Sync {
			now = append(now, d)
			continue
		}
		records = append(records, queue.Record{Sink: d.Sink, Message: messageOf(ev, d), Received: received, Trace: tc})
	}
	if len(records) > 0 {
		if err := s.queue.Append(ctx, records); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	if len(now) > 0 {
		return s.sync.Deliver(ctx, ev, now)
	}
	return nil
}

// Start runs the dispatchers until Stop. Whatever the queue holds from
// before is delivered first.
func (s *Spool) Start(ctx context.Context) {
	ctx, s.stop = context.WithCancel(ctx)
	s.running.Go(func() { s.warnOrphans(ctx) })
	for _, d := range s.dispatchers {
		s.running.Go(func() { d.run(ctx) })
	}
}

// warnOrphans warns about messages waiting for sinks the config no longer
// has: they stay in the queue until a config names the sink again.
func (s *Spool) warnOrphans(ctx context.Context) {
	st, err := s.queue.Stats(ctx)
	if err != nil {
		return
	}
	for name, n := range st.BySink {
		if _, ok := s.dispatchers[name]; !ok {
			s.opts.Log.Warn("the spool holds messages for a sink the config no longer has: they wait until it returns (hookbridge spool ls shows them)", "sink", name, "messages", n)
		}
	}
}

// Stop ends the dispatchers and waits for them. Publishes in flight finish
// (each bounded by the publish timeout), so a sink's confirmation is not
// thrown away; what was not delivered stays in the queue, or (shared
// queue) goes back to NATS for another replica.
func (s *Spool) Stop() {
	if s.stop != nil {
		s.stop()
	}
	s.running.Wait()
}

// Drain waits until this replica has nothing left to deliver, or ctx ends,
// while the dispatchers keep delivering. With a shared queue that is at
// once: what this replica leaves is the other replicas' to deliver. It
// reports what is left.
func (s *Spool) Drain(ctx context.Context) error {
	if s.queue.Shared() {
		return nil
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := s.queue.Stats(ctx)
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

// DeadLetters returns how many messages were dead-lettered since start.
func (s *Spool) DeadLetters() uint64 { return s.dead.Load() }

// Retries returns how many failed publishes were scheduled for a retry
// since start.
func (s *Spool) Retries() uint64 { return s.retries.Load() }

func (s *Spool) countRetry(sink string) {
	s.retries.Add(1)
	s.opts.Metrics.Retried(sink)
}

func (s *Spool) countDead(sink string) {
	s.dead.Add(1)
	s.opts.Metrics.DeadLettered(sink)
}

// dispatcher delivers one sink's queued messages, in the order its
// receiver hands them out (see queue.Receiver).
type dispatcher struct {
	name       string
	sink       sinks.Sink
	receiver   queue.Receiver
	retry      config.Retry
	deadSink   string // "" when dead letters are kept in the queue only
	deadTarget string
	log        *slog.Logger
	spool      *Spool
}

// Limits of the dispatchers: how many messages one Publish carries, and how
// many batches one dispatcher has in flight (while one waits for its sink,
// the next fills; the local queue hands out one batch at a time).
const (
	batchMessages = 256
	workers       = 4
)

func (d *dispatcher) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { d.work(ctx) })
	}
	wg.Wait()
	d.receiver.Close()
}

func (d *dispatcher) work(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		leases, err := d.receiver.Receive(ctx, batchMessages)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			d.log.Error("read the spool", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff(d.retry, failures)):
			}
			continue
		}
		failures = 0
		d.deliver(ctx, leases)
	}
}

// deliver publishes the leased records to the sink and settles each: done
// when confirmed, retried with backoff, or dead-lettered when the retry
// policy gives up. The publish is not cut short by Stop: a message the
// sink is taking is not handed back (and, from a shared queue, published
// twice by another replica).
func (d *dispatcher) deliver(ctx context.Context, leases []queue.Lease) {
	recs := make([]*queue.Record, 0, len(leases))
	held := make([]queue.Lease, 0, len(leases))
	for _, l := range leases {
		rec, err := l.Record()
		if err != nil {
			d.kill(l, nil, err.Error())
			continue
		}
		recs, held = append(recs, rec), append(held, l)
	}
	if len(recs) == 0 {
		return
	}
	err := d.publish(context.WithoutCancel(ctx), recs, held)
	now := d.spool.opts.Now()
	for i, l := range held {
		r := recs[i]
		e := sinks.MessageErr(err, i)
		if e == nil {
			l.Done()
			continue
		}
		if reason := giveUpReason(d.retry, e, l.Attempt(), now.Sub(r.Received)); reason != "" {
			d.kill(l, r, reason)
			continue
		}
		d.spool.countRetry(d.name)
		if l.Attempt() == 1 {
			d.log.Warn("publish failed; retrying from the spool", "id", r.Message.ID, "target", r.Message.Target, "err", e)
		}
		// A broker that said when to come back (Retry-After) is not
		// asked again sooner.
		wait := max(backoff(d.retry, l.Attempt()), sinks.RetryAfter(e))
		if err := l.Retry(wait, e); err != nil {
			d.log.Error("record a failed attempt in the spool", "id", r.Message.ID, "err", err)
		}
	}
}

// publish is one Publish of recs' messages to the sink, within the
// publish timeout; leases are recs' own, for their attempt numbers.
func (d *dispatcher) publish(ctx context.Context, recs []*queue.Record, leases []queue.Lease) error {
	if d.sink == nil {
		return errors.New("no such sink in the config")
	}
	msgs := make([]sinks.Message, len(recs))
	for i, r := range recs {
		msgs[i] = r.Message
	}
	ctx, cancel := context.WithTimeout(ctx, d.spool.opts.PublishTimeout)
	defer cancel()
	if t := d.spool.opts.Tracing; t != nil {
		// A record's publishes continue its webhook's trace, however
		// much later and wherever they run.
		parent := func(i int) context.Context { return continuing(ctx, recs[i]) }
		attempts := make([]int, len(leases))
		for i, l := range leases {
			attempts[i] = l.Attempt()
		}
		return t.publish(ctx, d.name, d.sink, msgs, parent, attempts)
	}
	return d.sink.Publish(ctx, msgs)
}

// kill dead-letters a leased record, r nil when the queue could not read
// it: the record is kept as a dead letter and, when the sink has a
// dead_letter target, a copy carrying the reason is queued for it in the
// same step. If that fails the record is retried later instead.
func (d *dispatcher) kill(l queue.Lease, r *queue.Record, reason string) {
	var forward *queue.Record
	if d.deadSink != "" && r != nil && !r.DeadLetter {
		m := deadLetterCopy(r.Message, d.deadTarget, d.name, reason)
		forward = &queue.Record{Sink: d.deadSink, Message: m, Received: d.spool.opts.Now(), DeadLetter: true, Trace: r.Trace}
	}
	if err := l.Kill(reason, forward); err != nil {
		d.log.Error("could not dead-letter a message; it stays in the spool and is tried again", "err", err)
		if err := l.Retry(backoff(d.retry, l.Attempt()), err); err != nil {
			d.log.Error("record a failed attempt in the spool", "err", err)
		}
		return
	}
	d.spool.countDead(d.name)
	if r == nil {
		d.log.Error("spool: unreadable message moved to the dead letters", "reason", reason)
		return
	}
	d.log.Warn("message dead-lettered", "id", r.Message.ID, "target", r.Message.Target,
		"attempts", l.Attempt(), "reason", reason, "dead_letter_sink", d.deadSink)
}
