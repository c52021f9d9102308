// Package rabbitmq is the sink for RabbitMQ (AMQP 0-9-1), through the
// broker's own Go client, github.com/rabbitmq/amqp091-go.
//
// Publish returns nil only once the broker has confirmed every message
// (publisher confirms) and routed it to at least one queue: each message
// is published persistent and mandatory, and one the broker returns
// (basic.return: no queue is bound for its routing key) fails alone,
// marked sinks.Permanent, instead of being dropped in silence. A nack,
// or a connection lost before the confirm, fails the message retryably.
//
// Messages carry the AMQP properties message_id (the event id),
// content_type, timestamp (the event's time), app_id "hookbridge" and
// delivery_mode 2 (persistent), in the sink's content_mode:
//
//   - structured: the body is the CloudEvent JSON, content_type
//     "application/cloudevents+json; charset=utf-8".
//   - binary: the body is the event's data, content_type its
//     datacontenttype, and every other attribute a header (an AMQP
//     application property) "cloudEvents:<name>", the CloudEvents AMQP
//     binding's name, with its value as a string, the attribute's
//     canonical form, which the binding allows beside the native types.
//     An event whose attribute a reader would not get back unchanged
//     (a value with spaces at either end, which the SDKs trim) or that
//     AMQP cannot carry so (a datacontenttype over 255 bytes) goes
//     structured, as its content_type says.
//
// In both modes the headers "traceparent" and "tracestate", where
// tracers look, carry the publish's trace context (Message.Trace, the
// producer span's when hookbridge traces), else the event's.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/hookbridge/hookbridge/sinks"
)

// DefaultConnectTimeout is connect_timeout's default.
const DefaultConnectTimeout = 5 * time.Second

// Config configures a RabbitMQ sink. SetDefaults fills the zero fields.
type Config struct {
	// URL is the broker's amqp:// or amqps:// URL, with the user, the
	// password and the virtual host, e.g.
	// amqp://hookbridge:${RABBITMQ_PASSWORD}@rabbitmq:5672/events.
	// Required. The password never appears in logs or errors.
	URL string `yaml:"url"`
	// Exchange is the exchange every message is published to. Default
	// "": the default exchange, where a routing key names a queue.
	Exchange string `yaml:"exchange"`
	// RoutingKey is the routing key for targets that name none; it may be
	// a template. Default "".
	RoutingKey string `yaml:"routing_key"`
	// Declare declares Exchange, as a durable topic exchange, at each
	// connection. Default false: declare nothing, the exchange (and the
	// queues) are the operator's, and start-up checks that it exists.
	Declare bool `yaml:"declare"`
	// ContentMode is how events are laid on messages: "structured" or
	// "binary" (see the package documentation). Default "structured".
	ContentMode sinks.ContentMode `yaml:"content_mode"`
	// SkipProbe starts without the broker: New connects in the
	// background, and publishes fail until it is connected. Default
	// false: New connects, checks the exchange (or, with the default
	// exchange, the static routing keys' queues) and fails with a clear
	// error.
	SkipProbe bool `yaml:"skip_probe"`
	// ConnectTimeout bounds each connection attempt: TCP, TLS and the
	// AMQP handshake. Default DefaultConnectTimeout (5s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// PublishTimeout bounds each Publish, confirms included, beside its
	// context. Default 0: the context alone.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
}

// SetDefaults fills zero fields with their defaults. It is idempotent.
func (c *Config) SetDefaults() {
	c.URL = strings.TrimSpace(c.URL)
	c.ContentMode.SetDefault()
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
}

// Validate reports every problem in c (after SetDefaults) as
// *sinks.ConfigError values. It never prints the password.
func (c *Config) Validate() error {
	var errs []error
	if err := checkURL(c.URL); err != nil {
		errs = append(errs, sinks.Problemf("url", "%v", err))
	}
	if err := checkExchange(c.Exchange); err != nil {
		errs = append(errs, sinks.Problemf("exchange", "%v", err))
	}
	if c.Declare {
		switch {
		case c.Exchange == "":
			errs = append(errs, sinks.Problemf("declare", "the default exchange cannot be declared: name an exchange, or remove declare"))
		case strings.HasPrefix(c.Exchange, "amq."):
			errs = append(errs, sinks.Problemf("declare", "exchange names starting with amq. are RabbitMQ's own and cannot be declared: remove declare, or use another name"))
		}
	}
	if err := checkRoutingKey(c.RoutingKey); err != nil {
		errs = append(errs, sinks.Problemf("routing_key", "%v", err))
	}
	errs = append(errs, c.ContentMode.Check("content_mode"))
	if c.ConnectTimeout < 0 {
		errs = append(errs, sinks.Problemf("connect_timeout", "%q: use a positive duration such as 5s", c.ConnectTimeout))
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, sinks.Problemf("publish_timeout", "%q: use a positive duration such as 30s, or 0 for none", c.PublishTimeout))
	}
	return errors.Join(errs...)
}

