// Package pubsub is the sink for Google Cloud Pub/Sub, through Google's
// client library (cloud.google.com/go/pubsub/v2). Publish returns only
// once Pub/Sub answered with a message id for every message it counts as
// sent.
//
// Events are laid on messages as the CloudEvents Google Cloud Pub/Sub
// protocol binding says, spelt as the CloudEvents SDK for Go reads them
// (see buildMessage):
//
//   - structured: the data is the CloudEvent JSON, unchanged, and the
//     attribute "Content-Type" is "application/cloudevents+json;
//     charset=utf-8", beside "traceparent" and "tracestate": the
//     publish's trace context (Message.Trace, the producer span's when
//     hookbridge traces), else the event's.
//   - binary: the data is the event's data, "Content-Type" its
//     datacontenttype, and every other attribute a message attribute
//     "ce-<name>" (ce-traceparent stays the event's), plus
//     "traceparent" and "tracestate" as in structured mode. An event
//     Pub/Sub cannot carry so (an attribute value over 1024 bytes, or
//     one the SDK would alter) goes structured instead, as its
//     Content-Type says.
//
// Each message's ordering key is the task id (Message.Key), so a
// subscription with message ordering enabled delivers one task's events
// in order; events without a task go unordered. Pub/Sub does not
// de-duplicate publishes: consumers de-duplicate on the event id.
package pubsub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hookbridge/hookbridge/sinks"
)

// EmulatorHostEnv is the environment variable the client library reads
// for the address of a Pub/Sub emulator: with it set (and no endpoint),
// the sink talks plaintext gRPC to that host:port, without credentials.
const EmulatorHostEnv = "PUBSUB_EMULATOR_HOST"

// Config configures a Pub/Sub sink. SetDefaults fills the zero fields.
//
// Credentials are Application Default Credentials, found by the client
// library: GOOGLE_APPLICATION_CREDENTIALS, the gcloud user's
// (gcloud auth application-default login), or the metadata server's
// service account on GCE, GKE (Workload Identity) and Cloud Run.
type Config struct {
	// Project is the GCP project id the topics live in. Required.
	Project string `yaml:"project"`
	// Topic is the topic for messages whose route names none: a topic id
	// in Project ("tasks"), or a full name projects/<project>/topics/<id>.
	// It may hold template variables. Default empty: every route must
	// name its topic.
	Topic string `yaml:"topic"`
	// Endpoint is the host:port of the Pub/Sub API, reached over TLS with
	// the credentials, e.g. a regional endpoint
	// europe-west1-pubsub.googleapis.com:443. Default empty: the global
	// endpoint, or the emulator PUBSUB_EMULATOR_HOST names.
	Endpoint string `yaml:"endpoint"`
	// SkipProbe starts without contacting Pub/Sub. Default false: New
	// checks (GetTopic) that every topic known at start-up exists.
	SkipProbe bool `yaml:"skip_probe"`
	// ContentMode is how events are laid on messages: "structured" (the
	// CloudEvent JSON as the data) or "binary" (data as the data,
	// attributes as ce- message attributes). Default "structured".
	ContentMode sinks.ContentMode `yaml:"content_mode"`
}

// SetDefaults fills zero fields with their defaults. It is idempotent.
func (c *Config) SetDefaults() {
	c.Project = strings.TrimSpace(c.Project)
	c.Topic = strings.TrimSpace(c.Topic)
	c.Endpoint = strings.TrimSpace(c.Endpoint)
	c.ContentMode.SetDefault()
}

