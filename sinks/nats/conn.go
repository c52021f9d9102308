package nats

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/hookbridge/hookbridge/sinks"
)

// DefaultConnectTimeout is connect_timeout's default.
const DefaultConnectTimeout = 5 * time.Second

// Connection is how hookbridge reaches a NATS server: the keys url,
// creds_file, token, user, password and connect_timeout, shared by the
// NATS sink and the JetStream spool (spool.backend: jetstream), which
// inline it in their own configuration.
type Connection struct {
	// URL is one or more comma-separated nats:// (or tls://, ws://,
	// wss://) server URLs.
	URL string `yaml:"url"`
	// CredsFile, Token, User and Password authenticate to NATS. Give
	// secrets as ${VAR}; they never appear in logs or errors.
	CredsFile string `yaml:"creds_file"`
	Token     string `yaml:"token"`
	User      string `yaml:"user"`
	Password  string `yaml:"password"`
	// ConnectTimeout bounds the first connection. Default
	// DefaultConnectTimeout (5s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// SetDefaults fills the zero fields with their defaults.
func (c *Connection) SetDefaults() {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
}

// Validate reports the problems of the connection keys as
// *sinks.ConfigError values: each URL of a non-empty list other than
// "embedded" (whether those two may be used is the owner's to say), a
// password without a user, a negative connect_timeout. It never prints a
// credential.
func (c *Connection) Validate() error {
	var errs []error
	if c.URL != "" && c.URL != Embedded {
		parts := strings.Split(c.URL, ",")
		for i, u := range parts {
			u = strings.TrimSpace(u)
			// A comma inside a password splits it across two parts,
			// neither of which holds the '@' Redact strips user info up
			// to: when a list holds user info anywhere, a bad part is
			// named by its place, never shown.
			shown := strconv.Quote(Redact(u))
			if len(parts) > 1 && strings.Contains(c.URL, "@") {
				shown = fmt.Sprintf("URL %d of %d (not shown: the list holds user info)", i+1, len(parts))
			}
			if err := checkURL(u, shown); err != nil {
				errs = append(errs, sinks.Problemf("url", "%v", err))
			}
		}
	}
	if c.Password != "" && c.User == "" {
		errs = append(errs, sinks.Problemf("password", "a password needs a user"))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, sinks.Problemf("connect_timeout", "%q: use a positive duration such as 5s", c.ConnectTimeout))
	}
	return errors.Join(errs...)
}

// checkURL checks one server URL; shown is how errors name it.
func checkURL(raw, shown string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s is not a server URL: write nats://host:4222 (or embedded)", shown)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
		return nil
	}
	return fmt.Errorf("%s: the scheme must be nats://, tls://, ws:// or wss://", shown)
}

// AuthOptions are the connect options for the credentials: a .creds
// file, a token, or a user and password; empty values are left out.
func (c *Connection) AuthOptions() []natsgo.Option {
	var opts []natsgo.Option
	if c.CredsFile != "" {
		opts = append(opts, natsgo.UserCredentials(c.CredsFile))
	}
	if c.Token != "" {
		opts = append(opts, natsgo.Token(c.Token))
	}
	if c.User != "" {
		opts = append(opts, natsgo.UserInfo(c.User, c.Password))
	}
	return opts
}

// Redacted is URL without credentials, to show.
func (c *Connection) Redacted() string { return Redact(c.URL) }

// Connect connects to URL with the credentials and connect_timeout, named
// name, plus opts. Its error never holds a credential.
func (c *Connection) Connect(name string, opts ...natsgo.Option) (*natsgo.Conn, error) {
	all := append([]natsgo.Option{natsgo.Name(name), natsgo.Timeout(c.ConnectTimeout)}, c.AuthOptions()...)
	nc, err := natsgo.Connect(c.URL, append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", c.Redacted(), err)
	}
	return nc, nil
}

// Secrets returns the connection's credentials: token, password, and the
// password (or token) in each URL's user info, as written and
// percent-decoded. It implements sinks.SecretHolder.
func (c *Connection) Secrets() []string {
	out := []string{c.Token, c.Password}
	for _, p := range strings.Split(c.URL, ",") {
		at := strings.LastIndexByte(p, '@')
		if at < 0 {
			continue
		}
		info := p[:at]
		if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
			info = p[scheme+3 : at]
		}
		if _, pass, ok := strings.Cut(info, ":"); ok {
			info = pass
		}
		out = append(out, info)
		if un, err := url.PathUnescape(info); err == nil {
			out = append(out, un)
		}
	}
	return out
}

// Redact drops user info from a URL or URL list, so it can be shown.
func Redact(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if at := strings.LastIndexByte(p, '@'); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + p[at+1:]
			} else {
				parts[i] = p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}