const urlExample = "amqp://user:password@host:5672/vhost"

// checkURL checks the broker URL; its errors show it redacted.
func checkURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("missing: write your broker's URL, e.g. %s", urlExample)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a URL: write e.g. %s", redact(raw), urlExample)
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return fmt.Errorf("%q: the scheme must be amqp:// (or amqps:// for TLS), e.g. %s", redact(raw), urlExample)
	}
	if _, err := amqp.ParseURI(raw); err != nil {
		return fmt.Errorf("%q is not an AMQP URL (%v): write e.g. %s, with special characters in the user or password percent-encoded", redact(raw), scrub(err.Error(), raw), urlExample)
	}
	return nil
}

// checkExchange checks an exchange name as RabbitMQ does: at most 255
// bytes of letters, digits, '-', '_', '.' and ':'.
func checkExchange(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("%d bytes: an exchange name is at most 255", len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r)) {
			return fmt.Errorf("%q: an exchange name holds only letters, digits, '-', '_', '.' and ':'", name)
		}
	}
	return nil
}

// checkRoutingKey checks that key fits an AMQP short string.
func checkRoutingKey(key string) error {
	if len(key) > 255 {
		return fmt.Errorf("%d bytes: a routing key is at most 255 bytes", len(key))
	}
	return nil
}

// Secrets returns the password in the URL, as written and
// percent-decoded. It implements sinks.SecretHolder.
func (c *Config) Secrets() []string {
	at := strings.LastIndexByte(c.URL, '@')
	scheme := strings.Index(c.URL, "://")
	if at < 0 || scheme < 0 || scheme > at {
		return nil
	}
	info := c.URL[scheme+3 : at]
	_, pass, ok := strings.Cut(info, ":")
	if !ok || pass == "" {
		return nil
	}
	out := []string{pass}
	if un, err := url.PathUnescape(pass); err == nil && un != pass {
		out = append(out, un)
	}
	return out
}

// redact drops the user info from a URL, to show it.
func redact(s string) string {
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		if scheme := strings.Index(s, "://"); scheme >= 0 && scheme < at {
			return s[:scheme+3] + s[at+1:]
		}
		return s[at+1:]
	}
	return s
}

// scrub removes the URL's password from msg, a client's error text.
func scrub(msg, rawURL string) string {
	for _, s := range (&Config{URL: rawURL}).Secrets() {
		msg = strings.ReplaceAll(msg, s, "REDACTED")
	}
	return msg
}

// Sink publishes to one exchange of a RabbitMQ broker. It is safe for
// concurrent use.
//
// It holds one connection with one channel in confirm mode, shared by
// every publisher: the mutex covers only the sending of a batch (so that
// the channel's delivery tags match the order of the publishes), and the
// publishers wait for their confirms outside it, concurrently. One
// channel keeps per-key order (RabbitMQ keeps a channel's order into a
// queue) and one place to reconnect; webhook rates are far below what a
// channel carries.
type Sink struct {
	cfg   Config
	shown string // the URL without credentials
	log   *slog.Logger
	seq   atomic.Uint64 // correlates a returned message with its publish

	mu      sync.Mutex // guards sess, lastErr, closed; serialises sends on sess
	sess    *session   // nil while disconnected
	lastErr error      // why the sink is disconnected
	closed  bool

	dialing   chan struct{} // a one-slot semaphore: one connection attempt at a time
	reconnect chan struct{} // wakes the reconnector
	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
}