// Validate reports every problem in c (after SetDefaults) as
// *sinks.ConfigError values.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.Project == "":
		errs = append(errs, sinks.Problemf("project", "missing: write your GCP project id, e.g. my-project"))
	case strings.HasPrefix(c.Project, "projects/"):
		errs = append(errs, sinks.Problemf("project", "%q: write the project id alone, e.g. %s", c.Project, strings.TrimPrefix(c.Project, "projects/")))
	case !validProject(c.Project):
		errs = append(errs, sinks.Problemf("project", "%q is not a project id: write the id gcloud projects list shows, e.g. my-project", c.Project))
	}
	// A default topic may be a template such as "task-{status}", which
	// the router expands; only a literal one can be checked here.
	if c.Topic != "" && !strings.Contains(c.Topic, "{") {
		if err := CheckTopic(c.Topic); err != nil {
			errs = append(errs, sinks.Problemf("topic", "%v", err))
		}
	}
	if c.Endpoint != "" {
		if strings.Contains(c.Endpoint, "://") {
			errs = append(errs, sinks.Problemf("endpoint", "%q: write host:port without a scheme, e.g. europe-west1-pubsub.googleapis.com:443", c.Endpoint))
		} else if host, port, err := net.SplitHostPort(c.Endpoint); err != nil || host == "" || port == "" {
			errs = append(errs, sinks.Problemf("endpoint", "%q is not host:port: write e.g. europe-west1-pubsub.googleapis.com:443", c.Endpoint))
		}
	}
	if err := c.ContentMode.Check("content_mode"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// validProject reports whether p can be a project id: GCP's are 6 to 30
// lower-case letters, digits and hyphens, and older ones may be
// domain-scoped ("example.com:my-project"); emulators take any name, so
// only what cannot go in a resource name is refused.
func validProject(p string) bool {
	return p != "" && !strings.ContainsAny(p, "/ \t\n{}")
}

// CheckTopic reports whether topic can name a topic: a topic id, or a
// full name projects/<project>/topics/<id>. A topic id starts with a
// letter, is 3 to 255 letters, digits and - _ . ~ + %, and does not
// start with "goog".
func CheckTopic(topic string) error {
	id := topic
	if strings.HasPrefix(topic, "projects/") {
		parts := strings.Split(topic, "/")
		if len(parts) != 4 || parts[2] != "topics" || !validProject(parts[1]) {
			return fmt.Errorf("%q is not a topic name: write projects/<project>/topics/<topic>, or the topic id alone (e.g. tasks)", topic)
		}
		id = parts[3]
	}
	if err := checkTopicID(id); err != nil {
		return fmt.Errorf("%q: %v", topic, err)
	}
	return nil
}

func checkTopicID(id string) error {
	if len(id) < 3 || len(id) > 255 {
		return errors.New("a topic id is 3 to 255 characters, e.g. tasks")
	}
	if c := id[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return errors.New("a topic id starts with a letter")
	}
	if strings.HasPrefix(strings.ToLower(id), "goog") {
		return errors.New(`a topic id cannot start with "goog"`)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.~+%", r)) {
			return errors.New("a topic id holds only letters, digits and - _ . ~ + %")
		}
	}
	return nil
}

// Limits Pub/Sub sets on a message.
const (
	maxAttrs       = 100  // attributes per message
	maxAttrValue   = 1024 // bytes in an attribute value
	maxOrderingKey = 1024 // bytes in an ordering key
	probeTimeout   = 20 * time.Second
)

var (
	// ErrTooLarge is the error of a message over Pub/Sub's 10 MB limit.
	// Retrying cannot help.
	ErrTooLarge = errors.New("too large for pubsub")
	// ErrNoTopic is the error of a message with no topic: its route
	// names none and the sink has none.
	ErrNoTopic = errors.New("no topic: name a topic in the route or set the sink's topic")

	errClosed = errors.New("pubsub: sink is closed")
)

// Sink publishes to Pub/Sub. It is safe for concurrent use.
type Sink struct {
	cfg    Config
	client *pubsub.Client
	log    *slog.Logger
	// publishTimeout bounds the client's attempts at one publish request
	// (PublishSettings.Timeout); 0 keeps the client's default (60s).
	publishTimeout time.Duration
	// structuredOnce logs, once, that binary mode sent a message
	// structured because its attributes do not fit.
	structuredOnce sync.Once
	// watchers resume the ordering keys of results a Publish stopped
	// waiting for (see watch); Close waits for them.
	watchers sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	publishers map[string]*pubsub.Publisher // by full topic name, kept until Close
}

// New connects to Pub/Sub and, unless cfg.SkipProbe, checks that each
// topic of topics (the topics routes name without template variables,
// and cfg.Topic) exists. log receives the sink's warnings.
func New(ctx context.Context, cfg Config, topics []string, log *slog.Logger) (*Sink, error) {
	return newSink(ctx, cfg, topics, log, 0)
}

