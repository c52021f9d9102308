package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"gopkg.in/yaml.v3"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// bindingPrefix is the CloudEvents AMQP binding's application-property
// prefix, written out here as the tests' own statement of it.
const bindingPrefix = "cloudEvents:"

// TestConfigValidate checks each problem's exact message, after
// SetDefaults, and that none shows the password.
func TestConfigValidate(t *testing.T) {
	const ok = "amqp://guest:guest@127.0.0.1:5672/"
	tests := []struct {
		name string
		cfg  Config
		want []string // the problems, in order; none for a valid config
	}{
		{"minimal", Config{URL: ok}, nil},
		{"amqps, exchange, binary", Config{URL: "amqps://u:p@rabbit.example:5671/vh", Exchange: "tasks", Declare: true, ContentMode: sinks.Binary, RoutingKey: "task.{status}"}, nil},
		{"no url", Config{}, []string{`url: missing: write your broker's URL, e.g. amqp://user:password@host:5672/vhost`}},
		{"other scheme", Config{URL: "http://guest:s3cret@127.0.0.1:15672/"}, []string{`url: "http://127.0.0.1:15672/": the scheme must be amqp:// (or amqps:// for TLS), e.g. amqp://user:password@host:5672/vhost`}},
		{"not a url", Config{URL: "rabbit:5672"}, []string{`url: "rabbit:5672" is not a URL: write e.g. amqp://user:password@host:5672/vhost`}},
		{"bad exchange", Config{URL: ok, Exchange: "tasks/new"}, []string{`exchange: "tasks/new": an exchange name holds only letters, digits, '-', '_', '.' and ':'`}},
		{"long exchange", Config{URL: ok, Exchange: strings.Repeat("x", 256)}, []string{`exchange: 256 bytes: an exchange name is at most 255`}},
		{"declare default exchange", Config{URL: ok, Declare: true}, []string{`declare: the default exchange cannot be declared: name an exchange, or remove declare`}},
		{"declare amq.", Config{URL: ok, Exchange: "amq.topic", Declare: true}, []string{`declare: exchange names starting with amq. are RabbitMQ's own and cannot be declared: remove declare, or use another name`}},
		{"long routing key", Config{URL: ok, RoutingKey: strings.Repeat("k", 300)}, []string{`routing_key: 300 bytes: a routing key is at most 255 bytes`}},
		{"content mode", Config{URL: ok, ContentMode: "avro"}, []string{`content_mode: "avro" is not a content mode: use "structured" (the whole CloudEvent as the body) or "binary" (data as the body, attributes as headers)`}},
		{"timeouts", Config{URL: ok, ConnectTimeout: -time.Second, PublishTimeout: -time.Second}, []string{
			`connect_timeout: "-1s": use a positive duration such as 5s`,
			`publish_timeout: "-1s": use a positive duration such as 30s, or 0 for none`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.SetDefaults()
			err := cfg.Validate()
			got := sinktest.Problems(t, err)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Validate shows the password: %v", err)
			}
		})
	}
}

// TestConfigDefaults: SetDefaults fills content_mode and
// connect_timeout, and is idempotent.
func TestConfigDefaults(t *testing.T) {
	cfg := Config{URL: " amqp://h/ "}
	cfg.SetDefaults()
	once := cfg
	cfg.SetDefaults()
	want := Config{URL: "amqp://h/", ContentMode: sinks.Structured, ConnectTimeout: DefaultConnectTimeout}
	if cfg != want || once != want {
		t.Errorf("SetDefaults: %+v, then %+v, want %+v", once, cfg, want)
	}
}

// TestUserForm: the configuration users write decodes strictly into
// Config, and the sink describes itself without the password.
func TestUserForm(t *testing.T) {
	const doc = `
url: amqp://guest:guest@127.0.0.1:5672/
exchange: tasks
`
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckTarget("task.{status}"); err != nil {
		t.Errorf("CheckTarget: %v", err)
	}
	if got, want := cfg.Describe(), `amqp://127.0.0.1:5672/, exchange "tasks", structured CloudEvents`; got != want {
		t.Errorf("Describe: %q, want %q", got, want)
	}
	if Kind.Name != "rabbitmq" || Kind.TargetKey != "routing_key" {
		t.Errorf("Kind: %+v", Kind)
	}
	if _, ok := Kind.NewConfig().(sinks.SecretHolder); !ok {
		t.Error("Config is not a sinks.SecretHolder")
	}
}

