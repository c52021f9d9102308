package nats

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hookbridge/hookbridge/sinks"
)

// Kind is the NATS sink kind, `type: nats`. A route names its target with
// `subject:`.
var Kind = sinks.Kind{
	Name:      "nats",
	TargetKey: "subject",
	NewConfig: func() sinks.Config { return new(Config) },
	System:    "nats",
}

// DefaultTarget implements sinks.Config: the sink's subject.
func (c *Config) DefaultTarget() string { return c.Subject }

// CheckTarget implements sinks.Config: any subject goes (a publish to one
// no stream covers fails at publish time, with a warning at start).
func (c *Config) CheckTarget(string) error { return nil }

// Describe implements sinks.Config.
func (c *Config) Describe() string {
	mode := "core NATS"
	if c.JetStream {
		mode = "JetStream stream " + c.Stream.Name
	}
	mode += ", " + string(c.ContentMode) + " CloudEvents"
	if c.URL == Embedded {
		return fmt.Sprintf("embedded server on %s, %s", c.Embedded.Listen, mode)
	}
	return fmt.Sprintf("%s, %s", c.Redacted(), mode)
}

// WithoutProbe implements sinks.Config.
func (c *Config) WithoutProbe() { c.SkipProbe = true }

// Open implements sinks.Config: the stream (with jetstream: true) covers
// the wildcard forms of the targets ("task.{status}" → "task.*").
func (c *Config) Open(ctx context.Context, targets []sinks.TargetTemplate, log *slog.Logger) (sinks.Sink, error) {
	return New(ctx, *c, sinks.Wildcards(targets, '.', "*"), log)
}
