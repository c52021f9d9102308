// Package sinks defines the one interface every broker implements and the
// message it carries. Each broker lives in its own sub-package (sinks/nats,
// sinks/file, ...) and imports only this package and its client library:
// routing, retry policy and metrics live above the interface.
package sinks

import (
	"context"
	"errors"
	"fmt"
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
}

// Attr is one CloudEvents context attribute.
type Attr struct {
	Name, Value string
}

// ContentType is the media type of Message.Body.
const ContentType = "application/cloudevents+json"

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

// ConfigError is a problem with one key of a sink's configuration. Config
// loaders use Key to point at the offending line.
type ConfigError struct {
	Key     string // the YAML key, e.g. "url"
	Problem string // what is wrong and what to change, lower case
}

func (e *ConfigError) Error() string { return e.Key + ": " + e.Problem }

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
