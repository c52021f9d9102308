// Package redis is the sink for Redis Streams, built on the official
// client, github.com/redis/go-redis/v9.
//
// Each message becomes one stream entry, added with XADD (and, with
// max_len, approximate trimming: MAXLEN ~ N) to the message's target
// stream, or to the sink's stream when the target names none. Redis has no
// CloudEvents binding; the entry's fields follow the sink's content_mode:
//
//   - structured: one field, "event", holding the CloudEvent JSON, plus
//     "traceparent" and "tracestate", where tracers look: the publish's
//     trace context (Message.Trace, the producer span's when hookbridge
//     traces), else the event's, when there is one;
//   - binary: one field per attribute, named as the attribute
//     ("specversion", "id", "source", "type", "subject", "time",
//     "datacontenttype", extensions...), then "data", the event's data
//     byte for byte (left out when the event has none). Fields are binary
//     safe, so every event goes binary, unlike NATS or SQS. The
//     "traceparent" and "tracestate" fields are then the event's
//     attributes: a field has one value, and that is the attribute's.
//
// A batch is one pipeline, one round trip; Publish returns nil only once
// Redis answered every XADD with the entry's id. A message whose XADD
// Redis refuses fails alone; a key holding another type than a stream
// (WRONGTYPE) is marked sinks.Permanent. A connection that fails fails the
// whole batch, retryably.
//
// Redis keeps the entries of one stream in the order they were added, and
// one batch goes over one connection in order: one task's events, published
// in turn, are read in order. Redis does not de-duplicate: a webhook
// delivered again (or a pipeline go-redis sent again after a broken
// connection) is added twice, and consumers de-duplicate on the event id
// (the "id" member of "event", or the "id" field).
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/hookbridge/hookbridge/sinks"
)

// DefaultConnectTimeout is connect_timeout's default.
const DefaultConnectTimeout = 5 * time.Second

// exampleURL is what errors suggest writing.
const exampleURL = "redis://127.0.0.1:6379/0"

// Field names of a stream entry.
const (
	// EventField holds the structured CloudEvent.
	EventField = "event"
	// DataField holds the event's data in binary mode.
	DataField = "data"
)

// Config configures a Redis sink. SetDefaults fills the zero fields.
type Config struct {
	// URL is the server: redis://[[user]:password@]host[:port][/db], or
	// rediss:// for TLS. go-redis's query options (?dial_timeout=...,
	// ?pool_size=...) apply. Give a password as ${VAR}; it never appears in
	// logs or errors. Required.
	URL string `yaml:"url"`
	// Stream is the stream for messages whose route names none; it may be
	// a template. Default empty: every route must name a stream.
	Stream string `yaml:"stream"`
	// MaxLen trims each stream to about this many entries as it adds one
	// (XADD MAXLEN ~ N): Redis trims whole nodes, so a stream may hold a
	// few more. Default 0: no trimming.
	MaxLen int64 `yaml:"max_len"`
	// ContentMode is how events are laid on entries: "structured" (field
	// "event", the CloudEvent JSON) or "binary" (field "data" plus one
	// field per attribute). Default "structured".
	ContentMode sinks.ContentMode `yaml:"content_mode"`
	// SkipProbe starts the sink without contacting Redis, for a server
	// that comes up after hookbridge. Default false: New checks that Redis
	// answers PING and that the streams known in advance are streams (or
	// do not exist yet).
	SkipProbe bool `yaml:"skip_probe"`
	// ConnectTimeout bounds each connection attempt and the start-up
	// probe; it overrides the URL's dial_timeout. Default
	// DefaultConnectTimeout (5s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// SetDefaults fills zero fields with their defaults. It is idempotent.
func (c *Config) SetDefaults() {
	c.ContentMode.SetDefault()
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
}

// Validate reports every problem in c (after SetDefaults) as
// *sinks.ConfigError values. It never shows the URL's password.
func (c *Config) Validate() error {
	var errs []error
	if err := checkURL(c.URL); err != nil {
		errs = append(errs, sinks.Problemf("url", "%v", err))
	}
	if c.MaxLen < 0 {
		errs = append(errs, sinks.Problemf("max_len", "%d: use the number of entries to trim each stream to (about), or 0 to keep every entry", c.MaxLen))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, sinks.Problemf("connect_timeout", "%q: use a positive duration such as 5s", c.ConnectTimeout))
	}
	errs = append(errs, c.ContentMode.Check("content_mode"))
	return errors.Join(errs...)
}

// checkURL checks a server URL; its error shows the URL redacted.
func checkURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("missing: write your server's URL, e.g. %q", exampleURL)
	}
	_, err := parseURL(raw)
	return err
}

