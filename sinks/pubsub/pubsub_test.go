package pubsub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestValidate: each bad key is reported with what to write instead.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // the problems, in order; none for a valid config
	}{
		{"minimal", Config{Project: "my-project"}, nil},
		{"everything", Config{Project: "my-project", Topic: "tasks", Endpoint: "europe-west1-pubsub.googleapis.com:443", ContentMode: sinks.Binary, SkipProbe: true}, nil},
		{"full topic name", Config{Project: "my-project", Topic: "projects/other/topics/tasks"}, nil},
		{"template topic", Config{Project: "my-project", Topic: "task-{status}"}, nil},
		{"domain-scoped project", Config{Project: "example.com:my-project"}, nil},
		{"no project", Config{}, []string{"project: missing: write your GCP project id, e.g. my-project"}},
		{"project as a name", Config{Project: "projects/my-project"}, []string{`project: "projects/my-project": write the project id alone, e.g. my-project`}},
		{"project with a space", Config{Project: "my project"}, []string{`project: "my project" is not a project id: write the id gcloud projects list shows, e.g. my-project`}},
		{"short topic", Config{Project: "p1", Topic: "ab"}, []string{`topic: "ab": a topic id is 3 to 255 characters, e.g. tasks`}},
		{"topic with a digit first", Config{Project: "p1", Topic: "1tasks"}, []string{`topic: "1tasks": a topic id starts with a letter`}},
		{"goog topic", Config{Project: "p1", Topic: "google-tasks"}, []string{`topic: "google-tasks": a topic id cannot start with "goog"`}},
		{"topic with a space", Config{Project: "p1", Topic: "my tasks"}, []string{`topic: "my tasks": a topic id holds only letters, digits and - _ . ~ + %`}},
		{"half a topic name", Config{Project: "p1", Topic: "projects/p1/tasks"}, []string{`topic: "projects/p1/tasks" is not a topic name: write projects/<project>/topics/<topic>, or the topic id alone (e.g. tasks)`}},
		{"endpoint URL", Config{Project: "p1", Endpoint: "https://pubsub.googleapis.com"}, []string{`endpoint: "https://pubsub.googleapis.com": write host:port without a scheme, e.g. europe-west1-pubsub.googleapis.com:443`}},
		{"endpoint without port", Config{Project: "p1", Endpoint: "pubsub.googleapis.com"}, []string{`endpoint: "pubsub.googleapis.com" is not host:port: write e.g. europe-west1-pubsub.googleapis.com:443`}},
		{"content mode", Config{Project: "p1", ContentMode: "json"}, []string{`content_mode: "json" is not a content mode: use "structured" (the whole CloudEvent as the body) or "binary" (data as the body, attributes as headers)`}},
		{"all at once", Config{Topic: "x", Endpoint: "x", ContentMode: "x"}, []string{
			"project: missing: write your GCP project id, e.g. my-project",
			`topic: "x": a topic id is 3 to 255 characters, e.g. tasks`,
			`endpoint: "x" is not host:port: write e.g. europe-west1-pubsub.googleapis.com:443`,
			`content_mode: "x" is not a content mode: use "structured" (the whole CloudEvent as the body) or "binary" (data as the body, attributes as headers)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.SetDefaults()
			again := cfg
			again.SetDefaults()
			if again != cfg {
				t.Errorf("SetDefaults is not idempotent: %+v, then %+v", cfg, again)
			}
			got := sinktest.Problems(t, cfg.Validate())
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Validate:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestDefaultsAndDescribe: the default content mode is structured, the
// emulator shows in Describe when it is used, and the kind reads the
// topic key.
func TestDefaultsAndDescribe(t *testing.T) {
	if Kind.Name != "pubsub" || Kind.TargetKey != "topic" {
		t.Errorf("Kind %q with target key %q, want pubsub and topic", Kind.Name, Kind.TargetKey)
	}
	t.Setenv(EmulatorHostEnv, "")
	for _, tc := range []struct {
		name     string
		cfg      Config
		emulator string
		want     string
	}{
		{"plain", Config{Project: "my-project"}, "", "project my-project, structured CloudEvents"},
		{"endpoint", Config{Project: "p1", Endpoint: "europe-west1-pubsub.googleapis.com:443", ContentMode: sinks.Binary}, "", "project p1, endpoint europe-west1-pubsub.googleapis.com:443, binary CloudEvents"},
		{"emulator", Config{Project: "p1"}, "localhost:8085", "project p1, emulator localhost:8085 (PUBSUB_EMULATOR_HOST), structured CloudEvents"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EmulatorHostEnv, tc.emulator)
			c := Kind.NewConfig()
			*c.(*Config) = tc.cfg
			c.SetDefaults()
			if got := c.Describe(); got != tc.want {
				t.Errorf("Describe: %q, want %q", got, tc.want)
			}
			if got := c.DefaultTarget(); got != tc.cfg.Topic {
				t.Errorf("DefaultTarget: %q, want %q", got, tc.cfg.Topic)
			}
		})
	}
}

// TestCheckTarget: route targets are topic ids or full topic names.
func TestCheckTarget(t *testing.T) {
	c := &Config{Project: "p1"}
	for target, want := range map[string]string{
		"tasks":                         "",
		"task.done~v1+x%2F":             "",
		"projects/other/topics/tasks":   "",
		"projects/other/subscriptions/": `"projects/other/subscriptions/" is not a topic name: write projects/<project>/topics/<topic>, or the topic id alone (e.g. tasks)`,
		"tasks/done":                    `"tasks/done": a topic id holds only letters, digits and - _ . ~ + %`,
		"goog-x":                        `"goog-x": a topic id cannot start with "goog"`,
	} {
		got := ""
		if err := c.CheckTarget(target); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("CheckTarget(%q): %q, want %q", target, got, want)
		}
	}
}

// TestClassify: the gRPC codes a publish fails with are permanent when
// no retry can help (the topic is missing, the message is refused) and
// retryable otherwise.
func TestClassify(t *testing.T) {
	const topic = "projects/p1/topics/tasks"
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{status.Error(codes.NotFound, "topic not found"), true},
		{status.Error(codes.InvalidArgument, "message too large"), true},
		{status.Error(codes.Internal, "grpc: error while marshaling: string field contains invalid UTF-8"), true},
		{fmt.Errorf("bundler: %w", pubsub.ErrOversizedMessage), true},
		{status.Error(codes.Unavailable, "connection refused"), false},
		{status.Error(codes.DeadlineExceeded, "deadline"), false},
		{status.Error(codes.ResourceExhausted, "quota"), false},
		{status.Error(codes.PermissionDenied, "no pubsub.topics.publish"), false},
		{status.Error(codes.Internal, "oops"), false},
		{pubsub.ErrPublishingPaused{OrderingKey: "task-1"}, false},
		{context.DeadlineExceeded, false},
	} {
		got := classify(topic, "task-1", tc.err)
		if sinks.IsPermanent(got) != tc.permanent || !errors.Is(got, tc.err) {
			t.Errorf("classify(%v) = %v: permanent %v, want %v, wrapping the error", tc.err, got, sinks.IsPermanent(got), tc.permanent)
		}
	}
}

// openTest opens a sink on srv with a fresh topic and its subscription.
func openTest(t *testing.T, srv *sinktest.PubSubServer, mode sinks.ContentMode) (s *Sink, topic, sub string) {
	t.Helper()
	topic = fmt.Sprintf("unit-%d", topicSeq.Add(1))
	sub = srv.Topic(topic)
	s, err := newSink(context.Background(), Config{Project: sinktest.PubSubProject, Topic: topic, ContentMode: mode}, []string{topic}, nil,
		testPublishTimeout, sinktest.PubSubOptions(srv.Addr)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, topic, sub
}

func publish(s *Sink, batch ...sinks.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Publish(ctx, batch)
}

// pulledIDs returns the event ids of what sub holds, in order, each with
// its ordering key.
func pulledIDs(srv *sinktest.PubSubServer, sub string) []string {
	var out []string
	for _, m := range srv.Pull(sub) {
		out = append(out, m.OrderingKey+"/"+sinktest.BodyID(m.Data))
	}
	return out
}

// TestRetryAfterFailure: after a publish of a task fails, the client
// pauses the task's ordering key; the sink resumes it, so that the
// retry goes through, and the task's events are held in order.
// Without the resume the retry fails with ErrPublishingPaused.
func TestRetryAfterFailure(t *testing.T) {
	srv := sinktest.PubSub(t)
	s, _, sub := openTest(t, srv, sinks.Structured)
	m1, m2, m3 := sinktest.Event("", "task-1", "e1"), sinktest.Event("", "task-1", "e2"), sinktest.Event("", "task-1", "e3")

	// FailedPrecondition is an error the client does not retry itself.
	srv.Server.SetAutoPublishResponse(false)
	srv.Server.AddPublishResponse(nil, status.Error(codes.FailedPrecondition, "injected failure"))
	err := publish(s, m1, m2)
	var be *sinks.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 {
		t.Fatalf("Publish with the request failing: %v, want both messages failed", err)
	}
	for i, e := range be.Failed {
		if sinks.IsPermanent(e) {
			t.Errorf("message %d: a failed request is marked permanent: %v", i, e)
		}
	}
	srv.Server.SetAutoPublishResponse(true)

	if err := publish(s, m1, m2); err != nil {
		t.Fatalf("retry of the failed messages: %v", err)
	}
	if err := publish(s, m3); err != nil {
		t.Fatalf("Publish of the task's next message: %v", err)
	}
	if got, want := strings.Join(pulledIDs(srv, sub), " "), "task-1/e1 task-1/e2 task-1/e3"; got != want {
		t.Errorf("the subscription holds %q, want %q", got, want)
	}
}

// TestRetryAfterAbandonedPublish: a Publish that stops waiting (its ctx
// ended) for a message whose request then fails leaves the key paused
// in the client; the sink resumes it once the outcome arrives, so the
// first retry after that goes through.
func TestRetryAfterAbandonedPublish(t *testing.T) {
	srv := sinktest.PubSub(t)
	s, _, sub := openTest(t, srv, sinks.Structured)
	m1 := sinktest.Event("", "task-1", "e1")

	// pstest holds the request until a response is queued.
	srv.Server.SetAutoPublishResponse(false)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := s.Publish(ctx, []sinks.Message{m1})
	cancel()
	if !errors.Is(sinks.MessageErr(err, 0), context.DeadlineExceeded) {
		t.Fatalf("Publish while Pub/Sub does not answer: %v, want the ctx's deadline", err)
	}
	srv.Server.AddPublishResponse(nil, status.Error(codes.FailedPrecondition, "injected failure"))
	s.watchers.Wait()
	srv.Server.SetAutoPublishResponse(true)

	if err := publish(s, m1); err != nil {
		t.Fatalf("first retry after the abandoned message failed: %v", err)
	}
	if got, want := strings.Join(pulledIDs(srv, sub), " "), "task-1/e1"; got != want {
		t.Errorf("the subscription holds %q, want %q", got, want)
	}
}

// TestNoTopic: a message whose route names no topic, on a sink with
// none, fails alone and for good.
func TestNoTopic(t *testing.T) {
	srv := sinktest.PubSub(t)
	topic := fmt.Sprintf("unit-%d", topicSeq.Add(1))
	sub := srv.Topic(topic)
	s, err := newSink(context.Background(), Config{Project: sinktest.PubSubProject}, nil, nil, testPublishTimeout, sinktest.PubSubOptions(srv.Addr)...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ok := sinktest.Event("projects/"+sinktest.PubSubProject+"/topics/"+topic, "k", "e1")
	err = publish(s, sinktest.Event("", "k", "e0"), ok)
	if e := sinks.MessageErr(err, 0); !errors.Is(e, ErrNoTopic) || !sinks.IsPermanent(e) {
		t.Errorf("message without a topic: %v, want a permanent ErrNoTopic", e)
	}
	if e := sinks.MessageErr(err, 1); e != nil {
		t.Errorf("message to a full topic name: %v", e)
	}
	if got := pulledIDs(srv, sub); len(got) != 1 || got[0] != "k/e1" {
		t.Errorf("the subscription holds %q, want [k/e1]", got)
	}
}

// TestMissingTopic: Open fails on a topic that does not exist, naming it
// and saying how to create it, unless skip_probe; a publish to it then
// fails for good.
func TestMissingTopic(t *testing.T) {
	srv := sinktest.PubSub(t)
	cfg := Config{Project: sinktest.PubSubProject}
	_, err := newSink(context.Background(), cfg, []string{"missing-topic"}, nil, testPublishTimeout, sinktest.PubSubOptions(srv.Addr)...)
	want := `pubsub: topic "projects/hookbridge-test/topics/missing-topic" does not exist: create it (gcloud pubsub topics create missing-topic --project hookbridge-test) or fix the topic (or set skip_probe: true if it comes later)`
	if err == nil || err.Error() != want {
		t.Errorf("Open with a missing topic: %v, want %s", err, want)
	}
	cfg.SkipProbe = true
	s, err := newSink(context.Background(), cfg, []string{"missing-topic"}, nil, testPublishTimeout, sinktest.PubSubOptions(srv.Addr)...)
	if err != nil {
		t.Fatalf("Open with skip_probe: %v", err)
	}
	defer s.Close(context.Background())
	err = publish(s, sinktest.Event("missing-topic", "k", "e1"))
	if e := sinks.MessageErr(err, 0); !sinks.IsPermanent(e) || !strings.Contains(e.Error(), "gcloud pubsub topics create missing-topic") {
		t.Errorf("publish to a missing topic: %v, want a permanent error saying how to create it", e)
	}
}

// TestEmulatorHost: with PUBSUB_EMULATOR_HOST set and no endpoint, the
// client library itself reaches the emulator in plaintext and without
// credentials; the sink, opened as the config loader opens it, needs
// nothing else. With an endpoint too, Open refuses to guess.
func TestEmulatorHost(t *testing.T) {
	srv := sinktest.PubSub(t)
	topic := fmt.Sprintf("emulated-%d", topicSeq.Add(1))
	sub := srv.Topic(topic)
	t.Setenv(EmulatorHostEnv, srv.Addr)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent") // no credentials are read

	c := Kind.NewConfig()
	*c.(*Config) = Config{Project: sinktest.PubSubProject, Topic: topic}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := c.Open(context.Background(), nil, nil) // probes the default topic
	if err != nil {
		t.Fatalf("Open with %s=%s: %v", EmulatorHostEnv, srv.Addr, err)
	}
	if err := publish(s.(*Sink), sinktest.Event("", "k", "e1")); err != nil {
		t.Fatalf("Publish through the emulator: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := pulledIDs(srv, sub); len(got) != 1 || got[0] != "k/e1" {
		t.Errorf("the subscription holds %q, want [k/e1]", got)
	}

	c.(*Config).Endpoint = "europe-west1-pubsub.googleapis.com:443"
	_, err = c.Open(context.Background(), nil, nil)
	want := "endpoint: PUBSUB_EMULATOR_HOST is set too (" + srv.Addr + "): unset it to publish to europe-west1-pubsub.googleapis.com:443, or remove endpoint to use the emulator"
	if err == nil || err.Error() != want {
		t.Errorf("Open with an endpoint and %s: %v, want %s", EmulatorHostEnv, err, want)
	}
}

// TestContentModes: what a consumer pulls with the client library, in
// each mode: the data, the Content-Type and ce- attributes of the
// CloudEvents Pub/Sub binding, the W3C trace context, and the ordering
// key. A binary event with an attribute Pub/Sub cannot carry goes
// structured.
func TestContentModes(t *testing.T) {
	traced := sinktest.Event("", "task-1", "e1")
	traced.Attrs = append(traced.Attrs, sinks.Attr{Name: "traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	long := sinktest.Event("", "", "e2")
	long.Attrs = append(long.Attrs, sinks.Attr{Name: "deadletterreason", Value: strings.Repeat("x", maxAttrValue+1)})
	data, err := traced.Data()
	if err != nil {
		t.Fatal(err)
	}
	structured := func(m sinks.Message) (string, map[string]string) {
		attrs := map[string]string{"Content-Type": sinks.StructuredContentType}
		if tp := m.Attr("traceparent"); tp != "" {
			attrs["traceparent"] = tp
		}
		return string(m.Body), attrs
	}
	binaryAttrs := map[string]string{}
	for _, a := range traced.Attrs {
		if a.Name == "datacontenttype" {
			binaryAttrs["Content-Type"] = a.Value
		} else {
			binaryAttrs["ce-"+a.Name] = a.Value
		}
	}
	binaryAttrs["traceparent"] = traced.Attr("traceparent") // in either mode
	for _, mode := range []sinks.ContentMode{sinks.Structured, sinks.Binary} {
		t.Run(string(mode), func(t *testing.T) {
			srv := sinktest.PubSub(t)
			s, _, sub := openTest(t, srv, mode)
			if err := publish(s, traced); err != nil {
				t.Fatal(err)
			}
			if err := publish(s, long); err != nil {
				t.Fatal(err)
			}
			got := srv.Pull(sub)
			if len(got) != 2 {
				t.Fatalf("the subscription holds %d messages, want 2", len(got))
			}
			byKey := map[string]*pubsubpb.PubsubMessage{got[0].OrderingKey: got[0], got[1].OrderingKey: got[1]}
			wantData, wantAttrs := structured(traced)
			if mode == sinks.Binary {
				wantData, wantAttrs = string(data), binaryAttrs
			}
			check(t, "traced event", byKey["task-1"], wantData, wantAttrs)
			// Binary or not, the long attribute goes structured.
			wantData, wantAttrs = structured(long)
			check(t, "event with a long attribute", byKey[""], wantData, wantAttrs)
		})
	}
}

func check(t *testing.T, name string, m *pubsubpb.PubsubMessage, data string, attrs map[string]string) {
	t.Helper()
	if m == nil {
		t.Errorf("%s: not held with its ordering key", name)
		return
	}
	if string(m.Data) != data {
		t.Errorf("%s: data %.200q, want %.200q", name, m.Data, data)
	}
	if fmt.Sprint(m.Attributes) != fmt.Sprint(attrs) {
		t.Errorf("%s: attributes %v, want %v", name, m.Attributes, attrs)
	}
}

// TestOrderingKeyLimit: a task id Pub/Sub would refuse as an ordering
// key (over 1024 bytes, or not UTF-8) is replaced by its hash, which
// keeps a task's events on one key.
func TestOrderingKeyLimit(t *testing.T) {
	for _, tc := range []struct {
		key       string
		unchanged bool
	}{
		{"task-1", true},
		{strings.Repeat("k", maxOrderingKey), true},
		{strings.Repeat("k", maxOrderingKey+1), false},
		{"not utf-8 \xff", false},
	} {
		got := orderingKey(tc.key)
		switch {
		case tc.unchanged && got != tc.key:
			t.Errorf("orderingKey(%.20q) = %.20q, want it unchanged", tc.key, got)
		case !tc.unchanged && (len(got) != 64 || got != orderingKey(tc.key)):
			t.Errorf("orderingKey(%.20q) = %q, want a stable 64-character hash", tc.key, got)
		}
	}
}

// TestProbeUnreachable: Open fails, within its ctx, when Pub/Sub does
// not answer, saying what to check; skip_probe starts all the same.
func TestProbeUnreachable(t *testing.T) {
	srv := sinktest.PubSub(t)
	addr := srv.Addr
	srv.Close()
	cfg := Config{Project: sinktest.PubSubProject}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := newSink(ctx, cfg, []string{"tasks"}, nil, testPublishTimeout, sinktest.PubSubOptions(addr)...)
	if err == nil || sinks.IsPermanent(err) || !strings.Contains(err.Error(), `pubsub: cannot reach topic "projects/hookbridge-test/topics/tasks"`) ||
		!strings.Contains(err.Error(), "set skip_probe: true") {
		t.Errorf("Open with Pub/Sub down: %v, want an error saying it cannot reach the topic", err)
	}
	cfg.SkipProbe = true
	s, err := newSink(context.Background(), cfg, []string{"tasks"}, nil, testPublishTimeout, sinktest.PubSubOptions(addr)...)
	if err != nil {
		t.Fatalf("Open with skip_probe and Pub/Sub down: %v", err)
	}
	s.Close(context.Background())
}
