package bridge

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/hookbridge/hookbridge/sinks"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// Config is hookbridge's configuration file. LoadConfig reads it strictly:
// unknown keys, unknown sink types, routes naming missing sinks, duplicate
// names and malformed values are errors that name the file, line and key.
type Config struct {
	Server ServerConfig `yaml:"server"`
	// Delivery is what a 200 answer waits for: "spool" (the default) once
	// the event is kept in the spool (fsynced in the local one, or stored
	// by NATS in the jetstream one), which delivers it in the background
	// with retries; "sync" once every sink confirmed it. A route may
	// override it.
	Delivery string         `yaml:"delivery"`
	Spool    SpoolConfig    `yaml:"spool"`
	Sources  []SourceConfig `yaml:"sources"`
	Sinks    []SinkConfig   `yaml:"sinks"`
	Routes   []RouteConfig  `yaml:"routes"`

	// raw is the file's content as loaded, so a watcher can tell whether
	// the file changed since, even before it started watching.
	raw []byte
}

// Delivery modes.
const (
	DeliverySpool = "spool"
	DeliverySync  = "sync"
)

// SpoolConfig configures the durable buffer behind delivery: spool: a
// local bbolt file (backend local, one per replica) or a JetStream stream
// in the user's NATS (backend jetstream, shared by every replica).
type SpoolConfig struct {
	// Backend is where the spool lives: "local" (a bbolt file in Dir) or
	// "jetstream" (a stream at URL, shared by every replica). Default
	// "local".
	Backend string `yaml:"backend"`
	// Dir holds the spool file (local). Default "./data/spool".
	Dir string `yaml:"dir"`
	// MaxBytes caps the size of the events waiting in the spool; when it
	// is reached webhooks are answered 503 with Retry-After. Default 1 GiB.
	// With jetstream it is the stream's max_bytes.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxEvents caps the number of messages waiting in the spool (one per
	// event and sink target). Default 1,000,000. With jetstream it is the
	// stream's max_msgs.
	MaxEvents int `yaml:"max_events"`

	// The keys below are the jetstream backend's.

	// URL is one or more comma-separated nats:// (or tls://) URLs of the
	// NATS cluster. Required with backend jetstream.
	URL string `yaml:"url"`
	// CredsFile, Token, User and Password authenticate to NATS. Give
	// secrets as ${VAR}.
	CredsFile string `yaml:"creds_file"`
	Token     string `yaml:"token"`
	User      string `yaml:"user"`
	Password  string `yaml:"password"`
	// Stream is the stream's name. Default "HOOKBRIDGE_SPOOL".
	Stream string `yaml:"stream"`
	// SubjectPrefix is the first tokens of the stream's subjects:
	// <prefix>.q.<sink>.<partition> for waiting messages and
	// <prefix>.dead.<sink> for dead letters. Default "hookbridge.spool".
	SubjectPrefix string `yaml:"subject_prefix"`
	// Replicas is the stream's (and the replay bucket's) replica count:
	// 1, or 3 to survive the loss of a NATS node. Default 1.
	Replicas int `yaml:"replicas"`
	// Storage is "file" or "memory". Default "file".
	Storage string `yaml:"storage"`
	// MaxAge drops messages older than this from the stream, dead letters
	// included. It must be longer than every sink's retry.max_age, which
	// dead-letters first. Default 168h (7 days).
	MaxAge time.Duration `yaml:"max_age"`
	// Duplicates is the window in which the stream drops a message whose
	// Nats-Msg-Id it has seen: a sender's retry that another replica takes
	// is kept once. Default: the longest replay window of the sources
	// (their tolerance, or server.replay_window), at least 2m.
	Duplicates time.Duration `yaml:"duplicates"`
	// Partitions is how many ordered lanes each sink's messages are split
	// into by a hash of the task id: one message per lane is in flight at
	// a time, across all replicas, so a task's events keep their order and
	// up to Partitions messages per sink are delivered at once. Changing
	// it needs an empty stream. Default 16.
	Partitions int `yaml:"partitions"`
	// AckWait is how long a replica may hold a message before NATS gives
	// it to another: a replica that dies mid-delivery hands its messages
	// over after this. It must be longer than server.publish_timeout.
	// Default 30s.
	AckWait time.Duration `yaml:"ack_wait"`
	// ReplayBucket is the NATS KV bucket of server.replay_cache: nats.
	// Default "hookbridge_replay".
	ReplayBucket string `yaml:"replay_bucket"`
	// ConnectTimeout bounds the first connection. Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
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

// ServerConfig configures the webhook listener. The zero value is a valid
// configuration: SetDefaults fills every field.
type ServerConfig struct {
	// Listen is the webhook listener's host:port. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// AdminListen is the admin listener's host:port, serving /metrics,
	// /healthz, /readyz and (with Pprof) /debug/pprof/. It is separate
	// from the webhook listener so it never faces the internet. Default
	// "127.0.0.1:9090"; in a pod, ":9090" lets the kubelet probe it.
	AdminListen string `yaml:"admin_listen"`
	// Pprof serves net/http/pprof on the admin listener. Default false.
	Pprof bool `yaml:"pprof"`
	// TLS serves webhooks over HTTPS (TLS 1.2 or later). Default: plain
	// HTTP, for an ingress that terminates TLS.
	TLS TLSConfig `yaml:"tls"`
	// MaxBodyBytes caps a webhook body; a larger one is answered 413.
	// Default 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxHeaderBytes caps the request line and headers. Default 16 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxJSONDepth caps the nesting of a body; deeper is answered 400.
	// Default 128.
	MaxJSONDepth int `yaml:"max_json_depth"`
	// MaxNumberDigits caps an integer literal in a body, in digits; a
	// longer one is answered 400. Default 4300, CPython's own limit (a
	// longer integer cannot have been signed by a CPython sender).
	MaxNumberDigits int `yaml:"max_number_digits"`
	// ReadHeaderTimeout bounds reading the request headers. Default 5s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request. Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds a request from the end of its headers to the end
	// of the answer, publishing included. Default 30s; it must be longer
	// than PublishTimeout.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout bounds an idle keep-alive connection. Default 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// PublishTimeout bounds how long a webhook waits for its sinks to
	// confirm before it is answered 503. Default 10s.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// RetryAfter is the Retry-After sent with a 503, rounded up to whole
	// seconds. Default 5s.
	RetryAfter time.Duration `yaml:"retry_after"`
	// ShutdownTimeout bounds the graceful shutdown on SIGTERM or SIGINT.
	// Default 15s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxConcurrentRequests caps the webhooks handled at once; beyond it a
	// request is answered 503 with Retry-After at once instead of queueing
	// without bound. Default 1024.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// ReplayWindow is how long an accepted event's id is remembered for a
	// source whose tolerance is 0: a delivery with a remembered id is
	// answered 200 and not published again. A source with a tolerance
	// remembers ids for its tolerance (older timestamps are refused
	// anyway). Default 5m; 0 turns it off where the tolerance is 0.
	ReplayWindow *time.Duration `yaml:"replay_window"`
	// ReplayCacheSize caps the remembered ids per source; past it the
	// oldest are forgotten first. Default 100000.
	ReplayCacheSize int `yaml:"replay_cache_size"`
	// ReplayCache is where accepted ids are remembered: "memory" (this
	// replica only) or "nats" (also in the KV bucket spool.replay_bucket,
	// so a retry that lands on another replica is recognized too; needs
	// spool.backend: jetstream). Default "memory".
	ReplayCache string `yaml:"replay_cache"`
}

// SourceConfig is one webhook sender: a path and the secrets its deliveries
// are signed with.
type SourceConfig struct {
	// Name identifies the source; it is the CloudEvents "source" attribute.
	Name string `yaml:"name"`
	// Path is the URL path deliveries are POSTed to. Default "/webhook".
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
	// direction. Default 5m; 0 turns the freshness check off.
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

// SinkConfig is one named broker connection. Type picks the kind; retry
// and dead_letter are hookbridge's own; the remaining keys are the kind's
// (Options).
type SinkConfig struct {
	Name string
	Type string
	// Retry is how the spool retries this sink's failed publishes.
	Retry RetryConfig
	// DeadLetter is where messages the sink will not take go; nil keeps
	// them in the spool only (hookbridge spool ls -dead).
	DeadLetter *TargetConfig
	// Options is the kind's configuration, e.g. *nats.Config.
	Options SinkOptions
}

// RetryConfig is a sink's retry policy under delivery: spool. The zero
// value is valid: SetDefaults fills it.
type RetryConfig struct {
	// MinBackoff is the wait after the first failure; it doubles with
	// each failure, with jitter. Default 200ms.
	MinBackoff time.Duration `yaml:"min_backoff"`
	// MaxBackoff caps the wait between attempts. Default 30s.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxAttempts dead-letters a message after this many failed attempts.
	// Default 0: no limit by count (MaxAge applies).
	MaxAttempts int `yaml:"max_attempts"`
	// MaxAge dead-letters a message still undelivered this long after its
	// webhook was accepted. Default 72h.
	MaxAge time.Duration `yaml:"max_age"`
}

// SinkOptions is a sink kind's own configuration.
type SinkOptions interface {
	SetDefaults()
	Validate() error
}

// RouteConfig sends the events whose status is in Status to every target in
// To. Every matching route fires.
type RouteConfig struct {
	// Name identifies the route in logs and in `hookbridge check`.
	Name string `yaml:"name"`
	// Delivery overrides the top-level delivery mode for this route's
	// targets: "spool" or "sync". Default: the top-level mode.
	Delivery string `yaml:"delivery"`
	// Status lists the statuses the route takes; "*" takes every status.
	Status []string `yaml:"status"`
	// To lists where the events go.
	To []TargetConfig `yaml:"to"`
}

// TargetConfig names a sink and, for kinds that have one, the target within
// it: `subject` for nats. The target is a template that may use {status},
// {source} and {task_id}; when it is absent, the sink's own default applies.
type TargetConfig struct {
	Sink string
	// Key is the YAML key that named the target ("subject"), empty if none.
	Key    string
	Target string
}

// decodeNode implements nodeDecoder: a target is {sink: NAME} plus at most
// one target key, checked against the sink's kind once all sinks are known.
func (t *TargetConfig) decodeNode(d *decoder, n *yaml.Node, key string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, key, "must be a mapping such as {sink: bus, subject: \"task.{status}\"}")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := joinKey(key, k.Value)
		var s string
		d.decode(v, path, reflect.ValueOf(&s).Elem())
		switch {
		case k.Value == "sink":
			t.Sink = s
		case targetKeys[k.Value]:
			if t.Key != "" {
				d.errorf(k, path, "a target names one destination: remove %s or %s", t.Key, k.Value)
				continue
			}
			t.Key, t.Target = k.Value, s
		default:
			d.errorf(k, path, "unknown key (a target takes sink and one of: %s)", strings.Join(slices.Sorted(maps.Keys(targetKeys)), ", "))
		}
	}
}

