package bridge

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/spool"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// JetStreamSpool is the spool of backend jetstream: a work-queue stream in
// the user's NATS that every replica appends to and delivers from, and,
// with server.replay_cache: nats, the KV bucket of accepted event ids. It
// is opened once at start, like the local spool's file.
//
// Layout: one message per event and sink target, on the subject
// <prefix>.q.<sink>.<partition>, where the partition is a hash of the task
// id; its body is the local spool's record format (bridge/spool). Each
// (sink, partition) has a durable pull consumer with MaxAckPending 1 that
// all replicas pull from, so a task's messages go out one at a time and
// in order, whichever replica takes each. Dead letters wait on
// <prefix>.dead.<sink>, which no consumer reads, until the stream's
// max_age.
type JetStreamSpool struct {
	cfg    SpoolConfig
	nc     *natsgo.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	replay *replayBucket // nil unless server.replay_cache: nats
	log    *slog.Logger

	statsMu sync.Mutex
	stats   spool.Stats // cached for a second: every gauge of a scrape asks
	statsAt time.Time
}

// partitionsKey is the stream metadata key recording the partition count
// its messages are laid out in.
const partitionsKey = "hookbridge_partitions"

// OpenJetStreamSpool connects to cfg.Spool.URL and makes sure the stream
// (and with server.replay_cache: nats, the KV bucket) exists with cfg's
// settings.
func OpenJetStreamSpool(ctx context.Context, cfg *Config, log *slog.Logger) (*JetStreamSpool, error) {
	j, err := connectJetStream(cfg, log)
	if err != nil {
		return nil, err
	}
	if cfg.UsesSpool() {
		if err := setUp(ctx, log, j.ensureStream); err != nil {
			j.nc.Close()
			return nil, err
		}
	}
	if cfg.Server.ReplayCache == ReplayNATS {
		if err := setUp(ctx, log, func(ctx context.Context) error { return j.ensureReplayBucket(ctx, cfg) }); err != nil {
			j.nc.Close()
			return nil, err
		}
	}
	return j, nil
}