// session is one connection and its confirm-mode channel.
type session struct {
	conn *amqp.Connection
	ch   *amqp.Channel
	// barrier asks the session's goroutine to answer once it has handled
	// every basic.return received before: see waitReturns.
	barrier chan chan struct{}
	gone    chan struct{} // closed when the channel or connection is lost
	// returns, chClosed and connClosed are the client's notifications,
	// registered before the first publish so that no return is missed.
	returns              chan amqp.Return
	chClosed, connClosed chan *amqp.Error
	blocks               chan amqp.Blocking
	// blocked is the reason the broker gave for blocking publishers (a
	// memory or disk alarm), nil when it does not.
	blocked atomic.Pointer[string]

	mu      sync.Mutex
	pending map[string]*amqp.Return // correlation -> its return, nil until returned
}

// correlationHeader is the header that matches a basic.return to its
// publish: a sequence number of the sink, unique per message sent.
// Returns carry no delivery tag, and an event id can be in flight twice
// (one event routed to two routing keys, or redelivered).
const correlationHeader = "hookbridge-publish-seq"

// New connects to the broker (unless cfg.SkipProbe) and checks that the
// exchange exists, or declares it with cfg.Declare. With the default
// exchange, queues lists the static routing keys, which name queues that
// must exist.
func New(ctx context.Context, cfg Config, queues []string, log *slog.Logger) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{
		cfg: cfg, shown: redact(cfg.URL), log: log,
		dialing: make(chan struct{}, 1), reconnect: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if cfg.SkipProbe {
		log.Info("rabbitmq: connecting in the background (skip_probe)", "url", s.shown)
		s.lastErr = errors.New("not connected yet (skip_probe)")
		s.wg.Go(s.reconnector)
		s.wakeReconnector()
		return s, nil
	}
	if _, err := s.connect(ctx); err != nil {
		var refused *refusedError
		if errors.As(err, &refused) {
			return nil, err
		}
		return nil, fmt.Errorf("%w; is the broker running? (or set skip_probe: true if it comes up later)", err)
	}
	if err := s.probe(queues); err != nil {
		s.Close(context.Background())
		return nil, err
	}
	s.wg.Go(s.reconnector)
	return s, nil
}

// probe checks, on throwaway channels (a failed passive declare closes
// its channel), that the exchange exists, or with the default exchange
// that the queues named by the static routing keys do.
//
// The checks are round trips on the connection, whose heartbeats (every
// 10 s) end them if the broker stops answering.
func (s *Sink) probe(queues []string) error {
	s.mu.Lock()
	sess, lost := s.sess, s.lastErr
	s.mu.Unlock()
	if sess == nil {
		return fmt.Errorf("rabbitmq: lost the connection to %s during start-up: %v", s.shown, lost)
	}
	check := func(what string, declare func(ch *amqp.Channel) error) error {
		ch, err := sess.conn.Channel()
		if err != nil {
			return fmt.Errorf("rabbitmq: open a channel on %s: %w", s.shown, err)
		}
		err = declare(ch)
		if err == nil {
			ch.Close()
			return nil
		}
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return fmt.Errorf("rabbitmq: %s does not exist on %s", what, s.shown)
		}
		return fmt.Errorf("rabbitmq: check %s on %s: %w", what, s.shown, err)
	}
	if ex := s.cfg.Exchange; ex != "" && !s.cfg.Declare {
		err := check(fmt.Sprintf("exchange %q", ex), func(ch *amqp.Channel) error {
			return ch.ExchangeDeclarePassive(ex, "topic", true, false, false, false, nil)
		})
		if err != nil {
			return fmt.Errorf("%w: create it (e.g. rabbitmqadmin declare exchange name=%s type=topic durable=true) or set declare: true", err, ex)
		}
	}
	if s.cfg.Exchange == "" {
		for _, q := range queues {
			err := check(fmt.Sprintf("queue %q", q), func(ch *amqp.Channel) error {
				_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
				return err
			})
			if err != nil {
				return fmt.Errorf("%w: with the default exchange (exchange: \"\") a routing key names a queue: create the queue, or name an exchange", err)
			}
		}
	}
	return nil
}

// connect dials the broker, declares the exchange when asked to, and
// opens the confirm-mode channel publishes go through, unless a session
// is already up. One attempt runs at a time; ctx ends the wait for it.
func (s *Sink) connect(ctx context.Context) (*session, error) {
	select {
	case s.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, errClosed
	}
	defer func() { <-s.dialing }()
	s.mu.Lock()
	sess, closed := s.sess, s.closed
	s.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if sess != nil {
		return sess, nil
	}
	sess, err := s.dial(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = err
		return nil, err
	}
	if s.closed {
		sess.conn.Close()
		return nil, errClosed
	}
	s.sess, s.lastErr = sess, nil
	s.wg.Go(func() { s.watch(sess) })
	return sess, nil
}

