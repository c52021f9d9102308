// Package nats is the sink for NATS: core NATS, or JetStream with a
// confirmed, de-duplicated publish. It can also run an embedded nats-server
// so hookbridge needs nothing else installed.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/sinks"
)

// StorageValues are the values stream.storage takes.
var StorageValues = []string{"file", "memory"}

// Embedded is the URL value that starts an in-process nats-server.
const Embedded = "embedded"

// Defaults of Config, applied by SetDefaults.
const (
	DefaultStreamName       = "HOOKBRIDGE"
	DefaultStorage          = "file"
	DefaultReplicas         = 1
	DefaultDuplicates       = 2 * time.Minute
	DefaultEmbeddedListen   = "127.0.0.1:4222"
	DefaultEmbeddedStoreDir = "./data/nats"
)

// Config configures a NATS sink. SetDefaults fills the zero fields.
type Config struct {
	// Connection holds url, the credentials and connect_timeout. URL is
	// "embedded" or one or more comma-separated nats:// (or tls://)
	// server URLs. Required.
	Connection `yaml:",inline"`
	// JetStream publishes through JetStream: Publish waits for the PubAck
	// and sets Nats-Msg-Id to "<event id>:<subject>", so a redelivered
	// webhook is stored once per subject. False publishes on core NATS and flushes before
	// returning. Default false.
	JetStream bool `yaml:"jetstream"`
	// Subject is the subject for messages whose route names none. Default
	// empty: every route must name a subject.
	Subject string `yaml:"subject"`
	// Stream is the JetStream stream hookbridge publishes into.
	Stream StreamConfig `yaml:"stream"`
	// Embedded configures the in-process server when URL is "embedded".
	Embedded EmbeddedConfig `yaml:"embedded"`
	// SkipProbe starts without the server: New does not fail when NATS is
	// unreachable but keeps connecting in the background, and sets up the
	// stream once connected. Until then publishes fail (webhooks get 503).
	// Default false: New fails with a clear error when NATS is unreachable.
	SkipProbe bool `yaml:"skip_probe"`
	// ContentMode is how events are laid on messages: "structured" (the
	// CloudEvent JSON as the body, content-type
	// application/cloudevents+json) or "binary" (data as the body,
	// attributes as ce- headers, as the CloudEvents SDKs' NATS JetStream
	// binding reads them). Default "structured".
	ContentMode sinks.ContentMode `yaml:"content_mode"`
}

// StreamConfig is the JetStream stream the sink publishes into.
type StreamConfig struct {
	// Name is the stream's name. Default DefaultStreamName ("HOOKBRIDGE").
	Name string `yaml:"name"`
	// Create creates the stream, for the subjects no existing stream
	// covers, when it does not exist. An existing stream, this one or the
	// user's, is used as it is and never modified. Default true.
	Create *bool `yaml:"create"`
	// Subjects are the stream's subjects when it is created. Default: the
	// subjects the routes publish to, with template variables as "*".
	Subjects []string `yaml:"subjects"`
	// Storage is "file" or "memory". Default DefaultStorage ("file").
	Storage string `yaml:"storage"`
	// Replicas is the stream's replica count, 1 to 5. Default
	// DefaultReplicas (1).
	Replicas int `yaml:"replicas"`
	// MaxAge discards messages older than this. Default 0: unlimited.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBytes caps the stream's size. Default 0 (or -1): unlimited.
	MaxBytes int64 `yaml:"max_bytes"`
	// Duplicates is the window in which JetStream drops a message whose
	// Nats-Msg-Id it has seen. Default DefaultDuplicates (2m).
	Duplicates time.Duration `yaml:"duplicates"`
}

// EmbeddedConfig configures the in-process nats-server.
type EmbeddedConfig struct {
	// Listen is where NATS clients connect (hookbridge tail, consumers).
	// Default DefaultEmbeddedListen ("127.0.0.1:4222"); keep it on loopback unless you mean to
	// expose it. Port 0 or -1 picks a free port.
	Listen string `yaml:"listen"`
	// StoreDir holds JetStream's data. Default DefaultEmbeddedStoreDir
	// ("./data/nats").
	StoreDir string `yaml:"store_dir"`
}

