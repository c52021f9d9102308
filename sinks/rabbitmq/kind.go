package rabbitmq

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hookbridge/hookbridge/sinks"
)

// Kind is the RabbitMQ sink kind, `type: rabbitmq`. A route names its
// target with `routing_key:`; every target publishes to the sink's
// exchange.
var Kind = sinks.Kind{
	Name:      "rabbitmq",
	TargetKey: "routing_key",
	NewConfig: func() sinks.Config { return new(Config) },
	System:    "rabbitmq",
}

// DefaultTarget implements sinks.Config: the sink's routing key.
func (c *Config) DefaultTarget() string { return c.RoutingKey }

// CheckTarget implements sinks.Config: a routing key is at most 255
// bytes (an AMQP short string); which keys route anywhere is the
// broker's bindings' business, checked per message (a message no queue
// takes is returned and fails).
func (c *Config) CheckTarget(key string) error { return checkRoutingKey(key) }

// Describe implements sinks.Config.
func (c *Config) Describe() string {
	exchange := "the default exchange (routing keys name queues)"
	if c.Exchange != "" {
		exchange = fmt.Sprintf("exchange %q", c.Exchange)
		if c.Declare {
			exchange += " (declared: durable topic)"
		}
	}
	return fmt.Sprintf("%s, %s, %s CloudEvents", redact(c.URL), exchange, c.ContentMode)
}

// WithoutProbe implements sinks.Config.
func (c *Config) WithoutProbe() { c.SkipProbe = true }

// Open implements sinks.Config. With the default exchange, the routing
// keys without variables (and the default routing key) name queues,
// which the probe checks exist.
func (c *Config) Open(ctx context.Context, targets []sinks.TargetTemplate, log *slog.Logger) (sinks.Sink, error) {
	return New(ctx, *c, sinks.StaticTargets(targets, c.RoutingKey), log)
}
