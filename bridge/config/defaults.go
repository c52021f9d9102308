package config

import (
	"time"

	"github.com/hookbridge/hookbridge/bridge/queue/jetstream"
	"github.com/hookbridge/hookbridge/bridge/signature"
)

// Defaults, one name each: SetDefaults applies them, validation messages
// and `hookbridge check` quote them, and docs/configuration.md lists them
// (a test holds the two together). The sink kinds' own and the jetstream
// spool's live in their packages.
const (
	DefaultDelivery = DeliverySpool

	DefaultListen                = "127.0.0.1:8080"
	DefaultAdminListen           = "127.0.0.1:9090"
	DefaultMaxBodyBytes          = 1 << 20
	DefaultMaxHeaderBytes        = 16 << 10
	DefaultMaxJSONDepth          = signature.DefaultMaxDepth
	DefaultMaxNumberDigits       = signature.MaxIntDigits
	DefaultReadHeaderTimeout     = 5 * time.Second
	DefaultReadTimeout           = 30 * time.Second
	DefaultWriteTimeout          = 30 * time.Second
	DefaultIdleTimeout           = 2 * time.Minute
	DefaultPublishTimeout        = 10 * time.Second
	DefaultRetryAfter            = 5 * time.Second
	DefaultShutdownTimeout       = 15 * time.Second
	DefaultMaxConcurrentRequests = 1024
	// The connection and body budgets are sized so that their worst
	// case (WorstCaseMemory: 512 × 52 KiB + 32 MiB = 58 MiB) plus the
	// process's own (21 MiB idle, measured) fits the 128Mi the shipped
	// sidecar allows; SECURITY.md has the measurements.
	DefaultMaxConnections     = 512
	DefaultMaxConcurrentReads = 512
	DefaultBodyReadTimeout    = 10 * time.Second
	DefaultMinBodyRate        = 64 << 10
	DefaultMaxBufferedBytes   = 32 << 20
	DefaultReplayWindow       = 5 * time.Minute
	DefaultReplayCacheSize    = 100_000
	DefaultReplayCache        = ReplayMemory

	DefaultSpoolBackend   = SpoolLocal
	DefaultSpoolDir       = "./data/spool"
	DefaultSpoolMaxBytes  = 1 << 30
	DefaultSpoolMaxEvents = 1_000_000

	DefaultPath      = "/webhook"
	DefaultTolerance = 5 * time.Minute

	// The telemetry fallbacks come after the OTEL_* environment, so
	// SetDefaults leaves those keys empty and package telemetry applies
	// them: a default written into the config would win over the
	// environment.
	DefaultServiceName       = "hookbridge"
	DefaultTelemetryProtocol = ProtocolHTTPProtobuf

	DefaultMinBackoff  = 200 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second
	DefaultRetryMaxAge = 72 * time.Hour
)

// MaxReplayCacheSize bounds server.replay_cache_size: 50 million ids take
// 1.7 GB, and past it the cache's table positions would not fit its int32
// slots.
const MaxReplayCacheSize = 50_000_000