// SetDefaults fills zero fields with their defaults. It is idempotent.
func (c *Config) SetDefaults() {
	c.Connection.SetDefaults()
	c.ContentMode.SetDefault()
	s := &c.Stream
	if s.Name == "" {
		s.Name = DefaultStreamName
	}
	if s.Create == nil {
		t := true
		s.Create = &t
	}
	if s.Storage == "" {
		s.Storage = DefaultStorage
	}
	if s.Replicas == 0 {
		s.Replicas = DefaultReplicas
	}
	if s.Duplicates == 0 {
		s.Duplicates = DefaultDuplicates
	}
	if c.URL == Embedded {
		if c.Embedded.Listen == "" {
			c.Embedded.Listen = DefaultEmbeddedListen
		}
		if c.Embedded.StoreDir == "" {
			c.Embedded.StoreDir = DefaultEmbeddedStoreDir
		}
	}
}

// Validate reports every problem in c (after SetDefaults) as
// *sinks.ConfigError values.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.URL == "":
		errs = append(errs, sinks.Problemf("url", `missing: write "embedded" or your server's nats://host:4222`))
	case c.URL == Embedded:
		if _, err := listenAddr(c.Embedded.Listen); err != nil {
			errs = append(errs, sinks.Problemf("embedded.listen", "%v", err))
		}
	default:
		if c.Embedded != (EmbeddedConfig{}) {
			errs = append(errs, sinks.Problemf("embedded", `only applies with url: embedded: remove it`))
		}
	}
	s := c.Stream
	if !slices.Contains(StorageValues, s.Storage) {
		errs = append(errs, sinks.Problemf("stream.storage", `%q: use "file" or "memory"`, s.Storage))
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		errs = append(errs, sinks.Problemf("stream.replicas", "%d: use 1 to 5", s.Replicas))
	}
	if strings.ContainsAny(s.Name, " \t.*>/\\") {
		errs = append(errs, sinks.Problemf("stream.name", "%q: a stream name cannot hold spaces, dots, *, >, / or \\", s.Name))
	}
	if s.MaxBytes < -1 {
		errs = append(errs, sinks.Problemf("stream.max_bytes", "%d: use a size in bytes, or 0 for unlimited", s.MaxBytes))
	}
	if s.MaxAge < 0 {
		errs = append(errs, sinks.Problemf("stream.max_age", "%q: use a positive duration such as 720h, or 0 for unlimited", s.MaxAge))
	}
	switch {
	case s.Duplicates < 0:
		errs = append(errs, sinks.Problemf("stream.duplicates", "%q: use a positive duration such as 2m", s.Duplicates))
	case s.MaxAge > 0 && s.Duplicates > s.MaxAge:
		errs = append(errs, sinks.Problemf("stream.duplicates", "%q is longer than stream.max_age %q: JetStream refuses that; shorten it", s.Duplicates, s.MaxAge))
	}
	for i, subj := range s.Subjects {
		if !server.IsValidSubject(subj) {
			errs = append(errs, sinks.Problemf(fmt.Sprintf("stream.subjects[%d]", i), "%q is not a NATS subject: write tokens separated by dots, e.g. task.>", subj))
		}
	}
	errs = append(errs, c.Connection.Validate(), c.ContentMode.Check("content_mode"))
	if c.Subject != "" && !server.IsValidPublishSubject(c.Subject) {
		errs = append(errs, sinks.Problemf("subject", "%q: a subject to publish to is tokens separated by dots, without spaces, * or >", c.Subject))
	}
	return errors.Join(errs...)
}

