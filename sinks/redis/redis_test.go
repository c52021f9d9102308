package redis

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // "key: problem"
	}{
		{"minimal", Config{URL: "redis://127.0.0.1:6379/0"}, nil},
		{"tls with password", Config{URL: "rediss://user:pw@cache.example:6380/2"}, nil},
		{"default port and db", Config{URL: "redis://localhost"}, nil},
		{"go-redis query options", Config{URL: "redis://h:6379/0?dial_timeout=3s&pool_size=4"}, nil},
		{"template stream", Config{URL: "redis://h", Stream: "tasks.{status}", MaxLen: 1000}, nil},
		{"missing url", Config{}, []string{`url: missing: write your server's URL, e.g. "redis://127.0.0.1:6379/0"`}},
		{"bad scheme hides the password", Config{URL: "http://user:s3cret@host:6379"}, []string{
			`url: "http://host:6379": the scheme must be redis:// or rediss:// (TLS): write e.g. "redis://127.0.0.1:6379/0"`}},
		{"unix socket", Config{URL: "unix:///run/redis.sock"}, []string{
			`url: "unix:///run/redis.sock": the scheme must be redis:// or rediss:// (TLS): write e.g. "redis://127.0.0.1:6379/0"`}},
		{"no scheme", Config{URL: "127.0.0.1:6379"}, []string{
			`url: "127.0.0.1:6379" is not a URL (first path segment in URL cannot contain colon): write e.g. "redis://127.0.0.1:6379/0"`}},
		{"no host", Config{URL: "redis:///0"}, []string{`url: "redis:///0" names no host: write e.g. "redis://127.0.0.1:6379/0"`}},
		{"bad database", Config{URL: "redis://:pw@h:6379/zero"}, []string{
			`url: "redis://h:6379/zero": redis: invalid database number: "zero": write e.g. "redis://127.0.0.1:6379/0"`}},
		{"unknown option", Config{URL: "redis://h:6379/0?colour=red"}, []string{
			`url: "redis://h:6379/0?colour=red": redis: unexpected option: colour: write e.g. "redis://127.0.0.1:6379/0"`}},
		{"unparsable url hides the password", Config{URL: "redis://u:p%zz@h:6379"}, []string{
			`url: "redis://h:6379" is not a URL (invalid URL escape "%zz"): write e.g. "redis://127.0.0.1:6379/0"`}},
		{"negative max_len", Config{URL: "redis://h", MaxLen: -1}, []string{
			`max_len: -1: use the number of entries to trim each stream to (about), or 0 to keep every entry`}},
		{"negative connect_timeout", Config{URL: "redis://h", ConnectTimeout: -time.Second}, []string{
			`connect_timeout: "-1s": use a positive duration such as 5s`}},
		{"content mode", Config{URL: "redis://h", ContentMode: "json"}, []string{
			`content_mode: "json" is not a content mode: use "structured" (the whole CloudEvent as the body) or "binary" (data as the body, attributes as headers)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.SetDefaults()
			got := sinktest.Problems(t, tt.cfg.Validate())
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestConfigKeys decodes the sink's own keys strictly, as the config
// loader does, from the form the docs show, and checks the defaults.
func TestConfigKeys(t *testing.T) {
	const doc = `
url: redis://127.0.0.1:6379/0
stream: tasks.{status}
max_len: 10000
content_mode: binary
skip_probe: true
connect_timeout: 2s
`
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := Config{URL: "redis://127.0.0.1:6379/0", Stream: "tasks.{status}", MaxLen: 10000, ContentMode: sinks.Binary, SkipProbe: true, ConnectTimeout: 2 * time.Second}
	if c != want {
		t.Errorf("decoded %+v, want %+v", c, want)
	}

	minimal := Config{URL: "redis://127.0.0.1:6379/0"}
	minimal.SetDefaults()
	minimal.SetDefaults() // idempotent
	if minimal.ContentMode != sinks.Structured || minimal.ConnectTimeout != DefaultConnectTimeout {
		t.Errorf("defaults: %+v", minimal)
	}
	if Kind.Name != "redis" || Kind.TargetKey != "stream" {
		t.Errorf("Kind = %+v, want redis with target key stream", Kind)
	}
	if _, ok := Kind.NewConfig().(sinks.SecretHolder); !ok {
		t.Error("Config does not implement sinks.SecretHolder")
	}
}

// TestSecrets: a password in the URL is a secret, and never shown.
func TestSecrets(t *testing.T) {
	tests := []struct {
		url      string
		secrets  []string
		describe string
	}{
		{"redis://127.0.0.1:6379/0", nil, "redis://127.0.0.1:6379/0, structured CloudEvents"},
		{"redis://:s3cret@h:6379/0", []string{"s3cret"}, "redis://h:6379/0, structured CloudEvents"},
		{"rediss://app:p%40ss@h:6380", []string{"p%40ss", "p@ss"}, "rediss://h:6380, structured CloudEvents"},
		{"redis://lonetoken@h", []string{"lonetoken"}, "redis://h, structured CloudEvents"},
		{"redis://app:@h", nil, "redis://h, structured CloudEvents"},
	}
	for _, tt := range tests {
		c := Config{URL: tt.url}
		c.SetDefaults()
		if got := c.Secrets(); !slices.Equal(got, tt.secrets) {
			t.Errorf("%s: Secrets() = %q, want %q", tt.url, got, tt.secrets)
		}
		if got := c.Describe(); got != tt.describe {
			t.Errorf("%s: Describe() = %q, want %q", tt.url, got, tt.describe)
		}
	}
	c := Config{URL: "redis://h", MaxLen: 500, ContentMode: sinks.Binary}
	if got, want := c.Describe(), "redis://h, streams trimmed to about 500 entries, binary CloudEvents"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
}

// TestContentModes publishes one event in each mode and reads the entry
// as a consumer does, with XRANGE: structured holds the CloudEvent whole
// in "event"; binary holds one field per attribute, then "data" byte for
// byte. Structured has fields of its own for the W3C trace context, the
// publish's when it has one, the event's else; in binary the
// "traceparent" and "tracestate" fields are the event's attributes,
// whatever the publish's context.
func TestContentModes(t *testing.T) {
	const (
		eventParent   = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		eventState    = "rojo=00f067aa0ba902b7"
		publishParent = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
		publishState  = "hookbridge=00f067aa0ba902b7,rojo=00f067aa0ba902b7"
	)
	ctx := context.Background()
	url, _, _ := sinktest.Redis(t)
	cl := sinktest.RedisClient(t, url)
	m := sinktest.Event("modes", "task-1", "ev-1")
	m.Attrs = append(m.Attrs, sinks.Attr{Name: "traceparent", Value: eventParent}, sinks.Attr{Name: "tracestate", Value: eventState})
	publish := sinks.TraceContext{Parent: publishParent, State: publishState}
	data, err := m.Data()
	if err != nil {
		t.Fatal(err)
	}
	binary := map[string]any{"data": string(data)}
	for _, a := range m.Attrs {
		binary[a.Name] = a.Value
	}
	binaryFields := []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "status", "traceparent", "tracestate", "data"}
	structuredFields := []string{"event", "traceparent", "tracestate"}
	tests := []struct {
		name   string
		mode   sinks.ContentMode
		trace  sinks.TraceContext
		fields []string
		values map[string]any
	}{
		{"structured", sinks.Structured, sinks.TraceContext{}, structuredFields,
			map[string]any{"event": string(m.Body), "traceparent": eventParent, "tracestate": eventState}},
		{"structured, published under a span", sinks.Structured, publish, structuredFields,
			map[string]any{"event": string(m.Body), "traceparent": publishParent, "tracestate": publishState}},
		{"binary", sinks.Binary, sinks.TraceContext{}, binaryFields, binary},
		{"binary, published under a span", sinks.Binary, publish, binaryFields, binary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(ctx, Config{URL: url, ContentMode: tt.mode}, nil, discard)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(ctx)
			msg := m
			msg.Trace = tt.trace
			msg.Target = "modes." + tt.name
			if err := s.Publish(ctx, []sinks.Message{msg}); err != nil {
				t.Fatal(err)
			}
			entries := sinktest.RedisStream(t, cl, msg.Target)
			if len(entries) != 1 {
				t.Fatalf("stream %s holds %d entries, want 1", msg.Target, len(entries))
			}
			if !maps.Equal(entries[0].Values, tt.values) {
				t.Errorf("entry fields:\n%q\nwant\n%q", entries[0].Values, tt.values)
			}
			// XRANGE's reply keeps the fields' order; go-redis's map does
			// not, so read it raw.
			raw, err := cl.Do(ctx, "XRANGE", msg.Target, "-", "+").Slice()
			if err != nil {
				t.Fatal(err)
			}
			kv := raw[0].([]any)[1].([]any)
			var names []string
			for i := 0; i < len(kv); i += 2 {
				names = append(names, kv[i].(string))
			}
			if !slices.Equal(names, tt.fields) {
				t.Errorf("field order %q, want %q", names, tt.fields)
			}
		})
	}
}

// TestBinaryWithoutData: an event without data has no "data" field, so a
// consumer tells it from one whose data is empty.
func TestBinaryWithoutData(t *testing.T) {
	ctx := context.Background()
	url, _, _ := sinktest.Redis(t)
	cl := sinktest.RedisClient(t, url)
	s, err := New(ctx, Config{URL: url, Stream: "nodata", ContentMode: sinks.Binary}, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	m := sinks.Message{ID: "e1", Attrs: []sinks.Attr{{Name: "specversion", Value: "1.0"}, {Name: "id", Value: "e1"}}, Body: []byte(`{"specversion":"1.0","id":"e1"}`)}
	if err := s.Publish(ctx, []sinks.Message{m}); err != nil {
		t.Fatal(err)
	}
	entries := sinktest.RedisStream(t, cl, "nodata")
	if want := map[string]any{"specversion": "1.0", "id": "e1"}; len(entries) != 1 || !maps.Equal(entries[0].Values, want) {
		t.Errorf("entries %v, want one with %v", entries, want)
	}
}

// TestWrongTypeFailsAlone: in one pipeline, the message bound for a key
// holding a string fails alone, marked permanent and naming the key; the
// messages around it are added, in order, to the sink's default stream.
func TestWrongTypeFailsAlone(t *testing.T) {
	ctx := context.Background()
	url, _, _ := sinktest.Redis(t)
	cl := sinktest.RedisClient(t, url)
	if err := cl.Set(ctx, "a-string", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, Config{URL: url, Stream: "tasks"}, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	batch := []sinks.Message{sinktest.Event("", "k", "e0"), sinktest.Event("a-string", "k", "e1"), sinktest.Event("", "k", "e2")}
	err = s.Publish(ctx, batch)
	var be *sinks.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[1] == nil {
		t.Fatalf("Publish: %v, want a BatchError naming message 1 alone", err)
	}
	if e := be.Failed[1]; !sinks.IsPermanent(e) || !strings.Contains(e.Error(), `stream "a-string"`) || !strings.Contains(e.Error(), "WRONGTYPE") {
		t.Errorf("message 1: %v, want a permanent WRONGTYPE error naming the key", e)
	}
	var ids []string
	for _, e := range sinktest.RedisStream(t, cl, "tasks") {
		ids = append(ids, sinktest.BodyID([]byte(e.Values[EventField].(string))))
	}
	if want := []string{"e0", "e2"}; !slices.Equal(ids, want) {
		t.Errorf("stream tasks holds %q, want %q", ids, want)
	}
}

// TestNoStream: a message without a target, on a sink without a default
// stream, fails alone, for good.
func TestNoStream(t *testing.T) {
	ctx := context.Background()
	url, _, _ := sinktest.Redis(t)
	s, err := New(ctx, Config{URL: url}, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	err = s.Publish(ctx, []sinks.Message{sinktest.Event("named", "k", "e0"), sinktest.Event("", "k", "e1")})
	if e := sinks.MessageErr(err, 1); !sinks.IsPermanent(e) || !errors.Is(e, errNoStream) || sinks.MessageErr(err, 0) != nil {
		t.Errorf("Publish: %v, want message 1 alone failed with errNoStream, permanent", err)
	}
}

// TestMaxLen: with max_len, XADD trims the stream approximately: it stays
// near the limit instead of growing with every message. Redis trims whole
// nodes (100 entries by default), so the test only bounds it.
func TestMaxLen(t *testing.T) {
	ctx := context.Background()
	url, _, _ := sinktest.Redis(t)
	cl := sinktest.RedisClient(t, url)
	s, err := New(ctx, Config{URL: url, Stream: "trimmed", MaxLen: 10}, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	const published = 1000
	for i := range published / 50 {
		batch := make([]sinks.Message, 50)
		for j := range batch {
			batch[j] = sinktest.Event("", "k", strings.Repeat("x", i)+string(rune('a'+j%26)))
		}
		if err := s.Publish(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	n, err := cl.XLen(ctx, "trimmed").Result()
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 || n > 200 {
		t.Errorf("the stream holds %d of %d entries with max_len 10, want about 10 (at most a node more)", n, published)
	}
}

// TestProbe: Open fails, naming the key, when a static target (or the
// default stream) is a key of another type; a missing stream is fine, and
// so is a template default, which names no key.
func TestProbe(t *testing.T) {
	ctx := context.Background()
	url, _, _ := sinktest.Redis(t)
	cl := sinktest.RedisClient(t, url)
	if err := cl.Set(ctx, "cache", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cl.XAdd(ctx, &goredis.XAddArgs{Stream: "existing", Values: []string{"f", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		stream  string
		targets []sinks.TargetTemplate
		want    string // "" for success
	}{
		{"missing and existing streams", "", []sinks.TargetTemplate{tmpl("new"), tmpl("existing")}, ""},
		{"wrong type target", "", []sinks.TargetTemplate{tmpl("new"), tmpl("cache")}, `redis: key "cache" on ` + strings.TrimPrefix(strings.TrimSuffix(url, "/0"), "redis://") + ` holds a string, not a stream: every XADD to it would fail; route to another stream or delete the key`},
		{"wrong type default", "cache", nil, `key "cache"`},
		{"template default", "{status}", []sinks.TargetTemplate{tmpl("{status}")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{URL: url, Stream: tt.stream}
			c.SetDefaults()
			s, err := c.Open(ctx, tt.targets, discard)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Open: %v", err)
			case tt.want == "":
				s.Close(ctx)
			case err == nil:
				s.Close(ctx)
				t.Fatalf("Open succeeded, want an error with %q", tt.want)
			case !strings.Contains(err.Error(), tt.want):
				t.Errorf("Open: %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestServerDown: without a server, Open fails saying what to do, and
// hides the password; with skip_probe it opens, publishes fail
// retryably, and succeed once the server is up.
func TestServerDown(t *testing.T) {
	ctx := context.Background()
	url, stop, srv := sinktest.Redis(t)
	stop()
	withPassword := strings.Replace(url, "redis://", "redis://:hunter2@", 1)
	c := Config{URL: withPassword, ConnectTimeout: time.Second}
	c.SetDefaults()
	_, err := c.Open(ctx, nil, discard)
	if err == nil || !strings.Contains(err.Error(), "does not answer PING") || !strings.Contains(err.Error(), "skip_probe") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Open with the server down: %v, want a PING error suggesting skip_probe, without the password", err)
	}

	c = Config{URL: url, Stream: "late"}
	c.SetDefaults()
	c.WithoutProbe()
	s, err := c.Open(ctx, nil, discard)
	if err != nil {
		t.Fatalf("Open with skip_probe: %v", err)
	}
	defer s.Close(ctx)
	m := sinktest.Event("", "k", "e0")
	if err := s.Publish(ctx, []sinks.Message{m}); err == nil || sinks.IsPermanent(err) {
		t.Fatalf("Publish with the server down: %v, want a retryable error", err)
	}
	srv.Start()
	if err := s.Publish(ctx, []sinks.Message{m}); err != nil {
		t.Fatalf("Publish once the server is up: %v", err)
	}
}

// TestServerRestart: the sink survives its server's restart on the same
// port: the first Publish after it succeeds, go-redis dialling anew for
// the pooled connections the old server closed.
func TestServerRestart(t *testing.T) {
	ctx := context.Background()
	url, stop, srv := sinktest.Redis(t)
	s, err := New(ctx, Config{URL: url, Stream: "restart"}, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	// Several pooled connections, all of which the restart breaks.
	for range 3 {
		if err := s.Publish(ctx, []sinks.Message{sinktest.Event("", "k", "before")}); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	srv.Start()
	after := sinktest.Event("", "k", "after")
	if err := s.Publish(ctx, []sinks.Message{after}); err != nil {
		t.Fatalf("first Publish after the restart: %v", err)
	}
	cl := sinktest.RedisClient(t, url)
	entries := sinktest.RedisStream(t, cl, "restart") // the restart emptied it
	if len(entries) != 1 || !bytes.Equal([]byte(entries[0].Values[EventField].(string)), after.Body) {
		t.Errorf("after the restart the stream holds %v, want the one event published since", entries)
	}
}

// TestPublishDoesNotKeepMessages: a Publish that returned on its
// context's end leaves its pipeline running, and a Sink must not read a
// Message after Publish returns: the pipeline sends copies. The batch is
// larger than the socket buffers, so the hung server leaves the write half
// done when Publish returns and the caller reuses its buffers; the
// pipeline then finishes once the server answers. Without the copies the
// race detector reports the pipeline's reads of the reused buffers, and
// the stream holds the altered bodies.
func TestPublishDoesNotKeepMessages(t *testing.T) {
	ctx := context.Background()
	url, _, srv := sinktest.Redis(t)
	cl := sinktest.RedisClient(t, url)
	s, err := New(ctx, Config{URL: url, Stream: "copies"}, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, []sinks.Message{sinktest.Event("", "k", "warm")}); err != nil {
		t.Fatal(err)
	}
	batch := make([]sinks.Message, 16)
	want := map[string]bool{}
	for i := range batch {
		m := sinktest.Event("", "k", "e"+strings.Repeat("x", i))
		m.Body = bytes.Replace(m.Body, []byte(`"data":{`), []byte(`"data":{"pad":"`+strings.Repeat("p", 1<<20)+`",`), 1)
		batch[i] = m
		want[string(m.Body)] = true
	}
	release := srv.Hang()
	defer release()
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Publish(pctx, batch) }()
	time.Sleep(time.Second) // let the write start and fill the buffers
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Publish to a hung server: %v, want the context's error", err)
	}
	for _, m := range batch {
		for i := range m.Body {
			m.Body[i] = 'X' // the caller reuses its buffers
		}
	}
	release()
	// The abandoned pipeline goes on once the server answers.
	sinktest.WaitFor(t, "the abandoned pipeline's entries", func() bool {
		n, err := cl.XLen(ctx, "copies").Result()
		return err == nil && n == int64(1+len(batch))
	})
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range sinktest.RedisStream(t, cl, "copies") {
		got := e.Values[EventField].(string)
		if sinktest.BodyID([]byte(got)) == "warm" {
			continue
		}
		if !want[got] {
			t.Errorf("the stream holds %.60q..., not a body as published", got)
		}
	}
}

// tmpl is a route target as written; it is static without braces.
type tmpl string

func (t tmpl) String() string               { return string(t) }
func (t tmpl) Static() bool                 { return !strings.ContainsAny(string(t), "{}") }
func (t tmpl) Wildcard(byte, string) string { return string(t) }