// SetDefaults fills every zero field with its default. It is the only place
// defaults are applied, and is idempotent.
func (c *Config) SetDefaults() {
	setDefault(&c.Delivery, DefaultDelivery)
	sp := &c.Spool
	setDefault(&sp.Backend, DefaultSpoolBackend)
	setDefault(&sp.Dir, DefaultSpoolDir)
	setDefault(&sp.MaxBytes, DefaultSpoolMaxBytes)
	setDefault(&sp.MaxEvents, DefaultSpoolMaxEvents)
	for i := range c.Sinks {
		r := &c.Sinks[i].Retry
		setDefault(&r.MinBackoff, DefaultMinBackoff)
		setDefault(&r.MaxBackoff, DefaultMaxBackoff)
		setDefault(&r.MaxAge, DefaultRetryMaxAge)
	}
	for i := range c.Routes {
		setDefault(&c.Routes[i].Delivery, c.Delivery)
	}
	s := &c.Server
	setDefault(&s.Listen, DefaultListen)
	setDefault(&s.AdminListen, DefaultAdminListen)
	setDefault(&s.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&s.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&s.MaxJSONDepth, DefaultMaxJSONDepth)
	setDefault(&s.MaxNumberDigits, DefaultMaxNumberDigits)
	setDefault(&s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&s.ReadTimeout, DefaultReadTimeout)
	setDefault(&s.WriteTimeout, DefaultWriteTimeout)
	setDefault(&s.IdleTimeout, DefaultIdleTimeout)
	setDefault(&s.PublishTimeout, DefaultPublishTimeout)
	setDefault(&s.RetryAfter, DefaultRetryAfter)
	setDefault(&s.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&s.MaxConcurrentRequests, DefaultMaxConcurrentRequests)
	setDefault(&s.MaxConnections, DefaultMaxConnections)
	setDefault(&s.MaxConcurrentReads, DefaultMaxConcurrentReads)
	setDefault(&s.BodyReadTimeout, DefaultBodyReadTimeout)
	setDefault(&s.MinBodyRate, DefaultMinBodyRate)
	setDefault(&s.MaxBufferedBytes, DefaultMaxBufferedBytes)
	setDefault(&s.ReplayCacheSize, DefaultReplayCacheSize)
	setDefault(&s.ReplayCache, DefaultReplayCache)
	if s.ReplayWindow == nil {
		d := DefaultReplayWindow
		s.ReplayWindow = &d
	}
	for i := range c.Sources {
		src := &c.Sources[i]
		setDefault(&src.Path, DefaultPath)
		if src.Tolerance == nil {
			d := DefaultTolerance
			src.Tolerance = &d
		}
	}
	if sp.Backend == SpoolJetStream {
		sp.JetStream.SetDefaults()
		if sp.JetStream.Duplicates == 0 {
			// As long as a sender may retry and be accepted: then a retry
			// that another replica takes is stored once, even without
			// replay_cache: nats.
			sp.JetStream.Duplicates = max(jetstream.MinDuplicates, c.LongestReplayWindow())
		}
	}
	for _, sk := range c.Sinks {
		if sk.Options != nil {
			sk.Options.SetDefaults()
		}
	}
	// A target that names no destination takes its sink's default, so the
	// router expands templates in one place and `check` shows them.
	for i := range c.Routes {
		for j := range c.Routes[i].To {
			c.defaultTarget(&c.Routes[i].To[j])
		}
	}
	for _, sk := range c.Sinks {
		if sk.DeadLetter != nil {
			c.defaultTarget(sk.DeadLetter)
		}
	}
}

func (c *Config) defaultTarget(t *Target) {
	if t.Target != "" {
		return
	}
	for _, sk := range c.Sinks {
		if sk.Name == t.Sink && sk.Options != nil {
			if def := sk.Options.DefaultTarget(); def != "" {
				t.Key, t.Target = sk.Kind.TargetKey, def
			}
		}
	}
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// ReplayWindow is how long src's accepted ids are remembered: its
// tolerance, or server.replay_window where the tolerance is 0.
func (c *Config) ReplayWindow(src Source) time.Duration {
	window := *src.Tolerance
	if window == 0 && c.Server.ReplayWindow != nil {
		window = *c.Server.ReplayWindow
	}
	return window
}

// LongestReplayRetention bounds how long any source remembers an id: an
// id is kept until its signed timestamp plus the tolerance, and that
// timestamp may be up to the tolerance ahead of receipt, so twice the
// longest window.
func (c *Config) LongestReplayRetention() time.Duration {
	return 2 * c.LongestReplayWindow()
}

// LongestReplayWindow is the longest ReplayWindow of the sources.
func (c *Config) LongestReplayWindow() time.Duration {
	var longest time.Duration
	for _, src := range c.Sources {
		longest = max(longest, c.ReplayWindow(src))
	}
	return longest
}
