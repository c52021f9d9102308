package sqs

import (
	"context"
	"log/slog"

	"github.com/hookbridge/hookbridge/sinks"
)

// Kind is the SQS sink kind, `type: sqs`. A route names its target with
// `queue_url:`.
var Kind = sinks.Kind{
	Name:      "sqs",
	TargetKey: "queue_url",
	NewConfig: func() sinks.Config { return new(Config) },
	System:    "aws_sqs",
}

// DefaultTarget implements sinks.Config: the sink's queue.
func (c *Config) DefaultTarget() string { return c.QueueURL }

// CheckTarget implements sinks.Config: an SQS queue URL.
func (c *Config) CheckTarget(queueURL string) error { return CheckQueueURL(queueURL) }

// Describe implements sinks.Config.
func (c *Config) Describe() string {
	where := "region " + c.Region
	if c.Region == "" {
		where = "region from the AWS environment"
	}
	if c.Endpoint != "" {
		where += ", endpoint " + c.Endpoint
	}
	return where + ", " + string(c.ContentMode) + " CloudEvents"
}

// WithoutProbe implements sinks.Config.
func (c *Config) WithoutProbe() { c.SkipProbe = true }

// Open implements sinks.Config: the queues without variables (and the
// default queue) are checked at start.
func (c *Config) Open(ctx context.Context, targets []sinks.TargetTemplate, log *slog.Logger) (sinks.Sink, error) {
	return New(ctx, *c, sinks.StaticTargets(targets, c.QueueURL), log)
}
