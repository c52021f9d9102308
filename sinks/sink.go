// Package sinks defines the one interface every broker implements, the
// message it carries, and the Kind each broker package exports to describe
// itself. Each broker lives in its own sub-package (sinks/nats,
// sinks/file, ...) and imports only this package and its client library:
// routing, retry policy, dead letters and metrics live above the
// interface. Package sinktest holds the contract suite every sink passes.
package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Message is one event bound for one target of one sink.
//
// Messages are built once per event and per target and shared read-only: a
// Sink must not modify a Message, its Attrs or its Body, nor keep them after
// Publish returns.
type Message struct {
	// Target is where the broker should put the message: a NATS subject, a
	// Kafka topic, an SQS queue URL. Empty means the sink's own default.
	Target string
	// Key orders messages: a sink that can keep per-key order (Kafka
	// partitions, SQS FIFO groups) must keep it for equal keys. It is the
	// task id, and may be empty.
	Key string
	// ID is the event's stable, content-derived id. Brokers that deduplicate
	// (JetStream Nats-Msg-Id, SQS FIFO MessageDeduplicationId) use it so that
	// a redelivered webhook is stored once.
	ID string
	// Attrs are the CloudEvents context attributes (lower-case names without
	// any prefix: "id", "source", "type", ...). A sink maps them to headers in
	// its broker's convention ("ce-id" for NATS, "ce_id" for Kafka and SQS).
	Attrs []Attr
	// Body is the structured CloudEvent, JSON.
	Body []byte
	// Trace is the W3C trace context of this publish, which a sink sends
	// in its broker's own trace headers ("traceparent", "tracestate";
	// see TraceHeaders): when hookbridge traces, its producer span's. It
	// is not the event's traceparent attribute, which names the trace the
	// event started in and is never changed on the way (the CloudEvents
	// distributed-tracing extension); the two differ once hookbridge is a
	// hop of its own. Empty, sinks send the attribute's values there.
	Trace TraceContext
}

// TraceContext is a W3C trace context: a traceparent and its tracestate.
type TraceContext struct {
	Parent, State string
}

// Attr is one CloudEvents context attribute.
type Attr struct {
	Name, Value string
}

// A Sink publishes messages to one broker.
//
// Implementations are safe for concurrent use. Publish blocks until the
// broker has confirmed every message of the batch (a JetStream PubAck, a
// Kafka produce acknowledged by all in-sync replicas, an SQS MessageId, an
// fsync) or until ctx is done; only then may the caller treat a message as
// kept. Close releases the sink's resources after flushing what it has
// accepted; Publish must not be called after Close.
type Sink interface {
	// Publish sends batch and reports the outcome. It returns nil when every
	// message was confirmed. Otherwise it returns either a *BatchError, which
	// tells which messages failed (the others were confirmed), or any other
	// error, which means that no message of the batch may be counted as
	// confirmed.
	Publish(ctx context.Context, batch []Message) error
	Close(ctx context.Context) error
}

// BatchError reports which messages of a batch failed. Messages whose index
// is not in Failed were confirmed by the broker.
type BatchError struct {
	// Failed maps the index of each failed message in the batch to its error.
	Failed map[int]error
}

func (e *BatchError) Error() string {
	if len(e.Failed) == 1 {
		for i, err := range e.Failed {
			return fmt.Sprintf("message %d of the batch failed: %v", i, err)
		}
	}
	// Report the first failure by index so the message is deterministic.
	first := -1
	for i := range e.Failed {
		if first < 0 || i < first {
			first = i
		}
	}
	return fmt.Sprintf("%d messages of the batch failed, first (message %d): %v", len(e.Failed), first, e.Failed[first])
}

// Unwrap returns the individual failures.
func (e *BatchError) Unwrap() []error {
	errs := make([]error, 0, len(e.Failed))
	for _, err := range e.Failed {
		errs = append(errs, err)
	}
	return errs
}

// MessageErr returns the error of message i of a batch whose Publish
// returned err: nil when that message was confirmed.
func MessageErr(err error, i int) error {
	if err == nil {
		return nil
	}
	var be *BatchError
	if errors.As(err, &be) {
		return be.Failed[i]
	}
	return err
}