// connectJetStream connects to cfg.Spool.URL.
func connectJetStream(cfg *Config, log *slog.Logger) (*JetStreamSpool, error) {
	c := cfg.Spool
	opts := []natsgo.Option{
		natsgo.Name("hookbridge-spool"),
		natsgo.Timeout(c.ConnectTimeout),
		natsgo.MaxReconnects(-1), // a NATS outage must not end the spool
		natsgo.ReconnectWait(250 * time.Millisecond),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil { // nil: closed on purpose
				log.Warn("spool: disconnected from NATS; reconnecting", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info("spool: reconnected to NATS", "server", natssink.Redact(nc.ConnectedUrlRedacted()))
		}),
	}
	opts = append(opts, natssink.AuthOptions(c.CredsFile, c.Token, c.User, c.Password)...)
	nc, err := natsgo.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("spool: connect to NATS at %s: %v; is it running and reachable from here?", natssink.Redact(c.URL), err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.Server.PublishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	return &JetStreamSpool{cfg: c, nc: nc, js: js, log: log}, nil
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

// ensureStream creates the stream, or brings an existing one to cfg's
// limits. The partition count is only changed while no message waits:
// messages laid out in the old count would otherwise lose their order.
func (j *JetStreamSpool) ensureStream(ctx context.Context) error {
	c := j.cfg
	want := jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "hookbridge's shared spool: one message per event and sink target",
		Subjects:    []string{c.SubjectPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     int64(c.MaxEvents),
		MaxBytes:    c.MaxBytes,
		MaxAge:      c.MaxAge,
		Duplicates:  c.Duplicates,
		Replicas:    c.Replicas,
		Storage:     j.storage(),
		Metadata:    map[string]string{partitionsKey: strconv.Itoa(c.Partitions)},
	}
	st, err := j.js.Stream(ctx, c.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = j.js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = j.js.Stream(ctx, c.Stream) // another replica was first
		}
	}
	if err != nil {
		return fmt.Errorf("spool: stream %s: %w", c.Stream, err)
	}
	j.stream = st
	have := st.CachedInfo().Config
	if have.Retention != jetstream.WorkQueuePolicy || len(have.Subjects) != 1 || have.Subjects[0] != want.Subjects[0] {
		return fmt.Errorf("spool: stream %s exists but is not hookbridge's (retention %v, subjects %v; want workqueue on %s): name another with spool.stream", c.Stream, have.Retention, have.Subjects, want.Subjects[0])
	}
	if p := have.Metadata[partitionsKey]; p != "" && p != want.Metadata[partitionsKey] {
		st, err := j.readStats(ctx)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if st.Pending > 0 {
			return fmt.Errorf("spool.partitions: stream %s holds %d waiting messages laid out in %s partitions; run with partitions: %s until it is empty, then change it", c.Stream, st.Pending, p, p)
		}
		j.log.Info("spool: the stream is empty; changing its partition count", "from", p, "to", c.Partitions)
		if err := j.dropLanesFrom(ctx, c.Partitions); err != nil {
			return err
		}
	}
	if !sameStreamConfig(have, want) {
		if j.stream, err = j.js.UpdateStream(ctx, want); err != nil {
			return fmt.Errorf("spool: update stream %s to the config's limits: %w", c.Stream, err)
		}
	}
	return nil
}

// dropLanesFrom deletes the consumers of partitions n and up, which a
// smaller partition count leaves without messages.
func (j *JetStreamSpool) dropLanesFrom(ctx context.Context, n int) error {
	names := j.stream.ConsumerNames(ctx)
	var stale []string
	for name := range names.Name() {
		i := strings.LastIndexByte(name, '_')
		if p, err := strconv.Atoi(name[i+1:]); strings.HasPrefix(name, "hookbridge_") && err == nil && p >= n {
			stale = append(stale, name)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("spool: list the stream's consumers: %w", err)
	}
	for _, name := range stale {
		if err := j.stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("spool: delete consumer %s of a partition no longer used: %w", name, err)
		}
	}
	return nil
}

// storage is spool.storage as JetStream's type, for the stream and the
// bucket alike.
func (j *JetStreamSpool) storage() jetstream.StorageType {
	if j.cfg.Storage == "memory" {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// sameStreamConfig compares the settings hookbridge manages.
func sameStreamConfig(a, b jetstream.StreamConfig) bool {
	return a.MaxMsgs == b.MaxMsgs && a.MaxBytes == b.MaxBytes && a.MaxAge == b.MaxAge &&
		a.Duplicates == b.Duplicates && a.Replicas == b.Replicas && a.Storage == b.Storage &&
		a.Discard == b.Discard && a.Metadata[partitionsKey] == b.Metadata[partitionsKey]
}

// ensureReplayBucket creates the KV bucket of server.replay_cache: nats.
// Its TTL is the longest replay window of the sources; each lookup checks
// its own source's window against the stored time.
func (j *JetStreamSpool) ensureReplayBucket(ctx context.Context, cfg *Config) error {
	var ttl time.Duration
	for _, src := range cfg.Sources {
		ttl = max(ttl, replayWindow(cfg, src))
	}
	if ttl == 0 {
		return errors.New("server.replay_cache: nats, but no source remembers ids (every tolerance and server.replay_window is 0): use memory")
	}
	want := jetstream.KeyValueConfig{
		Bucket:      j.cfg.ReplayBucket,
		Description: "hookbridge: ids of accepted events, for recognizing a sender's retry on any replica",
		History:     1,
		TTL:         ttl,
		Storage:     j.storage(),
		Replicas:    j.cfg.Replicas,
	}
	// Look first, create if missing, update if it differs: replicas that
	// start together then mostly read, which does not race.
	kv, err := j.js.KeyValue(ctx, want.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = j.js.CreateKeyValue(ctx, want)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = j.js.KeyValue(ctx, want.Bucket)
		}
	}
	if err == nil {
		var st jetstream.KeyValueStatus
		if st, err = kv.Status(ctx); err == nil && st.TTL() != ttl {
			kv, err = j.js.UpdateKeyValue(ctx, want)
		}
	}
	if err != nil {
		return fmt.Errorf("spool: replay bucket %s: %w", j.cfg.ReplayBucket, err)
	}
	// Records go out without waiting for their acks, on a context of
	// their own so that only their failures reach this handler.
	puts, err := jetstream.New(j.nc, jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *natsgo.Msg, err error) {
		j.log.Warn(errReplayRecord, "subject", m.Subject, "err", err)
	}))
	if err != nil {
		return fmt.Errorf("spool: replay bucket %s: %w", j.cfg.ReplayBucket, err)
	}
	j.replay = &replayBucket{kv: kv, puts: puts, subject: "$KV." + want.Bucket + "."}
	return nil
}

