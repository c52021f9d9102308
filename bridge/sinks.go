package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/hookbridge/hookbridge/sinks"
	filesink "github.com/hookbridge/hookbridge/sinks/file"
	kafkasink "github.com/hookbridge/hookbridge/sinks/kafka"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
	sqssink "github.com/hookbridge/hookbridge/sinks/sqs"
)

// sinkKind is what the config loader and OpenSinks know of one broker
// type. Adding a broker is one package under sinks/ and one entry here.
type sinkKind struct {
	// targetKey is the route key that names a target within the sink
	// ("subject"), or "" for sinks that take none.
	targetKey string
	// options returns a new, empty configuration for the kind.
	options func() SinkOptions
	// defaultTarget returns the sink's own default target, "" if none.
	defaultTarget func(SinkOptions) string
	// checkTarget checks a target without template variables at load
	// time (nil: anything goes).
	checkTarget func(string) error
	// skipProbe makes open start without contacting the broker (nil for
	// kinds that have nothing to probe).
	skipProbe func(SinkOptions)
	// describe summarizes where the sink publishes, for `hookbridge check`
	// (never a credential).
	describe func(SinkOptions) string
	// open connects a sink. templates are the target templates routes use
	// with it (some brokers provision for them, e.g. a JetStream stream).
	open func(ctx context.Context, opts SinkOptions, templates []Template, log *slog.Logger) (sinks.Sink, error)
}

func (k sinkKind) hasDefaultTarget(opts SinkOptions) bool {
	return k.defaultTarget != nil && k.defaultTarget(opts) != ""
}

// sinkKinds lists every broker type by its `type:` name. It is never
// modified.
var sinkKinds = map[string]sinkKind{
	"nats": {
		targetKey:     "subject",
		options:       func() SinkOptions { return new(natssink.Config) },
		defaultTarget: func(o SinkOptions) string { return o.(*natssink.Config).Subject },
		skipProbe:     func(o SinkOptions) { o.(*natssink.Config).SkipProbe = true },
		describe: func(o SinkOptions) string {
			c := o.(*natssink.Config)
			mode := "core NATS"
			if c.JetStream {
				mode = "JetStream stream " + c.Stream.Name
			}
			if c.URL == natssink.Embedded {
				return fmt.Sprintf("embedded server on %s, %s", c.Embedded.Listen, mode)
			}
			return fmt.Sprintf("%s, %s", natssink.Redact(c.URL), mode)
		},
		open: func(ctx context.Context, o SinkOptions, templates []Template, log *slog.Logger) (sinks.Sink, error) {
			// The sink's default subject is among templates already:
			// SetDefaults gives it to the routes that name none.
			return natssink.New(ctx, *o.(*natssink.Config), SubjectPatterns(templates), log)
		},
	},
	"kafka": {
		targetKey:     "topic",
		checkTarget:   kafkasink.CheckTopic,
		options:       func() SinkOptions { return new(kafkasink.Config) },
		defaultTarget: func(o SinkOptions) string { return o.(*kafkasink.Config).Topic },
		skipProbe:     func(o SinkOptions) { o.(*kafkasink.Config).SkipProbe = true },
		describe: func(o SinkOptions) string {
			return "brokers " + strings.Join(o.(*kafkasink.Config).Brokers, ",")
		},
		open: func(ctx context.Context, o SinkOptions, templates []Template, log *slog.Logger) (sinks.Sink, error) {
			cfg := o.(*kafkasink.Config)
			return kafkasink.New(ctx, *cfg, staticTargets(templates, cfg.Topic), log)
		},
	},
	"sqs": {
		targetKey:     "queue_url",
		checkTarget:   sqssink.CheckQueueURL,
		options:       func() SinkOptions { return new(sqssink.Config) },
		defaultTarget: func(o SinkOptions) string { return o.(*sqssink.Config).QueueURL },
		skipProbe:     func(o SinkOptions) { o.(*sqssink.Config).SkipProbe = true },
		describe: func(o SinkOptions) string {
			c := o.(*sqssink.Config)
			where := "region " + c.Region
			if c.Region == "" {
				where = "region from the AWS environment"
			}
			if c.Endpoint != "" {
				where += ", endpoint " + c.Endpoint
			}
			return where
		},
		open: func(ctx context.Context, o SinkOptions, templates []Template, log *slog.Logger) (sinks.Sink, error) {
			cfg := o.(*sqssink.Config)
			return sqssink.New(ctx, *cfg, staticTargets(templates, cfg.QueueURL), log)
		},
	},
	"file": {
		options:  func() SinkOptions { return new(filesink.Config) },
		describe: func(o SinkOptions) string { return o.(*filesink.Config).Path },
		open: func(_ context.Context, o SinkOptions, _ []Template, _ *slog.Logger) (sinks.Sink, error) {
			return filesink.New(*o.(*filesink.Config))
		},
	},
}

