package jetstream

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// receiver pulls one sink's messages from its lanes' durable consumers
// and hands them out. The pulls run from the first Receive until Close,
// and start again at the next Receive (a reload's new dispatcher).
type receiver struct {
	q    *Queue
	sink string
	in   chan pulled

	mu      sync.Mutex
	stop    context.CancelFunc // nil while not pulling
	setup   sync.WaitGroup     // the goroutine setting the lanes' pulls up
	running []jetstream.ConsumeContext
}

// pulled is a message handed to this replica, and when.
type pulled struct {
	msg jetstream.Msg
	at  time.Time
}

// Receive implements queue.Receiver.
func (r *receiver) Receive(ctx context.Context, n int) ([]queue.Lease, error) {
	r.start()
	for {
		var batch []pulled
		select {
		case p := <-r.in:
			batch = append(batch, p)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	more:
		for len(batch) < n {
			select {
			case p := <-r.in:
				batch = append(batch, p)
			default:
				break more
			}
		}
		if leases := r.lease(batch); len(leases) > 0 {
			return leases, nil
		}
	}
}

// lease makes the pulled messages leases.
func (r *receiver) lease(batch []pulled) []queue.Lease {
	leases := make([]queue.Lease, 0, len(batch))
	for _, p := range batch {
		m := p.msg
		if r.q.now().Sub(p.at) > r.q.c.cfg.AckWait/4 {
			// It waited behind other batches: restart its ack_wait, so
			// that NATS does not give it to another replica while this
			// one publishes it, which could reorder its task.
			_ = m.InProgress()
		}
		md, err := m.Metadata()
		if err != nil {
			r.q.log.Error("spool: a message without JetStream metadata; NATS redelivers it", "err", err)
			continue
		}
		l := &lease{r: r, msg: m, seq: md.Sequence.Stream, attempt: int(md.NumDelivered)}
		l.rec, l.err = queue.Unmarshal(l.seq, m.Data())
		if l.err != nil {
			l.err = fmt.Errorf("not a spool record: %w", l.err)
		}
		leases = append(leases, l)
	}
	return leases
}

// start starts pulling from every lane unless the pulls run already.
func (r *receiver) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.setup.Go(func() {
		for p := range r.q.layout.partitions {
			cc, err := r.pull(ctx, p)
			if err != nil {
				return // stopped
			}
			r.mu.Lock()
			r.running = append(r.running, cc)
			r.mu.Unlock()
		}
	})
}

// Close implements queue.Receiver: it stops pulling (what arrives
// meanwhile is handed back), then hands back whatever was pulled and not
// handed out. Cut off from NATS, nothing can be handed back: NATS gives
// those messages to another replica after ack_wait.
func (r *receiver) Close() {
	r.mu.Lock()
	stop := r.stop
	r.stop = nil
	r.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	r.setup.Wait()
	r.mu.Lock()
	running := r.running
	r.running = nil
	r.mu.Unlock()
	connected := r.q.c.nc.IsConnected()
	for _, cc := range running {
		if connected {
			cc.Drain()
		} else {
			cc.Stop()
		}
	}
	bound := time.After(r.q.c.timeout)
	for _, cc := range running {
		select {
		case <-cc.Closed():
		case <-bound:
		}
	}
	for {
		select {
		case p := <-r.in:
			_ = p.msg.Nak()
		default:
			return
		}
	}
}

// pull creates or updates lane p's durable consumer and starts pulling
// from it, retrying until it succeeds or ctx ends: a lane nobody pulls
// from would wait for good.
func (r *receiver) pull(ctx context.Context, p int) (jetstream.ConsumeContext, error) {
	q := r.q
	cfg := jetstream.ConsumerConfig{
		Durable:       consumerName(r.sink, p),
		Description:   fmt.Sprintf("hookbridge: sink %s, partition %d of %d", r.sink, p, q.layout.partitions),
		FilterSubject: q.layout.waiting(r.sink, p),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.c.cfg.AckWait,
		// One message of the lane in flight at a time, across every
		// replica: what keeps a task's order.
		MaxAckPending: 1,
		MaxDeliver:    -1, // hookbridge dead-letters by retry.max_attempts and max_age
	}
	for failures := 1; ; failures++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := q.stream.CreateOrUpdateConsumer(cctx, cfg)
		cancel()
		var cc jetstream.ConsumeContext
		if err == nil {
			cc, err = cons.Consume(r.receive(ctx),
				jetstream.PullMaxMessages(4),
				// A pull request lives on the consumer's leader in NATS;
				// when that node goes away the request goes with it,
				// unnoticed until a heartbeat is missed. Short ones bound
				// that stall.
				jetstream.PullExpiry(5*time.Second),
				jetstream.PullHeartbeat(time.Second),
				jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
					if ctx.Err() == nil {
						q.log.Debug("spool: pull from NATS", "sink", r.sink, "partition", p, "err", err)
					}
				}))
		}
		if err == nil {
			return cc, nil
		}
		if failures == 1 && ctx.Err() == nil {
			q.log.Error("spool: cannot pull from the stream; retrying", "consumer", cfg.Durable, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(setUpBackoff(failures)):
		}
	}
}

