package file

import (
	"context"
	"log/slog"

	"github.com/hookbridge/hookbridge/sinks"
)

// Kind is the file sink kind, `type: file`. It takes no target: every
// message goes to the sink's one file.
var Kind = sinks.Kind{
	Name:      "file",
	NewConfig: func() sinks.Config { return new(Config) },
	System:    "file",
}

// DefaultTarget implements sinks.Config: a file sink has no targets.
func (c *Config) DefaultTarget() string { return "" }

// CheckTarget implements sinks.Config.
func (c *Config) CheckTarget(string) error { return nil }

// Describe implements sinks.Config: the file's path.
func (c *Config) Describe() string { return c.Path }

// WithoutProbe implements sinks.Config: opening a file contacts nothing.
func (c *Config) WithoutProbe() {}

// Open implements sinks.Config.
func (c *Config) Open(_ context.Context, _ []sinks.TargetTemplate, _ *slog.Logger) (sinks.Sink, error) {
	return New(*c)
}
