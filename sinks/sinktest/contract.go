package sinktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/sinks"
)

// The contract every sinks.Sink keeps, checked by Run against a real
// broker, modelled on Watermill's pubsub test suite:
//
//   - Publish returns nil only once the broker holds every message of the
//     batch, body byte for byte, with the id and key the sink maps it to.
//   - A message the broker refuses fails alone where the broker can refuse
//     one message of a batch: Publish returns a *sinks.BatchError naming
//     exactly it, and the others are confirmed and held.
//   - A message the broker can never take fails with an error marked
//     sinks.Permanent; a broker that is down gives errors that are not
//     (the spool retries those).
//   - A Publish whose ctx is already done sends nothing and fails every
//     message with ctx's error; one whose ctx ends while the broker does
//     not answer returns promptly, and reports nothing confirmed that the
//     broker has not confirmed.
//   - What Publish confirmed is held after Close, which returns nil on a
//     healthy broker.
//   - Concurrent publishers are all confirmed and held exactly once, each
//     key's messages in publish order where the broker keeps order.
//   - A message published twice is held once where the broker
//     de-duplicates by id, at most twice where it does not.

// Features says what a broker can do. Run checks what the broker can do
// and skips, saying so, what it cannot.
type Features struct {
	// IDs: the broker keeps each message's event id where consumers find
	// it (a ce-id header, a Nats-Msg-Id, a ce_id attribute), and
	// Harness.Read reports it as Received.ID.
	IDs bool
	// Keys: the broker keeps Message.Key (a Kafka record key), and Read
	// reports it as Received.Key.
	Keys bool
	// PerKeyOrder: the messages of one key published one after the other,
	// in one batch or in Publish calls made in turn, are held in that
	// order.
	PerKeyOrder bool
	// PartialFailure: the message Harness.Refuse makes fails alone in a
	// batch, and the others are confirmed.
	PartialFailure bool
	// Permanent: the message Harness.Refuse makes is refused for good, and
	// its error is marked sinks.Permanent.
	Permanent bool
	// Dedup: the broker holds a message published again with the same ID
	// once (JetStream's Nats-Msg-Id, SQS FIFO's MessageDeduplicationId).
	// Without it, a redelivery may be held twice, and consumers
	// de-duplicate on the event id.
	Dedup bool
}

// Harness is one freshly opened sink over a real broker, and the means to
// check it against that broker.
type Harness struct {
	// Sink is open on the broker. Run closes it.
	Sink sinks.Sink
	// Target is where Run's messages go: a subject, a topic, a queue URL;
	// "" for a sink that takes no target.
	Target string
	// Read returns every message the broker holds at Target, read with
	// the broker's own client, not the sink, in the broker's order: stream
	// or file order, offset order partition after partition, the order a
	// queue gives them. It may consume them; Run calls it once a test.
	Read func(t *testing.T) []Received
	// Refuse returns m changed so that the broker can never take it (too
	// large, an empty body, ...), with its ID, Key and Target kept. nil
	// for a broker that refuses nothing.
	Refuse func(m sinks.Message) sinks.Message
	// Stop makes the broker unavailable for good: shut down, connections
	// refused. nil when the harness cannot.
	Stop func()
	// Hang makes the broker stop answering, connections open, until
	// release is called. nil when the harness cannot.
	Hang func() (release func())
}

// Received is a message as the broker holds it.
type Received struct {
	Body []byte
	// ID is the event id the broker holds, when Features.IDs.
	ID string
	// Key is the key the broker holds, when Features.Keys.
	Key string
}

// Limits of Run's waits: a Publish or Close on a healthy broker, and how
// soon Publish must return once its ctx is done.
const (
	opTimeout = 30 * time.Second
	prompt    = 3 * time.Second
)