var errClosed = errors.New("rabbitmq: the sink is closed")

// refusedError is a broker's refusal of the credentials or the virtual
// host: the broker is up, but waiting will not help.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// dial opens a session: the connection, bounded by connect_timeout and
// ctx, then the channel in confirm mode with its returns listened to.
func (s *Sink) dial(ctx context.Context) (*session, error) {
	timeout := s.cfg.ConnectTimeout
	var stopCancel func() bool
	cfg := amqp.Config{
		Properties: amqp.Table{"connection_name": "hookbridge", "product": "hookbridge"},
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bound the TLS and AMQP handshakes, which take no context; the
			// client clears the deadline once connected. ctx ending
			// meanwhile ends them at once.
			conn.SetDeadline(time.Now().Add(timeout))
			stopCancel = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
			return conn, nil
		},
	}
	conn, err := amqp.DialConfig(s.cfg.URL, cfg)
	if stopCancel != nil && !stopCancel() && err == nil {
		// ctx ended as the handshake finished: the connection may hold
		// an expired deadline.
		conn.Close()
		err = ctx.Err()
	}
	if err != nil {
		var ae *amqp.Error
		refused := errors.As(err, &ae) && (ae.Code == amqp.AccessRefused || ae.Code == amqp.NotAllowed)
		switch text := scrub(err.Error(), s.cfg.URL); {
		case ctx.Err() != nil:
			err = fmt.Errorf("%w (%s)", ctx.Err(), text)
		case refused:
			err = &refusedError{fmt.Sprintf("%s: check the user, the password and the virtual host in url, and the user's permissions", text)}
		default:
			err = errors.New(text)
		}
		return nil, fmt.Errorf("rabbitmq: connect to %s: %w", s.shown, err)
	}
	fail := func(what string, err error) (*session, error) {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq: %s on %s: %w", what, s.shown, err)
	}
	if s.cfg.Declare {
		// On a channel of its own: a refused declaration (an exchange of
		// that name but another type) closes the channel it is made on.
		dch, err := conn.Channel()
		if err != nil {
			return fail("open a channel", err)
		}
		if err := dch.ExchangeDeclare(s.cfg.Exchange, "topic", true, false, false, false, nil); err != nil {
			return fail(fmt.Sprintf("declare exchange %q (durable, topic)", s.cfg.Exchange),
				fmt.Errorf("%w: if it exists with another type or durability, delete it or set declare: false", err))
		}
		dch.Close()
	}
	ch, err := conn.Channel()
	if err != nil {
		return fail("open a channel", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fail("put the channel in confirm mode", err)
	}
	sess := &session{
		conn: conn, ch: ch,
		barrier: make(chan chan struct{}),
		gone:    make(chan struct{}),
		pending: map[string]*amqp.Return{},
		// Unbuffered: see watch.
		returns:    ch.NotifyReturn(make(chan amqp.Return)),
		chClosed:   ch.NotifyClose(make(chan *amqp.Error, 1)),
		connClosed: conn.NotifyClose(make(chan *amqp.Error, 1)),
		blocks:     conn.NotifyBlocked(make(chan amqp.Blocking)),
	}
	return sess, nil
}

