// Package config is hookbridge's configuration file: its types, the named
// defaults (defaults.go), validation, and the strict YAML decoder that
// points every problem at its file, line and key.
//
// Load reads a file strictly: unknown keys, unknown sink types, routes
// naming missing sinks, duplicate names and malformed values are errors
// of the form
//
//	config.yaml:12: routes[1].to[0].sink: route "alerting": unknown sink "alrets" (declared sinks: bus)
//
// Each sink kind's own keys are decoded into the configuration type its
// package exports (sinks.Kind), and the keys of spool.backend: jetstream
// into that backend's (package queue/jetstream).
package config

import (
	"slices"
	"time"

	"github.com/hookbridge/hookbridge/bridge/queue/jetstream"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/sinks"
)

// Config is hookbridge's configuration file.
type Config struct {
	Server Server `yaml:"server"`
	// Delivery is what a 200 answer waits for: "spool" (the default) once
	// the event is kept in the spool (fsynced in the local one, or stored
	// by NATS in the jetstream one), which delivers it in the background
	// with retries; "sync" once every sink confirmed it. A route may
	// override it.
	Delivery string   `yaml:"delivery"`
	Spool    Spool    `yaml:"spool"`
	Sources  []Source `yaml:"sources"`
	Sinks    []Sink   `yaml:"sinks"`
	Routes   []Route  `yaml:"routes"`
	// Telemetry is the OpenTelemetry tracing of webhooks; off unless an
	// endpoint or exporter is given here or in the OTEL_* environment.
	Telemetry Telemetry `yaml:"telemetry"`

	// raw is the file's content as loaded, so a watcher can tell whether
	// the file changed since, even before it started watching.
	raw []byte
	// envValues are the values ${VAR} references brought in (see Secrets).
	envValues []string
	// built are the routes as the router takes them, conditions compiled
	// and templates parsed once, by Validate (see Rules).
	built *builtRules
}

// builtRules are rules and what they were built from: a config changed
// after validation (tests do) must not route by its old routes.
type builtRules struct {
	routes  []Route // a deep copy
	maxBody int64   // bounds the conditions' cost estimate
	rules   []route.Rule
}

// Secrets returns every value of c that must never be written out, for a
// redact.Scrubber: the sources' secrets (secret_files contents included,
// once loaded), the credentials of the sinks and of the JetStream spool
// (see sinks.SecretHolder), and every value a ${VAR} reference brought in
// from the environment, whatever its key: the environment is where
// secrets come from, and one put in the wrong key (a listen address, a
// file path) is still a secret. It may hold duplicates and empty strings.
func (c *Config) Secrets() []string {
	out := slices.Clone(c.envValues)
	for _, src := range c.Sources {
		for _, sec := range src.Secrets {
			out = append(out, string(sec))
		}
	}
	for _, sk := range c.Sinks {
		if h, ok := sk.Options.(sinks.SecretHolder); ok {
			out = append(out, h.Secrets()...)
		}
	}
	return append(out, c.Spool.JetStream.Secrets()...)
}

// Raw is the file's content as it was loaded; nil for a config built in
// code.
func (c *Config) Raw() []byte { return c.raw }

// Telemetry configures tracing (package telemetry). Each key left out
// falls back to its OTEL_* environment variable, then to the SDK's
// default: a key written here wins over the environment, so that the file
// says what runs (write ${OTEL_...} to defer to the environment).
type Telemetry struct {
	// Exporter is "otlp" (export spans) or "none" (no tracing);
	// OTEL_TRACES_EXPORTER when left out. Left out everywhere, tracing is
	// on only if an endpoint is given.
	Exporter string `yaml:"exporter"`
	// Endpoint is the OTLP receiver's base URL, as
	// OTEL_EXPORTER_OTLP_ENDPOINT (http/protobuf appends /v1/traces).
	Endpoint string `yaml:"endpoint"`
	// Protocol is "grpc" or "http/protobuf"; OTEL_EXPORTER_OTLP_PROTOCOL
	// when left out, then http/protobuf.
	Protocol string `yaml:"protocol"`
	// Sampler is an OTEL_TRACES_SAMPLER value; SamplerArg its argument
	// (the ratio of the traceidratio samplers).
	Sampler    string   `yaml:"sampler"`
	SamplerArg *float64 `yaml:"sampler_arg"`
	// ServiceName is the service.name resource attribute;
	// OTEL_SERVICE_NAME, then DefaultServiceName.
	ServiceName string `yaml:"service_name"`
	// ResourceAttributes are key=value pairs separated by commas, as in
	// OTEL_RESOURCE_ATTRIBUTES, added to the environment's (a key given
	// in both takes this value).
	ResourceAttributes string `yaml:"resource_attributes"`
	// TaskIDAttribute records each event's task id on its span
	// (hookbridge.task_id). Off: a task id can identify a user's task.
	TaskIDAttribute bool `yaml:"task_id_attribute"`
}