// decodeNode implements nodeDecoder: `type` picks the options struct that
// the remaining keys decode into.
func (s *SinkConfig) decodeNode(d *decoder, n *yaml.Node, key string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, key, "must be a mapping with name, type and the type's own keys")
		return
	}
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "name":
			d.decode(v, joinKey(key, "name"), reflect.ValueOf(&s.Name).Elem())
		case "type":
			d.decode(v, joinKey(key, "type"), reflect.ValueOf(&s.Type).Elem())
			if _, ok := sinkKinds[s.Type]; !ok && s.Type != "" {
				d.errorf(v, joinKey(key, "type"), "unknown sink type %q (known types: %s)", s.Type, strings.Join(slices.Sorted(maps.Keys(sinkKinds)), ", "))
				return
			}
		case "retry":
			d.decode(v, joinKey(key, "retry"), reflect.ValueOf(&s.Retry).Elem())
		case "dead_letter":
			s.DeadLetter = new(TargetConfig)
			d.decode(v, joinKey(key, "dead_letter"), reflect.ValueOf(s.DeadLetter).Elem())
		default:
			rest.Content = append(rest.Content, k, v)
		}
	}
	if s.Type == "" {
		d.errorf(n, joinKey(key, "type"), "missing: say which broker this is (%s)", strings.Join(slices.Sorted(maps.Keys(sinkKinds)), ", "))
		return
	}
	s.Options = sinkKinds[s.Type].options()
	d.decodeStruct(rest, key, reflect.ValueOf(s.Options).Elem())
}

