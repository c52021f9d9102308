package kafka

import (
	"context"
	"log/slog"
	"strings"

	"github.com/hookbridge/hookbridge/sinks"
)

// Kind is the Kafka sink kind, `type: kafka`. A route names its target
// with `topic:`.
var Kind = sinks.Kind{
	Name:      "kafka",
	TargetKey: "topic",
	NewConfig: func() sinks.Config { return new(Config) },
	System:    "kafka",
}

// DefaultTarget implements sinks.Config: the sink's topic.
func (c *Config) DefaultTarget() string { return c.Topic }

// CheckTarget implements sinks.Config: a topic name Kafka accepts.
func (c *Config) CheckTarget(topic string) error { return CheckTopic(topic) }

// Describe implements sinks.Config.
func (c *Config) Describe() string {
	return "brokers " + strings.Join(c.Brokers, ",") + ", " + string(c.ContentMode) + " CloudEvents"
}

// WithoutProbe implements sinks.Config.
func (c *Config) WithoutProbe() { c.SkipProbe = true }

// Open implements sinks.Config: the targets without variables (and the
// default topic) are checked at start.
func (c *Config) Open(ctx context.Context, targets []sinks.TargetTemplate, log *slog.Logger) (sinks.Sink, error) {
	return New(ctx, *c, sinks.StaticTargets(targets, c.Topic), log)
}