// setUpBackoff is the wait after the n-th failure to set a lane up: 200ms
// doubling up to 30s.
func setUpBackoff(n int) time.Duration {
	d := 200 * time.Millisecond
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// receive passes each pulled message on, or after Close hands it back to
// NATS at once for another replica.
func (r *receiver) receive(ctx context.Context) jetstream.MessageHandler {
	return func(m jetstream.Msg) {
		if ctx.Err() != nil {
			_ = m.Nak()
			return
		}
		select {
		case r.in <- pulled{m, r.q.now()}:
		case <-ctx.Done():
			_ = m.Nak()
		}
	}
}

// lease is one pulled message handed out.
type lease struct {
	r       *receiver
	msg     jetstream.Msg
	seq     uint64 // stream sequence
	attempt int    // NATS's delivery count
	rec     queue.Record
	err     error // the message is not a record
}

// Record implements queue.Lease.
func (l *lease) Record() (*queue.Record, error) {
	if l.err != nil {
		return nil, l.err
	}
	return &l.rec, nil
}

// Attempt implements queue.Lease: NATS counts the deliveries.
func (l *lease) Attempt() int { return l.attempt }

// Done implements queue.Lease: an ack.
func (l *lease) Done() {
	if err := l.msg.Ack(); err != nil {
		l.r.q.log.Warn("spool: ack after delivery failed; NATS redelivers the message (a duplicate)", "id", l.rec.Message.ID, "err", err)
	}
}

// Retry implements queue.Lease: a NAK with delay. The message stays its
// lane's one in flight until it is redelivered: the task's later events
// wait behind it.
func (l *lease) Retry(delay time.Duration, _ error) error {
	if err := l.msg.NakWithDelay(delay); err != nil {
		return fmt.Errorf("spool: NAK failed; NATS redelivers the message after ack_wait: %w", err)
	}
	return nil
}

// Kill implements queue.Lease, as the local spool does: the record is
// kept, with its reason, on <prefix>.dead.<sink> (where spool ls -dead
// and spool replay find it), and forward goes through the stream like any
// message. Only once NATS acknowledged both is the message taken off its
// lane. A message that is not a record is moved to the dead subject as it
// is.
func (l *lease) Kill(reason string, forward *queue.Record) error {
	q := l.r.q
	ctx, cancel := context.WithTimeout(context.Background(), q.c.timeout)
	defer cancel()
	var msgs []outgoing
	if l.err != nil {
		msgs = append(msgs, outgoing{subject: q.layout.dead(l.r.sink), id: buryMsgID(q.c.cfg.Stream, l.seq), data: l.msg.Data()})
	} else {
		if forward != nil {
			msgs = append(msgs, outgoing{subject: q.layout.subjectOf(forward), id: msgID(forward), data: queue.Marshal(forward)})
		}
		dead := l.rec
		dead.Attempts, dead.Reason, dead.Died, dead.LastError = l.attempt, reason, q.now(), reason
		msgs = append(msgs, outgoing{subject: q.layout.dead(l.r.sink), id: deadMsgID(&dead), data: queue.Marshal(&dead)})
	}
	if err := q.c.publish(ctx, msgs); err != nil {
		return fmt.Errorf("spool: could not store the dead letter; the message stays and is tried again: %w", err)
	}
	if err := l.msg.TermWithReason(reason); err != nil {
		q.log.Warn("spool: could not take a dead-lettered message off its partition; it comes back and is dead-lettered again (once, by its Nats-Msg-Id)", "seq", l.seq, "err", err)
	}
	return nil
}
