package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Replay is the KV bucket of server.replay_cache: nats: each accepted
// event id with when it was accepted, so that a sender's retry that
// another replica takes is recognized too.
type Replay struct {
	kv      jetstream.KeyValue
	puts    jetstream.JetStream // records, published without waiting
	subject string              // "$KV.<bucket>.", a key's subject without the key
}

// errReplayRecord is logged when a record of the replay bucket fails, at
// once or when NATS answers.
const errReplayRecord = "replay bucket: could not record an accepted id; a retry on another replica may be published again (the stream's duplicates window still drops it)"

// OpenReplay makes sure the replay bucket exists, its entries kept for
// ttl: the longest replay window of the sources (each lookup checks its
// own source's window against the stored time).
func (c *Conn) OpenReplay(ctx context.Context, ttl time.Duration) (*Replay, error) {
	if ttl == 0 {
		return nil, errors.New("server.replay_cache: nats, but no source remembers ids (every tolerance and server.replay_window is 0): use memory")
	}
	var r *Replay
	err := setUp(ctx, c.log, func(ctx context.Context) (err error) {
		r, err = c.ensureReplay(ctx, ttl)
		return err
	})
	return r, err
}

func (c *Conn) ensureReplay(ctx context.Context, ttl time.Duration) (*Replay, error) {
	want := jetstream.KeyValueConfig{
		Bucket:      c.cfg.ReplayBucket,
		Description: "hookbridge: ids of accepted events, for recognizing a sender's retry on any replica",
		History:     1,
		TTL:         ttl,
		Storage:     c.storage(),
		Replicas:    c.cfg.Replicas,
	}
	// Look first, create if missing, update if it differs: replicas that
	// start together then mostly read, which does not race.
	kv, err := c.js.KeyValue(ctx, want.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = c.js.CreateKeyValue(ctx, want)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = c.js.KeyValue(ctx, want.Bucket)
		}
	}
	if err == nil {
		var st jetstream.KeyValueStatus
		if st, err = kv.Status(ctx); err == nil && st.TTL() != ttl {
			kv, err = c.js.UpdateKeyValue(ctx, want)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("spool: replay bucket %s: %w", want.Bucket, err)
	}
	// Records go out without waiting for their acks, on a context of
	// their own so that only their failures reach this handler.
	puts, err := jetstream.New(c.nc, jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *natsgo.Msg, err error) {
		c.log.Warn(errReplayRecord, "subject", m.Subject, "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("spool: replay bucket %s: %w", want.Bucket, err)
	}
	return &Replay{kv: kv, puts: puts, subject: "$KV." + want.Bucket + "."}, nil
}

// Lookup returns when id was accepted, by any replica, and whether it
// was found at all.
func (r *Replay) Lookup(ctx context.Context, id string) (time.Time, bool, error) {
	e, err := r.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	at, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("replay bucket: entry %s is not a time: %w", id, err)
	}
	return time.Unix(0, at), true, nil
}

// Remember records id as accepted at at. It does not wait for NATS: the
// webhook is accepted already, and a record that fails costs at most a
// repeat that the stream's Nats-Msg-Id drops (a failure NATS reports
// later is logged).
func (r *Replay) Remember(id string, at time.Time) error {
	if _, err := r.puts.PublishAsync(r.subject+id, strconv.AppendInt(nil, at.UnixNano(), 10)); err != nil {
		return fmt.Errorf("%s: %w", errReplayRecord, err)
	}
	return nil
}
