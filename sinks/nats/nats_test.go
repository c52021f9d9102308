package nats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

var discard = slog.New(slog.DiscardHandler)

func TestJetStreamPublish(t *testing.T) {
	srv := sinktest.NATS(t)
	ctx := context.Background()
	s, err := New(ctx, Config{Connection: Connection{URL: srv.ClientURL()}, JetStream: true}, []string{"task.*", "alerts.task.*"}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	_, js := sinktest.JetStream(t, srv.ClientURL())

	st, err := js.Stream(ctx, "HOOKBRIDGE")
	if err != nil {
		t.Fatalf("stream not created: %v", err)
	}
	if got := st.CachedInfo().Config; strings.Join(got.Subjects, ",") != "task.*,alerts.task.*" || got.Duplicates != 2*time.Minute {
		t.Errorf("stream config = %+v", got)
	}

	batch := []sinks.Message{sinktest.Event("task.finished", "task-e1", "e1"), sinktest.Event("alerts.task.finished", "task-e1", "e1"), sinktest.Event("task.paused", "task-e2", "e2")}
	if err := s.Publish(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got := sinktest.ReadStream(t, js, "HOOKBRIDGE")
	if len(got) != 3 {
		t.Fatalf("the stream holds %d messages, want 3", len(got))
	}
	for i, m := range got {
		want := batch[i]
		h := m.Headers()
		if m.Subject() != want.Target || string(m.Data()) != string(want.Body) {
			t.Errorf("message %d: %s %s", i, m.Subject(), m.Data())
		}
		// Structured mode: the content type and the id, no ce- header.
		if len(h) != 2 || h.Get("Nats-Msg-Id") != want.ID+":"+want.Target || h.Get("content-type") != sinks.StructuredContentType {
			t.Errorf("message %d headers %v", i, h)
		}
	}

	// A redelivery is confirmed and stored once.
	if err := s.Publish(ctx, batch[:1]); err != nil {
		t.Fatalf("duplicate publish: %v", err)
	}
	if n := sinktest.StreamCount(js, "HOOKBRIDGE"); n != 3 {
		t.Errorf("stream holds %d messages after a duplicate, want 3", n)
	}

	// A subject no stream covers fails alone.
	err = s.Publish(ctx, []sinks.Message{sinktest.Event("task.started", "task-e3", "e3"), sinktest.Event("nowhere.started", "task-e3", "e3"), sinktest.Event("", "task-e4", "e4")})
	var be *sinks.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 || be.Failed[0] != nil {
		t.Fatalf("err = %v, want messages 1 and 2 failed", err)
	}
	if !strings.Contains(be.Failed[1].Error(), `no JetStream stream stores subject "nowhere.started"`) {
		t.Errorf("uncovered subject error = %v", be.Failed[1])
	}
	if !errors.Is(be.Failed[2], errNoSubject) {
		t.Errorf("no-subject error = %v", be.Failed[2])
	}
	if n := sinktest.StreamCount(js, "HOOKBRIDGE"); n != 4 {
		t.Errorf("stream holds %d messages, want 4", n)
	}
}

func TestJetStreamUsesExistingStream(t *testing.T) {
	srv := sinktest.NATS(t)
	ctx := context.Background()
	_, js := sinktest.JetStream(t, srv.ClientURL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"task.>"}, MaxMsgs: 1000}); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, Config{Connection: Connection{URL: srv.ClientURL()}, JetStream: true}, []string{"task.*", "alerts.task.*"}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	// task.* is covered by MINE, alerts.task.* by nothing: hookbridge
	// creates its own stream for the uncovered subjects only.
	if err := s.Publish(ctx, []sinks.Message{sinktest.Event("task.finished", "task-a", "a"), sinktest.Event("alerts.task.finished", "task-a", "a")}); err != nil {
		t.Fatal(err)
	}
	if n := sinktest.StreamCount(js, "MINE"); n != 1 {
		t.Errorf("MINE holds %d messages", n)
	}
	if n := sinktest.StreamCount(js, "HOOKBRIDGE"); n != 1 {
		t.Errorf("HOOKBRIDGE holds %d messages", n)
	}
	ours, _ := js.Stream(ctx, "HOOKBRIDGE")
	if got := ours.CachedInfo().Config.Subjects; strings.Join(got, ",") != "alerts.task.*" {
		t.Errorf("HOOKBRIDGE subjects = %v, want only the uncovered alerts.task.*", got)
	}
	mine, _ := js.Stream(ctx, "MINE")
	if cfg := mine.CachedInfo().Config; cfg.MaxMsgs != 1000 || strings.Join(cfg.Subjects, ",") != "task.>" {
		t.Errorf("the user's stream was modified: %+v", cfg)
	}
}

