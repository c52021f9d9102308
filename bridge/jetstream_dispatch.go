package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/spool"
	"github.com/hookbridge/hookbridge/sinks"
)

// JetStreamSpooler is the Deliverer behind delivery: spool with backend
// jetstream. Deliver appends an event's deliveries to the shared stream
// and returns once NATS acknowledged them (replicated, with R3); every
// replica's dispatchers pull from the same durable consumers, publish to
// their sink and acknowledge a message only after the sink confirmed it.
//
// A replica that stops hands its messages back at once (a NAK); one that
// dies leaves them to NATS, which gives them to another replica after
// spool.ack_wait. Either way nothing acknowledged is lost: a message
// leaves the stream only when some replica's sink confirmed it, or when it
// was dead-lettered.
type JetStreamSpooler struct {
	js          *JetStreamSpool
	sync        *SyncDeliverer
	dispatchers map[string]*jsDispatcher
	log         *slog.Logger

	stop    context.CancelFunc
	running sync.WaitGroup
	counters
}

// NewJetStreamSpooler builds the dispatchers for cfg's sinks over js.
// Start them with Start.
func NewJetStreamSpooler(cfg *Config, js *JetStreamSpool, open map[string]sinks.Sink, log *slog.Logger) *JetStreamSpooler {
	s := &JetStreamSpooler{js: js, sync: NewSyncDeliverer(open), dispatchers: map[string]*jsDispatcher{}, log: log}
	for _, sc := range cfg.Sinks {
		d := &jsDispatcher{
			name: sc.Name, sink: open[sc.Name], retry: sc.Retry, publishTimeout: cfg.Server.PublishTimeout,
			log: log.With("sink", sc.Name), spooler: s,
			// At most one message per partition is handed to any replica
			// at a time, so this never fills.
			in: make(chan pulled, js.cfg.Partitions),
		}
		if dl := sc.DeadLetter; dl != nil {
			d.deadSink, d.deadTarget = dl.Sink, dl.Target
		}
		s.dispatchers[sc.Name] = d
	}
	return s
}