// watch is a session's goroutine. It records each basic.return as it
// comes, answers barriers, and when the channel or the connection is
// lost it drops the session and wakes the reconnector.
//
// The client hands returns and confirms over from the connection's one
// reader goroutine in the order the broker sent them, and RabbitMQ sends
// a mandatory message's basic.return before its basic.ack. The returns
// channel is unbuffered: by the time an ack is handled, this goroutine
// has taken every return sent before it, and waitReturns' barrier, which
// it answers only between two returns, tells a publisher it has recorded
// them too. It never blocks elsewhere: the client drops a notification
// a listener has not taken within five seconds.
func (s *Sink) watch(sess *session) {
	returns, blocks, chClosed, connClosed := sess.returns, sess.blocks, sess.chClosed, sess.connClosed
	var cause error
loop:
	for {
		select {
		case b, ok := <-blocks:
			switch {
			case !ok:
				blocks = nil
			case b.Active:
				sess.blocked.Store(&b.Reason)
				s.log.Warn("rabbitmq: the broker blocks publishers; publishes fail until it frees resources", "url", s.shown, "reason", b.Reason)
			default:
				sess.blocked.Store(nil)
				s.log.Info("rabbitmq: the broker takes publishes again", "url", s.shown)
			}
		case r, ok := <-returns:
			if !ok {
				returns = nil // the channel is closing: its close follows
				continue
			}
			sess.record(r)
		case reply := <-sess.barrier:
			close(reply)
		case e := <-chClosed:
			cause = closeCause("the channel was closed", e)
			break loop
		case e := <-connClosed:
			cause = closeCause("the connection was closed", e)
			break loop
		}
	}
	// Close ends a session by closing its connection: this goroutine
	// takes returns until then, so that the client's reader, which hands
	// them over, never waits on it.
	close(sess.gone)
	sess.conn.Close()
	s.mu.Lock()
	if s.sess == sess {
		s.sess, s.lastErr = nil, cause
	}
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		s.log.Warn("rabbitmq: lost the broker; reconnecting", "url", s.shown, "err", cause)
		s.wakeReconnector()
	}
}

func closeCause(what string, e *amqp.Error) error {
	if e == nil {
		return errors.New(what)
	}
	return fmt.Errorf("%s: %v", what, e)
}

func (s *Sink) wakeReconnector() {
	select {
	case s.reconnect <- struct{}{}:
	default:
	}
}

// Backoff of the reconnector: from minBackoff, doubled after each failed
// attempt up to maxBackoff, with jitter.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 15 * time.Second
)