// parseURL parses a redis:// or rediss:// URL into client options. Its
// error never holds the password: url.Parse's quotes the URL whole, so
// only its reason is kept.
func parseURL(raw string) (*goredis.Options, error) {
	shown := Redact(raw)
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%q is not a URL (%v): write e.g. %q", shown, err, exampleURL)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("%q: the scheme must be redis:// or rediss:// (TLS): write e.g. %q", shown, exampleURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q names no host: write e.g. %q", shown, exampleURL)
	}
	opts, err := goredis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%q: %v: write e.g. %q", shown, scrub(err.Error(), secretsOf(raw)), exampleURL)
	}
	return opts, nil
}

// Secrets returns the password in the URL, as written and
// percent-decoded. It implements sinks.SecretHolder.
func (c *Config) Secrets() []string { return secretsOf(c.URL) }

// secretsOf returns the password of a URL's user info, as written and
// decoded. A lone user info is taken as a password too: some write
// redis://secret@host, and showing it would leak it.
func secretsOf(raw string) []string {
	info, ok := userInfo(raw)
	if !ok {
		return nil
	}
	if _, pass, ok := strings.Cut(info, ":"); ok {
		info = pass
	}
	if info == "" {
		return nil
	}
	out := []string{info}
	if un, err := url.PathUnescape(info); err == nil && un != info {
		out = append(out, un)
	}
	return out
}

// userInfo returns what stands between "://" and the last '@' before the
// path.
func userInfo(raw string) (string, bool) {
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return "", false
	}
	return rest[:at], true
}

// Redact drops the user info from a URL, so it can be shown.
func Redact(raw string) string {
	info, ok := userInfo(raw)
	if !ok {
		return raw
	}
	return strings.Replace(raw, info+"@", "", 1)
}

// scrub replaces each secret in s.
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// Sink publishes to Redis Streams.
type Sink struct {
	cfg     Config
	cl      *goredis.Client
	addr    string // the server, to name in errors
	secrets []string
	// pipelines counts the pipelines still running, which Close waits
	// for: a Publish whose ctx ended returns before its pipeline does.
	pipelines sync.WaitGroup
}

// New connects a sink to the Redis at cfg.URL. Unless cfg.SkipProbe, it
// checks that Redis answers PING and that each of streams is a stream or
// does not exist yet.
func New(ctx context.Context, cfg Config, streams []string, log *slog.Logger) (*Sink, error) {
	cfg.SetDefaults()
	opts, err := parseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis: url %v", err)
	}
	opts.DialTimeout = cfg.ConnectTimeout
	// A Publish's deadline bounds its reads and writes, so that the
	// caller's timeout, not go-redis's 5s default, decides.
	opts.ContextTimeoutEnabled = true
	if opts.ClientName == "" {
		opts.ClientName = "hookbridge"
	}
	s := &Sink{cfg: cfg, cl: goredis.NewClient(opts), addr: opts.Addr, secrets: secretsOf(cfg.URL)}
	if cfg.SkipProbe {
		return s, nil
	}
	if err := s.probe(ctx, streams); err != nil {
		s.cl.Close()
		return nil, err
	}
	return s, nil
}

// probe checks, within connect_timeout, that Redis answers and that no
// stream of streams is a key of another type.
func (s *Sink) probe(ctx context.Context, streams []string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	if err := s.cl.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %s does not answer PING: %s; is the server running, and the URL right? (or skip_probe: true if it comes up later)",
			s.addr, scrub(err.Error(), s.secrets))
	}
	if len(streams) == 0 {
		return nil
	}
	pipe := s.cl.Pipeline()
	types := make([]*goredis.StatusCmd, len(streams))
	for i, st := range streams {
		types[i] = pipe.Type(ctx, st)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis: look up the type of streams %s on %s: %s", strings.Join(streams, ", "), s.addr, scrub(err.Error(), s.secrets))
	}
	var errs []error
	for i, st := range streams {
		switch typ := types[i].Val(); typ {
		case "stream", "none":
		default:
			errs = append(errs, fmt.Errorf("redis: key %q on %s holds a %s, not a stream: every XADD to it would fail; route to another stream or delete the key", st, s.addr, typ))
		}
	}
	return errors.Join(errs...)
}

var errNoStream = errors.New("no stream: name one in the route or set the sink's stream")