// Defaults for ServerConfig and SourceConfig, documented on their fields.
const (
	DefaultListen       = "127.0.0.1:8080"
	DefaultAdminListen  = "127.0.0.1:9090"
	DefaultMaxBodyBytes = 1 << 20
	DefaultPath         = "/webhook"
	DefaultTolerance    = 5 * time.Minute
)

// SetDefaults fills every zero field with its default. It is the only place
// defaults are applied, and is idempotent.
func (c *Config) SetDefaults() {
	setDefault(&c.Delivery, DeliverySpool)
	sp := &c.Spool
	setDefault(&sp.Backend, SpoolLocal)
	setDefault(&sp.Dir, "./data/spool")
	setDefault(&sp.MaxBytes, 1<<30)
	setDefault(&sp.MaxEvents, 1_000_000)
	if sp.Backend == SpoolJetStream {
		setDefault(&sp.Stream, "HOOKBRIDGE_SPOOL")
		setDefault(&sp.SubjectPrefix, "hookbridge.spool")
		setDefault(&sp.Replicas, 1)
		setDefault(&sp.Storage, "file")
		setDefault(&sp.MaxAge, 7*24*time.Hour)
		setDefault(&sp.Partitions, 16)
		setDefault(&sp.AckWait, 30*time.Second)
		setDefault(&sp.ReplayBucket, "hookbridge_replay")
		setDefault(&sp.ConnectTimeout, 5*time.Second)
	}
	for i := range c.Sinks {
		r := &c.Sinks[i].Retry
		setDefault(&r.MinBackoff, 200*time.Millisecond)
		setDefault(&r.MaxBackoff, 30*time.Second)
		setDefault(&r.MaxAge, 72*time.Hour)
	}
	for i := range c.Routes {
		setDefault(&c.Routes[i].Delivery, c.Delivery)
	}
	s := &c.Server
	setDefault(&s.Listen, DefaultListen)
	setDefault(&s.AdminListen, DefaultAdminListen)
	setDefault(&s.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&s.MaxHeaderBytes, 16<<10)
	setDefault(&s.MaxJSONDepth, DefaultMaxDepth)
	setDefault(&s.MaxNumberDigits, MaxIntDigits)
	setDefault(&s.ReadHeaderTimeout, 5*time.Second)
	setDefault(&s.ReadTimeout, 30*time.Second)
	setDefault(&s.WriteTimeout, 30*time.Second)
	setDefault(&s.IdleTimeout, 2*time.Minute)
	setDefault(&s.PublishTimeout, 10*time.Second)
	setDefault(&s.RetryAfter, 5*time.Second)
	setDefault(&s.ShutdownTimeout, 15*time.Second)
	setDefault(&s.MaxConcurrentRequests, 1024)
	setDefault(&s.ReplayCacheSize, 100_000)
	setDefault(&s.ReplayCache, ReplayMemory)
	if s.ReplayWindow == nil {
		d := 5 * time.Minute
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
	if sp.Backend == SpoolJetStream && sp.Duplicates == 0 {
		// As long as a sender may retry and be accepted: then a retry
		// that another replica takes is stored once, even without
		// replay_cache: nats.
		sp.Duplicates = 2 * time.Minute
		for _, src := range c.Sources {
			sp.Duplicates = max(sp.Duplicates, replayWindow(c, src))
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

func (c *Config) defaultTarget(t *TargetConfig) {
	if t.Target != "" {
		return
	}
	for _, sk := range c.Sinks {
		k, ok := sinkKinds[sk.Type]
		if sk.Name == t.Sink && ok && sk.Options != nil && k.defaultTarget != nil {
			if def := k.defaultTarget(sk.Options); def != "" {
				t.Key, t.Target = k.targetKey, def
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

// problem is a validation error located by its key path, e.g.
// "routes[1].to[0].sink"; LoadConfig turns the path into a line.
type problem struct {
	Key string
	Msg string
}

func (p *problem) Error() string { return p.Key + ": " + p.Msg }

func problemf(key, format string, args ...any) error {
	return &problem{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks a config after SetDefaults: each part checks its own
// fields, then cross-references (routes to sinks, unique names and paths)
// are checked. It returns every problem found, joined.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(c.Server.validate())
	if c.Delivery != DeliverySpool && c.Delivery != DeliverySync {
		add(problemf("delivery", "%q: use spool (answer once fsynced locally, deliver in the background) or sync (answer once every sink confirmed)", c.Delivery))
	}
	add(c.validateSpool())

	if len(c.Sources) == 0 {
		add(problemf("sources", "no source: add one with a name, a path and secrets"))
	}
	names, paths := map[string]bool{}, map[string]bool{}
	for i, src := range c.Sources {
		key := fmt.Sprintf("sources[%d]", i)
		add(src.validate(key))
		if names[src.Name] {
			add(problemf(key+".name", "source name %q is used twice: names must be unique", src.Name))
		}
		if paths[src.Path] {
			add(problemf(key+".path", "path %q is used by another source: give each source its own path", src.Path))
		}
		names[src.Name], paths[src.Path] = true, true
	}

	sinkByName := map[string]SinkConfig{}
	for i, sk := range c.Sinks {
		key := fmt.Sprintf("sinks[%d]", i)
		switch {
		case sk.Name == "":
			add(problemf(key+".name", "missing: name the sink so routes can refer to it"))
		case sinkByName[sk.Name].Name != "":
			add(problemf(key+".name", "sink name %q is used twice: names must be unique", sk.Name))
		default:
			sinkByName[sk.Name] = sk
		}
		add(sk.Retry.validate(key + ".retry"))
		if sk.Options == nil {
			continue // its type was already reported
		}
		for _, err := range errorList(sk.Options.Validate()) {
			var ce *sinks.ConfigError
			if errors.As(err, &ce) {
				add(&problem{Key: key + "." + ce.Key, Msg: fmt.Sprintf("sink %q: %s", sk.Name, ce.Problem)})
			} else {
				add(&problem{Key: key, Msg: fmt.Sprintf("sink %q: %v", sk.Name, err)})
			}
		}
	}

	for i, sk := range c.Sinks {
		if sk.DeadLetter == nil {
			continue
		}
		key := fmt.Sprintf("sinks[%d].dead_letter", i)
		add(sk.DeadLetter.validate(key, "dead letters of sink "+strconv.Quote(sk.Name), sinkByName))
		if sk.DeadLetter.Sink == sk.Name {
			add(problemf(key+".sink", "sink %q cannot be its own dead-letter target: a message it refuses would loop; name another sink", sk.Name))
		}
	}

	if len(c.Routes) == 0 {
		add(problemf("routes", "no route: add one that sends some statuses to a sink"))
	}
	routeNames := map[string]bool{}
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		switch {
		case r.Name == "":
			add(problemf(key+".name", "missing: name the route"))
		case routeNames[r.Name]:
			add(problemf(key+".name", "route name %q is used twice: names must be unique", r.Name))
		}
		routeNames[r.Name] = true
		if r.Delivery != DeliverySpool && r.Delivery != DeliverySync {
			add(problemf(key+".delivery", "route %q: %q: use spool or sync", r.Name, r.Delivery))
		}
		if len(r.Status) == 0 {
			add(problemf(key+".status", "route %q: no status: list the statuses it takes, or \"*\" for all", r.Name))
		}
		for j, st := range r.Status {
			if strings.TrimSpace(st) == "" {
				add(problemf(fmt.Sprintf("%s.status[%d]", key, j), "route %q: empty status", r.Name))
			}
		}
		if len(r.To) == 0 {
			add(problemf(key+".to", "route %q: no target: add at least one {sink: NAME}", r.Name))
		}
		for j, t := range r.To {
			add(t.validate(fmt.Sprintf("%s.to[%d]", key, j), "route "+strconv.Quote(r.Name), sinkByName))
		}
	}
	return errors.Join(errs...)
}

// maxReplayCacheSize bounds server.replay_cache_size: 50 million ids take
// 1.7 GB.
const maxReplayCacheSize = 50_000_000

func (s *ServerConfig) validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(s.Listen); err != nil || port == "" {
		errs = append(errs, problemf("server.listen", "%q is not host:port: write e.g. \"127.0.0.1:8080\" or \":8080\"", s.Listen))
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		errs = append(errs, problemf("server.tls", "give both cert_file and key_file, or neither"))
	}
	if _, port, err := net.SplitHostPort(s.AdminListen); err != nil || port == "" {
		errs = append(errs, problemf("server.admin_listen", "%q is not host:port: write e.g. \"127.0.0.1:9090\" or \":9090\"", s.AdminListen))
	}
	positive := []struct {
		key string
		v   int64
	}{
		{"server.max_body_bytes", s.MaxBodyBytes},
		{"server.max_header_bytes", int64(s.MaxHeaderBytes)},
		{"server.max_json_depth", int64(s.MaxJSONDepth)},
		{"server.max_number_digits", int64(s.MaxNumberDigits)},
	}
	for _, p := range positive {
		if p.v < 0 {
			errs = append(errs, problemf(p.key, "must be positive (or left out for the default)"))
		}
	}
	// Past this the cache's table positions would not fit its int32
	// slots; long before it, memory runs out (34 bytes per id).
	if s.ReplayCacheSize < 1 || s.ReplayCacheSize > maxReplayCacheSize {
		errs = append(errs, problemf("server.replay_cache_size", "%d is out of range: give 1 to %d ids (34 bytes each), or leave it out for 100000", s.ReplayCacheSize, maxReplayCacheSize))
	}
	if s.WriteTimeout <= s.PublishTimeout {
		errs = append(errs, problemf("server.write_timeout", "%v must be longer than publish_timeout (%v): the answer is written after publishing", s.WriteTimeout, s.PublishTimeout))
	}
	return errors.Join(errs...)
}

func (c *Config) validateSpool() error {
	s := &c.Spool
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, problemf(key, format, args...))
	}
	if s.MaxBytes < 0 {
		add("spool.max_bytes", "must be positive (or left out for 1 GiB)")
	}
	if s.MaxEvents < 0 {
		add("spool.max_events", "must be positive (or left out for 1000000)")
	}
	switch c.Server.ReplayCache {
	case ReplayMemory:
	case ReplayNATS:
		if s.Backend != SpoolJetStream {
			add("server.replay_cache", "nats keeps the ids in the NATS of the jetstream spool: set spool.backend: jetstream and spool.url, or use memory")
		}
	default:
		add("server.replay_cache", "%q: use memory (this replica) or nats (shared by every replica, with spool.backend: jetstream)", c.Server.ReplayCache)
	}
	switch s.Backend {
	case SpoolLocal:
		for _, k := range []struct {
			key string
			set bool
		}{
			{"url", s.URL != ""}, {"creds_file", s.CredsFile != ""}, {"token", s.Token != ""}, {"user", s.User != ""},
			{"password", s.Password != ""}, {"stream", s.Stream != ""}, {"subject_prefix", s.SubjectPrefix != ""},
			{"replicas", s.Replicas != 0}, {"storage", s.Storage != ""}, {"max_age", s.MaxAge != 0},
			{"duplicates", s.Duplicates != 0}, {"partitions", s.Partitions != 0}, {"ack_wait", s.AckWait != 0},
			{"replay_bucket", s.ReplayBucket != ""}, {"connect_timeout", s.ConnectTimeout != 0},
		} {
			if k.set {
				add("spool."+k.key, "only applies with backend: jetstream: remove it, or set spool.backend: jetstream")
			}
		}
	case SpoolJetStream:
		errs = append(errs, c.validateJetStreamSpool()...)
	default:
		add("spool.backend", "%q: use local (a file in spool.dir, one per replica) or jetstream (a stream in your NATS, shared by every replica)", s.Backend)
	}
	return errors.Join(errs...)
}

// validateJetStreamSpool checks the keys of spool.backend: jetstream.
func (c *Config) validateJetStreamSpool() []error {
	s := &c.Spool
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, problemf(key, format, args...))
	}
	switch {
	case s.URL == "":
		add("spool.url", "missing: write your NATS cluster's URLs, e.g. nats://nats-0:4222,nats://nats-1:4222")
	case s.URL == "embedded":
		add("spool.url", "embedded is one process's NATS: every replica must reach the same cluster; write nats://host:4222")
	default:
		for _, err := range natssink.CheckURLs(s.URL) {
			add("spool.url", "%v", err)
		}
	}
	if s.Password != "" && s.User == "" {
		add("spool.password", "a password needs a user")
	}
	if !natsName(s.Stream) {
		add("spool.stream", "%q: a stream name is letters, digits, - and _", s.Stream)
	}
	if !natsserver.IsValidPublishSubject(s.SubjectPrefix) {
		add("spool.subject_prefix", "%q: write tokens separated by dots, without spaces, * or >, e.g. hookbridge.spool", s.SubjectPrefix)
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		add("spool.replicas", "%d: use 1, or 3 to survive the loss of a NATS node (at most 5)", s.Replicas)
	}
	if s.Storage != "file" && s.Storage != "memory" {
		add("spool.storage", `%q: use "file" or "memory"`, s.Storage)
	}
	for i, sk := range c.Sinks {
		if s.MaxAge > 0 && sk.Retry.MaxAge >= s.MaxAge {
			add(fmt.Sprintf("sinks[%d].retry.max_age", i), "%v is not shorter than spool.max_age %v: the stream would drop messages before they are dead-lettered; shorten it or lengthen spool.max_age", sk.Retry.MaxAge, s.MaxAge)
		}
		if !natsName(sk.Name) {
			add(fmt.Sprintf("sinks[%d].name", i), "%q: with spool.backend jetstream a sink name is part of NATS subjects and consumer names: use letters, digits, - and _", sk.Name)
		}
	}
	switch {
	case s.MaxAge < 0:
		add("spool.max_age", "%v: use a positive duration such as 168h", s.MaxAge)
	case s.Duplicates < 0:
		add("spool.duplicates", "%v: use a positive duration such as 5m", s.Duplicates)
	case s.Duplicates > s.MaxAge:
		add("spool.duplicates", "%v is longer than spool.max_age %v: JetStream refuses that; shorten it", s.Duplicates, s.MaxAge)
	}
	if s.Partitions < 1 || s.Partitions > maxPartitions {
		add("spool.partitions", "%d: use 1 to %d lanes per sink (more lanes, more parallel deliveries)", s.Partitions, maxPartitions)
	}
	if s.AckWait <= c.Server.PublishTimeout {
		add("spool.ack_wait", "%v must be longer than server.publish_timeout (%v): NATS would hand a message to another replica while this one still publishes it", s.AckWait, c.Server.PublishTimeout)
	}
	if !natsName(s.ReplayBucket) {
		add("spool.replay_bucket", "%q: a bucket name is letters, digits, - and _", s.ReplayBucket)
	}
	if s.ConnectTimeout < 0 {
		add("spool.connect_timeout", "%v: use a positive duration such as 5s", s.ConnectTimeout)
	}
	return errs
}

// maxPartitions bounds spool.partitions: each lane is a durable consumer
// per sink, and every replica pulls from each.
const maxPartitions = 1024

// natsName reports whether s can be a stream, consumer or bucket name and
// a subject token: letters, digits, - and _.
func natsName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func (r *RetryConfig) validate(key string) error {
	var errs []error
	if r.MaxBackoff < r.MinBackoff {
		errs = append(errs, problemf(key+".max_backoff", "%v is shorter than min_backoff %v", r.MaxBackoff, r.MinBackoff))
	}
	if r.MaxAttempts < 0 {
		errs = append(errs, problemf(key+".max_attempts", "must be 0 (no limit) or more"))
	}
	return errors.Join(errs...)
}

func (s *SourceConfig) validate(key string) error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, problemf(key+".name", "missing: name the source (it becomes the events' CloudEvents source)"))
	}
	if !strings.HasPrefix(s.Path, "/") {
		errs = append(errs, problemf(key+".path", "%q must start with /", s.Path))
	}
	if len(s.Secrets) == 0 && len(s.SecretFiles) == 0 {
		errs = append(errs, problemf(key+".secrets", "source %q has no secret: add the Browser Use webhook secret, e.g. secrets: [\"${BROWSER_USE_WEBHOOK_SECRET}\"] or secret_files: [/run/secrets/browser-use]", s.Name))
	}
	for i, sec := range s.Secrets {
		if sec == "" {
			errs = append(errs, problemf(fmt.Sprintf("%s.secrets[%d]", key, i), "empty secret"))
		}
	}
	if s.Tolerance != nil && *s.Tolerance < 0 {
		errs = append(errs, problemf(key+".tolerance", "must not be negative (0 turns the check off)"))
	}
	return errors.Join(errs...)
}

