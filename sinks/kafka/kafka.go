// Package kafka is the sink for Apache Kafka (and Kafka-compatible brokers
// such as Redpanda), built on github.com/segmentio/kafka-go.
//
// Each message becomes one record, keyed by the task id, laid out as the
// CloudEvents Kafka protocol binding has it in the sink's content_mode:
// structured, the CloudEvent JSON as the value and "content-type:
// application/cloudevents+json; charset=utf-8"; binary, the event's data
// as the value, its datacontenttype as content-type and every other
// attribute as a "ce_" header (see record). Records are partitioned by
// key hash, so one task's events land on one partition, in the order they
// were published.
//
// Publish returns nil only once Kafka acknowledged every record (with the
// default acks: all, by every in-sync replica). Concurrent Publish calls share
// one writer, which groups their records into one produce request per
// partition for up to batch_timeout.
//
// kafka-go has no idempotent producer: a produce that timed out may still have
// been stored, so a retried webhook can produce a duplicate record. Consumers
// should deduplicate on the event id (the ce_id header in binary mode, the
// id member in structured mode), which is stable for an event.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/hookbridge/hookbridge/sinks"
)

// Defaults of Config, applied by SetDefaults.
const (
	DefaultClientID     = "hookbridge"
	DefaultAcks         = "all"
	DefaultCompression  = "none"
	DefaultBatchSize    = 100
	DefaultBatchBytes   = 1 << 20 // 1 MiB
	DefaultBatchTimeout = 2 * time.Millisecond
	DefaultWriteTimeout = 10 * time.Second
)

// Config configures a Kafka sink. SetDefaults fills the zero fields.
type Config struct {
	// Brokers are the bootstrap brokers, host:port each. One reachable
	// broker is enough; list several so that one down does not stop
	// hookbridge from starting. Required.
	Brokers []string `yaml:"brokers"`
	// Topic is the topic for messages whose route names none. Default
	// empty: every route must name a topic.
	Topic string `yaml:"topic"`
	// ClientID identifies hookbridge in the brokers' logs and quotas.
	// Default DefaultClientID ("hookbridge").
	ClientID string `yaml:"client_id"`
	// Acks is how many replicas must store a record before Publish
	// confirms it: "all" (every in-sync replica), "leader" or "none".
	// Default DefaultAcks ("all"). Anything but "all" can lose events
	// that hookbridge already answered 200 for: the leader may fail before
	// the replicas copied them, and "none" does not even wait for the
	// leader.
	Acks string `yaml:"acks"`
	// Compression compresses produce requests: "none", "gzip", "snappy",
	// "lz4" or "zstd". Default DefaultCompression ("none").
	Compression string `yaml:"compression"`
	// BatchSize is the most records one produce request carries per
	// partition. Default DefaultBatchSize (100).
	BatchSize int `yaml:"batch_size"`
	// BatchBytes is the most bytes one produce request carries per
	// partition; a single larger record fails. Default DefaultBatchBytes
	// (1048576, 1 MiB), which should not exceed the brokers'
	// message.max.bytes.
	BatchBytes int64 `yaml:"batch_bytes"`
	// BatchTimeout is how long the writer waits for more records to fill a
	// batch before sending it: every Publish waits at least this long.
	// Default DefaultBatchTimeout (2ms; kafka-go's own default of 1s would
	// add a second to every webhook).
	BatchTimeout time.Duration `yaml:"batch_timeout"`
	// WriteTimeout bounds each produce request. Default
	// DefaultWriteTimeout (10s).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// AutoCreateTopics asks the brokers to create a missing topic on first
	// use (they must allow it: auto.create.topics.enable). Default false:
	// a missing topic is an error naming it.
	AutoCreateTopics bool `yaml:"auto_create_topics"`
	// SkipProbe starts the sink without contacting Kafka, for brokers that
	// come up after hookbridge. Default false: New checks that a broker
	// answers and that the topics known in advance exist.
	SkipProbe bool `yaml:"skip_probe"`
	// ContentMode is how events are laid on records, per the CloudEvents
	// Kafka binding: "structured" (the CloudEvent JSON as the value,
	// content-type application/cloudevents+json) or "binary" (data as
	// the value, attributes as ce_ headers). Default "structured".
	ContentMode sinks.ContentMode `yaml:"content_mode"`
	// TLS encrypts the connections to the brokers.
	TLS TLSConfig `yaml:"tls"`
	// SASL authenticates to the brokers.
	SASL SASLConfig `yaml:"sasl"`
}