// newSink is New with client options added after the sink's own (tests
// reach pstest with them) and the publish timeout of the client's
// publishers (0: its default).
func newSink(ctx context.Context, cfg Config, topics []string, log *slog.Logger, publishTimeout time.Duration, opts ...option.ClientOption) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var own []option.ClientOption
	if cfg.Endpoint != "" {
		if emulator := os.Getenv(EmulatorHostEnv); emulator != "" {
			// The client would reach endpoint in plaintext without
			// credentials, as it reaches an emulator.
			return nil, sinks.Problemf("endpoint", "%s is set too (%s): unset it to publish to %s, or remove endpoint to use the emulator", EmulatorHostEnv, emulator, cfg.Endpoint)
		}
		own = append(own, option.WithEndpoint(cfg.Endpoint))
	}
	client, err := pubsub.NewClient(ctx, cfg.Project, append(own, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("pubsub: connect for project %q: %w; check the Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud auth application-default login, or the workload's service account)", cfg.Project, err)
	}
	s := &Sink{cfg: cfg, client: client, log: log, publishTimeout: publishTimeout, publishers: map[string]*pubsub.Publisher{}}
	log.Debug("pubsub: configured", "project", cfg.Project, "endpoint", cfg.Endpoint, "emulator", os.Getenv(EmulatorHostEnv), "topics", len(topics), "skip_probe", cfg.SkipProbe)
	if cfg.SkipProbe {
		return s, nil
	}
	for _, t := range topics {
		if err := s.probe(ctx, t); err != nil {
			client.Close()
			return nil, err
		}
	}
	return s, nil
}

// probe checks that topic exists.
func (s *Sink) probe(ctx context.Context, topic string) error {
	name, err := s.topicName(topic)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err = s.client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: name})
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.NotFound:
		project, id := splitTopic(name)
		return fmt.Errorf("pubsub: topic %q does not exist: create it (gcloud pubsub topics create %s --project %s) or fix the topic (or set skip_probe: true if it comes later)", name, id, project)
	case codes.PermissionDenied:
		// roles/pubsub.publisher may publish but not read a topic: a
		// least-privileged publisher is not an error.
		s.log.Warn("pubsub: cannot check that the topic exists: the credentials may not read it (pubsub.topics.get); publishing will tell", "topic", name, "error", err)
		return nil
	}
	return fmt.Errorf("pubsub: cannot reach topic %q: %w; check the endpoint, the network and the Application Default Credentials (or set skip_probe: true if Pub/Sub comes later)", name, err)
}

// topicName returns the full name of target, or of the sink's topic
// when target is empty.
func (s *Sink) topicName(target string) (string, error) {
	if target == "" {
		target = s.cfg.Topic
	}
	if target == "" {
		return "", fmt.Errorf("pubsub: %w", ErrNoTopic)
	}
	if err := CheckTopic(target); err != nil {
		return "", fmt.Errorf("pubsub: %w", err)
	}
	if strings.HasPrefix(target, "projects/") {
		return target, nil
	}
	return "projects/" + s.cfg.Project + "/topics/" + target, nil
}

// splitTopic returns the project and id of a full topic name.
func splitTopic(name string) (project, id string) {
	parts := strings.Split(name, "/")
	return parts[1], parts[3]
}

// publisher returns the publisher of the topic called name, made on
// first use, with message ordering enabled.
func (s *Sink) publisher(name string) (*pubsub.Publisher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	p := s.publishers[name]
	if p == nil {
		p = s.client.Publisher(name)
		p.EnableMessageOrdering = true
		if s.publishTimeout > 0 {
			p.PublishSettings.Timeout = s.publishTimeout
		}
		s.publishers[name] = p
	}
	return p, nil
}

// pending is one message handed to a publisher.
type pending struct {
	index int
	topic string
	key   string
	pub   *pubsub.Publisher
	res   *pubsub.PublishResult
}

// Publish implements sinks.Sink. It hands the batch's messages, in
// order, to their topics' publishers, which send them in requests per
// ordering key, and waits for every result. A message fails alone when
// it has no topic, is too large, or Pub/Sub refuses it; the messages of
// its task after it in the batch fail too (the client pauses the key so
// that none lands out of order), and the key is resumed before Publish
// returns, so that a retry goes through.
func (s *Sink) Publish(ctx context.Context, batch []sinks.Message) error {
	if len(batch) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pubsub: %w", err)
	}
	failed := map[int]error{}
	var sent []pending
	for i := range batch {
		m := &batch[i]
		name, err := s.topicName(m.Target)
		if err != nil {
			failed[i] = sinks.Permanent(err)
			continue
		}
		msg, err := s.buildMessage(m)
		if err != nil {
			failed[i] = sinks.Permanent(fmt.Errorf("pubsub: message for %q: %w", name, err))
			continue
		}
		// Refused here, not by the client: the client would pause the
		// key, failing the task's next messages of the batch too.
		if size, limit := messageSize(msg), maxMessageSize(name); size > limit {
			failed[i] = sinks.Permanent(fmt.Errorf("pubsub: message for %q: %d bytes with its attributes is %w (the limit is %d bytes)", name, size, ErrTooLarge, limit))
			continue
		}
		p, err := s.publisher(name)
		if err != nil {
			failed[i] = err
			continue
		}
		sent = append(sent, pending{index: i, topic: name, key: msg.OrderingKey, pub: p, res: p.Publish(ctx, msg)})
	}
	var abandoned []pending
	for _, r := range sent {
		if len(abandoned) > 0 {
			// ctx is done: stop waiting for the rest.
			failed[r.index] = fmt.Errorf("pubsub: publish to %q: %w", r.topic, ctx.Err())
			abandoned = append(abandoned, r)
			continue
		}
		select {
		case <-r.res.Ready():
		case <-ctx.Done():
			failed[r.index] = fmt.Errorf("pubsub: publish to %q: %w", r.topic, ctx.Err())
			abandoned = append(abandoned, r)
			continue
		}
		if _, err := r.res.Get(context.Background()); err != nil {
			failed[r.index] = classify(r.topic, r.key, err)
		}
	}
	s.resume(sent, failed, abandoned)
	if len(failed) > 0 {
		return &sinks.BatchError{Failed: failed}
	}
	return nil
}

