package pubsub

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/hookbridge/hookbridge/sinks"
)

// Kind is the Google Cloud Pub/Sub sink kind, `type: pubsub`. A route
// names its target with `topic:`.
var Kind = sinks.Kind{
	Name:      "pubsub",
	TargetKey: "topic",
	NewConfig: func() sinks.Config { return new(Config) },
	System:    "gcp_pubsub",
}

// DefaultTarget implements sinks.Config: the sink's topic.
func (c *Config) DefaultTarget() string { return c.Topic }

// CheckTarget implements sinks.Config: a topic id, or a full topic name
// projects/<project>/topics/<id>.
func (c *Config) CheckTarget(topic string) error { return CheckTopic(topic) }

// Describe implements sinks.Config. Pub/Sub takes no credential in the
// configuration (Application Default Credentials), so there is none to
// hide.
func (c *Config) Describe() string {
	where := "project " + c.Project
	switch emulator := os.Getenv(EmulatorHostEnv); {
	case c.Endpoint != "":
		where += ", endpoint " + c.Endpoint
	case emulator != "":
		where += ", emulator " + emulator + " (" + EmulatorHostEnv + ")"
	}
	return where + ", " + string(c.ContentMode) + " CloudEvents"
}

// WithoutProbe implements sinks.Config.
func (c *Config) WithoutProbe() { c.SkipProbe = true }

// Open implements sinks.Config: the topics without variables (and the
// default topic, when it has none) are checked at start.
func (c *Config) Open(ctx context.Context, targets []sinks.TargetTemplate, log *slog.Logger) (sinks.Sink, error) {
	def := c.Topic
	if strings.Contains(def, "{") {
		def = ""
	}
	return New(ctx, *c, sinks.StaticTargets(targets, def), log)
}