// listenAddr parses an embedded listen address into host and port, with
// 0 turned into nats-server's "random port".
func listenAddr(s string) (hostPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return hostPort{}, fmt.Errorf("%q is not host:port: write e.g. 127.0.0.1:4222", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < -1 || p > 65535 {
		return hostPort{}, fmt.Errorf("%q: the port must be a number from 0 to 65535", s)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	return hostPort{host, p}, nil
}

type hostPort struct {
	host string
	port int
}

// Sink publishes to NATS. It is safe for concurrent use.
type Sink struct {
	cfg       Config
	nc        *natsgo.Conn
	js        jetstream.JetStream // nil for core NATS
	srv       *server.Server      // the embedded server, if any
	clientURL string
	warnings  []string
	log       *slog.Logger
	// structuredOnce logs, once, that binary mode sent a message
	// structured because a header cannot carry one of its attributes.
	structuredOnce sync.Once
	lateSetup      chan struct{} // with skip_probe: closed once the late stream set-up is done
	closing        chan struct{} // with skip_probe: closed by Close, ends the wait for a connection
}

// New connects to NATS (starting the embedded server first when cfg.URL is
// "embedded") and, with JetStream, makes sure a stream covers subjects: the
// wildcard forms of the subjects routes publish to. log receives the
// embedded server's warnings and the sink's own.
func New(ctx context.Context, cfg Config, subjects []string, log *slog.Logger) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{cfg: cfg, log: log}
	s.clientURL = Redact(strings.TrimSpace(strings.Split(cfg.URL, ",")[0]))
	if cfg.URL == Embedded {
		srv, err := startEmbedded(cfg.Embedded, log)
		if err != nil {
			return nil, err
		}
		s.srv, s.clientURL = srv, srv.ClientURL()
	}
	connectURL := cfg.URL
	if s.srv != nil {
		connectURL = s.clientURL
	}
	opts := []natsgo.Option{
		natsgo.Name("hookbridge"),
		natsgo.Timeout(cfg.ConnectTimeout),
		natsgo.MaxReconnects(-1), // a broker outage must not end the sink
	}
	opts = append(opts, cfg.AuthOptions()...)
	if s.srv != nil {
		// The embedded server is in this process: talk to it over an
		// in-memory pipe, without a socket's system calls per write.
		opts = append(opts, natsgo.InProcessServer(s.srv))
	}
	connected := make(chan struct{}, 1)
	if cfg.SkipProbe && s.srv == nil {
		// Connect in the background; the stream is set up once connected.
		opts = append(opts, natsgo.RetryOnFailedConnect(true),
			natsgo.ConnectHandler(func(*natsgo.Conn) {
				select {
				case connected <- struct{}{}:
				default:
				}
			}))
	}
	nc, err := natsgo.Connect(connectURL, opts...)
	if err != nil {
		s.shutdownServer()
		return nil, fmt.Errorf("nats: connect to %s: %v; is the server running? (or use url: embedded, or skip_probe: true if it comes up later)", Redact(connectURL), err)
	}
	s.nc = nc
	if cfg.JetStream {
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(time.Minute))
		if err == nil {
			s.js = js
			if nc.IsConnected() {
				err = s.ensureStream(ctx, js, subjects)
			}
		}
		if err != nil {
			nc.Close()
			s.shutdownServer()
			return nil, err
		}
	}
	if nc.IsConnected() {
		for _, w := range s.warnings {
			log.Warn(w)
		}
		return s, nil
	}
	log.Warn("nats: not connected yet; connecting in the background (skip_probe)", "url", Redact(connectURL))
	if s.js != nil {
		s.lateSetup, s.closing = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(s.lateSetup)
			select {
			case <-connected:
			case <-s.closing:
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout)
			defer cancel()
			if err := s.ensureStream(ctx, s.js, subjects); err != nil {
				log.Error("nats: stream set-up after a late connect failed", "err", err)
			}
			for _, w := range s.warnings {
				log.Warn(w)
			}
		}()
	}
	return s, nil
}