// resume lifts the pause the client puts on an ordering key after a
// failure, so that the task's messages can be published again: at once
// for the keys whose messages failed, and, for the keys of messages
// Publish stopped waiting for, once their outcome is known.
func (s *Sink) resume(sent []pending, failed map[int]error, abandoned []pending) {
	waiting := map[*pubsub.PublishResult]bool{}
	for _, r := range abandoned {
		waiting[r.res] = true
	}
	for _, r := range sent {
		if r.key != "" && failed[r.index] != nil && !waiting[r.res] {
			r.pub.ResumePublish(r.key)
		}
	}
	if len(abandoned) == 0 {
		return
	}
	// Registered under mu, so that Close, which waits for the watchers
	// after marking the sink closed under mu, never misses one; once
	// closed, the publishers are stopping and no key needs resuming.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.watchers.Go(func() {
		for _, r := range abandoned {
			<-r.res.Ready() // within the publish timeout, or at Close
			if _, err := r.res.Get(context.Background()); err != nil && r.key != "" {
				r.pub.ResumePublish(r.key)
			}
		}
	})
}

// classify wraps err, the result of a message for topic, marking those
// retrying cannot fix as permanent.
func classify(topic, key string, err error) error {
	var paused pubsub.ErrPublishingPaused
	switch {
	case errors.As(err, &paused):
		return fmt.Errorf("pubsub: publish to %q: an earlier message of task %q failed, so this one was held back to keep the task's order: %w", topic, key, err)
	case errors.Is(err, pubsub.ErrOversizedMessage):
		return sinks.Permanent(fmt.Errorf("pubsub: publish to %q: %w", topic, err))
	}
	switch status.Code(err) {
	case codes.NotFound:
		project, id := splitTopic(topic)
		return sinks.Permanent(fmt.Errorf("pubsub: topic %q does not exist: %w; create it (gcloud pubsub topics create %s --project %s) or fix the route's topic", topic, err, id, project))
	case codes.InvalidArgument:
		return sinks.Permanent(fmt.Errorf("pubsub: publish to %q refused: %w", topic, err))
	case codes.Internal:
		// The one Internal error the client does not retry: a string
		// that is not UTF-8, which no retry changes.
		if strings.Contains(status.Convert(err).Message(), "invalid UTF-8") {
			return sinks.Permanent(fmt.Errorf("pubsub: publish to %q refused: %w", topic, err))
		}
	case codes.DeadlineExceeded:
		return fmt.Errorf("pubsub: publish to %q: no answer from Pub/Sub within the publish timeout: %w", topic, err)
	}
	return fmt.Errorf("pubsub: publish to %q: %w", topic, err)
}

// messageSize is the size of msg as the client counts it against the
// request limit.
func messageSize(msg *pubsub.Message) int {
	return proto.Size(&pubsubpb.PubsubMessage{Data: msg.Data, Attributes: msg.Attributes, OrderingKey: msg.OrderingKey})
}

// maxMessageSize is the largest message a publish request to topic can
// hold: Pub/Sub's 10 MB, less the topic's name and the framing, as the
// client reckons it.
func maxMessageSize(topic string) int {
	return pubsub.MaxPublishRequestBytes - proto.Size(&pubsubpb.PublishRequest{Topic: topic}) - 5
}