// ConfigError is a problem with one key of hookbridge's configuration.
// The config loader reports every problem it finds, its own and each
// sink's, as one of these, and prefixes it with the file and line.
type ConfigError struct {
	// Key is the dotted path of the key, e.g. "sources[0].tolerance"; in
	// a sink's Validate, relative to the sink ("url", "stream.name").
	Key string
	// Line is the key's line in the file when the decoder knows it; 0
	// lets the loader find it from Key.
	Line int
	// Problem says what is wrong and what to change, in lower case.
	Problem string
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return e.Problem
	}
	return e.Key + ": " + e.Problem
}

// Problemf returns a *ConfigError for key.
func Problemf(key, format string, args ...any) error {
	return &ConfigError{Key: key, Problem: fmt.Sprintf(format, args...)}
}

// Permanent marks err as one that retrying cannot fix: a message too large
// for the broker, a target that cannot exist, a body the broker refuses. A
// spool dead-letters such a message at once instead of retrying it until
// max_age. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Kind describes one broker type. Each sink package exports one, and the
// config loader lists them: adding a broker is a package and a line there.
type Kind struct {
	// Name is the value of a sink's `type:` key, e.g. "nats".
	Name string
	// TargetKey is the key a route target names a destination with
	// ("subject", "topic", "queue_url"), or "" for a kind that takes none.
	TargetKey string
	// NewConfig returns a new, empty configuration of the kind: the
	// config loader decodes the sink's own keys into it.
	NewConfig func() Config
	// System is the kind's messaging.system in OpenTelemetry's semantic
	// conventions ("kafka", "aws_sqs", "gcp_pubsub"), or its Name where
	// they list none. Producer spans carry it.
	System string
}

// SecretHolder is implemented by a kind's Config that holds credentials
// (passwords, tokens, secret keys, a password in a URL). Secrets returns
// their values, so that hookbridge can scrub them from everything it
// writes (package bridge/redact) even when the kind's own errors or a
// broker client's quote them.
type SecretHolder interface {
	Secrets() []string
}

// Config is a sink kind's own configuration: the keys of a sink besides
// name, type, retry and dead_letter. It knows its defaults and its
// problems, describes where it publishes and opens its sink, so nothing
// outside the kind's package needs to know its fields.
type Config interface {
	// SetDefaults fills the zero fields with their defaults. It is
	// idempotent.
	SetDefaults()
	// Validate reports every problem, after SetDefaults, as
	// *ConfigError values joined with errors.Join.
	Validate() error
	// DefaultTarget is where a message goes whose route names no target,
	// "" if the kind has no default.
	DefaultTarget() string
	// CheckTarget checks a target without template variables at load
	// time. nil: it may exist.
	CheckTarget(target string) error
	// Describe says where the sink publishes, for `hookbridge check`. It
	// never shows a credential.
	Describe() string
	// WithoutProbe makes Open start without contacting the broker, for
	// brokers that come up after hookbridge (serve -skip-probe): the
	// kind's own skip_probe key, set from the command line.
	WithoutProbe()
	// Open connects the sink. targets are the target templates routes
	// use with it (some brokers provision for them or check that they
	// exist); log receives the sink's own warnings.
	Open(ctx context.Context, targets []TargetTemplate, log *slog.Logger) (Sink, error)
}

// TargetTemplate is a route's target as written, such as "task.{status}",
// whose variables are filled in per event.
type TargetTemplate interface {
	// String returns the template as written.
	String() string
	// Static reports whether it has no variable.
	Static() bool
	// Wildcard returns the pattern that covers every expansion when names
	// are split into tokens by sep: a token holding a variable becomes
	// wildcard ("task.{status}" → "task.*" for NATS).
	Wildcard(sep byte, wildcard string) string
}

// StaticTargets returns the targets among templates that hold no
// variable, plus def when set, without repeats: what a sink can check
// exists at start-up.
func StaticTargets(templates []TargetTemplate, def string) []string {
	var out []string
	for _, t := range templates {
		if t.Static() {
			out = appendUnique(out, t.String())
		}
	}
	if def != "" {
		out = appendUnique(out, def)
	}
	return out
}

// Wildcards returns the patterns that cover every expansion of templates
// (see TargetTemplate.Wildcard), without repeats.
func Wildcards(templates []TargetTemplate, sep byte, wildcard string) []string {
	var out []string
	for _, t := range templates {
		out = appendUnique(out, t.Wildcard(sep, wildcard))
	}
	return out
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// Readier is implemented by sinks that know whether their broker
// connection is usable right now (NATS); /readyz asks them.
type Readier interface {
	Ready() error
}

// KindNames returns the names of kinds, sorted, for messages that list
// them.
func KindNames(kinds []Kind) string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