// Deliver implements Deliverer.
func (s *JetStreamSpooler) Deliver(ctx context.Context, ev *Event, deliveries []Delivery) error {
	var now []Delivery
	recs := make([]jsRecord, 0, len(deliveries))
	received := time.Now()
	p := s.js.partition(ev.TaskID, ev.ID)
	for _, d := range deliveries {
		if d.Sync {
			now = append(now, d)
			continue
		}
		recs = append(recs, jsRecord{
			subject: s.js.subject(d.Sink, p),
			msgID:   ev.ID + ":" + d.Sink + ":" + d.Target,
			rec:     recordOf(ev, d, received),
		})
	}
	if len(recs) > 0 {
		if err := s.js.append(ctx, recs); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	if len(now) > 0 {
		return s.sync.Deliver(ctx, ev, now)
	}
	return nil
}

// Start creates or updates the durable consumers, then runs the
// dispatchers until Stop. A consumer that cannot be set up now (NATS
// unreachable) is retried in the background.
func (s *JetStreamSpooler) Start(ctx context.Context) {
	ctx, s.stop = context.WithCancel(ctx)
	for _, d := range s.dispatchers {
		s.running.Go(func() { d.run(ctx) })
	}
	s.running.Go(func() { s.warnOrphans(ctx) })
}

// warnOrphans warns about messages waiting for sinks the config no longer
// has: they stay in the stream until a config names the sink again.
func (s *JetStreamSpooler) warnOrphans(ctx context.Context) {
	st, err := s.js.Stats(ctx)
	if err != nil {
		return
	}
	for name, n := range st.BySink {
		if _, ok := s.dispatchers[name]; !ok {
			s.log.Warn("the spool stream holds messages for a sink the config no longer has: they wait until it returns", "sink", name, "messages", n)
		}
	}
}

// Stop stops pulling, lets the publishes in flight finish (each bounded by
// server.publish_timeout) and hands every message not delivered back to
// NATS for another replica, then returns.
func (s *JetStreamSpooler) Stop() {
	if s.stop != nil {
		s.stop()
	}
	s.running.Wait()
}

// Drain returns at once: the stream is shared, and what this replica did
// not deliver is another replica's (or the next start's) to deliver.
func (s *JetStreamSpooler) Drain(context.Context) error { return nil }

// wakeAll implements SpoolDeliverer: NATS pushes work to the dispatchers,
// which never sleep on it.
func (s *JetStreamSpooler) wakeAll() {}

// jsDispatcher delivers one sink's messages from the stream.
type jsDispatcher struct {
	name           string
	sink           sinks.Sink
	retry          RetryConfig
	deadSink       string // "": dead letters are only kept on <prefix>.dead.<sink>
	deadTarget     string
	publishTimeout time.Duration
	log            *slog.Logger
	spooler        *JetStreamSpooler
	in             chan pulled
}

// pulled is a message handed to this replica, and when.
type pulled struct {
	msg jetstream.Msg
	at  time.Time
}

// publishers is how many batches one dispatcher publishes at once: while
// one waits for its sink, the partitions it acknowledged fill the next.
const publishers = 4

func (d *jsDispatcher) run(ctx context.Context) {
	js := d.spooler.js
	var workers sync.WaitGroup
	for range publishers {
		workers.Go(func() { d.publish(ctx) })
	}
	var pulls []jetstream.ConsumeContext
	for p := range js.cfg.Partitions {
		cc, err := d.pull(ctx, p)
		if err != nil {
			break // stopped
		}
		pulls = append(pulls, cc)
	}
	<-ctx.Done()
	// Stop pulling; what arrives meanwhile is handed back. Then the
	// publishers finish their batches, and whatever still waits for them
	// is handed back too. Cut off from NATS, nothing can be handed back:
	// NATS gives those messages to another replica after ack_wait.
	connected := js.nc.IsConnected()
	for _, cc := range pulls {
		if connected {
			cc.Drain()
		} else {
			cc.Stop()
		}
	}
	bound := time.After(d.publishTimeout)
	for _, cc := range pulls {
		select {
		case <-cc.Closed():
		case <-bound:
		}
	}
	workers.Wait()
	for {
		select {
		case p := <-d.in:
			_ = p.msg.Nak()
		default:
			return
		}
	}
}

// pull creates or updates partition p's durable consumer and starts
// pulling from it, retrying until it succeeds or ctx ends: a partition
// nobody pulls from would wait for good.
func (d *jsDispatcher) pull(ctx context.Context, p int) (jetstream.ConsumeContext, error) {
	js := d.spooler.js
	cfg := jetstream.ConsumerConfig{
		Durable:       consumerName(d.name, p),
		Description:   fmt.Sprintf("hookbridge: sink %s, partition %d of %d", d.name, p, js.cfg.Partitions),
		FilterSubject: js.subject(d.name, p),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       js.cfg.AckWait,
		// One message of the partition in flight at a time, across every
		// replica: what keeps a task's order.
		MaxAckPending: 1,
		MaxDeliver:    -1, // hookbridge dead-letters by retry.max_attempts and max_age
	}
	for failures := 1; ; failures++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := js.stream.CreateOrUpdateConsumer(cctx, cfg)
		cancel()
		var cc jetstream.ConsumeContext
		if err == nil {
			cc, err = cons.Consume(d.receive(ctx),
				jetstream.PullMaxMessages(4),
				// A pull request lives on the consumer's leader in NATS;
				// when that node goes away the request goes with it,
				// unnoticed until a heartbeat is missed. Short ones bound
				// that stall.
				jetstream.PullExpiry(5*time.Second),
				jetstream.PullHeartbeat(time.Second),
				jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
					if ctx.Err() == nil {
						d.log.Debug("spool: pull from NATS", "partition", p, "err", err)
					}
				}))
		}
		if err == nil {
			return cc, nil
		}
		if failures == 1 && ctx.Err() == nil {
			d.log.Error("spool: cannot pull from the stream; retrying", "consumer", cfg.Durable, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff(d.retry, failures)):
		}
	}
}

// receive passes each pulled message to the publishers, or after Stop
// hands it back to NATS at once for another replica.
func (d *jsDispatcher) receive(ctx context.Context) jetstream.MessageHandler {
	return func(m jetstream.Msg) {
		if ctx.Err() != nil {
			_ = m.Nak()
			return
		}
		select {
		case d.in <- pulled{m, time.Now()}:
		case <-ctx.Done():
			_ = m.Nak()
		}
	}
}

// publish delivers batches of what the partitions pulled until Stop; run
// hands back what is left.
func (d *jsDispatcher) publish(ctx context.Context) {
	for ctx.Err() == nil { // a stopping replica takes no new batch
		var batch []pulled
		select {
		case p := <-d.in:
			batch = append(batch, p)
		case <-ctx.Done():
			return // run hands back what is left
		}
	more:
		for len(batch) < roundMessages {
			select {
			case p := <-d.in:
				batch = append(batch, p)
			default:
				break more
			}
		}
		d.deliver(ctx, batch)
	}
}