// TestDescribe covers the exchange forms and never shows the password.
func TestDescribe(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "amqp://u:pw@h:5672/vh"}, "amqp://h:5672/vh, the default exchange (routing keys name queues), structured CloudEvents"},
		{Config{URL: "amqps://u:pw@h/", Exchange: "tasks", Declare: true, ContentMode: sinks.Binary}, `amqps://h/, exchange "tasks" (declared: durable topic), binary CloudEvents`},
	}
	for _, tt := range tests {
		tt.cfg.SetDefaults()
		if got := tt.cfg.Describe(); got != tt.want {
			t.Errorf("Describe: %q, want %q", got, tt.want)
		}
	}
}

// TestSecrets: the password as written and percent-decoded.
func TestSecrets(t *testing.T) {
	tests := []struct {
		url  string
		want []string
	}{
		{"amqp://guest:guest@h/", []string{"guest"}},
		{"amqp://u:p%40ss%3Aw@h/", []string{"p%40ss%3Aw", "p@ss:w"}},
		{"amqp://u@h/", nil},
		{"amqp://h/", nil},
	}
	for _, tt := range tests {
		got := (&Config{URL: tt.url}).Secrets()
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Secrets(%q): %q, want %q", tt.url, got, tt.want)
		}
	}
}

// TestOpenErrors: start-up fails with errors that say what to do, and
// never show the password.
func TestOpenErrors(t *testing.T) {
	srv := broker(t)
	withPassword := func(addr string) string { return "amqp://guest:guest@" + addr + "/" }
	tests := []struct {
		name string
		cfg  Config
		keys []string
		want string
	}{
		{"broker down", Config{URL: "amqp://guest:s3cret@" + sinktest.FreeAddr(t) + "/"}, nil,
			"connect: connection refused; is the broker running? (or set skip_probe: true if it comes up later)"},
		{"wrong password", Config{URL: "amqp://guest:s3cret@" + srv.Addr() + "/"}, nil, `username or password not allowed": check the user, the password and the virtual host in url, and the user's permissions`},
		{"missing exchange", Config{URL: withPassword(srv.Addr()), Exchange: "no-such-exchange"}, nil,
			`rabbitmq: exchange "no-such-exchange" does not exist on amqp://` + srv.Addr() + `/: create it (e.g. rabbitmqadmin declare exchange name=no-such-exchange type=topic durable=true) or set declare: true`},
		{"missing queue", Config{URL: withPassword(srv.Addr())}, []string{"no-such-queue"},
			`rabbitmq: queue "no-such-queue" does not exist on amqp://` + srv.Addr() + `/: with the default exchange (exchange: "") a routing key names a queue: create the queue, or name an exchange`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(context.Background(), tt.cfg, tt.keys, nil)
			if err == nil {
				s.Close(context.Background())
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v\nwant it to hold: %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "guest@") {
				t.Errorf("New shows the credentials: %v", err)
			}
		})
	}
}

// TestDeclare: declare: true creates the exchange as a durable topic
// exchange; without it the exchange must already be there.
func TestDeclare(t *testing.T) {
	srv := broker(t)
	name := uniqueName(t, "ex")
	ch := sinktest.RabbitMQChannel(t, srv.URL())
	t.Cleanup(func() { ch.ExchangeDelete(name, false, false) })
	s := open(t, Config{URL: srv.URL(), Exchange: name, Declare: true}, nil)
	// A passive declaration of another type fails: the exchange exists,
	// as a topic one, durable.
	if err := ch.ExchangeDeclarePassive(name, "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("the exchange was not declared: %v", err)
	}
	queue := uniqueName(t, "q")
	sinktest.RabbitMQQueue(t, srv.URL(), name, queue, "task.*")
	publish(t, s, sinktest.Event("task.finished", "task-1", "ev-1"))
	if got := sinktest.ReadRabbitMQQueue(t, srv.URL(), queue); len(got) != 1 || got[0].MessageId != "ev-1" {
		t.Errorf("the queue holds %d messages, want ev-1", len(got))
	}
}

