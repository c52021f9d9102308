package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// Replay is the KV bucket of server.replay_cache: nats, through which the
// replicas accept each event id exactly once within its window.
//
// An entry is one of:
//
//	p <since> <claimant>   a replica is delivering the event (a claim)
//	a <until>              the event was kept; copies are duplicates until then
//
// with times in Unix ns. A replica claims an id with Create (which fails
// if the key exists), so of replicas racing on one id exactly one
// delivers; it then overwrites its claim with an "a" entry, or deletes
// the claim when delivery failed so that the sender's retry may claim it
// again. An entry written by an older hookbridge (the bare acceptance
// time) counts as accepted for the bucket's TTL.
type Replay struct {
	kv       jetstream.KeyValue
	puts     jetstream.JetStream // acceptances, published without waiting
	subject  string              // "$KV.<bucket>.", a key's subject without the key
	claimant string
}

// errReplayRecord is logged when a record of the replay bucket fails, at
// once or when NATS answers.
const errReplayRecord = "replay bucket: could not record an accepted id; its claim expires instead, and a retry meanwhile is answered 503 (or, after, published again and dropped by the stream's duplicates window)"

// OpenReplay makes sure the replay bucket exists, its entries kept for
// ttl: at least the longest time any source remembers an id (each
// entry's own expiry is checked against its stored time).
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
	// Acceptances go out without waiting for their acks, on a context of
	// their own so that only their failures reach this handler.
	puts, err := jetstream.New(c.nc, jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *natsgo.Msg, err error) {
		c.log.Warn(errReplayRecord, "subject", m.Subject, "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("spool: replay bucket %s: %w", want.Bucket, err)
	}
	// The claimant names the replica in a claim, for an operator reading
	// the bucket; the protocol itself compares revisions only.
	claimant := c.nc.Opts.Name
	if claimant == "" {
		claimant = "hookbridge"
	}
	if id, err := c.nc.GetClientID(); err == nil {
		claimant += "/" + strconv.FormatUint(id, 10)
	}
	return &Replay{kv: kv, puts: puts, subject: "$KV." + want.Bucket + ".", claimant: claimant}, nil
}

// Claim takes id for this replica at now, unless it is accepted or
// claimed already. A claim older than abandonAfter is taken over: its
// replica died or lost NATS before settling it.
func (r *Replay) Claim(ctx context.Context, id string, now time.Time, abandonAfter time.Duration) (queue.ReplayClaim, error) {
	pending := r.pendingValue(now)
	// A few rounds at most: each lost race means another replica's write
	// landed in between, and the next read sees it.
	for range 4 {
		rev, err := r.kv.Create(ctx, id, pending)
		if err == nil {
			return queue.ReplayClaim{Rev: rev}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return queue.ReplayClaim{}, err
		}
		e, err := r.kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // settled (deleted) in between: create again
		}
		if err != nil {
			return queue.ReplayClaim{}, err
		}
		accepted, at, err := parseReplayEntry(e.Value())
		if err != nil {
			return queue.ReplayClaim{}, fmt.Errorf("replay bucket: entry %s: %w", id, err)
		}
		switch {
		case accepted && now.Before(at):
			return queue.ReplayClaim{Until: at}, nil
		case !accepted && now.Sub(at) < abandonAfter:
			return queue.ReplayClaim{Pending: e.Revision()}, nil
		}
		// An expired acceptance, or an abandoned claim: take it over, on
		// its revision so that of two replicas doing so one wins.
		rev, err = r.kv.Update(ctx, id, pending, e.Revision())
		if err == nil {
			return queue.ReplayClaim{Rev: rev}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return queue.ReplayClaim{}, err
		}
	}
	return queue.ReplayClaim{}, fmt.Errorf("replay bucket: entry %s keeps changing", id)
}

// Wait returns once the claim at revision rev on id is settled (or
// replaced), or with ctx's error.
func (r *Replay) Wait(ctx context.Context, id string, rev uint64) error {
	// The watch starts with the key's current entry, so a settlement
	// between the claim's read and this watch is not missed.
	w, err := r.kv.Watch(ctx, id)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return errors.New("replay bucket: watch ended")
			case e == nil: // the end of the current entries
			case e.Revision() != rev || e.Operation() != jetstream.KeyValuePut:
				return nil
			}
		}
	}
}

// Accept records id as kept, a duplicate until until. It does not wait
// for NATS: the webhook is kept already. A record that fails leaves the
// claim to expire (a failure NATS reports later is logged).
func (r *Replay) Accept(id string, until time.Time) error {
	v := strconv.AppendInt([]byte("a "), until.UnixNano(), 10)
	if _, err := r.puts.PublishAsync(r.subject+id, v); err != nil {
		return fmt.Errorf("%s: %w", errReplayRecord, err)
	}
	return nil
}

// Release deletes this replica's claim at revision rev on id: the
// delivery failed, and the sender's retry must be able to claim it.
func (r *Replay) Release(ctx context.Context, id string, rev uint64) error {
	return r.kv.Delete(ctx, id, jetstream.LastRevision(rev))
}

// Lookup returns until when id is accepted, and whether it is (claims
// in flight are not).
func (r *Replay) Lookup(ctx context.Context, id string) (time.Time, bool, error) {
	e, err := r.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	accepted, until, err := parseReplayEntry(e.Value())
	if err != nil {
		return time.Time{}, false, fmt.Errorf("replay bucket: entry %s: %w", id, err)
	}
	if !accepted {
		return time.Time{}, false, nil
	}
	return until, true, nil
}

func (r *Replay) pendingValue(now time.Time) []byte {
	v := strconv.AppendInt([]byte("p "), now.UnixNano(), 10)
	v = append(v, ' ')
	return append(v, r.claimant...)
}

// parseReplayEntry reads an entry: accepted (with its expiry) or a claim
// (with its start). An older hookbridge's entry, the bare acceptance
// time, is accepted until the bucket's TTL drops it: its expiry is
// returned as the far future.
func parseReplayEntry(v []byte) (accepted bool, at time.Time, err error) {
	kind, rest, _ := bytes.Cut(v, []byte{' '})
	switch string(kind) {
	case "a":
		ns, err := strconv.ParseInt(string(rest), 10, 64)
		return true, time.Unix(0, ns), err
	case "p":
		since, _, _ := bytes.Cut(rest, []byte{' '})
		ns, err := strconv.ParseInt(string(since), 10, 64)
		return false, time.Unix(0, ns), err
	}
	if _, err := strconv.ParseInt(string(v), 10, 64); err != nil {
		return false, time.Time{}, errors.New("neither a claim, an acceptance nor a time")
	}
	return true, legacyUntil, nil
}

// legacyUntil is the expiry of an older hookbridge's entry: none before
// the bucket's TTL drops it.
var legacyUntil = time.Unix(1<<32, 0)
