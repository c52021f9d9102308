package httpsink

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hookbridge/hookbridge/sinks"
)

// Kind is the HTTP sink kind, `type: http`. A route names its target with
// `url:`.
var Kind = sinks.Kind{
	Name:      "http",
	TargetKey: "url",
	NewConfig: func() sinks.Config { return new(Config) },
	System:    "http",
}

// DefaultTarget implements sinks.Config: the sink's url.
func (c *Config) DefaultTarget() string { return c.URL }

// CheckTarget implements sinks.Config: an http:// or https:// URL.
func (c *Config) CheckTarget(target string) error { return CheckURL(target) }

// Describe implements sinks.Config. It shows no password, query or
// secret.
func (c *Config) Describe() string {
	where := "POST to each route's url"
	if c.URL != "" {
		where = "POST to " + displayString(c.URL)
	}
	signed := "Standard Webhooks signed"
	if n := len(c.signingSecrets()); n > 1 {
		signed += fmt.Sprintf(" with %d secrets", n)
	}
	if c.TLS.CertFile != "" {
		signed += ", client certificate"
	}
	return where + ", " + signed + ", " + string(c.ContentMode) + " CloudEvents"
}

// WithoutProbe implements sinks.Config. The sink probes nothing (see
// Config.SkipProbe): it only records the setting.
func (c *Config) WithoutProbe() { c.SkipProbe = true }

// Open implements sinks.Config. Static targets were checked at load by
// CheckTarget; a templated one is checked once filled in, and a bad one
// fails its message for good.
func (c *Config) Open(_ context.Context, _ []sinks.TargetTemplate, log *slog.Logger) (sinks.Sink, error) {
	return New(*c, log)
}