// deliver publishes batch to the sink and settles each message: ack when
// confirmed, NAK with backoff to retry, dead-letter when the retry policy
// gives up. The publish itself is not cut short by Stop, so a message the
// sink is taking is not handed to another replica and published twice.
func (d *jsDispatcher) deliver(ctx context.Context, batch []pulled) {
	recs := make([]spool.Record, 0, len(batch))
	msgs := make([]jetstream.Msg, 0, len(batch))
	attempts := make([]int, 0, len(batch))
	for _, p := range batch {
		m := p.msg
		if time.Since(p.at) > d.spooler.js.cfg.AckWait/4 {
			// It waited behind other batches: restart its ack_wait, so
			// that NATS does not give it to another replica while this
			// one publishes it, which could reorder its task.
			_ = m.InProgress()
		}
		md, err := m.Metadata()
		if err != nil {
			d.log.Error("spool: a message without JetStream metadata; NATS redelivers it", "err", err)
			continue
		}
		rec, err := spool.Unmarshal(md.Sequence.Stream, m.Data())
		if err != nil {
			d.bury(m, md.Sequence.Stream, fmt.Sprintf("not a spool record: %v", err))
			continue
		}
		recs, msgs, attempts = append(recs, rec), append(msgs, m), append(attempts, int(md.NumDelivered))
	}
	if len(recs) == 0 {
		return
	}
	err := publishRecords(context.WithoutCancel(ctx), d.sink, d.publishTimeout, recs)
	now := time.Now()
	for i, r := range recs {
		m := msgs[i]
		e := sinks.MessageErr(err, i)
		if e == nil {
			if err := m.Ack(); err != nil {
				d.log.Warn("spool: ack after delivery failed; NATS redelivers the message (a duplicate)", "id", r.Message.ID, "err", err)
			}
			continue
		}
		if reason := d.retry.giveUp(e, attempts[i], now.Sub(r.Received)); reason != "" {
			d.kill(m, r, attempts[i], reason)
			continue
		}
		d.spooler.countRetry(d.name)
		if attempts[i] == 1 {
			d.log.Warn("publish failed; retrying from the spool stream", "id", r.Message.ID, "target", r.Message.Target, "err", e)
		}
		// The message stays this partition's one in flight until it is
		// redelivered: the task's later events wait behind it.
		if err := m.NakWithDelay(backoff(d.retry, attempts[i])); err != nil {
			d.log.Warn("spool: NAK failed; NATS redelivers the message after ack_wait", "id", r.Message.ID, "err", err)
		}
	}
}

// kill dead-letters a message, as the local spool does: it is kept, with
// its reason, on <prefix>.dead.<sink> (where spool ls -dead and spool
// replay find it), and when the sink has a dead-letter target a copy goes
// there through the stream, like any message. Only once NATS acknowledged
// both is the message taken off its partition.
func (d *jsDispatcher) kill(m jetstream.Msg, r spool.Record, attempts int, reason string) {
	js := d.spooler.js
	now := time.Now()
	copies := make([]jsRecord, 0, 2)
	if d.deadSink != "" && !r.DeadLetter {
		msg := deadLetterCopy(r.Message, d.deadTarget, d.name, reason)
		copies = append(copies, jsRecord{
			subject: js.subject(d.deadSink, js.partition(r.Message.Key, r.Message.ID)),
			msgID:   r.Message.ID + ":" + d.deadSink + ":" + d.deadTarget,
			rec:     spool.Record{Sink: d.deadSink, Message: msg, Received: now, DeadLetter: true},
		})
	}
	r.Attempts, r.Reason, r.Died, r.LastError = attempts, reason, now, reason
	copies = append(copies, jsRecord{subject: js.deadSubject(d.name), msgID: r.Message.ID + ":" + d.name + ":" + r.Message.Target + ":dead", rec: r})
	ctx, cancel := context.WithTimeout(context.Background(), d.publishTimeout)
	defer cancel()
	if err := js.append(ctx, copies); err != nil {
		d.log.Error("spool: could not store a dead letter; the message stays and is tried again", "id", r.Message.ID, "err", err)
		_ = m.NakWithDelay(backoff(d.retry, attempts))
		return
	}
	if err := m.TermWithReason(reason); err != nil {
		d.log.Warn("spool: could not take a dead-lettered message off its partition; it comes back and is dead-lettered again (once, by its Nats-Msg-Id)", "id", r.Message.ID, "err", err)
	}
	d.spooler.countDead(d.name)
	d.log.Warn("message dead-lettered", "id", r.Message.ID, "target", r.Message.Target,
		"attempts", attempts, "reason", reason, "dead_letter_sink", d.deadSink)
}

// bury moves a message that is not a spool record (written by something
// else, or a newer hookbridge) to the sink's dead subject as it is, so
// that it neither blocks its partition nor vanishes.
func (d *jsDispatcher) bury(m jetstream.Msg, seq uint64, reason string) {
	js := d.spooler.js
	ctx, cancel := context.WithTimeout(context.Background(), d.publishTimeout)
	defer cancel()
	if _, err := js.js.Publish(ctx, js.deadSubject(d.name), m.Data(), jetstream.WithMsgID(fmt.Sprintf("%s:bury:%d", js.cfg.Stream, seq))); err != nil {
		d.log.Error("spool: could not move an unreadable message aside; it comes back", "seq", seq, "err", err)
		_ = m.NakWithDelay(d.retry.MaxBackoff)
		return
	}
	_ = m.TermWithReason(reason)
	d.spooler.countDead(d.name)
	d.log.Error("spool: unreadable message moved to the dead letters", "seq", seq, "subject", js.deadSubject(d.name), "reason", reason)
}