// Run checks the sinks.Sink contract, one subtest per property, each on
// a harness of its own from newHarness.
func Run(t *testing.T, f Features, newHarness func(t *testing.T) Harness) {
	c := &contract{f: f, newHarness: newHarness, nonce: strconv.FormatInt(time.Now().UnixNano(), 36)}
	t.Run("PublishConfirms", c.publishConfirms)
	t.Run("PartialFailure", c.partialFailure)
	t.Run("PermanentRefusal", c.permanentRefusal)
	t.Run("BrokerDownIsRetryable", c.brokerDown)
	t.Run("CancelledContext", c.cancelledContext)
	t.Run("CancelWhileBrokerHangs", c.cancelWhileHung)
	t.Run("CloseFlushes", c.closeFlushes)
	t.Run("ConcurrentPublishers", c.concurrentPublishers)
	t.Run("Redelivery", c.redelivery)
}

type contract struct {
	f          Features
	newHarness func(t *testing.T) Harness
	nonce      string // makes ids unique across runs on a shared broker
}

// bench is one subtest's harness.
type bench struct {
	t       *testing.T
	f       Features
	h       Harness
	prefix  string
	closed  bool
	healthy bool // Close must return nil
}

func (c *contract) open(t *testing.T) *bench {
	t.Helper()
	h := c.newHarness(t)
	switch {
	case h.Sink == nil || h.Read == nil:
		t.Fatal("the harness has no Sink or no Read")
	case (c.f.PartialFailure || c.f.Permanent) && h.Refuse == nil:
		t.Fatal("Features.PartialFailure and Features.Permanent need Harness.Refuse")
	}
	b := &bench{t: t, f: c.f, h: h, healthy: true,
		prefix: fmt.Sprintf("%s-%s", c.nonce, strings.ToLower(t.Name()[strings.LastIndexByte(t.Name(), '/')+1:]))}
	t.Cleanup(func() {
		if b.closed {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := h.Sink.Close(ctx); err != nil && b.healthy {
			t.Errorf("Close on a healthy broker: %v", err)
		}
	})
	return b
}

// msg returns the seq'th message of key.
func (b *bench) msg(key string, seq int) sinks.Message {
	return Event(b.h.Target, key, fmt.Sprintf("%s-%s-%d", b.prefix, key, seq))
}

// batch returns n messages whose keys take turns among keys.
func (b *bench) batch(n int, keys ...string) []sinks.Message {
	out := make([]sinks.Message, n)
	for i := range out {
		out[i] = b.msg(keys[i%len(keys)], i/len(keys))
	}
	return out
}

// publish is Publish on a healthy broker, bounded by opTimeout.
func (b *bench) publish(batch []sinks.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return b.h.Sink.Publish(ctx, batch)
}

// mustPublish fails the test unless Publish confirms the whole batch.
func (b *bench) mustPublish(batch []sinks.Message) {
	b.t.Helper()
	if err := b.publish(batch); err != nil {
		b.t.Fatalf("Publish of %d messages on a healthy broker: %v", len(batch), err)
	}
}

// holds reads the broker and checks that it holds each message of want
// at least once and at most copies times, byte for byte, with its id and
// key where the broker keeps them, each key's first copies in the order
// of want; and nothing else.
func (b *bench) holds(want []sinks.Message, copies int) {
	b.t.Helper()
	got := b.h.Read(b.t)
	pos := make(map[string]int, len(want)) // body -> index in want
	for i, m := range want {
		pos[string(m.Body)] = i
	}
	seen := make([]int, len(want))
	last := map[string]int{} // key -> index in want of its last first copy
	var problems []string
	for j, r := range got {
		i, ok := pos[string(r.Body)]
		if !ok {
			problems = append(problems, fmt.Sprintf("the broker holds a message Publish did not confirm (read #%d): %.120q", j, r.Body))
			continue
		}
		m := want[i]
		seen[i]++
		if b.f.IDs && r.ID != m.ID {
			problems = append(problems, fmt.Sprintf("message %q is held with id %q", m.ID, r.ID))
		}
		if b.f.Keys && r.Key != m.Key {
			problems = append(problems, fmt.Sprintf("message %q is held with key %q, want %q", m.ID, r.Key, m.Key))
		}
		if b.f.PerKeyOrder && seen[i] == 1 {
			if prev, ok := last[m.Key]; ok && prev > i {
				problems = append(problems, fmt.Sprintf("key %q: message %q is held after %q, published after it", m.Key, want[prev].ID, m.ID))
			}
			last[m.Key] = i
		}
	}
	for i, n := range seen {
		switch {
		case n == 0:
			problems = append(problems, fmt.Sprintf("message %q was confirmed but the broker does not hold it", want[i].ID))
		case n > copies:
			problems = append(problems, fmt.Sprintf("the broker holds message %q %d times, want at most %d", want[i].ID, n, copies))
		}
	}
	if len(problems) > 0 {
		const most = 10
		if len(problems) > most {
			problems = append(problems[:most], fmt.Sprintf("... and %d more", len(problems)-most))
		}
		b.t.Errorf("the broker holds %d messages, the test confirmed %d:\n%s", len(got), len(want), strings.Join(problems, "\n"))
	}
}

// publishConfirms: Publish returns nil only once the broker holds every
// message, byte for byte, with its id and key, in per-key order.
func (c *contract) publishConfirms(t *testing.T) {
	b := c.open(t)
	batch := b.batch(12, "a", "b", "c") // more than an SQS request holds
	big := Event(b.h.Target, "b", b.prefix+"-big")
	big.Body = bytes.Replace(big.Body, []byte(`"data":{`), append(append([]byte(`"data":{"webhook":`), Delivery20K()...), ','), 1)
	batch = append(batch, big)
	b.mustPublish(batch)
	last := b.msg("a", 4)
	b.mustPublish([]sinks.Message{last})
	if err := b.publish(nil); err != nil {
		t.Errorf("Publish of an empty batch: %v", err)
	}
	b.holds(append(batch, last), 1)
}

// partialFailure: one refused message fails alone; the others are
// confirmed and held.
func (c *contract) partialFailure(t *testing.T) {
	if !c.f.PartialFailure {
		t.Skip("the broker cannot fail one message of a batch alone")
	}
	b := c.open(t)
	batch := b.batch(6, "a", "b")
	refused := []int{1, 4}
	for _, i := range refused {
		batch[i] = b.h.Refuse(batch[i])
	}
	err := b.publish(batch)
	var be *sinks.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Publish with messages %v refused: %v, want a *sinks.BatchError", refused, err)
	}
	if got := slices.Sorted(maps.Keys(be.Failed)); !slices.Equal(got, refused) {
		t.Errorf("the BatchError names messages %v, want exactly %v: %v", got, refused, be)
	}
	var confirmed []sinks.Message
	for i, m := range batch {
		if slices.Contains(refused, i) {
			if e := sinks.MessageErr(err, i); c.f.Permanent && !sinks.IsPermanent(e) {
				t.Errorf("refused message %d: %v, want an error marked sinks.Permanent", i, e)
			}
			continue
		}
		confirmed = append(confirmed, m)
	}
	b.holds(confirmed, 1)
}