// TLSConfig configures TLS to the brokers.
type TLSConfig struct {
	// Enabled turns TLS on. Default false, but setting any file below
	// implies true.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the certificate authorities that signed
	// the brokers' certificates. Default: the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that require mutual TLS. Set both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the brokers' certificates.
	// Default: each broker's host.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate. Default false;
	// true is for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASLConfig configures SASL authentication.
type SASLConfig struct {
	// Mechanism is "" (no SASL), "plain", "scram-sha-256" or
	// "scram-sha-512". Default "".
	Mechanism string `yaml:"mechanism"`
	// Username and Password are the credentials. Give the password as
	// ${VAR}; it never appears in logs or errors.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// Secrets returns the SASL password. It implements sinks.SecretHolder.
func (c *Config) Secrets() []string { return []string{c.SASL.Password} }

// SetDefaults fills zero fields with their defaults. It is idempotent.
func (c *Config) SetDefaults() {
	c.ContentMode.SetDefault()
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	c.Acks = strings.ToLower(strings.TrimSpace(c.Acks))
	if c.Acks == "" {
		c.Acks = DefaultAcks
	}
	c.Compression = strings.ToLower(strings.TrimSpace(c.Compression))
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	c.SASL.Mechanism = strings.ToLower(strings.TrimSpace(c.SASL.Mechanism))
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	t := &c.TLS
	if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" {
		t.Enabled = true
	}
}

var (
	acksValues        = map[string]kafkago.RequiredAcks{"all": kafkago.RequireAll, "leader": kafkago.RequireOne, "none": kafkago.RequireNone}
	compressionValues = map[string]kafkago.Compression{"none": 0, "gzip": kafkago.Gzip, "snappy": kafkago.Snappy, "lz4": kafkago.Lz4, "zstd": kafkago.Zstd}
)

const mechanisms = `"plain", "scram-sha-256" or "scram-sha-512"`

// Mechanisms are the values sasl.mechanism takes besides "" (no SASL).
var Mechanisms = []string{"plain", "scram-sha-256", "scram-sha-512"}

// AcksValues are the values acks takes, sorted.
func AcksValues() []string { return slices.Sorted(maps.Keys(acksValues)) }

// CompressionValues are the values compression takes, sorted.
func CompressionValues() []string { return slices.Sorted(maps.Keys(compressionValues)) }

// Validate reports every problem in c (after SetDefaults) as
// *sinks.ConfigError values.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, sinks.Problemf("brokers", "missing: list your brokers, e.g. [kafka-1:9092]"))
	}
	for i, b := range c.Brokers {
		if err := checkBroker(b); err != nil {
			errs = append(errs, sinks.Problemf(fmt.Sprintf("brokers[%d]", i), "%v", err))
		}
	}
	if c.Topic != "" {
		// A default topic may be a template such as "task.{status}", which
		// the router expands; only a literal one can be checked here.
		if err := CheckTopic(c.Topic); err != nil && !strings.Contains(c.Topic, "{") {
			errs = append(errs, sinks.Problemf("topic", "%v", err))
		}
	}
	if _, ok := acksValues[c.Acks]; !ok {
		errs = append(errs, sinks.Problemf("acks", `%q: use "all", "leader" or "none"`, c.Acks))
	}
	if _, ok := compressionValues[c.Compression]; !ok {
		errs = append(errs, sinks.Problemf("compression", `%q: use "none", "gzip", "snappy", "lz4" or "zstd"`, c.Compression))
	}
	if c.BatchSize < 1 {
		errs = append(errs, sinks.Problemf("batch_size", "%d: use 1 or more records", c.BatchSize))
	}
	if c.BatchBytes < 1 {
		errs = append(errs, sinks.Problemf("batch_bytes", "%d: use a size in bytes, e.g. %d", c.BatchBytes, DefaultBatchBytes))
	}
	if c.BatchTimeout < 0 {
		errs = append(errs, sinks.Problemf("batch_timeout", "%s: use a positive duration, e.g. %s", c.BatchTimeout, DefaultBatchTimeout))
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, sinks.Problemf("write_timeout", "%s: use a positive duration, e.g. %s", c.WriteTimeout, DefaultWriteTimeout))
	}
	if err := c.ContentMode.Check("content_mode"); err != nil {
		errs = append(errs, err)
	}
	t := c.TLS
	if t.CertFile != "" && t.KeyFile == "" {
		errs = append(errs, sinks.Problemf("tls.cert_file", "a client certificate needs its key: set tls.key_file too"))
	}
	if t.KeyFile != "" && t.CertFile == "" {
		errs = append(errs, sinks.Problemf("tls.key_file", "a client key needs its certificate: set tls.cert_file too"))
	}
	s := c.SASL
	switch {
	case s.Mechanism == "":
		if s.Username != "" || s.Password != "" {
			errs = append(errs, sinks.Problemf("sasl.mechanism", "missing: credentials are set; choose %s", mechanisms))
		}
	case slices.Contains(Mechanisms, s.Mechanism):
		if s.Username == "" {
			errs = append(errs, sinks.Problemf("sasl.username", "missing: sasl mechanism %q needs a username", s.Mechanism))
		}
		if s.Password == "" {
			errs = append(errs, sinks.Problemf("sasl.password", "missing: sasl mechanism %q needs a password (give it as ${VAR})", s.Mechanism))
		}
	default:
		errs = append(errs, sinks.Problemf("sasl.mechanism", "%q: use %s, or leave it empty for no sasl", s.Mechanism, mechanisms))
	}
	return errors.Join(errs...)
}