// buildMessage maps m to a Pub/Sub message in the sink's content mode,
// following the CloudEvents Google Cloud Pub/Sub protocol binding with
// the attribute names the CloudEvents SDK for Go reads and writes
// (Pub/Sub attribute names are case-sensitive):
//
//   - structured: the CloudEvent JSON as the data; attribute
//     Content-Type application/cloudevents+json; charset=utf-8, plus
//     traceparent and tracestate: the publish's trace context
//     (Message.Trace, the producer span's when hookbridge traces), else
//     the event's, when there is one.
//   - binary: the event's data as the data; attribute Content-Type =
//     datacontenttype and one attribute ce-<name> for every other
//     CloudEvents attribute, plus traceparent and tracestate as above.
//
// A binary message whose attributes Pub/Sub cannot carry (over 1024
// bytes) or a reader would alter (spaces at the ends) goes structured
// instead, which its Content-Type says, so nothing is refused or
// altered.
func (s *Sink) buildMessage(m *sinks.Message) (*pubsub.Message, error) {
	msg := &pubsub.Message{OrderingKey: orderingKey(m.Key), Attributes: map[string]string{}}
	if s.cfg.ContentMode == sinks.Binary && binaryFits(m) {
		data, err := m.Data()
		if err != nil {
			return nil, err
		}
		// A copy: the client may still send a message after Publish
		// stopped waiting for it (its ctx ended), and a sink keeps no
		// part of a Message after Publish returns.
		msg.Data = bytes.Clone(data)
		for _, a := range m.Attrs {
			if a.Name == "datacontenttype" {
				msg.Attributes[contentType] = a.Value
			} else {
				msg.Attributes[prefix+a.Name] = a.Value
			}
		}
		addTraceContext(msg, m)
		return msg, nil
	}
	if s.cfg.ContentMode == sinks.Binary {
		s.structuredOnce.Do(func() {
			s.log.Warn("pubsub: an event did not fit binary mode (an attribute value over 1024 bytes, not UTF-8, or with spaces at its ends); it and any like it go structured, as their Content-Type attribute says",
				"attributes", len(m.Attrs))
		})
	}
	msg.Data = bytes.Clone(m.Body) // a copy, as above
	msg.Attributes[contentType] = sinks.StructuredContentType
	addTraceContext(msg, m)
	return msg, nil
}

// addTraceContext adds the W3C trace context under its own names,
// traceparent and tracestate, where tracers look, in either mode: the
// publish's (see sinks.Message.Trace), while ce-traceparent stays the
// event's. A value Pub/Sub cannot carry is left out, not refused.
func addTraceContext(msg *pubsub.Message, m *sinks.Message) {
	for _, a := range m.TraceHeaders() {
		if carries(a) {
			msg.Attributes[a.Name] = a.Value
		}
	}
}

// carries reports whether a trace header goes as a message attribute:
// set, and within what Pub/Sub takes.
func carries(a sinks.Attr) bool {
	return a.Value != "" && len(a.Value) <= maxAttrValue && utf8.ValidString(a.Value)
}

// The binding's attribute names, as the CloudEvents SDK for Go spells
// them.
const (
	prefix      = "ce-"
	contentType = "Content-Type"
)

// binaryFits reports whether m's attributes fit Pub/Sub message
// attributes in binary mode unchanged, beside the trace headers.
func binaryFits(m *sinks.Message) bool {
	// Every attribute, plus the trace headers addTraceContext adds.
	n := len(m.Attrs)
	for _, a := range m.TraceHeaders() {
		if carries(a) {
			n++
		}
	}
	if n > maxAttrs || !sinks.Untrimmed(m.Attrs) {
		return false
	}
	for _, a := range m.Attrs {
		if len(a.Value) > maxAttrValue || !utf8.ValidString(a.Value) {
			return false
		}
	}
	return true
}

// orderingKey returns key if Pub/Sub takes it as an ordering key (at
// most 1024 bytes of UTF-8), else its hex SHA-256, which keeps equal
// keys equal.
func orderingKey(key string) string {
	if len(key) <= maxOrderingKey && utf8.ValidString(key) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Close implements sinks.Sink: it stops every publisher, which sends
// what it holds and waits for the answers, then closes the client.
// Publish must not be called after it.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	pubs := make([]*pubsub.Publisher, 0, len(s.publishers))
	for _, p := range s.publishers {
		pubs = append(pubs, p)
	}
	s.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		for _, p := range pubs {
			wg.Go(p.Stop)
		}
		wg.Wait()
		s.watchers.Wait()
		done <- s.client.Close()
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("pubsub: close: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pubsub: close: messages still unsent: %w", ctx.Err())
	}
}