// subject is where a message for sink in partition p waits.
func (j *JetStreamSpool) subject(sink string, p int) string {
	return j.cfg.SubjectPrefix + ".q." + sink + "." + strconv.Itoa(p)
}

// deadSubject is where sink's dead letters wait.
func (j *JetStreamSpool) deadSubject(sink string) string {
	return j.cfg.SubjectPrefix + ".dead." + sink
}

// consumerName is the durable consumer of sink's partition p.
func consumerName(sink string, p int) string { return "hookbridge_" + sink + "_" + strconv.Itoa(p) }

// partition is the lane of a task: a stable hash, so that every replica
// puts a task's messages on the same subject. Events without a task id
// spread by their own id.
func (j *JetStreamSpool) partition(taskID, eventID string) int {
	k := taskID
	if k == "" {
		k = eventID
	}
	h := fnv.New32a()
	h.Write([]byte(k))
	return int(h.Sum32() % uint32(j.cfg.Partitions))
}

// append stores recs, each under msgID(rec) so that a repeat within the
// stream's duplicates window is stored once, and returns once NATS
// acknowledged them all.
func (j *JetStreamSpool) append(ctx context.Context, recs []jsRecord) error {
	futures := make([]jetstream.PubAckFuture, 0, len(recs))
	var errs []error
	for _, r := range recs {
		m := natsgo.NewMsg(r.subject)
		m.Header.Set(jetstream.MsgIDHeader, r.msgID)
		m.Data = spool.Marshal(&r.rec)
		f, err := j.js.PublishMsgAsync(m, jetstream.WithExpectStream(j.cfg.Stream))
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
		return fmt.Errorf("%w: stream %s: %v", spool.ErrFull, j.cfg.Stream, err)
	}
	return fmt.Errorf("stream %s: %w", j.cfg.Stream, err)
}