// checkBroker checks one host:port broker address.
func checkBroker(b string) error {
	host, port, err := net.SplitHostPort(b)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port: write e.g. kafka-1:9092", b)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: the port must be a number from 1 to 65535", b)
	}
	return nil
}

// CheckTopic applies Kafka's rules for topic names.
func CheckTopic(t string) error {
	if t == "." || t == ".." {
		return fmt.Errorf("%q is not a valid topic name", t)
	}
	if len(t) > 249 {
		return fmt.Errorf("%q: a topic name is at most 249 characters", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q: a topic name holds only letters, digits, '.', '_' and '-'", t)
		}
	}
	return nil
}

// Sink publishes to Kafka. It is safe for concurrent use.
type Sink struct {
	cfg       Config
	w         *kafkago.Writer
	transport *kafkago.Transport
	maxBytes  int64
	closeOnce sync.Once
	closeErr  error
	log       *slog.Logger
	// structuredOnce logs, once, that binary mode sent a record
	// structured because a reader would alter one of its attributes.
	structuredOnce sync.Once
}

// New starts a Kafka sink. topics are the topics known before any event
// arrives (those of routes without template variables, and cfg.Topic):
// unless cfg.SkipProbe, New asks the brokers for their metadata and fails
// when none answers or, unless cfg.AutoCreateTopics, when one of these
// topics does not exist. log receives the sink's warnings.
func New(ctx context.Context, cfg Config, topics []string, log *slog.Logger) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsConf, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := cfg.mechanism()
	if err != nil {
		return nil, err
	}
	newTransport := func() *kafkago.Transport {
		return &kafkago.Transport{
			DialTimeout: 5 * time.Second,
			ClientID:    cfg.ClientID,
			TLS:         tlsConf,
			SASL:        mech,
		}
	}
	if cfg.Topic != "" {
		topics = append(slices.Clone(topics), cfg.Topic)
	}
	topics = dedupe(topics)
	if !cfg.SkipProbe {
		if err := probe(ctx, cfg, newTransport(), topics, log); err != nil {
			return nil, err
		}
	}
	if cfg.Acks != "all" {
		log.Warn("kafka: acks is not \"all\": events already confirmed to Browser Use can be lost if a broker fails", "acks", cfg.Acks)
	}
	if cfg.SASL.Mechanism == "plain" && !cfg.TLS.Enabled {
		log.Warn("kafka: sasl plain without tls sends the password in clear text: enable tls")
	}
	if cfg.TLS.InsecureSkipVerify {
		log.Warn("kafka: tls.insecure_skip_verify is true: any broker certificate is accepted")
	}
	tr := newTransport()
	s := &Sink{
		log:       log,
		cfg:       cfg,
		transport: tr,
		maxBytes:  cfg.BatchBytes,
		w: &kafkago.Writer{
			Addr: kafkago.TCP(cfg.Brokers...),
			// Murmur2 is the Java client's default partitioner: a task's
			// events land on the partition any Kafka producer would pick
			// for the same key, and stay there in order.
			Balancer:               kafkago.Murmur2Balancer{},
			RequiredAcks:           acksValues[cfg.Acks],
			Compression:            compressionValues[cfg.Compression],
			BatchSize:              cfg.BatchSize,
			BatchBytes:             cfg.BatchBytes,
			BatchTimeout:           cfg.BatchTimeout,
			WriteTimeout:           cfg.WriteTimeout,
			AllowAutoTopicCreation: cfg.AutoCreateTopics,
			Transport:              tr,
		},
	}
	return s, nil
}