// permanentRefusal: a message the broker can never take fails with an
// error marked sinks.Permanent, and is not held.
func (c *contract) permanentRefusal(t *testing.T) {
	if !c.f.Permanent {
		t.Skip("the broker refuses nothing for good")
	}
	b := c.open(t)
	err := b.publish([]sinks.Message{b.h.Refuse(b.msg("a", 0))})
	if e := sinks.MessageErr(err, 0); e == nil || !sinks.IsPermanent(e) {
		t.Errorf("Publish of a message the broker can never take: %v, want an error marked sinks.Permanent", err)
	}
	b.holds(nil, 1)
}

// brokerDown: with the broker down, Publish fails every message with an
// error that is not permanent.
func (c *contract) brokerDown(t *testing.T) {
	b := c.open(t)
	if b.h.Stop == nil {
		t.Skip("the harness cannot stop the broker")
	}
	b.healthy = false
	b.h.Stop()
	batch := b.batch(3, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := b.h.Sink.Publish(ctx, batch)
	for i := range batch {
		switch e := sinks.MessageErr(err, i); {
		case e == nil:
			t.Errorf("message %d confirmed with the broker down (Publish: %v)", i, err)
		case sinks.IsPermanent(e):
			t.Errorf("message %d: the broker is down, but the error is marked permanent, so it would not be retried: %v", i, e)
		}
	}
	t.Logf("Publish with the broker down: %v", err)
}

// cancelledContext: a Publish whose ctx is done sends nothing and fails
// every message, promptly, with ctx's error.
func (c *contract) cancelledContext(t *testing.T) {
	b := c.open(t)
	// A first Publish warms the sink up (connections, metadata), so that
	// nothing but ctx stops the next.
	warm := b.msg("w", 0)
	b.mustPublish([]sinks.Message{warm})
	batch := b.batch(12, "a", "b") // more than an SQS request holds
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err := b.h.Sink.Publish(ctx, batch)
	if d := time.Since(start); d > prompt {
		t.Errorf("Publish with a cancelled context took %v", d)
	}
	for i := range batch {
		if e := sinks.MessageErr(err, i); !errors.Is(e, context.Canceled) {
			t.Errorf("message %d with a cancelled context: %v, want an error wrapping context.Canceled", i, e)
		}
	}
	// A message published next, once confirmed, is held after anything
	// the cancelled Publish sent, where the broker keeps order.
	marker := b.msg("w", 1)
	b.mustPublish([]sinks.Message{marker})
	b.holds([]sinks.Message{warm, marker}, 1)
}

// cancelWhileHung: while the broker does not answer, Publish returns
// promptly once its ctx is cancelled, with no message confirmed.
func (c *contract) cancelWhileHung(t *testing.T) {
	b := c.open(t)
	if b.h.Hang == nil {
		t.Skip("the harness cannot make the broker hang")
	}
	batch := b.batch(3, "a", "b")
	release := b.h.Hang()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.h.Sink.Publish(ctx, batch) }()
	// Give the sink time to send and start waiting: there is nothing to
	// observe that every sink shares.
	time.Sleep(200 * time.Millisecond)
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(prompt):
		t.Errorf("Publish did not return within %v of its context being cancelled", prompt)
		release()
		err = <-done
	}
	for i := range batch {
		if sinks.MessageErr(err, i) == nil {
			t.Errorf("message %d confirmed while the broker did not answer (Publish: %v)", i, err)
		}
	}
	release()
}