// jsRecord is one message to append.
type jsRecord struct {
	subject, msgID string
	rec            spool.Record
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

// Stats reads the stream's counts, at most once a second.
func (j *JetStreamSpool) Stats(ctx context.Context) (spool.Stats, error) {
	j.statsMu.Lock()
	defer j.statsMu.Unlock()
	if time.Since(j.statsAt) < time.Second {
		return j.stats, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := j.readStats(ctx)
	if err != nil {
		return spool.Stats{}, err
	}
	j.stats, j.statsAt = st, time.Now()
	return st, nil
}

// readStats counts the messages waiting for each sink, and the dead
// letters, from the stream's per-subject counts; Oldest is the first
// waiting message's time (dead letters, kept for days, do not count).
// PendingBytes is the whole stream's, dead letters included.
func (j *JetStreamSpool) readStats(ctx context.Context) (spool.Stats, error) {
	p := j.cfg.SubjectPrefix
	info, err := j.stream.Info(ctx, jetstream.WithSubjectFilter(p+".>"))
	if err != nil {
		return spool.Stats{}, fmt.Errorf("stream %s: %w", j.cfg.Stream, err)
	}
	st := spool.Stats{BySink: map[string]int{}, PendingBytes: int64(info.State.Bytes)}
	for subj, n := range info.State.Subjects {
		if sink, ok := strings.CutPrefix(subj, p+".dead."); ok && sink != "" {
			st.Dead += int(n)
		} else if rest, ok := strings.CutPrefix(subj, p+".q."); ok {
			sink, _, _ := strings.Cut(rest, ".")
			st.Pending += int(n)
			st.BySink[sink] += int(n)
		}
	}
	if st.Pending > 0 {
		first, err := j.stream.GetMsg(ctx, info.State.FirstSeq, jetstream.WithGetMsgSubject(p+".q.>"))
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return spool.Stats{}, fmt.Errorf("stream %s: the oldest waiting message: %w", j.cfg.Stream, err)
		}
		if first != nil {
			st.Oldest = first.Time
		}
	}
	return st, nil
}

// Ready reports why the spool cannot take webhooks now, or nil.
func (j *JetStreamSpool) Ready(ctx context.Context) error {
	if !j.nc.IsConnected() {
		return fmt.Errorf("not connected to the spool's NATS (%s)", j.nc.Status())
	}
	st, err := j.Stats(ctx)
	if err != nil {
		return err
	}
	if c := j.cfg; st.Pending+st.Dead >= c.MaxEvents || st.PendingBytes >= c.MaxBytes {
		return fmt.Errorf("spool stream %s is full: %d messages, %d bytes", c.Stream, st.Pending+st.Dead, st.PendingBytes)
	}
	return nil
}

// Close flushes what was acknowledged to NATS (acks included) and closes
// the connection. Cut off from NATS it just closes: the acks and NAKs
// not sent are made up for by redelivery after ack_wait.
func (j *JetStreamSpool) Close() error {
	if j == nil {
		return nil
	}
	if !j.nc.IsConnected() {
		j.nc.Close()
		return nil
	}
	err := j.nc.FlushTimeout(5 * time.Second)
	j.nc.Close()
	if err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) {
		return fmt.Errorf("spool: flush to NATS: %w", err)
	}
	return nil
}

// replayBucket is the KV bucket of server.replay_cache: nats: each
// accepted id with when it was accepted, so that a sender's retry that
// another replica takes is recognized too.
type replayBucket struct {
	kv      jetstream.KeyValue
	puts    jetstream.JetStream // records, published without waiting
	subject string              // "$KV.<bucket>.", a key's subject without the key
}

// sharedReplay is one source's view of the replay bucket.
type sharedReplay struct {
	bucket *replayBucket
	log    *slog.Logger
}

// seen reports whether id was accepted less than window before now, on
// any replica. A lookup that fails counts as not seen: the event is then
// delivered again, and the stream's and sinks' Nats-Msg-Id still drop the
// repeat within their windows.
func (r *sharedReplay) seen(ctx context.Context, id string, window time.Duration, now time.Time) bool {
	e, err := r.bucket.kv.Get(ctx, id)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			r.log.Warn("replay bucket lookup failed; treating the event as new", "id", id, "err", err)
		}
		return false
	}
	at, err := strconv.ParseInt(string(e.Value()), 10, 64)
	return err == nil && now.Sub(time.Unix(0, at)) < window
}

// remember records id as accepted at now. It does not wait for NATS: the
// webhook is accepted already, and a record that fails costs at most a
// repeat that the stream's Nats-Msg-Id drops (the handler logs it).
func (r *sharedReplay) remember(id string, now time.Time) {
	if _, err := r.bucket.puts.PublishAsync(r.bucket.subject+id, strconv.AppendInt(nil, now.UnixNano(), 10)); err != nil {
		r.log.Warn(errReplayRecord, "id", id, "err", err)
	}
}

// errReplayRecord is logged when a record of the replay bucket fails, at
// once or when NATS answers.
const errReplayRecord = "replay bucket: could not record an accepted id; a retry on another replica may be published again (the stream's duplicates window still drops it)"