func TestJetStreamCoveredByUserStream(t *testing.T) {
	srv := sinktest.NATS(t)
	ctx := context.Background()
	_, js := sinktest.JetStream(t, srv.ClientURL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"task.>", "alerts.>"}}); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, Config{Connection: Connection{URL: srv.ClientURL()}, JetStream: true}, []string{"task.*", "alerts.task.*"}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if _, err := js.Stream(ctx, "HOOKBRIDGE"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("a stream was created although MINE covers every subject: %v", err)
	}
	if len(s.Warnings()) != 0 {
		t.Errorf("warnings: %v", s.Warnings())
	}
}

func TestJetStreamNoCreate(t *testing.T) {
	srv := sinktest.NATS(t)
	no := false
	_, err := New(context.Background(), Config{Connection: Connection{URL: srv.ClientURL()}, JetStream: true, Stream: StreamConfig{Create: &no}}, []string{"task.*"}, discard)
	want := `nats: no stream covers task.* and stream.create is false: create stream "HOOKBRIDGE" or set stream.create: true`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestCorePublish(t *testing.T) {
	srv := sinktest.NATS(t)
	ctx := context.Background()
	s, err := New(ctx, Config{Connection: Connection{URL: srv.ClientURL()}, Subject: "default.subject"}, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	nc, _ := sinktest.JetStream(t, srv.ClientURL())
	sub, err := nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, []sinks.Message{sinktest.Event("task.finished", "task-c1", "c1"), sinktest.Event("", "task-c2", "c2")}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"task.finished", "default.subject"} {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != want || sinktest.BodyID(m.Data) != fmt.Sprintf("c%d", i+1) {
			t.Errorf("message %d: %s %v", i, m.Subject, m.Header)
		}
	}
}

func TestEmbeddedServerKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{Connection: Connection{URL: Embedded}, JetStream: true, Embedded: EmbeddedConfig{Listen: "127.0.0.1:0", StoreDir: dir}}
	s, err := New(ctx, cfg, []string{"task.*"}, discard)
	if err != nil {
		t.Fatal(err)
	}
	url := s.ClientURL()
	if err := s.Publish(ctx, []sinks.Message{sinktest.Event("task.finished", "task-k1", "k1"), sinktest.Event("task.stopped", "task-k2", "k2")}); err != nil {
		t.Fatal(err)
	}
	// A separate client reaches it, as hookbridge tail does.
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatalf("embedded server not reachable at %s: %v", url, err)
	}
	nc.Close()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := natsgo.Connect(url, natsgo.Timeout(time.Second)); err == nil {
		t.Error("the embedded server still answers after Close")
	}

	// Restarted on the same directory, the stream still holds both.
	s, err = New(ctx, cfg, []string{"task.*"}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	_, js := sinktest.JetStream(t, s.ClientURL())
	if n := sinktest.StreamCount(js, "HOOKBRIDGE"); n != 2 {
		t.Errorf("after restart the stream holds %d messages, want 2", n)
	}
}

func TestConnectFailureHidesCredentials(t *testing.T) {
	_, err := New(context.Background(), Config{Connection: Connection{URL: "nats://user:hunter2@127.0.0.1:1", ConnectTimeout: time.Second}}, nil, discard)
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), "nats://127.0.0.1:1") || !strings.Contains(err.Error(), "is the server running?") {
		t.Errorf("error = %v", err)
	}
}