// validate checks a target; owner names what holds it in messages, e.g.
// `route "alerting"`.
func (t *TargetConfig) validate(key, owner string, sinkByName map[string]SinkConfig) error {
	if t.Sink == "" {
		return problemf(key+".sink", "%s: missing: name the sink to send to", owner)
	}
	sk, ok := sinkByName[t.Sink]
	if !ok {
		return problemf(key+".sink", "%s: unknown sink %q (declared sinks: %s)", owner, t.Sink, strings.Join(slices.Sorted(maps.Keys(sinkByName)), ", "))
	}
	kind := sinkKinds[sk.Type]
	if t.Key != "" && t.Key != kind.targetKey {
		if kind.targetKey == "" {
			return problemf(key+"."+t.Key, "%s: %s sink %q takes no target: remove %s", owner, sk.Type, t.Sink, t.Key)
		}
		return problemf(key+"."+t.Key, "%s: %s sink %q takes its target as %s, not %s", owner, sk.Type, t.Sink, kind.targetKey, t.Key)
	}
	if t.Key != "" {
		tmpl, err := ParseTemplate(t.Target)
		if err != nil {
			return problemf(key+"."+t.Key, "%s: %v", owner, err)
		}
		if kind.checkTarget != nil && tmpl.static() {
			if err := kind.checkTarget(t.Target); err != nil {
				return problemf(key+"."+t.Key, "%s: %v", owner, err)
			}
		}
	}
	if t.Target == "" && kind.targetKey != "" && !kind.hasDefaultTarget(sk.Options) {
		return problemf(key, "%s: %s sink %q needs a %s here (or a default %s on the sink)", owner, sk.Type, t.Sink, kind.targetKey, kind.targetKey)
	}
	return nil
}