// Telemetry exporters, protocols and samplers: the values of
// OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_PROTOCOL and OTEL_TRACES_SAMPLER
// that hookbridge supports.
const (
	ExporterOTLP = "otlp"
	ExporterNone = "none"

	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Samplers lists the OTEL_TRACES_SAMPLER values telemetry.sampler takes.
var Samplers = []string{"always_on", "always_off", "traceidratio",
	"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// Delivery modes.
const (
	DeliverySpool = "spool"
	DeliverySync  = "sync"
)

// Spool configures the durable buffer behind delivery: spool: a local
// log (backend local, one per replica) or a JetStream stream in the
// user's NATS (backend jetstream, shared by every replica).
type Spool struct {
	// Backend is where the spool lives: "local" (a log in Dir) or
	// "jetstream" (a stream at url, shared by every replica). Default
	// DefaultSpoolBackend.
	Backend string `yaml:"backend"`
	// Dir holds the spool file (local). Default DefaultSpoolDir.
	Dir string `yaml:"dir"`
	// MaxBytes caps the size of the events waiting in the spool; when it
	// is reached webhooks are answered 503 with Retry-After. Default
	// DefaultSpoolMaxBytes (1 GiB). With jetstream it is the stream's
	// max_bytes.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxEvents caps the number of messages waiting in the spool (one per
	// event and sink target). Default DefaultSpoolMaxEvents. With
	// jetstream it is the stream's max_msgs.
	MaxEvents int `yaml:"max_events"`
	// JetStream is the jetstream backend's keys (url, stream,
	// partitions, ...), written beside the others; they are refused
	// under backend: local.
	JetStream jetstream.Config `yaml:",inline"`
}

// Spool backends.
const (
	SpoolLocal     = "local"
	SpoolJetStream = "jetstream"
)

// Replay caches.
const (
	ReplayMemory = "memory"
	ReplayNATS   = "nats"
)

// Server configures the webhook listener. The zero value is a valid
// configuration: SetDefaults fills every field.
type Server struct {
	// Listen is the webhook listener's host:port. Default DefaultListen.
	Listen string `yaml:"listen"`
	// AdminListen is the admin listener's host:port, serving /metrics,
	// /healthz, /readyz and (with Pprof) /debug/pprof/. It is separate
	// from the webhook listener so it never faces the internet. Default
	// DefaultAdminListen; in a pod, ":9090" lets the kubelet probe it.
	AdminListen string `yaml:"admin_listen"`
	// Pprof serves net/http/pprof on the admin listener. Default false.
	Pprof bool `yaml:"pprof"`
	// TLS serves webhooks over HTTPS (TLS 1.2 or later). Default: plain
	// HTTP, for an ingress that terminates TLS.
	TLS TLS `yaml:"tls"`
	// MaxBodyBytes caps a webhook body; a larger one is answered 413.
	// Default DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxHeaderBytes caps the request line and headers. Default
	// DefaultMaxHeaderBytes (16 KiB).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxJSONDepth caps the nesting of a body; deeper is answered 400.
	// Default signature.DefaultMaxDepth (128).
	MaxJSONDepth int `yaml:"max_json_depth"`
	// MaxNumberDigits caps an integer literal in a body, in digits; a
	// longer one is answered 400. Default signature.MaxIntDigits (4300),
	// CPython's own limit (a longer integer cannot have been signed by a
	// CPython sender).
	MaxNumberDigits int `yaml:"max_number_digits"`
	// ReadHeaderTimeout bounds reading the request headers. Default
	// DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request. Default
	// DefaultReadTimeout.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds a request from the end of its headers to the end
	// of the answer, publishing included. Default DefaultWriteTimeout; it
	// must be longer than PublishTimeout.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout bounds an idle keep-alive connection. Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// PublishTimeout bounds how long a webhook waits for its sinks (sync
	// routes) or the jetstream spool to confirm before it is answered 503.
	// Default DefaultPublishTimeout.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// RetryAfter is the Retry-After sent with a 503, rounded up to whole
	// seconds. Default DefaultRetryAfter.
	RetryAfter time.Duration `yaml:"retry_after"`
	// ShutdownTimeout bounds the graceful shutdown on SIGTERM or SIGINT.
	// Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxConcurrentRequests caps the webhooks handled at once; beyond it a
	// request is answered 503 with Retry-After at once instead of queueing
	// without bound. Default DefaultMaxConcurrentRequests.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// MaxConnections caps the webhook listener's open connections; past
	// it new connections wait in the kernel's accept backlog, unanswered,
	// until one closes. With MaxBufferedBytes it bounds the memory
	// requests can take (see WorstCaseMemory). Default
	// DefaultMaxConnections.
	MaxConnections int `yaml:"max_connections"`
	// MaxConcurrentReads caps the bodies being read at once, before a
	// request takes one of MaxConcurrentRequests: a request beyond it is
	// answered 503 with Retry-After at once. Default
	// DefaultMaxConcurrentReads.
	MaxConcurrentReads int `yaml:"max_concurrent_reads"`
	// BodyReadTimeout is the time a body may take from the end of the
	// headers, extended by one second for every MinBodyRate bytes that
	// arrive (mod_reqtimeout's scheme); a sender past it is answered 408
	// and disconnected. Default DefaultBodyReadTimeout.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout"`
	// MinBodyRate is the transfer rate, in bytes per second, that keeps
	// extending BodyReadTimeout. Default DefaultMinBodyRate.
	MinBodyRate int64 `yaml:"min_body_rate"`
	// MaxBufferedBytes caps the body bytes held by all requests in
	// flight together: a body's buffer is reserved before it grows, and
	// a request that does not fit is answered 503 with Retry-After. It
	// must be at least MaxBodyBytes. Default DefaultMaxBufferedBytes.
	MaxBufferedBytes int64 `yaml:"max_buffered_bytes"`
	// ReplayWindow is how long an accepted event's id is remembered for a
	// source whose tolerance is 0: a delivery with a remembered id is
	// answered 200 and not published again. A source with a tolerance
	// remembers ids until their signed timestamp plus the tolerance, and
	// at least the tolerance from receipt (older timestamps are refused
	// anyway). Default DefaultReplayWindow; 0 turns it off where the
	// tolerance is 0.
	ReplayWindow *time.Duration `yaml:"replay_window"`
	// ReplayCacheSize caps the remembered ids per source; past it the
	// oldest are forgotten first. Default DefaultReplayCacheSize, at most
	// MaxReplayCacheSize.
	ReplayCacheSize int `yaml:"replay_cache_size"`
	// ReplayCache is where accepted ids are remembered: "memory" (this
	// replica only) or "nats" (also in the KV bucket spool.replay_bucket,
	// so a retry that lands on another replica is recognized too; needs
	// spool.backend: jetstream). Default DefaultReplayCache.
	ReplayCache string `yaml:"replay_cache"`
}

// TLS serves the webhook listener over HTTPS, for deployments that face
// the internet without an ingress in front. The zero value serves plain
// HTTP.
type TLS struct {
	// CertFile is the PEM certificate chain, KeyFile its private key. Both
	// or neither. They are re-read when they change on disk (checked at
	// most once a second, on a handshake), so a renewed certificate is
	// picked up without a restart.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether TLS is configured.
func (c TLS) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Source is one webhook sender: a path and the secrets its deliveries are
// signed with.
type Source struct {
	// Name identifies the source; it is the CloudEvents "source" attribute.
	Name string `yaml:"name"`
	// Path is the URL path deliveries are POSTed to. Default DefaultPath.
	Path string `yaml:"path"`
	// Secrets are the signing secrets; a delivery signed with any one of
	// them is accepted, so a secret can be rotated without downtime. Write
	// them as ${VAR}: a secret never belongs in the file itself.
	Secrets []Secret `yaml:"secrets"`
	// SecretFiles are files each holding one more secret (surrounding
	// white space ignored), read at start and at every reload: a mounted
	// Kubernetes Secret or a file a vault agent renders can rotate without
	// a restart.
	SecretFiles []string `yaml:"secret_files"`
	// Tolerance is how far the signed timestamp may be from now, in either
	// direction. Default DefaultTolerance; 0 turns the freshness check
	// off.
	Tolerance *time.Duration `yaml:"tolerance"`
	// AllowUnparsedTimestamp accepts a correctly signed delivery whose
	// timestamp header is neither Unix time nor RFC 3339 (the freshness
	// check is then skipped for it). Default false.
	AllowUnparsedTimestamp bool `yaml:"allow_unparsed_timestamp"`
}

// Secret is a signing secret. Its String method redacts it, so that
// printing a config never shows one.
type Secret string

// String returns a placeholder, never the secret.
func (Secret) String() string { return "[redacted]" }

// GoString returns a placeholder, never the secret.
func (Secret) GoString() string { return "[redacted]" }

// Sink is one named broker connection. Type picks the kind; retry and
// dead_letter are hookbridge's own; the remaining keys are the kind's
// (Options).
type Sink struct {
	Name string
	Type string
	// Kind is the kind Type names.
	Kind sinks.Kind
	// Retry is how the spool retries this sink's failed publishes.
	Retry Retry
	// DeadLetter is where messages the sink will not take go; nil keeps
	// them in the spool only (hookbridge spool ls -dead).
	DeadLetter *Target
	// Options is the kind's own configuration, e.g. *nats.Config.
	Options sinks.Config
}

// Retry is a sink's retry policy under delivery: spool. The zero value is
// valid: SetDefaults fills it.
type Retry struct {
	// MinBackoff is the wait after the first failure; it doubles with
	// each failure, with jitter. Default DefaultMinBackoff.
	MinBackoff time.Duration `yaml:"min_backoff"`
	// MaxBackoff caps the wait between attempts. Default
	// DefaultMaxBackoff.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxAttempts dead-letters a message after this many failed attempts.
	// Default 0: no limit by count (MaxAge applies).
	MaxAttempts int `yaml:"max_attempts"`
	// MaxAge dead-letters a message still undelivered this long after its
	// webhook was accepted. Default DefaultRetryMaxAge.
	MaxAge time.Duration `yaml:"max_age"`
}

// Route sends the events whose status is in Status, and for which When
// holds, to every target in To. Every matching route fires.
type Route struct {
	// Name identifies the route in logs and in `hookbridge check`.
	Name string `yaml:"name"`
	// Delivery overrides the top-level delivery mode for this route's
	// targets: "spool" or "sync". Default: the top-level mode.
	Delivery string `yaml:"delivery"`
	// Status lists the statuses the route takes; "*" takes every status.
	// It may be left out when When is given: every status.
	Status []string `yaml:"status"`
	// When is a CEL expression over the event (id, source, type, subject,
	// time, status, data) that must also be true for the route to match,
	// e.g. data.?metadata.?tier.orValue("") == "vip". Default: none.
	When string `yaml:"when"`
	// To lists where the events go.
	To []Target `yaml:"to"`
}

// Target names a sink and, for kinds that have one, the target within it:
// `subject` for nats. The target is a template that may use {status},
// {source} and {task_id}; when it is absent, the sink's own default
// applies.
type Target struct {
	Sink string
	// Key is the YAML key that named the target ("subject"), empty if none.
	Key    string
	Target string
}