func TestPublishAfterServerStops(t *testing.T) {
	for _, jetStream := range []bool{true, false} {
		t.Run(fmt.Sprint("jetstream=", jetStream), func(t *testing.T) {
			srv := sinktest.NATS(t)
			ctx := context.Background()
			s, err := New(ctx, Config{Connection: Connection{URL: srv.ClientURL()}, JetStream: jetStream}, []string{"task.*"}, discard)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(ctx)
			srv.Shutdown()
			srv.WaitForShutdown()
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := s.Publish(pctx, []sinks.Message{sinktest.Event("task.finished", "task-x", "x")}); err == nil {
				t.Fatal("Publish confirmed a message with the server down")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // "key: problem"
	}{
		{"minimal", Config{Connection: Connection{URL: "nats://127.0.0.1:4222"}}, nil},
		{"embedded", Config{Connection: Connection{URL: Embedded}}, nil},
		{"cluster", Config{Connection: Connection{URL: "nats://a:4222, tls://b:4222"}}, nil},
		{"missing url", Config{}, []string{`url: missing: write "embedded" or your server's nats://host:4222`}},
		{"bad scheme", Config{Connection: Connection{URL: "http://user:pw@host:4222"}}, []string{`url: "http://host:4222": the scheme must be nats://, tls://, ws:// or wss://`}},
		{"not a url", Config{Connection: Connection{URL: "localhost"}}, []string{`url: "localhost" is not a server URL: write nats://host:4222 (or embedded)`}},
		{"a comma in a password", Config{Connection: Connection{URL: "nats://u:pa,ss@host:4222"}}, []string{
			`url: URL 1 of 2 (not shown: the list holds user info) is not a server URL: write nats://host:4222 (or embedded)`,
			`url: URL 2 of 2 (not shown: the list holds user info) is not a server URL: write nats://host:4222 (or embedded)`}},
		{"bad listen", Config{Connection: Connection{URL: Embedded}, Embedded: EmbeddedConfig{Listen: "4222"}}, []string{`embedded.listen: "4222" is not host:port: write e.g. 127.0.0.1:4222`}},
		{"embedded without embedded url", Config{Connection: Connection{URL: "nats://h:1"}, Embedded: EmbeddedConfig{Listen: ":1"}}, []string{`embedded: only applies with url: embedded: remove it`}},
		{"stream", Config{Connection: Connection{URL: Embedded}, Stream: StreamConfig{Storage: "disk", Replicas: 7, Name: "a.b", MaxBytes: -5}}, []string{
			`stream.storage: "disk": use "file" or "memory"`,
			`stream.replicas: 7: use 1 to 5`,
			`stream.name: "a.b": a stream name cannot hold spaces, dots, *, >, / or \`,
			`stream.max_bytes: -5: use a size in bytes, or 0 for unlimited`,
		}},
		{"password without user", Config{Connection: Connection{URL: Embedded, Password: "pw"}}, []string{`password: a password needs a user`}},
		{"negative replicas", Config{Connection: Connection{URL: Embedded}, Stream: StreamConfig{Replicas: -1}}, []string{`stream.replicas: -1: use 1 to 5`}},
		{"unlimited bytes", Config{Connection: Connection{URL: Embedded}, Stream: StreamConfig{MaxBytes: -1}}, nil},
		{"port not a number", Config{Connection: Connection{URL: Embedded}, Embedded: EmbeddedConfig{Listen: "127.0.0.1:42x"}}, []string{`embedded.listen: "127.0.0.1:42x": the port must be a number from 0 to 65535`}},
		{"port too big", Config{Connection: Connection{URL: Embedded}, Embedded: EmbeddedConfig{Listen: "127.0.0.1:65536"}}, []string{`embedded.listen: "127.0.0.1:65536": the port must be a number from 0 to 65535`}},
		{"free port", Config{Connection: Connection{URL: Embedded}, Embedded: EmbeddedConfig{Listen: "127.0.0.1:-1"}}, nil},
		{"durations", Config{Connection: Connection{URL: Embedded, ConnectTimeout: -time.Second}, Stream: StreamConfig{MaxAge: time.Minute, Duplicates: 2 * time.Minute}}, []string{
			`stream.duplicates: "2m0s" is longer than stream.max_age "1m0s": JetStream refuses that; shorten it`,
			`connect_timeout: "-1s": use a positive duration such as 5s`,
		}},
		{"negative durations", Config{Connection: Connection{URL: Embedded}, Stream: StreamConfig{MaxAge: -time.Hour, Duplicates: -time.Second}}, []string{
			`stream.max_age: "-1h0m0s": use a positive duration such as 720h, or 0 for unlimited`,
			`stream.duplicates: "-1s": use a positive duration such as 2m`,
		}},
		{"subjects", Config{Connection: Connection{URL: Embedded}, Subject: "task.*", Stream: StreamConfig{Subjects: []string{"task.>", "bad subject", ""}}}, []string{
			`stream.subjects[1]: "bad subject" is not a NATS subject: write tokens separated by dots, e.g. task.>`,
			`stream.subjects[2]: "" is not a NATS subject: write tokens separated by dots, e.g. task.>`,
			`subject: "task.*": a subject to publish to is tokens separated by dots, without spaces, * or >`,
		}},
		{"template subject", Config{Connection: Connection{URL: Embedded}, Subject: "task.{status}"}, nil},
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

// TestSkipProbe starts the sink before its server: New succeeds, publishes
// fail until the server is up, then the stream is set up and they succeed.
func TestSkipProbe(t *testing.T) {
	ctx := context.Background()
	port := sinktest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	s, err := New(ctx, Config{Connection: Connection{URL: url}, JetStream: true, SkipProbe: true}, []string{"task.*"}, discard)
	if err != nil {
		t.Fatalf("New with skip_probe and no server: %v", err)
	}
	defer s.Close(ctx)
	pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = s.Publish(pctx, []sinks.Message{sinktest.Event("task.finished", "task-early", "early")})
	cancel()
	if err == nil {
		t.Fatal("a publish with no server was confirmed")
	}

	srv := sinktest.NATSAt(t, port, t.TempDir())
	// The sink reconnects on its own schedule; retry until it has.
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.Publish(pctx, []sinks.Message{sinktest.Event("task.finished", "task-late", "late")})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after the server came up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, js := sinktest.JetStream(t, srv.ClientURL())
	if n := sinktest.StreamCount(js, "HOOKBRIDGE"); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

// TestJetStreamPartlyCoveredSubject checks that a user's stream storing
// only part of a route's subjects is not taken as covering them all.
func TestJetStreamPartlyCoveredSubject(t *testing.T) {
	srv := sinktest.NATS(t)
	ctx := context.Background()
	_, js := sinktest.JetStream(t, srv.ClientURL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"task.finished"}}); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, Config{Connection: Connection{URL: srv.ClientURL()}, JetStream: true}, []string{"task.*", "alerts.task.*"}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	want := []string{`nats: JetStream stream "MINE" stores only part of subject "task.*": publishes to the rest of it will fail until a stream covers it`}
	if got := s.Warnings(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Warnings() = %q, want %q", got, want)
	}
	// alerts.task.* overlapped nothing, so hookbridge's stream took it.
	ours, err := js.Stream(ctx, "HOOKBRIDGE")
	if err != nil {
		t.Fatal(err)
	}
	if got := ours.CachedInfo().Config.Subjects; strings.Join(got, ",") != "alerts.task.*" {
		t.Errorf("HOOKBRIDGE subjects = %v", got)
	}
	err = s.Publish(ctx, []sinks.Message{sinktest.Event("task.finished", "task-p", "p"), sinktest.Event("task.paused", "task-p", "p"), sinktest.Event("alerts.task.paused", "task-p", "p")})
	if sinks.MessageErr(err, 0) != nil || sinks.MessageErr(err, 2) != nil || sinks.MessageErr(err, 1) == nil {
		t.Errorf("Publish = %v, want only task.paused failed", err)
	}
}

func TestJetStreamNotEnabled(t *testing.T) {
	srv := sinktest.NATSWith(t, server.Options{}) // without JetStream
	_, err := New(context.Background(), Config{Connection: Connection{URL: srv.ClientURL()}, JetStream: true}, []string{"task.*"}, discard)
	want := fmt.Sprintf(`nats: look up the streams for "task.*": JetStream is not enabled on %s for this account: start nats-server with -js (or set jetstream: false)`, srv.ClientURL())
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %v, want it to start with %q", err, want)
	}
}

// TestJetStreamMessagesWithoutID checks that id-less messages are not
// de-duplicated against each other, and that the sink takes a nil logger.
func TestJetStreamMessagesWithoutID(t *testing.T) {
	srv := sinktest.NATS(t)
	ctx := context.Background()
	s, err := New(ctx, Config{Connection: Connection{URL: srv.ClientURL()}, JetStream: true}, []string{"task.*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	a, b := sinktest.Event("task.finished", "", ""), sinktest.Event("task.finished", "", "")
	b.Body = []byte(`{"other":true}`)
	if err := s.Publish(ctx, []sinks.Message{a, b}); err != nil {
		t.Fatal(err)
	}
	_, js := sinktest.JetStream(t, srv.ClientURL())
	got := sinktest.ReadStream(t, js, "HOOKBRIDGE")
	if len(got) != 2 {
		t.Fatalf("the stream holds %d messages, want 2", len(got))
	}
	if h := got[0].Headers(); h.Get(jetstream.MsgIDHeader) != "" {
		t.Errorf("an id-less message got Nats-Msg-Id %q", h.Get(jetstream.MsgIDHeader))
	}
}

// TestEmbeddedStartFailure checks that the embedded server's fatal start-up
// problems come back as errors that say what went wrong.
func TestEmbeddedStartFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		embedded EmbeddedConfig
		want     string
	}{
		{"port in use", EmbeddedConfig{Listen: busy.Addr().String(), StoreDir: t.TempDir()}, "address already in use"},
		{"store dir is a file", EmbeddedConfig{Listen: "127.0.0.1:-1", StoreDir: notDir}, "storage directory is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), Config{Connection: Connection{URL: Embedded}, JetStream: true, Embedded: tt.embedded}, []string{"task.*"}, discard)
			if err == nil || !strings.HasPrefix(err.Error(), "nats: embedded server: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want an embedded server error about %q", err, tt.want)
			}
		})
	}
}

// TestContentModes pins each mode's headers: structured carries no ce-
// header (the CloudEvents SDKs would read the message as binary and take
// the whole event for its data), binary carries every attribute as a
// lower-case ce- header and data as the body. Both keep the transport
// headers: the id and the W3C trace context under its own names.
func TestContentModes(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	m := sinktest.Event("task.finished", "task-1", "e1")
	m.Attrs = append(m.Attrs, sinks.Attr{Name: "traceparent", Value: parent}, sinks.Attr{Name: "tracestate", Value: "v=1"})
	data, err := m.Data()
	if err != nil {
		t.Fatal(err)
	}
	transport := natsgo.Header{"Nats-Msg-Id": {"e1:task.finished"}, "traceparent": {parent}, "tracestate": {"v=1"}}
	structured := maps.Clone(transport)
	structured["content-type"] = []string{sinks.StructuredContentType}
	binary := maps.Clone(transport)
	binary["content-type"] = []string{"application/json"}
	for _, a := range m.Attrs {
		if a.Name != "datacontenttype" {
			binary["ce-"+a.Name] = []string{a.Value}
		}
	}
	tests := []struct {
		mode   sinks.ContentMode
		header natsgo.Header
		body   []byte
	}{
		{sinks.Structured, structured, m.Body},
		{sinks.Binary, binary, data},
	}
	srv := sinktest.NATS(t)
	nc, _ := sinktest.JetStream(t, srv.ClientURL())
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			sub, err := nc.SubscribeSync("task.finished")
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			s, err := New(context.Background(), Config{Connection: Connection{URL: srv.ClientURL()}, ContentMode: tt.mode}, nil, discard)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			if err := s.Publish(context.Background(), []sinks.Message{m}); err != nil {
				t.Fatal(err)
			}
			got, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.EqualFunc(got.Header, tt.header, slices.Equal) {
				t.Errorf("headers\n got %v\nwant %v", got.Header, tt.header)
			}
			if !bytes.Equal(got.Data, tt.body) {
				t.Errorf("body\n got %s\nwant %s", got.Data, tt.body)
			}
		})
	}
}

// TestBinaryFallsBackToStructured: in binary mode, an event with an
// attribute a NATS header would alter (nats.go trims surrounding spaces and
// turns line breaks into spaces) or lose (an empty value) is sent whole,
// structured, as its content-type header says.
func TestBinaryFallsBackToStructured(t *testing.T) {
	var logged bytes.Buffer
	s := &Sink{cfg: Config{ContentMode: sinks.Binary}, log: slog.New(slog.NewTextHandler(&logged, nil))}
	for name, value := range map[string]string{"empty": "", "line break": "a\r\nce-id: forged", "leading space": " t", "trailing tab": "t\t"} {
		m := sinktest.Event("task.finished", "task-1", "e1")
		m.Attrs[4].Value = value // subject
		got, err := s.msg(&m, m.Target)
		if err != nil {
			t.Fatal(err)
		}
		if got.Header.Get("content-type") != sinks.StructuredContentType || !bytes.Equal(got.Data, m.Body) || got.Header.Get("ce-specversion") != "" {
			t.Errorf("%s: headers %v body %s, want the structured event", name, got.Header, got.Data)
		}
	}
	if n := strings.Count(logged.String(), "cannot carry"); n != 1 {
		t.Errorf("logged the fallback %d times, want once:\n%s", n, logged.String())
	}
	m := sinktest.Event("task.finished", "task-1", "e1")
	if got, _ := s.msg(&m, m.Target); got.Header.Get("ce-specversion") != "1.0" {
		t.Errorf("an ordinary event went structured: %v", got.Header)
	}
}