func dedupe(topics []string) []string {
	out := make([]string, 0, len(topics))
	for _, t := range topics {
		if t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// probeTimeout bounds the probe when ctx has no deadline.
const probeTimeout = 10 * time.Second

// probe asks every broker for the metadata of topics, concurrently.
func probe(ctx context.Context, cfg Config, tr *kafkago.Transport, topics []string, log *slog.Logger) error {
	defer tr.CloseIdleConnections()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	if len(topics) > 0 {
		// Only these topics: a cluster may hold many thousands.
		tr.MetadataTopics = topics
	}
	type result struct {
		res *kafkago.MetadataResponse
		err error
	}
	results := make([]result, len(cfg.Brokers))
	var wg sync.WaitGroup
	for i, b := range cfg.Brokers {
		wg.Go(func() {
			c := &kafkago.Client{Addr: kafkago.TCP(b), Transport: tr}
			res, err := c.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
			results[i] = result{res, err}
		})
	}
	wg.Wait()
	var meta *kafkago.MetadataResponse
	var down []string
	var firstErr error
	for i, r := range results {
		if r.err != nil {
			down = append(down, cfg.Brokers[i])
			if firstErr == nil {
				firstErr = r.err
			}
			continue
		}
		if meta == nil {
			meta = r.res
		}
	}
	if meta == nil {
		err := unwrapClientErr(firstErr)
		if errors.Is(err, kafkago.SASLAuthenticationFailed) {
			return fmt.Errorf("kafka: %s %s rejected the sasl credentials: check sasl.username, sasl.password and sasl.mechanism: %v",
				plural(len(down), "broker", "brokers"), quoteList(down), err)
		}
		hint := ""
		if cfg.SASL.Mechanism != "" || cfg.TLS.Enabled {
			// Brokers drop the connection on a failed handshake or
			// authentication, which looks like an unreachable broker.
			hint = " (if they are up, check the tls and sasl settings)"
		}
		return fmt.Errorf("kafka: cannot reach %s %s: %v; check brokers%s, or set skip_probe: true if they come up later",
			plural(len(down), "broker", "brokers"), quoteList(down), err, hint)
	}
	for i, r := range results {
		if r.err != nil {
			log.Warn("kafka: broker does not answer; using the others", "broker", cfg.Brokers[i], "error", unwrapClientErr(r.err).Error())
		}
	}
	var missing []string
	for _, name := range topics {
		var terr error = kafkago.UnknownTopicOrPartition
		for _, t := range meta.Topics {
			if t.Name == name {
				terr = t.Error
				break
			}
		}
		switch {
		case terr == nil:
		case errors.Is(terr, kafkago.UnknownTopicOrPartition):
			missing = append(missing, name)
		default:
			return fmt.Errorf("kafka: topic %q: %v", name, terr)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if cfg.AutoCreateTopics {
		for _, t := range missing {
			log.Info("kafka: topic does not exist yet; the brokers will be asked to create it on first publish", "topic", t)
		}
		return nil
	}
	return fmt.Errorf("kafka: %s %s %s not exist: create %s, or set auto_create_topics: true",
		plural(len(missing), "topic", "topics"), quoteList(missing), plural(len(missing), "does", "do"), plural(len(missing), "it", "them"))
}

// unwrapClientErr drops kafka-go's "kafka.(*Client).Metadata: " prefix.
func unwrapClientErr(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// tlsConfig loads the TLS files; nil when TLS is off.
func (c *Config) tlsConfig() (*tls.Config, error) {
	t := c.TLS
	if !t.Enabled {
		return nil, nil
	}
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify,
	}
	if err := sinks.LoadTLSFiles(conf, t.CAFile, t.CertFile, t.KeyFile); err != nil {
		return nil, err
	}
	return conf, nil
}

// mechanism builds the SASL mechanism; nil without SASL.
func (c *Config) mechanism() (sasl.Mechanism, error) {
	s := c.SASL
	switch s.Mechanism {
	case "plain":
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if s.Mechanism == "scram-sha-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, s.Username, s.Password)
		if err != nil {
			// The error may quote the credentials: do not pass it on.
			return nil, sinks.Problemf("sasl.password", "the username or password holds characters scram does not accept")
		}
		return m, nil
	}
	return nil, nil
}

var (
	errNoTopic = errors.New("no topic: name one in the route or set the sink's topic")
	errClosed  = errors.New("kafka sink is closed")
)

// Publish implements sinks.Sink: it writes the batch with one call to the
// shared writer and returns once Kafka acknowledged every record. A message
// without a topic, or larger than batch_bytes, fails alone. With ctx
// already done it writes nothing (kafka-go would, when it has the topic's
// metadata cached).
func (s *Sink) Publish(ctx context.Context, batch []sinks.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kafka: not written: %w", err)
	}
	var failed map[int]error
	fail := func(i int, err error) {
		if failed == nil {
			failed = map[int]error{}
		}
		failed[i] = err
	}
	msgs := make([]kafkago.Message, 0, len(batch))
	idx := make([]int, 0, len(batch)) // msgs[j] is batch[idx[j]]
	for i, m := range batch {
		topic := m.Target
		if topic == "" {
			topic = s.cfg.Topic
		}
		if topic == "" {
			fail(i, sinks.Permanent(errNoTopic))
			continue
		}
		mode := s.cfg.ContentMode
		if mode == sinks.Binary && !sinks.Untrimmed(batch[i].Attrs) {
			mode = sinks.Structured
			s.structuredOnce.Do(func() {
				s.log.Warn("kafka: an event has an attribute with surrounding spaces, which the CloudEvents SDKs' binary readers trim; it and any like it go structured, as their content-type header says",
					"topic", topic)
			})
		}
		km, err := record(&batch[i], topic, mode)
		if err != nil {
			fail(i, sinks.Permanent(fmt.Errorf("kafka: %w", err)))
			continue
		}
		if n := recordSize(&km); n > s.maxBytes {
			fail(i, sinks.Permanent(fmt.Errorf("kafka: record for %q is %d bytes, more than batch_bytes (%d)", topic, n, s.maxBytes)))
			continue
		}
		msgs = append(msgs, km)
		idx = append(idx, i)
	}
	if len(msgs) > 0 {
		if err := s.write(ctx, msgs); err != nil {
			var werrs kafkago.WriteErrors
			switch {
			case errors.As(err, &werrs) && len(werrs) == len(msgs):
				for j, e := range werrs {
					if e != nil {
						fail(idx[j], s.describe(msgs[j].Topic, e))
					}
				}
			case errors.Is(err, kafkago.UnknownTopicOrPartition) && distinctTopics(msgs) > 1:
				// kafka-go stops at the first unknown topic without saying
				// which, before writing anything: write per topic to find it.
				s.writePerTopic(ctx, msgs, idx, fail)
			default:
				// Nothing of the batch may be counted as kept.
				return s.describe(msgs[0].Topic, err)
			}
		}
	}
	if failed != nil {
		return &sinks.BatchError{Failed: failed}
	}
	return nil
}

var structuredContentType = []byte(sinks.StructuredContentType)

// record maps m to a Kafka record for topic in the given content mode, as
// the CloudEvents Kafka binding lays it out: structured, the CloudEvent as
// the value with content-type application/cloudevents+json; binary, data
// as the value, datacontenttype as content-type and every other attribute
// as a "ce_" header. Header values are the attributes' UTF-8 text. The key
// is the task id either way. In either mode the plain "traceparent" and
// "tracestate" headers carry the publish's trace context (Message.Trace,
// the producer span's when hookbridge traces), else the event's.
func record(m *sinks.Message, topic string, mode sinks.ContentMode) (kafkago.Message, error) {
	km := kafkago.Message{Topic: topic, Value: m.Body}
	if mode == sinks.Binary {
		data, err := m.Data()
		if err != nil {
			return km, err
		}
		km.Value = data
		km.Headers = make([]kafkago.Header, 0, len(m.Attrs)+2)
		for _, a := range m.Attrs {
			if a.Name == "datacontenttype" {
				km.Headers = append(km.Headers, kafkago.Header{Key: "content-type", Value: []byte(a.Value)})
			} else {
				km.Headers = append(km.Headers, kafkago.Header{Key: "ce_" + a.Name, Value: []byte(a.Value)})
			}
		}
	} else {
		km.Headers = make([]kafkago.Header, 1, 3)
		km.Headers[0] = kafkago.Header{Key: "content-type", Value: structuredContentType}
	}
	// The W3C trace context under its own names, where tracers look: the
	// publish's (see sinks.Message.Trace), while ce_traceparent stays the
	// event's.
	for _, a := range m.TraceHeaders() {
		if a.Value != "" {
			km.Headers = append(km.Headers, kafkago.Header{Key: a.Name, Value: []byte(a.Value)})
		}
	}
	if m.Key != "" {
		km.Key = []byte(m.Key)
	}
	return km, nil
}

// write is WriteMessages, retried when it failed before writing anything
// for a reason that passes, such as a topic just created that has no leader
// yet.
func (s *Sink) write(ctx context.Context, msgs []kafkago.Message) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.w.WriteMessages(ctx, msgs...)
		var kerr kafkago.Error
		if err == nil || !errors.As(err, &kerr) || isWriteErrors(err) ||
			!kerr.Temporary() || kerr == kafkago.UnknownTopicOrPartition || attempt == 5 {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff *= 2
	}
}

func isWriteErrors(err error) bool {
	var werrs kafkago.WriteErrors
	return errors.As(err, &werrs)
}

// writePerTopic writes msgs one topic at a time, concurrently, and records
// the failures.
func (s *Sink) writePerTopic(ctx context.Context, msgs []kafkago.Message, idx []int, fail func(int, error)) {
	groups := map[string][]int{} // topic -> positions in msgs
	for j, m := range msgs {
		groups[m.Topic] = append(groups[m.Topic], j)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for topic, js := range groups {
		wg.Go(func() {
			part := make([]kafkago.Message, len(js))
			for k, j := range js {
				part[k] = msgs[j]
			}
			err := s.write(ctx, part)
			if err == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			var werrs kafkago.WriteErrors
			if errors.As(err, &werrs) && len(werrs) == len(part) {
				for k, e := range werrs {
					if e != nil {
						fail(idx[js[k]], s.describe(topic, e))
					}
				}
				return
			}
			for _, j := range js {
				fail(idx[j], s.describe(topic, err))
			}
		})
	}
	wg.Wait()
}

func distinctTopics(msgs []kafkago.Message) int {
	n := 0
	for j, m := range msgs {
		if !slices.ContainsFunc(msgs[:j], func(o kafkago.Message) bool { return o.Topic == m.Topic }) {
			n++
		}
	}
	return n
}

// describe turns a kafka-go error for topic into one that says what to do.
func (s *Sink) describe(topic string, err error) error {
	switch {
	case errors.Is(err, io.ErrClosedPipe):
		return errClosed
	case errors.Is(err, kafkago.UnknownTopicOrPartition) && s.cfg.AutoCreateTopics:
		return fmt.Errorf("kafka: topic %q does not exist and the brokers did not create it: create it, or allow auto.create.topics.enable on the brokers: %w", topic, err)
	case errors.Is(err, kafkago.UnknownTopicOrPartition):
		return fmt.Errorf("kafka: topic %q does not exist: create it, or set auto_create_topics: true: %w", topic, err)
	case errors.Is(err, kafkago.MessageSizeTooLarge), errors.Is(err, kafkago.InvalidTopic), errors.Is(err, kafkago.TopicAuthorizationFailed):
		return sinks.Permanent(fmt.Errorf("kafka: publish to %q: %w", topic, err))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("kafka: publish to %q: no acknowledgement from %s: %w", topic, strings.Join(s.cfg.Brokers, ","), err)
	}
	return fmt.Errorf("kafka: publish to %q: %w", topic, err)
}

// recordSize is the size kafka-go checks against BatchBytes (its
// Message.totalSize, which is not exported).
func recordSize(m *kafkago.Message) int64 {
	n := int64(4 + 1 + 1 + 4 + len(m.Key) + 4 + len(m.Value) + 8)
	n += int64(varIntLen(int64(len(m.Headers))))
	for _, h := range m.Headers {
		n += int64(varIntLen(int64(len(h.Key))) + len(h.Key) + varIntLen(int64(len(h.Value))) + len(h.Value))
	}
	return n
}

func varIntLen(x int64) int {
	u := uint64(x<<1) ^ uint64(x>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

// Close flushes the records the writer holds, waits for their
// acknowledgements (or ctx) and closes the connections.
func (s *Sink) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.closeOnce.Do(func() {
			s.closeErr = s.w.Close()
			s.transport.CloseIdleConnections()
		})
		close(done)
	}()
	select {
	case <-done:
		if s.closeErr != nil {
			return fmt.Errorf("kafka: close: %w", s.closeErr)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka: close: records still in flight: %w", ctx.Err())
	}
}
