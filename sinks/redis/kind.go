package redis

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/hookbridge/hookbridge/sinks"
)

// Kind is the Redis Streams sink kind, `type: redis`. A route names its
// target with `stream:`.
var Kind = sinks.Kind{
	Name:      "redis",
	TargetKey: "stream",
	NewConfig: func() sinks.Config { return new(Config) },
	System:    "redis",
}

// DefaultTarget implements sinks.Config: the sink's stream.
func (c *Config) DefaultTarget() string { return c.Stream }

// CheckTarget implements sinks.Config: any key names a stream (a key of
// another type is found at start, or fails its messages at publish time).
func (c *Config) CheckTarget(string) error { return nil }

// Describe implements sinks.Config. It never shows the URL's password.
func (c *Config) Describe() string {
	d := Redact(c.URL)
	if c.MaxLen > 0 {
		d += fmt.Sprintf(", streams trimmed to about %d entries", c.MaxLen)
	}
	return d + ", " + string(c.ContentMode) + " CloudEvents"
}

// WithoutProbe implements sinks.Config.
func (c *Config) WithoutProbe() { c.SkipProbe = true }

// Open implements sinks.Config: the targets without variables (and the
// default stream, unless it is a template) are checked at start.
func (c *Config) Open(ctx context.Context, targets []sinks.TargetTemplate, log *slog.Logger) (sinks.Sink, error) {
	def := c.Stream
	if strings.ContainsAny(def, "{}") {
		def = "" // a template: the routes' targets hold its expansions
	}
	return New(ctx, *c, sinks.StaticTargets(targets, def), log)
}