// TestDefaultExchange: with exchange "", the routing key names a queue;
// one that names none is returned, and fails for good.
func TestDefaultExchange(t *testing.T) {
	srv := broker(t)
	queue := uniqueName(t, "q")
	sinktest.RabbitMQQueue(t, srv.URL(), "", queue)
	s := open(t, Config{URL: srv.URL(), RoutingKey: queue}, []string{queue})
	publish(t, s, sinktest.Event("", "task-1", "ev-1"))
	missing := sinktest.Event("no-such-queue-"+queue, "task-1", "ev-2")
	err := s.Publish(context.Background(), []sinks.Message{missing})
	if !sinks.IsPermanent(sinks.MessageErr(err, 0)) || !strings.Contains(err.Error(), "NO_ROUTE") {
		t.Errorf("Publish to a queue that does not exist: %v, want a permanent NO_ROUTE failure", err)
	}
	if got := sinktest.ReadRabbitMQQueue(t, srv.URL(), queue); len(got) != 1 || got[0].MessageId != "ev-1" {
		t.Errorf("the queue holds %d messages, want ev-1", len(got))
	}
}

// TestReturnsNeverConfirmed: among many messages in flight at once, from
// concurrent publishers and in batches, each unroutable one fails,
// permanent, and each routable one is confirmed: returns are matched to
// their own message, and handled before its confirm.
func TestReturnsNeverConfirmed(t *testing.T) {
	srv := broker(t)
	ex := exchange(t, srv)
	queue := uniqueName(t, "q")
	sinktest.RabbitMQQueue(t, srv.URL(), ex, queue, "bound")
	s := open(t, Config{URL: srv.URL(), Exchange: ex}, nil)
	const publishers, batches, size = 4, 10, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var confirmed int
	for p := range publishers {
		wg.Go(func() {
			for b := range batches {
				batch := make([]sinks.Message, size)
				for i := range batch {
					key := "bound"
					if (i+b+p)%3 == 0 {
						key = "unbound"
					}
					// The same event id everywhere: correlation must not
					// rely on it.
					batch[i] = sinktest.Event(key, "task", "same-id")
				}
				err := s.Publish(context.Background(), batch)
				for i, m := range batch {
					e := sinks.MessageErr(err, i)
					switch {
					case m.Target == "unbound" && !sinks.IsPermanent(e):
						t.Errorf("an unroutable message: %v, want a permanent failure", e)
					case m.Target == "bound" && e != nil:
						t.Errorf("a routable message: %v", e)
					case e == nil:
						mu.Lock()
						confirmed++
						mu.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()
	if got := len(sinktest.ReadRabbitMQQueue(t, srv.URL(), queue)); got != confirmed {
		t.Errorf("the queue holds %d messages, %d were confirmed", got, confirmed)
	}
}

// TestProperties: what a consumer reads with the broker's client, in
// each content mode: the AMQP properties, the body, and the headers the
// CloudEvents AMQP binding names.
func TestProperties(t *testing.T) {
	srv := broker(t)
	ex := exchange(t, srv)
	msg := sinktest.Event("task.finished", "task-1", "ev-1")
	msg.Attrs = append(msg.Attrs, sinks.Attr{Name: "traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	data, err := msg.Data()
	if err != nil {
		t.Fatal(err)
	}
	eventTime, _ := time.Parse(time.RFC3339, "2026-01-02T03:04:05Z")
	for _, mode := range []sinks.ContentMode{sinks.Structured, sinks.Binary} {
		t.Run(string(mode), func(t *testing.T) {
			queue := uniqueName(t, "q")
			sinktest.RabbitMQQueue(t, srv.URL(), ex, queue, "task.*")
			s := open(t, Config{URL: srv.URL(), Exchange: ex, ContentMode: mode}, nil)
			publish(t, s, msg)
			got := sinktest.ReadRabbitMQQueue(t, srv.URL(), queue)
			if len(got) != 1 {
				t.Fatalf("the queue holds %d messages, want 1", len(got))
			}
			d := got[0]
			if d.MessageId != "ev-1" || d.AppId != "hookbridge" || d.DeliveryMode != amqp.Persistent || !d.Timestamp.Equal(eventTime) || d.RoutingKey != "task.finished" {
				t.Errorf("properties: message_id %q, app_id %q, delivery_mode %d, timestamp %v, routing key %q",
					d.MessageId, d.AppId, d.DeliveryMode, d.Timestamp, d.RoutingKey)
			}
			ce := map[string]any{}
			for k, v := range d.Headers {
				if name, ok := strings.CutPrefix(k, bindingPrefix); ok {
					ce[name] = v
				}
			}
			if d.Headers["traceparent"] != msg.Attr("traceparent") {
				t.Errorf("header traceparent %v, want %q", d.Headers["traceparent"], msg.Attr("traceparent"))
			}
			if mode == sinks.Structured {
				if d.ContentType != sinks.StructuredContentType || string(d.Body) != string(msg.Body) || len(ce) != 0 {
					t.Errorf("structured: content_type %q, %d cloudEvents: headers, body %s", d.ContentType, len(ce), d.Body)
				}
				return
			}
			if d.ContentType != "application/json" || string(d.Body) != string(data) {
				t.Errorf("binary: content_type %q, body %s, want application/json, %s", d.ContentType, d.Body, data)
			}
			for _, a := range msg.Attrs {
				v, ok := ce[a.Name]
				if a.Name == "datacontenttype" {
					if ok {
						t.Errorf("datacontenttype travels as a header too")
					}
					continue
				}
				if v != a.Value {
					t.Errorf("header %s%s: %v, want %q", bindingPrefix, a.Name, v, a.Value)
				}
			}
			if len(ce) != len(msg.Attrs)-1 {
				t.Errorf("%d cloudEvents: headers, want %d: %v", len(ce), len(msg.Attrs)-1, d.Headers)
			}
		})
	}
}

// TestBinaryFallsBackToStructured: an attribute with spaces around it,
// which the SDKs' binary readers trim, goes structured, as its
// content_type says.
func TestBinaryFallsBackToStructured(t *testing.T) {
	srv := broker(t)
	ex := exchange(t, srv)
	queue := uniqueName(t, "q")
	sinktest.RabbitMQQueue(t, srv.URL(), ex, queue, "#")
	s := open(t, Config{URL: srv.URL(), Exchange: ex, ContentMode: sinks.Binary}, nil)
	msg := sinktest.Event("k", "task-1", "ev-1")
	msg.Attrs = append(msg.Attrs, sinks.Attr{Name: "note", Value: " padded "})
	publish(t, s, msg)
	got := sinktest.ReadRabbitMQQueue(t, srv.URL(), queue)
	if len(got) != 1 || got[0].ContentType != sinks.StructuredContentType || string(got[0].Body) != string(msg.Body) {
		t.Fatalf("got %d messages, want one structured", len(got))
	}
}

// TestRestart: the real broker stops and starts again on the same port
// with its data. While it is down, Publish fails promptly and
// retryably; once it is back, the sink reconnects by itself and the next
// Publish is confirmed, and the durable queue holds both confirmed
// messages.
func TestRestart(t *testing.T) {
	srv := sinktest.RabbitMQ(t) // of its own: the shared one must not stop
	ex := exchange(t, srv)
	queue := uniqueName(t, "q")
	ch := sinktest.RabbitMQChannel(t, srv.URL())
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, "#", ex, false, nil); err != nil {
		t.Fatal(err)
	}
	s := open(t, Config{URL: srv.URL(), Exchange: ex}, nil)
	before := sinktest.Event("task.finished", "task-1", "before")
	publish(t, s, before)

	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	start := time.Now()
	err := s.Publish(ctx, []sinks.Message{sinktest.Event("task.finished", "task-1", "during")})
	cancel()
	if e := sinks.MessageErr(err, 0); e == nil || sinks.IsPermanent(e) {
		t.Errorf("Publish with the broker down: %v, want a retryable failure", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Publish with the broker down took %v", d)
	}
	t.Logf("with the broker down: %v", err)

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	sinktest.WaitFor(t, "the sink to reconnect", func() bool { return s.Ready() == nil })
	after := sinktest.Event("task.finished", "task-1", "after")
	publish(t, s, after)
	var ids []string
	for _, d := range sinktest.ReadRabbitMQQueue(t, srv.URL(), queue) {
		ids = append(ids, d.MessageId)
	}
	if fmt.Sprint(ids) != "[before after]" {
		t.Errorf("the queue holds %v, want [before after]", ids)
	}
}

// TestSkipProbe: with skip_probe, New returns at once with the broker
// down, Publish fails retryably, and once the broker is up the sink
// connects by itself.
func TestSkipProbe(t *testing.T) {
	srv := broker(t)
	ex := exchange(t, srv)
	queue := uniqueName(t, "q")
	sinktest.RabbitMQQueue(t, srv.URL(), ex, queue, "#")
	proxy := sinktest.StartProxy(t, srv.Addr())
	release := proxy.Hold() // the broker does not answer yet
	s := open(t, Config{URL: "amqp://guest:guest@" + proxy.Addr() + "/", Exchange: ex, SkipProbe: true, ConnectTimeout: time.Second}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := s.Publish(ctx, []sinks.Message{sinktest.Event("k", "t", "early")})
	cancel()
	if e := sinks.MessageErr(err, 0); e == nil || sinks.IsPermanent(e) {
		t.Errorf("Publish before the broker answers: %v, want a retryable failure", err)
	}
	release()
	sinktest.WaitFor(t, "the sink to connect", func() bool { return s.Ready() == nil })
	publish(t, s, sinktest.Event("k", "t", "late"))
	if got := sinktest.ReadRabbitMQQueue(t, srv.URL(), queue); len(got) != 1 || got[0].MessageId != "late" {
		t.Errorf("the queue holds %d messages, want late", len(got))
	}
}

// TestClosedChannelReconnects: when the broker closes the sink's channel
// (here because the exchange was deleted under it), the message fails
// retryably and the sink opens a new session and publishes again.
func TestClosedChannelReconnects(t *testing.T) {
	srv := broker(t)
	ex := exchange(t, srv)
	queue := uniqueName(t, "q")
	sinktest.RabbitMQQueue(t, srv.URL(), ex, queue, "#")
	s := open(t, Config{URL: srv.URL(), Exchange: ex}, nil)
	publish(t, s, sinktest.Event("k", "t", "one"))
	// Delete the exchange under the sink: its next publish makes the
	// broker close the channel (404), which must not end the sink.
	ch := sinktest.RabbitMQChannel(t, srv.URL())
	if err := ch.ExchangeDelete(ex, false, false); err != nil {
		t.Fatal(err)
	}
	err := s.Publish(context.Background(), []sinks.Message{sinktest.Event("k", "t", "lost")})
	if e := sinks.MessageErr(err, 0); e == nil || sinks.IsPermanent(e) {
		t.Errorf("Publish to a deleted exchange: %v, want a retryable failure", err)
	}
	if err := ch.ExchangeDeclare(ex, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, "#", ex, false, nil); err != nil {
		t.Fatal(err)
	}
	sinktest.WaitFor(t, "the sink to reconnect", func() bool { return s.Ready() == nil })
	publish(t, s, sinktest.Event("k", "t", "two"))
	var ids []string
	for _, d := range sinktest.ReadRabbitMQQueue(t, srv.URL(), queue) {
		ids = append(ids, d.MessageId)
	}
	if fmt.Sprint(ids) != "[one two]" {
		t.Errorf("the queue holds %v, want [one two]", ids)
	}
}

// open opens a sink for cfg until the test ends.
func open(t *testing.T, cfg Config, queues []string) *Sink {
	t.Helper()
	s, err := New(context.Background(), cfg, queues, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// publish publishes msgs and fails the test unless all are confirmed.
func publish(t *testing.T, s *Sink, msgs ...sinks.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
}

// TestBlockedBroker: while a memory alarm makes the broker block
// publishers (connection.blocked), Publish fails promptly and retryably,
// and Ready says why; once the alarm clears, publishes are confirmed
// again.
func TestBlockedBroker(t *testing.T) {
	srv := broker(t)
	ex := exchange(t, srv)
	queue := uniqueName(t, "q")
	sinktest.RabbitMQQueue(t, srv.URL(), ex, queue, "#")
	s := open(t, Config{URL: srv.URL(), Exchange: ex}, nil)
	publish(t, s, sinktest.Event("k", "t", "before"))

	if _, err := srv.Ctl("set_vm_memory_high_watermark", "0"); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if _, err := srv.Ctl("set_vm_memory_high_watermark", "0.4"); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(restore) // the broker is shared
	// RabbitMQ may tell a connection it is blocked only once it
	// publishes: this first message may wait, unconfirmed, until ctx
	// ends; either way it fails retryably.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := s.Publish(ctx, []sinks.Message{sinktest.Event("k", "t", "first-blocked")})
	cancel()
	if e := sinks.MessageErr(err, 0); e == nil || sinks.IsPermanent(e) {
		t.Fatalf("Publish to a blocked broker: %v, want a retryable failure", err)
	}
	sinktest.WaitFor(t, "Ready to report the block", func() bool { return s.Ready() != nil })
	t.Logf("Ready: %v", s.Ready())
	start := time.Now()
	err = s.Publish(context.Background(), []sinks.Message{sinktest.Event("k", "t", "blocked")})
	if e := sinks.MessageErr(err, 0); e == nil || sinks.IsPermanent(e) || !strings.Contains(e.Error(), "blocks publishers") {
		t.Errorf("Publish while the broker blocks publishers: %v, want a retryable failure that says so", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Publish while the broker blocks publishers took %v", d)
	}

	restore()
	sinktest.WaitFor(t, "the block to clear", func() bool { return s.Ready() == nil })
	publish(t, s, sinktest.Event("k", "t", "after"))
}