// ensureStream creates the stream unless one already covers the subjects,
// then records a warning for each subject no stream covers.
func (s *Sink) ensureStream(ctx context.Context, js jetstream.JetStream, subjects []string) error {
	sc := s.cfg.Stream
	if len(sc.Subjects) > 0 {
		subjects = sc.Subjects
	}
	// missing: subjects no stream stores any part of; partial: subjects
	// streams store only part of (say task.finished of task.*), with the
	// names of those streams. Both fail to publish for want of a stream.
	var partial map[string][]string
	uncovered := func() (missing []string, err error) {
		partial = map[string][]string{}
		for _, subj := range subjects {
			covered, overlapping, err := coverage(ctx, js, subj)
			switch {
			case err != nil:
				return nil, s.jetStreamErr(fmt.Sprintf("look up the streams for %q", subj), err)
			case covered:
			case len(overlapping) > 0:
				partial[subj] = overlapping
			default:
				missing = append(missing, subj)
			}
		}
		return missing, nil
	}
	missing, err := uncovered()
	if err != nil {
		return err
	}
	_, err = js.Stream(ctx, sc.Name)
	exists := err == nil
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return s.jetStreamErr(fmt.Sprintf("look up stream %q", sc.Name), err)
	}
	if !exists && len(missing) > 0 {
		if !*sc.Create {
			return fmt.Errorf("nats: no stream covers %s and stream.create is false: create stream %q or set stream.create: true", strings.Join(missing, ", "), sc.Name)
		}
		storage := jetstream.FileStorage
		if sc.Storage == "memory" {
			storage = jetstream.MemoryStorage
		}
		maxBytes := sc.MaxBytes
		if maxBytes == 0 {
			maxBytes = -1
		}
		// Subjects another stream already stores stay there: a stream may
		// not overlap another, and the user's stream is not ours to change.
		create := missing
		if len(sc.Subjects) > 0 {
			create = sc.Subjects
		}
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        sc.Name,
			Description: "Browser Use task events published by hookbridge",
			Subjects:    create,
			Storage:     storage,
			Replicas:    sc.Replicas,
			MaxAge:      sc.MaxAge,
			MaxBytes:    maxBytes,
			Duplicates:  sc.Duplicates,
		}); err != nil {
			return fmt.Errorf("nats: create stream %q for %s: %w", sc.Name, strings.Join(create, ", "), err)
		}
		if missing, err = uncovered(); err != nil {
			return err
		}
	}
	for _, subj := range subjects {
		if streams := partial[subj]; len(streams) > 0 {
			s.warnings = append(s.warnings, fmt.Sprintf("nats: JetStream stream %s stores only part of subject %q: publishes to the rest of it will fail until a stream covers it", quoteList(streams), subj))
		} else if slices.Contains(missing, subj) {
			s.warnings = append(s.warnings, fmt.Sprintf("nats: no JetStream stream covers subject %q: publishes to it will fail until one does", subj))
		}
	}
	return nil
}

// coverage reports whether one stream stores every subject subj matches,
// and otherwise which streams store part of it. Unlike
// StreamNameBySubject, whose server-side filter matches any overlap, it
// does not take a stream of task.finished for one of task.*.
func coverage(ctx context.Context, js jetstream.JetStream, subj string) (covered bool, overlapping []string, err error) {
	streams := js.ListStreams(ctx, jetstream.WithStreamListSubject(subj))
	for info := range streams.Info() { // drain it: the lister's goroutine waits on us
		if covered {
			continue
		}
		for _, ss := range info.Config.Subjects {
			if server.SubjectMatchesFilter(subj, ss) {
				covered = true
				break
			}
		}
		if !covered {
			overlapping = append(overlapping, info.Config.Name)
		}
	}
	if err := streams.Err(); err != nil {
		return false, nil, err
	}
	return covered, overlapping, nil
}

