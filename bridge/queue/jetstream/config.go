package jetstream

import (
	"errors"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/hookbridge/hookbridge/sinks"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// Defaults of Config, applied by SetDefaults.
const (
	DefaultStream        = "HOOKBRIDGE_SPOOL"
	DefaultSubjectPrefix = "hookbridge.spool"
	DefaultReplicas      = 1
	DefaultStorage       = "file"
	DefaultMaxAge        = 7 * 24 * time.Hour
	DefaultPartitions    = 16
	DefaultAckWait       = 30 * time.Second
	DefaultReplayBucket  = "hookbridge_replay"
	// MinDuplicates is the shortest default duplicates window: the
	// default is the longest replay window of the sources, at least this.
	MinDuplicates = 2 * time.Minute
	// MaxPartitions bounds partitions: each lane is a durable consumer
	// per sink, and every replica pulls from each.
	MaxPartitions = 1024
	// MaxReplicas is the most replicas a JetStream stream can have.
	MaxReplicas = 5
)

// Config is the keys of spool.backend: jetstream, written beside backend,
// max_bytes and max_events under spool:.
type Config struct {
	// Connection is url (one or more nats:// URLs of the cluster every
	// replica reaches; required), creds_file, token, user, password and
	// connect_timeout.
	natssink.Connection `yaml:",inline"`
	// Stream is the stream's name. Default DefaultStream.
	Stream string `yaml:"stream"`
	// SubjectPrefix is the first tokens of the stream's subjects (see
	// wire.go). Default DefaultSubjectPrefix.
	SubjectPrefix string `yaml:"subject_prefix"`
	// Replicas is the stream's (and the replay bucket's) replica count:
	// 1, or 3 to survive the loss of a NATS node. Default DefaultReplicas.
	Replicas int `yaml:"replicas"`
	// Storage is "file" or "memory". Default DefaultStorage.
	Storage string `yaml:"storage"`
	// MaxAge drops messages older than this from the stream, dead letters
	// included. It must be longer than every sink's retry.max_age, which
	// dead-letters first. Default DefaultMaxAge (7 days).
	MaxAge time.Duration `yaml:"max_age"`
	// Duplicates is the window in which the stream drops a message whose
	// Nats-Msg-Id it has seen: a sender's retry that another replica
	// takes is kept once. Default: the longest replay window of the
	// sources, at least MinDuplicates (set by the config loader, which
	// knows the sources).
	Duplicates time.Duration `yaml:"duplicates"`
	// Partitions is how many ordered lanes each sink's messages are split
	// into by a hash of the task id: one message per lane is in flight at
	// a time, across all replicas, so a task's events keep their order
	// and up to Partitions messages per sink are delivered at once.
	// Changing it needs an empty stream. Default DefaultPartitions.
	Partitions int `yaml:"partitions"`
	// AckWait is how long a replica may hold a message before NATS gives
	// it to another: a replica that dies mid-delivery hands its messages
	// over after this. It must be longer than server.publish_timeout.
	// Default DefaultAckWait.
	AckWait time.Duration `yaml:"ack_wait"`
	// ReplayBucket is the NATS KV bucket of server.replay_cache: nats.
	// Default DefaultReplayBucket.
	ReplayBucket string `yaml:"replay_bucket"`
}

// SetDefaults fills the zero fields with their defaults, Duplicates
// aside.
func (c *Config) SetDefaults() {
	c.Connection.SetDefaults()
	setDefault(&c.Stream, DefaultStream)
	setDefault(&c.SubjectPrefix, DefaultSubjectPrefix)
	setDefault(&c.Replicas, DefaultReplicas)
	setDefault(&c.Storage, DefaultStorage)
	setDefault(&c.MaxAge, DefaultMaxAge)
	setDefault(&c.Partitions, DefaultPartitions)
	setDefault(&c.AckWait, DefaultAckWait)
	setDefault(&c.ReplayBucket, DefaultReplayBucket)
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate reports the problems of c's own keys, after SetDefaults, as
// *sinks.ConfigError values with keys relative to spool:. What depends on
// other sections (ack_wait against server.publish_timeout, max_age against
// the sinks' retry.max_age) is the config loader's to check.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, sinks.Problemf(key, format, args...))
	}
	switch c.URL {
	case "":
		add("url", "missing: write your NATS cluster's URLs, e.g. nats://nats-0:4222,nats://nats-1:4222")
	case natssink.Embedded:
		add("url", "embedded is one process's NATS: every replica must reach the same cluster; write nats://host:4222")
	}
	errs = append(errs, c.Connection.Validate())
	if !ValidName(c.Stream) {
		add("stream", "%q: a stream name is letters, digits, - and _", c.Stream)
	}
	if !natsserver.IsValidPublishSubject(c.SubjectPrefix) {
		add("subject_prefix", "%q: write tokens separated by dots, without spaces, * or >, e.g. hookbridge.spool", c.SubjectPrefix)
	}
	if c.Replicas < 1 || c.Replicas > MaxReplicas {
		add("replicas", "%d: use 1, or 3 to survive the loss of a NATS node (at most %d)", c.Replicas, MaxReplicas)
	}
	if c.Storage != "file" && c.Storage != "memory" {
		add("storage", `%q: use "file" or "memory"`, c.Storage)
	}
	switch {
	case c.MaxAge < 0:
		add("max_age", "%v: use a positive duration such as 168h", c.MaxAge)
	case c.Duplicates < 0:
		add("duplicates", "%v: use a positive duration such as 5m", c.Duplicates)
	case c.Duplicates > c.MaxAge:
		add("duplicates", "%v is longer than spool.max_age %v: JetStream refuses that; shorten it", c.Duplicates, c.MaxAge)
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		add("partitions", "%d: use 1 to %d lanes per sink (more lanes, more parallel deliveries)", c.Partitions, MaxPartitions)
	}
	if !ValidName(c.ReplayBucket) {
		add("replay_bucket", "%q: a bucket name is letters, digits, - and _", c.ReplayBucket)
	}
	return errors.Join(errs...)
}

// ValidName reports whether s can be a stream, consumer or bucket name and
// a subject token: letters, digits, - and _, at most 64 of them. Sink
// names are part of the spool's subjects and consumer names, so they must
// be valid names too.
func ValidName(s string) bool {
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