// readSecretFiles adds the secret in each of the sources' secret_files.
// Errors name the file, never its content.
func (c *Config) readSecretFiles() error {
	var errs []error
	for i := range c.Sources {
		src := &c.Sources[i]
		for j, path := range src.SecretFiles {
			key := fmt.Sprintf("sources[%d].secret_files[%d]", i, j)
			data, err := os.ReadFile(path)
			if err != nil {
				errs = append(errs, problemf(key, "cannot read the secret: %v", err))
				continue
			}
			secret := strings.TrimSpace(string(data))
			if secret == "" {
				errs = append(errs, problemf(key, "%q is empty: it must hold the webhook secret", path))
				continue
			}
			src.Secrets = append(src.Secrets, Secret(secret))
		}
	}
	return errors.Join(errs...)
}

// LoadConfig reads, decodes, defaults and validates the file at path.
// lookupEnv resolves ${VAR} references; nil means os.LookupEnv. Every error
// is prefixed with path:line.
func LoadConfig(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	return loadConfig(path, newDecoder(lookupEnv))
}

// LoadConfigIgnoringUnset is LoadConfig for tools that need only part of
// the config (hookbridge tail needs the NATS sink, not the webhook secret):
// a ${VAR} that is not set and has no default reads as "(unset)" instead
// of being an error.
func LoadConfigIgnoringUnset(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	d := newDecoder(lookupEnv)
	d.unsetPlaceholder = "(unset)"
	return loadConfig(path, d)
}