// jetStreamErr words err from a JetStream API call made to do what.
func (s *Sink) jetStreamErr(what string, err error) error {
	if errors.Is(err, natsgo.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return fmt.Errorf("nats: %s: JetStream is not enabled on %s for this account: start nats-server with -js (or set jetstream: false): %w", what, s.clientURL, err)
	}
	return fmt.Errorf("nats: %s: %w", what, err)
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// Ready reports whether the sink is connected to NATS.
func (s *Sink) Ready() error {
	if !s.nc.IsConnected() {
		return fmt.Errorf("not connected to %s (%s)", s.clientURL, strings.ToLower(s.nc.Status().String()))
	}
	return nil
}

// ClientURL is where NATS clients reach the server: the embedded server's
// URL, or the first configured URL without credentials.
func (s *Sink) ClientURL() string { return s.clientURL }

// Warnings lists problems found at start-up that do not stop the sink,
// such as subjects no stream covers. With skip_probe it is complete only
// once the sink has connected.
func (s *Sink) Warnings() []string {
	if s.lateSetup != nil {
		select {
		case <-s.lateSetup:
		default:
			return nil
		}
	}
	return slices.Clone(s.warnings)
}

var errNoSubject = errors.New("no subject: name one in the route or set the sink's subject")

// Publish implements sinks.Sink. With JetStream it publishes the batch
// asynchronously and waits for every PubAck (a duplicate's ack counts: the
// message is stored); on core NATS it publishes and flushes. With ctx
// already done it publishes nothing. A message larger than the server's
// max_payload, or than the stream's max_msg_size, fails alone, marked
// sinks.Permanent.
func (s *Sink) Publish(ctx context.Context, batch []sinks.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: not published: %w", err)
	}
	if !s.nc.IsConnected() {
		// Say so plainly: a connection that never got through would
		// otherwise fail with "headers not supported by this server".
		return fmt.Errorf("nats: not connected to %s (%s)", s.clientURL, strings.ToLower(s.nc.Status().String()))
	}
	var failed failures
	msgs := make([]*natsgo.Msg, len(batch))
	for i, m := range batch {
		subj := m.Target
		if subj == "" {
			subj = s.cfg.Subject
		}
		if subj == "" {
			failed.add(i, sinks.Permanent(errNoSubject))
			continue
		}
		msg, err := s.msg(&batch[i], subj)
		if err != nil {
			failed.add(i, sinks.Permanent(err))
			continue
		}
		msgs[i] = msg
	}
	if s.js != nil {
		s.publishJetStream(ctx, msgs, &failed)
	} else {
		s.publishCore(ctx, msgs, &failed)
	}
	if len(failed) > 0 {
		return &sinks.BatchError{Failed: failed}
	}
	return nil
}

// msg lays m out on subj in the sink's content mode. Header names are
// lower case, as the CloudEvents SDKs read them: nats.go keeps a header's
// case, and the SDKs look up "ce-specversion" and "content-type" exactly.
// In either mode the plain "traceparent" and "tracestate" headers carry
// the publish's trace context (Message.Trace, the producer span's when
// hookbridge traces), else the event's.
//
// A binary message whose attribute a NATS header cannot carry as it is
// (nats.go trims a value's surrounding spaces and turns CR and LF into
// spaces; an empty value reads as absent) goes structured instead, which
// its content-type says: the event arrives whole rather than altered.
func (s *Sink) msg(m *sinks.Message, subj string) (*natsgo.Msg, error) {
	binary := s.cfg.ContentMode == sinks.Binary
	if binary && !headersCarry(m.Attrs) {
		binary = false
		s.structuredOnce.Do(func() {
			s.log.Warn("nats: an event has an attribute a NATS header cannot carry unchanged (empty, surrounding spaces, or a line break); it and any like it go structured, as their content-type header says",
				"subject", subj)
		})
	}
	n := 2
	if binary {
		n += len(m.Attrs)
	}
	h := make(natsgo.Header, n+2)
	// One backing array for every header value, one slice each.
	vals := make([]string, 0, n+2)
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	// A JetStream stream de-duplicates across all its subjects, and one
	// event may be routed to several subjects of the same stream: the
	// subject joins the id so that only true repeats collapse.
	// Without an id there is nothing to de-duplicate on: ":"+subj alone
	// would make JetStream drop every later id-less message as a repeat.
	if m.ID != "" {
		set(jetstream.MsgIDHeader, m.ID+":"+subj)
	}
	body := m.Body
	if binary {
		data, err := m.Data()
		if err != nil {
			return nil, err
		}
		body = data
		for _, a := range m.Attrs {
			if a.Name == "datacontenttype" {
				set(contentTypeHeader, a.Value)
			} else {
				set(ceHeader(a.Name), a.Value)
			}
		}
	} else {
		set(contentTypeHeader, sinks.StructuredContentType)
	}
	// The W3C trace context under its own names, where tracers look: the
	// publish's (see sinks.Message.Trace), while ce-traceparent stays the
	// event's.
	for _, a := range m.TraceHeaders() {
		if a.Value != "" {
			set(a.Name, a.Value)
		}
	}
	return &natsgo.Msg{Subject: subj, Header: h, Data: body}, nil
}