// Publish implements sinks.Sink: one XADD per message, pipelined. With ctx
// already done it sends nothing; when ctx ends before Redis answered, it
// returns at once and counts nothing as confirmed.
func (s *Sink) Publish(ctx context.Context, batch []sinks.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: not published: %w", err)
	}
	if len(batch) == 0 {
		return nil
	}
	var failed failures
	// The pipeline may outlive Publish (see below), and a Sink must not
	// read a Message after Publish returns: the entries are built from a
	// copy of the bodies, one allocation per batch.
	size := 0
	for i := range batch {
		size += len(batch[i].Body)
	}
	arena := make([]byte, 0, size)
	pipe := s.cl.Pipeline()
	cmds := make([]*goredis.StringCmd, len(batch))
	streams := make([]string, len(batch))
	for i := range batch {
		m := batch[i]
		start := len(arena)
		arena = append(arena, m.Body...)
		m.Body = arena[start:len(arena):len(arena)]
		stream := m.Target
		if stream == "" {
			stream = s.cfg.Stream
		}
		if stream == "" {
			failed.add(i, sinks.Permanent(errNoStream))
			continue
		}
		values, err := s.values(&m)
		if err != nil {
			failed.add(i, sinks.Permanent(fmt.Errorf("redis: stream %q: %w", stream, err)))
			continue
		}
		streams[i] = stream
		args := &goredis.XAddArgs{Stream: stream, Values: values}
		if s.cfg.MaxLen > 0 {
			args.MaxLen, args.Approx = s.cfg.MaxLen, true
		}
		cmds[i] = pipe.XAdd(ctx, args)
	}
	if pipe.Len() > 0 {
		if err := s.exec(ctx, pipe); err != nil {
			return err
		}
	}
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		err := cmd.Err()
		if err == nil {
			continue
		}
		var reply goredis.Error
		if !errors.As(err, &reply) {
			// The connection failed: which XADDs Redis ran is unknown.
			return fmt.Errorf("redis: XADD on %s: %s", s.addr, s.wrapScrubbed(err))
		}
		err = fmt.Errorf("redis: XADD to stream %q: %w", streams[i], err)
		if goredis.HasErrorPrefix(err, "WRONGTYPE") {
			// The key holds another type: no XADD to it can succeed
			// until someone deletes it.
			err = sinks.Permanent(err)
		}
		failed.add(i, err)
	}
	if len(failed) > 0 {
		return &sinks.BatchError{Failed: failed}
	}
	return nil
}

// exec runs pipe and waits for its replies or for ctx to end, whichever
// comes first: go-redis stops at a deadline, but not at a cancellation,
// while a hung server holds the connection. An abandoned pipeline ends at
// the server's reply, its connection's failure or Close.
func (s *Sink) exec(ctx context.Context, pipe goredis.Pipeliner) error {
	done := make(chan struct{})
	s.pipelines.Add(1)
	go func() {
		defer s.pipelines.Done()
		defer close(done)
		_, _ = pipe.Exec(ctx) // each command holds its own result
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		select {
		case <-done: // the replies came first: report them
			return nil
		default:
		}
		return fmt.Errorf("redis: no reply from %s yet: %w", s.addr, ctx.Err())
	}
}

// wrapScrubbed returns err without the URL's password, still wrapping
// what err wraps (context errors, net errors) when there is none to hide.
func (s *Sink) wrapScrubbed(err error) error {
	msg := err.Error()
	if scrubbed := scrub(msg, s.secrets); scrubbed != msg {
		return errors.New(scrubbed)
	}
	return err
}

// values lays m out as an entry's fields in the sink's content mode.
func (s *Sink) values(m *sinks.Message) ([]any, error) {
	if s.cfg.ContentMode != sinks.Binary {
		values := []any{EventField, m.Body}
		// The W3C trace context under its own names, where tracers look:
		// the publish's (see sinks.Message.Trace), else the event's.
		for _, a := range m.TraceHeaders() {
			if a.Value != "" {
				values = append(values, a.Name, a.Value)
			}
		}
		return values, nil
	}
	// Binary fields are the attributes themselves: "traceparent" is the
	// event's, which no other value may replace, and there is no field
	// left for the publish's trace context.
	data, err := m.Data()
	if err != nil {
		return nil, err
	}
	values := make([]any, 0, 2*len(m.Attrs)+2)
	for _, a := range m.Attrs {
		if a.Name == DataField || a.Name == EventField {
			return nil, fmt.Errorf("an attribute named %q would collide with the entry's own field", a.Name)
		}
		values = append(values, a.Name, a.Value)
	}
	if data != nil {
		values = append(values, DataField, data)
	}
	return values, nil
}

// failures are a batch's failed messages by index, made on the first.
type failures map[int]error

func (f *failures) add(i int, err error) {
	if *f == nil {
		*f = failures{}
	}
	(*f)[i] = err
}

// Close closes the client, then waits, within ctx, for the pipelines
// abandoned by a Publish whose ctx ended. Redis holds every confirmed
// entry already: there is nothing to flush.
func (s *Sink) Close(ctx context.Context) error {
	err := s.cl.Close()
	done := make(chan struct{})
	go func() {
		s.pipelines.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("redis: close: a publish is still waiting for %s: %w", s.addr, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}