func loadConfig(path string, d *decoder) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, data, d)
}

// ParseConfig is LoadConfig for bytes already read; name is used in errors.
func ParseConfig(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	return parseConfig(name, data, newDecoder(lookupEnv))
}

func parseConfig(name string, data []byte, d *decoder) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		// yaml.v3 says "yaml: line N: ..."; make it name:N: ...
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, after, ok := strings.Cut(rest, ":"); ok {
				return nil, fmt.Errorf("%s:%s:%s", name, n, after)
			}
		}
		return nil, fmt.Errorf("%s: %s", name, msg)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:1: %w", name, errNotMapping)
	}
	doc := root.Content[0]
	cfg := new(Config)
	d.decode(doc, "", reflect.ValueOf(cfg).Elem())
	if len(d.errs) > 0 {
		return nil, locate(name, doc, d.errs, d.envValues)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, locate(name, doc, errorList(err), d.envValues)
	}
	if err := cfg.readSecretFiles(); err != nil {
		return nil, locate(name, doc, errorList(err), d.envValues)
	}
	cfg.raw = data
	return cfg, nil
}

// locate prefixes each error with name:line, finding the line of problems
// from their key path, and scrubs from it every value that came from the
// environment: a validator quoting a bad value must not print a secret
// that was put in the wrong key.
func locate(name string, doc *yaml.Node, errs []error, envValues []string) error {
	scrub := func(msg string) string {
		for _, v := range envValues {
			if len(v) >= 3 {
				msg = strings.ReplaceAll(msg, v, "(value from the environment)")
			}
		}
		return msg
	}
	out := make([]error, 0, len(errs))
	for _, err := range errs {
		var de *decodeError
		var p *problem
		switch {
		case errors.As(err, &de):
			out = append(out, fmt.Errorf("%s:%d: %s", name, de.Line, scrub(strings.TrimPrefix(de.Error(), fmt.Sprintf("line %d: ", de.Line)))))
		case errors.As(err, &p):
			out = append(out, fmt.Errorf("%s:%d: %s", name, lineAt(doc, p.Key), scrub(p.Error())))
		default:
			out = append(out, fmt.Errorf("%s: %s", name, scrub(err.Error())))
		}
	}
	return errors.Join(out...)
}

// lineAt returns the line of the node at key path (e.g. "routes[1].to[0]")
// in doc, or of the deepest ancestor present.
func lineAt(doc *yaml.Node, key string) int {
	n, line := doc, doc.Line
	for _, part := range strings.Split(key, ".") {
		name, idx := part, -1
		if open := strings.IndexByte(part, '['); open >= 0 && strings.HasSuffix(part, "]") {
			name = part[:open]
			if i, err := strconv.Atoi(part[open+1 : len(part)-1]); err == nil {
				idx = i
			}
		}
		k, v := mappingEntry(n, name)
		if k == nil {
			return line
		}
		line, n = k.Line, v
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// mappingEntry returns the key and value nodes of key in mapping n.
func mappingEntry(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}