// reconnector reconnects, with backoff, whenever a session is lost, so
// that the sink is up again as soon as the broker is. Publish also
// connects by itself when it finds no session.
func (s *Sink) reconnector() {
	for {
		select {
		case <-s.reconnect:
		case <-s.done:
			return
		}
		backoff := minBackoff
		for {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
			_, err := s.connect(ctx)
			cancel()
			if err == nil || errors.Is(err, errClosed) {
				if err == nil {
					s.log.Info("rabbitmq: connected", "url", s.shown)
				}
				break
			}
			s.log.Debug("rabbitmq: reconnect failed", "url", s.shown, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff/2 + rand.N(backoff/2+1)):
			case <-s.done:
				return
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// record keeps r when a publisher waits for its message.
func (sess *session) record(r amqp.Return) {
	corr, _ := r.Headers[correlationHeader].(string)
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if _, waiting := sess.pending[corr]; waiting {
		sess.pending[corr] = &r
	}
}

// waitReturns returns once the session's goroutine has recorded every
// basic.return received before the call: see watch.
func (sess *session) waitReturns(ctx context.Context) error {
	reply := make(chan struct{})
	select {
	case sess.barrier <- reply:
	case <-sess.gone:
		return nil // it recorded every return it took before it ended
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-reply:
		return nil
	case <-sess.gone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Publish implements sinks.Sink. It sends the batch on the shared
// channel, then waits for each message's confirm. A message the broker
// returned as unroutable fails alone, marked sinks.Permanent; so does one
// AMQP cannot carry (a routing key over 255 bytes). A nack, a lost
// connection and a done ctx fail messages retryably. With no connection
// Publish tries one, bounded by ctx and connect_timeout, and fails at
// once when the broker refuses it.
func (s *Sink) Publish(ctx context.Context, batch []sinks.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rabbitmq: not published: %w", err)
	}
	if len(batch) == 0 {
		return nil
	}
	if s.cfg.PublishTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.PublishTimeout)
		defer cancel()
	}
	var failed failures
	pubs := make([]*amqp.Publishing, len(batch))
	keys := make([]string, len(batch))
	for i := range batch {
		m := &batch[i]
		keys[i] = m.Target
		if keys[i] == "" {
			keys[i] = s.cfg.RoutingKey
		}
		if err := checkRoutingKey(keys[i]); err != nil {
			failed.add(i, sinks.Permanent(fmt.Errorf("rabbitmq: routing key %.40q...: %w", keys[i], err)))
			continue
		}
		p, err := s.publishing(m)
		if err != nil {
			failed.add(i, sinks.Permanent(err))
			continue
		}
		pubs[i] = p
	}
	sess, err := s.session(ctx)
	if err == nil {
		// A blocked broker reads nothing from publishers: what is sent
		// would wait, unconfirmed, until ctx ends.
		if reason := sess.blocked.Load(); reason != nil {
			err = fmt.Errorf("rabbitmq: %s blocks publishers (%s): it is short of memory or disk; publishes resume once it is not", s.shown, *reason)
		}
	}
	if err != nil {
		for i, p := range pubs {
			if p != nil {
				failed.add(i, err)
			}
		}
		return &sinks.BatchError{Failed: failed}
	}
	corrs, confirms := s.send(ctx, sess, keys, pubs, &failed)
	s.await(ctx, sess, keys, corrs, confirms, &failed)
	if len(failed) > 0 {
		return &sinks.BatchError{Failed: failed}
	}
	return nil
}

// session returns the current session, connecting when there is none.
func (s *Sink) session(ctx context.Context) (*session, error) {
	s.mu.Lock()
	sess, closed := s.sess, s.closed
	s.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if sess != nil {
		return sess, nil
	}
	sess, err := s.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: not connected to %s (reconnecting): %w", s.shown, err)
	}
	return sess, nil
}

// send publishes each message with a publishing, mandatory, on sess, in
// order, under the sink's lock, and returns the correlations and the
// deferred confirms; a message it could not send has a failure instead.
func (s *Sink) send(ctx context.Context, sess *session, keys []string, pubs []*amqp.Publishing, failed *failures) ([]string, []*amqp.DeferredConfirmation) {
	corrs := make([]string, len(pubs))
	confirms := make([]*amqp.DeferredConfirmation, len(pubs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range pubs {
		if p == nil {
			continue
		}
		corr := strconv.FormatUint(s.seq.Add(1), 10)
		p.Headers[correlationHeader] = corr // p is this call's own
		sess.mu.Lock()
		sess.pending[corr] = nil
		sess.mu.Unlock()
		dc, err := sess.ch.PublishWithDeferredConfirmWithContext(ctx, s.cfg.Exchange, keys[i], true, false, *p)
		if err != nil {
			sess.forget(corr)
			if ctx.Err() != nil {
				err = fmt.Errorf("not sent: %w", ctx.Err())
			}
			failed.add(i, fmt.Errorf("rabbitmq: publish to %s with routing key %q: %w", s.where(), keys[i], err))
			continue
		}
		corrs[i], confirms[i] = corr, dc
	}
	return corrs, confirms
}

// await waits for the confirms send got, then for the returns sent
// before them, and fails each message that was nacked, returned or not
// confirmed before ctx ended.
func (s *Sink) await(ctx context.Context, sess *session, keys []string, corrs []string, confirms []*amqp.DeferredConfirmation, failed *failures) {
	defer func() {
		for _, c := range corrs {
			if c != "" {
				sess.forget(c)
			}
		}
	}()
	waiting := false
	for i, dc := range confirms {
		if dc == nil {
			continue
		}
		if err := waitConfirm(ctx, dc); err != nil {
			failed.add(i, fmt.Errorf("rabbitmq: publish to %s with routing key %q: %w", s.where(), keys[i], err))
			confirms[i] = nil
			continue
		}
		waiting = true
	}
	if !waiting {
		return
	}
	if err := sess.waitReturns(ctx); err != nil {
		for i, dc := range confirms {
			if dc != nil {
				failed.add(i, fmt.Errorf("rabbitmq: publish to %s with routing key %q: confirmed, but not known whether it was returned: %w", s.where(), keys[i], err))
			}
		}
		return
	}
	for i, dc := range confirms {
		if dc == nil {
			continue
		}
		where := fmt.Sprintf("rabbitmq: publish to %s with routing key %q", s.where(), keys[i])
		switch r := sess.returnOf(corrs[i]); {
		case r != nil:
			failed.add(i, sinks.Permanent(fmt.Errorf("%s: returned by the broker (%d %s): no queue is bound for that routing key; bind one, or route the event elsewhere", where, r.ReplyCode, r.ReplyText)))
		case !dc.Acked():
			failed.add(i, fmt.Errorf("%s: not confirmed: the broker nacked it or the channel closed first", where))
		}
	}
}

// where names the exchange for errors.
func (s *Sink) where() string {
	if s.cfg.Exchange == "" {
		return "the default exchange"
	}
	return fmt.Sprintf("exchange %q", s.cfg.Exchange)
}

// waitConfirm waits for dc. An answer that has already arrived wins
// over a done ctx, so a late caller does not report a confirmed message
// as failed.
func waitConfirm(ctx context.Context, dc *amqp.DeferredConfirmation) error {
	select {
	case <-dc.Done():
		return nil
	default:
	}
	select {
	case <-dc.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no confirm yet: %w", ctx.Err())
	}
}

// returnOf is the return recorded for corr, nil if none.
func (sess *session) returnOf(corr string) *amqp.Return {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.pending[corr]
}

func (sess *session) forget(corr string) {
	sess.mu.Lock()
	delete(sess.pending, corr)
	sess.mu.Unlock()
}

// publishing lays m out in the sink's content mode.
func (s *Sink) publishing(m *sinks.Message) (*amqp.Publishing, error) {
	p := &amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		AppId:        "hookbridge",
		Headers:      amqp.Table{},
	}
	if len(m.ID) <= 255 { // a short string; a longer id stays in the event alone
		p.MessageId = m.ID
	}
	if t, err := time.Parse(time.RFC3339Nano, m.Attr("time")); err == nil {
		p.Timestamp = t
	}
	if s.cfg.ContentMode == sinks.Binary && binaryCarries(m.Attrs) {
		data, err := m.Data()
		if err != nil {
			return nil, fmt.Errorf("rabbitmq: %w", err)
		}
		p.Body = data
		for _, a := range m.Attrs {
			if a.Name == "datacontenttype" {
				p.ContentType = a.Value
			} else {
				p.Headers[ceHeader(a.Name)] = a.Value
			}
		}
	} else {
		p.Body = m.Body
		p.ContentType = sinks.StructuredContentType
	}
	// The W3C trace context under its own names, where tracers look: the
	// publish's (see sinks.Message.Trace), while cloudEvents:traceparent
	// stays the event's.
	for _, a := range m.TraceHeaders() {
		if a.Value != "" {
			p.Headers[a.Name] = a.Value
		}
	}
	return p, nil
}

// binaryCarries reports whether binary mode carries attrs unchanged: no
// value a CloudEvents SDK's reader would trim, and a datacontenttype
// (the content_type property, a short string) of at most 255 bytes.
func binaryCarries(attrs []sinks.Attr) bool {
	for _, a := range attrs {
		if a.Name == "datacontenttype" && len(a.Value) > 255 || len(ceHeader(a.Name)) > 255 {
			return false
		}
	}
	return sinks.Untrimmed(attrs)
}

// CEHeaderPrefix is the prefix of the binary-mode headers, the
// CloudEvents AMQP binding's: its current text names application
// properties "cloudEvents:<name>" alone, and its 1.0.2 release allowed
// that or "cloudEvents_<name>", so this is the name both read.
const CEHeaderPrefix = "cloudEvents:"

// ceHeader is the binary-mode header of attribute name. The attributes
// every event has are spelled out so that publishing builds no key.
func ceHeader(name string) string {
	switch name {
	case "specversion":
		return "cloudEvents:specversion"
	case "id":
		return "cloudEvents:id"
	case "source":
		return "cloudEvents:source"
	case "type":
		return "cloudEvents:type"
	case "subject":
		return "cloudEvents:subject"
	case "time":
		return "cloudEvents:time"
	case "status":
		return "cloudEvents:status"
	}
	return CEHeaderPrefix + name
}

// failures are a batch's failed messages by index, made on the first.
type failures map[int]error

func (f *failures) add(i int, err error) {
	if *f == nil {
		*f = failures{}
	}
	(*f)[i] = err
}

// Ready reports whether the sink is connected.
func (s *Sink) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return fmt.Errorf("not connected to %s: %v", s.shown, s.lastErr)
	}
	if reason := s.sess.blocked.Load(); reason != nil {
		return fmt.Errorf("%s blocks publishers (%s)", s.shown, *reason)
	}
	return nil
}

// Close closes the channel and the connection. Publish returns only once
// its messages are confirmed, so nothing it accepted waits in the sink.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	sess := s.sess
	s.sess = nil
	close(s.done)
	s.mu.Unlock()
	var err error
	if sess != nil {
		done := make(chan error, 1)
		go func() { done <- sess.conn.Close() }()
		select {
		case err = <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if errors.Is(err, amqp.ErrClosed) {
			err = nil // the broker went first
		}
	}
	stopped := make(chan struct{})
	go func() {
		s.wg.Wait() // the session's watcher and the reconnector
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("rabbitmq: close: %w", err)
	}
	return nil
}