// headersCarry reports whether every attribute value survives a NATS
// header unchanged.
func headersCarry(attrs []sinks.Attr) bool {
	for _, a := range attrs {
		v := a.Value
		if v == "" || strings.ContainsAny(v, "\r\n") {
			return false
		}
	}
	return sinks.Untrimmed(attrs)
}

// contentTypeHeader is the header that names the body's media type.
const contentTypeHeader = "content-type"

// ceHeader is the binary-mode header for CloudEvents attribute name. The
// attributes every event has are spelled out so that publishing builds no
// key.
func ceHeader(name string) string {
	switch name {
	case "specversion":
		return "ce-specversion"
	case "id":
		return "ce-id"
	case "source":
		return "ce-source"
	case "type":
		return "ce-type"
	case "subject":
		return "ce-subject"
	case "time":
		return "ce-time"
	case "status":
		return "ce-status"
	}
	return "ce-" + name
}

// failures are a batch's failed messages by index, made on the first.
type failures map[int]error

func (f *failures) add(i int, err error) {
	if *f == nil {
		*f = failures{}
	}
	(*f)[i] = err
}

func (s *Sink) publishJetStream(ctx context.Context, msgs []*natsgo.Msg, failed *failures) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		if m == nil {
			continue
		}
		f, err := s.js.PublishMsgAsync(m)
		if err != nil {
			failed.add(i, publishErr(m.Subject, err))
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		if err := waitAck(ctx, f); err != nil {
			if errors.Is(err, natsgo.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
				err = fmt.Errorf("no JetStream stream stores subject %q: %w", msgs[i].Subject, err)
			}
			failed.add(i, publishErr(msgs[i].Subject, err))
		}
	}
}

// publishErr words the error of a publish to subject, marked
// sinks.Permanent when publishing the message again cannot succeed: it is
// larger than the server's max_payload or the stream's max_msg_size, or
// the subject is not one the server takes.
func publishErr(subject string, err error) error {
	err = fmt.Errorf("nats: publish to %q: %w", subject, err)
	var apiErr *jetstream.APIError
	if errors.Is(err, natsgo.ErrMaxPayload) || errors.Is(err, natsgo.ErrBadSubject) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
		return sinks.Permanent(err)
	}
	return err
}

// waitAck waits for f's PubAck. A duplicate's ack is a success: the
// message is stored. An answer that has already arrived wins over a done
// ctx, so a late caller does not report a stored message as failed.
func waitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	default:
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return fmt.Errorf("no PubAck yet: %w", ctx.Err())
	}
}

func (s *Sink) publishCore(ctx context.Context, msgs []*natsgo.Msg, failed *failures) {
	sent := 0
	for i, m := range msgs {
		if m == nil {
			continue
		}
		if err := s.nc.PublishMsg(m); err != nil {
			failed.add(i, publishErr(m.Subject, err))
			continue
		}
		sent++
	}
	if sent == 0 {
		return
	}
	// A flush round trip means the server has received everything before
	// it: core NATS has no per-message acknowledgement.
	if err := flush(ctx, s.nc); err != nil {
		for i, m := range msgs {
			if m != nil && (*failed)[i] == nil {
				failed.add(i, fmt.Errorf("nats: flush: %w", err))
			}
		}
	}
}

// Close closes the connection after flushing what it buffered, then stops
// the embedded server, if any.
func (s *Sink) Close(ctx context.Context) error {
	var err error
	if s.closing != nil {
		close(s.closing)
	}
	if s.nc != nil {
		if s.nc.IsConnected() {
			err = flush(ctx, s.nc)
		}
		s.nc.Close()
		if s.lateSetup != nil {
			<-s.lateSetup
		}
	}
	s.shutdownServer()
	if err != nil {
		return fmt.Errorf("nats: close: %w", err)
	}
	return nil
}

// flush is nc.FlushWithContext, which insists on a deadline: without one,
// flushTimeout bounds it.
func flush(ctx context.Context, nc *natsgo.Conn) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flushTimeout)
		defer cancel()
	}
	return nc.FlushWithContext(ctx)
}

const flushTimeout = 10 * time.Second

func (s *Sink) shutdownServer() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
}