// targetKeys is the set of every kind's target key.
var targetKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range sinkKinds {
		if k.targetKey != "" {
			m[k.targetKey] = true
		}
	}
	return m
}()

// OpenSinks connects every sink of cfg, in file order. On error it closes
// the sinks it had opened.
func OpenSinks(ctx context.Context, cfg *Config, log *slog.Logger) (map[string]sinks.Sink, error) {
	opened := make(map[string]sinks.Sink, len(cfg.Sinks))
	for _, sc := range cfg.Sinks {
		s, err := sinkKinds[sc.Type].open(ctx, sc.Options, cfg.TargetTemplates(sc.Name), log.With("sink", sc.Name))
		if err != nil {
			err = fmt.Errorf("sink %q: %w", sc.Name, err)
			return nil, errors.Join(err, CloseSinks(context.WithoutCancel(ctx), opened))
		}
		opened[sc.Name] = s
	}
	return opened, nil
}

// TargetTemplates returns the target templates routes use with the named
// sink, in file order; routes using the sink's default add none.
func (c *Config) TargetTemplates(sink string) []Template {
	var out []Template
	for _, r := range c.Routes {
		for _, t := range r.To {
			if t.Sink != sink || t.Target == "" {
				continue
			}
			// Validate has parsed every template, so this cannot fail.
			if tmpl, err := ParseTemplate(t.Target); err == nil {
				out = append(out, tmpl)
			}
		}
	}
	return out
}

// SkipProbes makes every sink start without contacting its broker, for
// brokers that come up after hookbridge (serve -skip-probe).
func (c *Config) SkipProbes() {
	for _, sk := range c.Sinks {
		if k := sinkKinds[sk.Type]; k.skipProbe != nil {
			k.skipProbe(sk.Options)
		}
	}
}

// DescribeSink summarizes where the named sink publishes, for `hookbridge
// check`. It never shows a credential.
func (c *Config) DescribeSink(name string) string {
	for _, sk := range c.Sinks {
		if k := sinkKinds[sk.Type]; sk.Name == name && k.describe != nil {
			return k.describe(sk.Options)
		}
	}
	return ""
}

// CloseSinks closes every sink, flushing what they hold, and returns every
// error.
func CloseSinks(ctx context.Context, open map[string]sinks.Sink) error {
	var errs []error
	for name, s := range open {
		if err := s.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close sink %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// SubjectPatterns returns the NATS subjects that cover every expansion of
// templates ("task.{status}" → "task.*"), without repeats.
func SubjectPatterns(templates []Template) []string {
	var out []string
	for _, t := range templates {
		out = appendUnique(out, t.Wildcard('.', "*"))
	}
	return out
}

// staticTargets returns the targets that hold no template variable, plus
// def when set: what a sink can check exists at start-up.
func staticTargets(templates []Template, def string) []string {
	var out []string
	for _, t := range templates {
		if t.static() {
			out = appendUnique(out, t.String())
		}
	}
	if def != "" {
		out = appendUnique(out, def)
	}
	return out
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