// closeFlushes: what Publish confirmed is held after Close, which
// returns nil.
func (c *contract) closeFlushes(t *testing.T) {
	b := c.open(t)
	batch := b.batch(5, "a", "b")
	b.mustPublish(batch[:2])
	b.mustPublish(batch[2:])
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	b.closed = true
	if err := b.h.Sink.Close(ctx); err != nil {
		t.Errorf("Close on a healthy broker: %v", err)
	}
	b.holds(batch, 1)
}

// concurrentPublishers: publishers × perPublisher messages from
// concurrent goroutines, in batches of 1 to 3, each publisher with keys
// of its own: all confirmed, each held exactly once, in per-key order.
func (c *contract) concurrentPublishers(t *testing.T) {
	const publishers, perPublisher = 8, 24
	b := c.open(t)
	var want []sinks.Message
	var wg sync.WaitGroup
	for p := range publishers {
		msgs := b.batch(perPublisher, fmt.Sprintf("p%d-a", p), fmt.Sprintf("p%d-b", p))
		want = append(want, msgs...)
		wg.Go(func() {
			for i, size := 0, 1; i < len(msgs); i, size = i+size, size%3+1 {
				part := msgs[i:min(i+size, len(msgs))]
				if err := b.publish(part); err != nil {
					t.Errorf("publisher %d: Publish of %d messages: %v", p, len(part), err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Whether or not the broker de-duplicates, each message was
	// published once: the sink must not have sent one twice.
	b.holds(want, 1)
}

// redelivery: a batch published twice is held once where the broker
// de-duplicates, and at most twice where it does not.
func (c *contract) redelivery(t *testing.T) {
	b := c.open(t)
	batch := b.batch(4, "a", "b")
	b.mustPublish(batch)
	b.mustPublish(batch) // a duplicate's acknowledgement confirms it too
	if c.f.Dedup {
		b.holds(batch, 1)
		return
	}
	t.Log("the broker does not de-duplicate: the copies may both be held")
	b.holds(batch, 2)
}
