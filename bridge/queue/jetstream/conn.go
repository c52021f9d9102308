// Package jetstream is the queue of spool.backend: jetstream: a
// work-queue stream in the user's NATS that every replica appends to and
// delivers from, and, with server.replay_cache: nats, the KV bucket of
// accepted event ids. wire.go holds its layout in NATS.
//
// Each (sink, lane) has a durable pull consumer with MaxAckPending 1 that
// all replicas pull from, so a task's messages go out one at a time and
// in order, whichever replica takes each. A replica that stops hands its
// messages back at once (a NAK); one that dies leaves them to NATS, which
// gives them to another replica after ack_wait. A message leaves the
// stream only when some replica's sink confirmed it, or as a dead letter.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/queue"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// Conn is a connection to the spool's NATS, shared by the queue and the
// replay bucket. It is opened once at start, like the local spool's file.
type Conn struct {
	cfg     Config
	nc      *natsgo.Conn
	js      jetstream.JetStream
	timeout time.Duration // server.publish_timeout: bounds PubAcks
	log     *slog.Logger
}

// Dial connects to cfg.URL. publishTimeout bounds each wait for NATS to
// acknowledge a publish (server.publish_timeout).
func Dial(cfg Config, publishTimeout time.Duration, log *slog.Logger) (*Conn, error) {
	nc, err := cfg.Connect("hookbridge-spool",
		natsgo.MaxReconnects(-1), // a NATS outage must not end the spool
		natsgo.ReconnectWait(250*time.Millisecond),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil { // nil: closed on purpose
				log.Warn("spool: disconnected from NATS; reconnecting", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info("spool: reconnected to NATS", "server", natssink.Redact(nc.ConnectedUrlRedacted()))
		}))
	if err != nil {
		return nil, fmt.Errorf("spool: %v; is it running and reachable from here?", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	return &Conn{cfg: cfg, nc: nc, js: js, timeout: publishTimeout, log: log}, nil
}

// Close flushes what was sent to NATS (acks included) and closes the
// connection. Cut off from NATS it just closes: the acks and NAKs not sent
// are made up for by redelivery after ack_wait.
func (c *Conn) Close() error {
	if c == nil {
		return nil
	}
	if !c.nc.IsConnected() {
		c.nc.Close()
		return nil
	}
	err := c.nc.FlushTimeout(5 * time.Second)
	c.nc.Close()
	if err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) {
		return fmt.Errorf("spool: flush to NATS: %w", err)
	}
	return nil
}

// storage is spool.storage as JetStream's type, for the stream and the
// bucket alike.
func (c *Conn) storage() jetstream.StorageType {
	if c.cfg.Storage == "memory" {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// setUp runs f, which creates something the spool needs in NATS, until it
// succeeds or fails for a reason other than a race or a timeout. On a
// fresh cluster replicas that start together race to create the same
// stream, and the requests of the ones that lose can time out, or find it
// half made, instead of finding it.
func setUp(ctx context.Context, log *slog.Logger, f func(context.Context) error) error {
	const attempts = 6
	for attempt := 1; ; attempt++ {
		// Each attempt waits longer: a slow cluster gets its time, and
		// a request lost in the race is given up on early.
		actx, cancel := context.WithTimeout(ctx, time.Duration(attempt)*2*time.Second)
		err := f(actx)
		cancel()
		// The not-found and exists errors are another replica's create
		// half done: it is there a moment later.
		transient := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, natsgo.ErrTimeout) ||
			errors.Is(err, natsgo.ErrNoResponders) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) ||
			errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
			errors.Is(err, jetstream.ErrBucketExists)
		if err == nil || !transient || attempt == attempts || ctx.Err() != nil {
			return err
		}
		wait := time.Duration(attempt)*250*time.Millisecond + rand.N(250*time.Millisecond)
		log.Warn("spool: setting up in NATS failed; trying again", "err", err, "attempt", attempt, "wait", wait)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// outgoing is one message to store in the stream.
type outgoing struct {
	subject, id string
	data        []byte
}

// publish stores msgs in the stream and waits for every PubAck.
func (c *Conn) publish(ctx context.Context, msgs []outgoing) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	var errs []error
	for _, o := range msgs {
		m := natsgo.NewMsg(o.subject)
		m.Header.Set(jetstream.MsgIDHeader, o.id)
		m.Data = o.data
		f, err := c.js.PublishMsgAsync(m, jetstream.WithExpectStream(c.cfg.Stream))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, err)
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("no PubAck from NATS: %w", ctx.Err()))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	err := errors.Join(errs...)
	if streamFull(err) {
		return fmt.Errorf("%w: stream %s: %v", queue.ErrFull, c.cfg.Stream, err)
	}
	return fmt.Errorf("stream %s: %w", c.cfg.Stream, err)
}

// streamFull reports whether err is JetStream refusing a message because
// the stream reached max_msgs or max_bytes (discard new).
func streamFull(err error) bool {
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return false
	}
	d := api.Description
	return strings.Contains(d, "maximum messages") || strings.Contains(d, "maximum bytes")
}
