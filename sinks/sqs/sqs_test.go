package sqs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// env is kumo (sinktest.SQS: queues, counts, drains) and the sink's own
// helpers on it.
type env struct {
	*sinktest.SQSServer
	t testing.TB
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return &env{SQSServer: sinktest.SQS(t), t: t}
}

func (h *env) config(queueURL string) Config {
	return Config{QueueURL: queueURL, Region: "us-east-1", Endpoint: h.URL, AccessKeyID: "x", SecretAccessKey: "x"}
}

func (h *env) sink(cfg Config, queues ...string) *Sink {
	h.t.Helper()
	s, err := New(context.Background(), cfg, queues, slog.New(slog.DiscardHandler))
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	h.t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// event is a message shaped like the bridge's with two attributes more:
// ten in all, as many as SQS carries, so binary mode sends each.
func event(task, id string) sinks.Message {
	m := sinktest.Event("", task, id)
	m.Attrs = append(m.Attrs,
		sinks.Attr{Name: "browseruseenvelope", Value: `{"type":"agent.task.status_update"}`},
		sinks.Attr{Name: "extra", Value: "the tenth"})
	return m
}

func TestPublishStandard(t *testing.T) {
	h := newEnv(t)
	for _, mode := range []sinks.ContentMode{sinks.Structured, sinks.Binary} {
		t.Run(string(mode), func(t *testing.T) {
			q := h.Queue("tasks-" + string(mode))
			cfg := h.config(q)
			cfg.ContentMode = mode
			s := h.sink(cfg)
			batch := []sinks.Message{event("t1", "e1"), event("t2", "e2"), event("t3", "e3")}
			if err := s.Publish(context.Background(), batch); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			want := map[string]sinks.Message{}
			for _, m := range batch {
				want[m.ID] = m
			}
			for _, got := range h.Drain(q, 3) {
				attrs := map[string]string{}
				for k, v := range got.MessageAttributes {
					if aws.ToString(v.DataType) != "String" {
						t.Errorf("attribute %s has type %q, want String", k, aws.ToString(v.DataType))
					}
					attrs[k] = aws.ToString(v.StringValue)
				}
				body := []byte(aws.ToString(got.Body))
				id := sinktest.BodyID(body)
				if mode == sinks.Binary {
					id = attrs["ce_id"]
				}
				m, ok := want[id]
				if !ok {
					t.Fatalf("unexpected message %v %q", attrs, body)
				}
				delete(want, id)
				wantBody, wantAttrs := m.Body, map[string]string{"content-type": sinks.StructuredContentType}
				if mode == sinks.Binary {
					wantBody, _ = m.Data()
					wantAttrs = map[string]string{"content-type": "application/json"}
					for _, a := range m.Attrs {
						if a.Name != "datacontenttype" {
							wantAttrs["ce_"+a.Name] = a.Value
						}
					}
				}
				if !bytes.Equal(body, wantBody) {
					t.Errorf("body of %s:\n got %s\nwant %s", id, body, wantBody)
				}
				if !maps.Equal(attrs, wantAttrs) {
					t.Errorf("attributes of %s:\n got %v\nwant %v", id, attrs, wantAttrs)
				}
			}
		})
	}
}

// TestBinaryFallsBackToStructured: an event whose attributes SQS cannot
// carry in binary mode (more than ten, or an empty one) is sent whole,
// structured, and says so in its content-type: nothing is dropped.
func TestBinaryFallsBackToStructured(t *testing.T) {
	traced := event("t1", "e1")
	traced.Attrs = append(traced.Attrs, sinks.Attr{Name: "traceparent", Value: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	empty := sinktest.Event("", "t2", "e2")
	empty.Attrs[4].Value = "" // subject
	rejected := sinktest.Event("", "t3", "e3")
	rejected.Attrs[4].Value = "bad\x00id" // SQS refuses U+0000
	var logged bytes.Buffer
	s := &Sink{cfg: Config{ContentMode: sinks.Binary}, log: slog.New(slog.NewTextHandler(&logged, nil))}
	for name, m := range map[string]sinks.Message{"eleven attributes": traced, "an empty attribute": empty, "a character SQS rejects": rejected} {
		e, err := s.buildEntry(0, &m, false)
		if err != nil {
			t.Fatal(err)
		}
		got := e.req.MessageAttributes
		if aws.ToString(got["content-type"].StringValue) != sinks.StructuredContentType || aws.ToString(e.req.MessageBody) != string(m.Body) {
			t.Errorf("%s: attributes %v, body %s: want the structured event", name, slices.Sorted(maps.Keys(got)), aws.ToString(e.req.MessageBody))
		}
		for k := range got {
			if strings.HasPrefix(k, "ce_") {
				t.Errorf("%s: structured message has attribute %s", name, k)
			}
		}
	}
	if n := strings.Count(logged.String(), "did not fit binary mode"); n != 1 {
		t.Errorf("logged the fallback %d times, want once:\n%s", n, logged.String())
	}
	e, err := s.buildEntry(0, &[]sinks.Message{event("t3", "e3")}[0], false)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.req.MessageAttributes); n != 10 || e.req.MessageGroupId != nil || e.req.MessageDeduplicationId != nil {
		t.Errorf("ten attributes in binary: sent %d, FIFO ids %v %v", n, e.req.MessageGroupId, e.req.MessageDeduplicationId)
	}
}

func TestPublishMoreThanTen(t *testing.T) {
	h := newEnv(t)
	q := h.Queue("many")
	s := h.sink(h.config(q))
	var batch []sinks.Message
	for i := range 23 {
		batch = append(batch, event(fmt.Sprintf("t%d", i), fmt.Sprintf("e%d", i)))
	}
	if err := s.Publish(context.Background(), batch); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	var want []string
	for _, m := range batch {
		want = append(want, string(m.Body))
	}
	sameBodies(t, sinktest.Bodies(h.Drain(q, len(batch))), want)
}

// sameBodies fails unless got and want hold the same bodies, in any order.
func sameBodies(t *testing.T, got, want []string) {
	t.Helper()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("bodies differ:\n got %v\nwant %v", got, want)
	}
}

func TestPublishSplitsBySize(t *testing.T) {
	h := newEnv(t)
	q := h.Queue("big")
	s := h.sink(h.config(q))
	// Four messages of ~100 KiB: at most two fit one 256 KiB request.
	var batch []sinks.Message
	for i := range 4 {
		m := event("t", fmt.Sprintf("e%d", i))
		m.Body = []byte(fmt.Sprintf(`{"id":"e%d","pad":%q}`, i, strings.Repeat("x", 100*1024)))
		batch = append(batch, m)
	}
	if err := s.Publish(context.Background(), batch); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if n := h.Count(q); n != 4 {
		t.Fatalf("%d messages in the queue, want 4", n)
	}
}

func TestPublishFIFO(t *testing.T) {
	h := newEnv(t)
	q := h.Queue("tasks.fifo")
	s := h.sink(h.config(q))
	ctx := context.Background()

	// The same event twice, in two Publish calls: SQS keeps one.
	dup := event("task-a", "a1")
	for range 2 {
		if err := s.Publish(ctx, []sinks.Message{dup}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	if n := h.Count(q); n != 1 {
		t.Fatalf("%d messages after publishing one event twice, want 1", n)
	}
	// More events of task-a, interleaved with task-b, some in one batch
	// over two requests, one with no task id.
	var batch []sinks.Message
	for i := 2; i <= 12; i++ {
		batch = append(batch, event("task-a", fmt.Sprintf("a%d", i)), event("task-b", fmt.Sprintf("b%d", i)))
	}
	noTask := event("", "n1")
	batch = append(batch, noTask)
	if err := s.Publish(ctx, batch); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := s.Publish(ctx, []sinks.Message{event("task-a", "a13")}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got := h.Drain(q, 1+len(batch)+1)
	var order []string
	sawNoTask := false
	for _, m := range got {
		var b struct{ ID, Subject string }
		if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &b); err != nil {
			t.Fatal(err)
		}
		switch b.Subject {
		case "task-a":
			order = append(order, b.ID)
		case "":
			sawNoTask = true
		}
	}
	var want []string
	for i := 1; i <= 13; i++ {
		want = append(want, fmt.Sprintf("a%d", i))
	}
	if !slices.Equal(order, want) {
		t.Fatalf("task-a events came out as %v, want %v", order, want)
	}
	if !sawNoTask {
		t.Fatal("the message without task id did not arrive")
	}
}

func TestFIFOEntryIDs(t *testing.T) {
	m := event("", "ev")
	e, err := (&Sink{}).buildEntry(3, &m, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(e.req.MessageGroupId); got != noTaskGroup {
		t.Errorf("group %q, want %q", got, noTaskGroup)
	}
	if got := aws.ToString(e.req.MessageDeduplicationId); got != "ev" {
		t.Errorf("dedup id %q, want ev", got)
	}
	if got := aws.ToString(e.req.Id); got != "3" {
		t.Errorf("entry id %q, want 3", got)
	}
}

func TestFIFOIDReplaced(t *testing.T) {
	long := strings.Repeat("k", 129)
	for in, want := range map[string]string{
		"task-1":                 "task-1",
		strings.Repeat("k", 128): strings.Repeat("k", 128),
	} {
		if got := fifoID(in); got != want {
			t.Errorf("fifoID(%q) = %q", in, got)
		}
	}
	for _, in := range []string{long, "has space", "tâche"} {
		got := fifoID(in)
		if len(got) != 64 || got != fifoID(in) || fifoID(got) != got {
			t.Errorf("fifoID(%q) = %q, want a stable 64-char hash", in, got)
		}
	}
}

// batchErr returns the *sinks.BatchError in err, failing the test if
// there is none.
func batchErr(t *testing.T, err error) *sinks.BatchError {
	t.Helper()
	var be *sinks.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Publish returned %v, want a *sinks.BatchError", err)
	}
	return be
}

func failedIndexes(be *sinks.BatchError) []int {
	return slices.Sorted(maps.Keys(be.Failed))
}

func TestPartialFailureRejectedBySQS(t *testing.T) {
	h := newEnv(t)
	q := h.Queue("partial")
	s := h.sink(h.config(q))
	batch := []sinks.Message{event("t", "e0"), event("t", "e1"), event("t", "e2")}
	batch[1].Body = nil // SQS rejects an empty body for this entry only
	be := batchErr(t, s.Publish(context.Background(), batch))
	if got := failedIndexes(be); !slices.Equal(got, []int{1}) {
		t.Fatalf("failed %v, want [1]", got)
	}
	var se *SendError
	if !errors.As(be.Failed[1], &se) {
		t.Fatalf("error %v is not a *SendError", be.Failed[1])
	}
	if se.Code != "MissingParameter" || !se.SenderFault || se.QueueURL != q || se.Message == "" {
		t.Fatalf("SendError %+v", se)
	}
	if sinks.MessageErr(be, 0) != nil || sinks.MessageErr(be, 2) != nil {
		t.Fatal("confirmed messages reported as failed")
	}
	got := sinktest.Bodies(h.Drain(q, 2))
	slices.Sort(got)
	if want := []string{string(batch[0].Body), string(batch[2].Body)}; !slices.Equal(got, want) {
		t.Fatalf("bodies %v, want %v", got, want)
	}
}

func TestPartialFailureFIFONoDedupID(t *testing.T) {
	h := newEnv(t)
	q := h.Queue("nodedup.fifo") // no ContentBasedDeduplication
	s := h.sink(h.config(q))
	batch := []sinks.Message{event("t", "e0"), event("t", ""), event("u", "e2")}
	be := batchErr(t, s.Publish(context.Background(), batch))
	if got := failedIndexes(be); !slices.Equal(got, []int{1}) {
		t.Fatalf("failed %v, want [1]", got)
	}
	var se *SendError
	if !errors.As(be.Failed[1], &se) || se.Code != "InvalidParameterValue" {
		t.Fatalf("error %v, want an InvalidParameterValue *SendError", be.Failed[1])
	}
	h.Drain(q, 2)
}

func TestPartialFailureLocal(t *testing.T) {
	h := newEnv(t)
	q := h.Queue("local")
	cfg := h.config(q)
	cfg.ContentMode = sinks.Binary // so that attributes are checked too
	s := h.sink(cfg)
	batch := []sinks.Message{event("t", "e0"), event("t", "e1"), event("t", "e2"), event("t", "e3")}
	batch[1].Body = []byte(`{"data":"` + strings.Repeat("x", maxBatchBytes) + `"}`)
	batch[3].Body = []byte("{\"data\":\"bad\x00id\"}")
	be := batchErr(t, s.Publish(context.Background(), batch))
	if got := failedIndexes(be); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("failed %v, want [1 3]", got)
	}
	if !errors.Is(be.Failed[1], ErrTooLarge) || !strings.Contains(be.Failed[1].Error(), "too large") {
		t.Errorf("message 1: %v, want ErrTooLarge", be.Failed[1])
	}
	if !errors.Is(be.Failed[3], ErrInvalidChars) || !strings.Contains(be.Failed[3].Error(), "body") {
		t.Errorf("message 3: %v, want ErrInvalidChars naming the body", be.Failed[3])
	}
	got := sinktest.Bodies(h.Drain(q, 2))
	slices.Sort(got)
	data0, _ := batch[0].Data()
	data2, _ := batch[2].Data()
	if want := []string{string(data0), string(data2)}; !slices.Equal(got, want) {
		t.Fatalf("bodies %v, want %v", got, want)
	}
}

func TestValidChars(t *testing.T) {
	for s, want := range map[string]bool{
		"":                  true,
		"plain {\"json\"}":  true,
		"tab\tnl\ncr\r":     true,
		"é, 日本, \U0001F600": true,
		"\uFFFD":            true,
		"nul\x00":           false,
		"bell\x07":          false,
		"bad utf8 \xff":     false,
		"\uFFFE":            false,
		"\uFFFF":            false,
	} {
		if got := validString(s); got != want {
			t.Errorf("validString(%q) = %v, want %v", s, got, want)
		}
		if got := validChars([]byte(s)); got != want {
			t.Errorf("validChars(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestRouting(t *testing.T) {
	h := newEnv(t)
	q1, q2 := h.Queue("one"), h.Queue("two.fifo")
	s := h.sink(h.config(""), q1, q2) // no default queue
	batch := []sinks.Message{event("t", "e0"), event("t", "e1"), event("t", "e2"), event("t", "e3")}
	batch[0].Target = q1
	batch[1].Target = q2
	batch[3].Target = q1
	be := batchErr(t, s.Publish(context.Background(), batch))
	if got := failedIndexes(be); !slices.Equal(got, []int{2}) {
		t.Fatalf("failed %v, want [2]", got)
	}
	if !errors.Is(be.Failed[2], ErrNoQueue) {
		t.Fatalf("message 2: %v, want ErrNoQueue", be.Failed[2])
	}
	got := sinktest.Bodies(h.Drain(q1, 2))
	slices.Sort(got)
	if want := []string{string(batch[0].Body), string(batch[3].Body)}; !slices.Equal(got, want) {
		t.Fatalf("queue one got %v, want %v", got, want)
	}
	if got := sinktest.Bodies(h.Drain(q2, 1)); got[0] != string(batch[1].Body) {
		t.Fatalf("queue two got %v", got)
	}

	// A default queue takes the messages with no target.
	s2 := h.sink(h.config(q2), q1)
	if err := s2.Publish(context.Background(), []sinks.Message{event("t", "e9")}); err != nil {
		t.Fatal(err)
	}
	h.Drain(q2, 1)
}

func TestProbe(t *testing.T) {
	h := newEnv(t)
	good := h.Queue("exists")
	missing := good + "-missing"
	cfg := h.config(good)
	_, err := New(context.Background(), cfg, []string{missing}, nil)
	if err == nil {
		t.Fatal("New succeeded with a missing queue")
	}
	for _, want := range []string{fmt.Sprintf("queue %q does not exist", missing), "create it or fix the queue_url", "skip_probe: true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	t.Log(err)
	cfg.SkipProbe = true
	h.sink(cfg, missing)

	// An unreachable endpoint names the queue too.
	down := newEnv(t)
	down.Server.Close()
	cfg = h.config(good)
	cfg.Endpoint = down.URL
	_, err = New(context.Background(), cfg, nil, nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("cannot reach queue %q", good)) || !strings.Contains(err.Error(), "skip_probe: true") {
		t.Fatalf("New with an unreachable endpoint: %v", err)
	}
	t.Log(err)
}

func TestCloseThenPublish(t *testing.T) {
	h := newEnv(t)
	q := h.Queue("closing")
	s, err := New(context.Background(), h.config(q), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(context.Background(), []sinks.Message{event("t", "e")}); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}

func TestRegion(t *testing.T) {
	for raw, want := range map[string]string{
		"https://sqs.eu-west-1.amazonaws.com/123456789012/q":          "eu-west-1",
		"https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q.fifo": "cn-north-1",
		"https://ap-south-1.queue.amazonaws.com/123456789012/q":       "ap-south-1",
		"https://queue.amazonaws.com/123456789012/q":                  "us-east-1",
		"http://localhost:4566/000000000000/q":                        "",
		"https://sqs.example.com/1/q":                                 "",
	} {
		if got := regionFromQueueURL(raw); got != want {
			t.Errorf("regionFromQueueURL(%q) = %q, want %q", raw, got, want)
		}
	}

	// No region anywhere: from the queue URL's host, else an error.
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	cfg := Config{QueueURL: "https://sqs.eu-west-1.amazonaws.com/123456789012/q", AccessKeyID: "x", SecretAccessKey: "x", SkipProbe: true}
	s, err := New(context.Background(), cfg, []string{"https://sqs.us-west-2.amazonaws.com/123456789012/other"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.region != "eu-west-1" || s.regionFor("https://sqs.us-west-2.amazonaws.com/123456789012/other") != "us-west-2" {
		t.Fatalf("region %q", s.region)
	}
	s.Close(context.Background())
	cfg.QueueURL = "https://queues.example.com/q"
	_, err = New(context.Background(), cfg, nil, nil)
	var ce *sinks.ConfigError
	if !errors.As(err, &ce) || ce.Key != "region" {
		t.Fatalf("New without a region: %v, want a region ConfigError", err)
	}
}

func TestConfig(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	tests := []struct {
		name string
		cfg  Config
		want []string // "key: problem", in order
	}{
		{"empty", Config{}, nil},
		{"ok", Config{QueueURL: " https://sqs.us-east-1.amazonaws.com/1/q ", Region: "us-east-1", Endpoint: "http://localhost:4566", AccessKeyID: "AK", SecretAccessKey: secret, SessionToken: "tok"}, nil},
		{"queue not a URL", Config{QueueURL: "tasks"}, []string{
			`queue_url: "tasks" is not an http(s) URL: write the queue's URL, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/tasks`}},
		{"queue wrong scheme", Config{QueueURL: "sqs://x/q"}, []string{
			`queue_url: "sqs://x/q" is not an http(s) URL: write the queue's URL, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/tasks`}},
		{"queue without path", Config{QueueURL: "https://sqs.us-east-1.amazonaws.com/"}, []string{
			`queue_url: "https://sqs.us-east-1.amazonaws.com/" names no queue: write the queue's URL, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/tasks`}},
		{"region", Config{Region: "US East"}, []string{
			`region: "US East" is not a region: write e.g. us-east-1`}},
		{"endpoint", Config{Endpoint: "localhost:4566"}, []string{
			`endpoint: "localhost:4566" is not an http(s) URL: write e.g. http://localhost:4566`}},
		{"endpoint credentials", Config{Endpoint: "http://user:pass-word@localhost:4566"}, []string{
			`endpoint: "http://localhost:4566" holds credentials: remove them and use access_key_id and secret_access_key`}},
		{"key without secret", Config{AccessKeyID: "AK"}, []string{
			`secret_access_key: missing: access_key_id needs secret_access_key (or remove both to use the default credential chain)`}},
		{"secret without key", Config{SecretAccessKey: secret}, []string{
			`access_key_id: missing: secret_access_key needs access_key_id (or remove both to use the default credential chain)`}},
		{"token alone", Config{SessionToken: secret}, []string{
			`session_token: a session token needs access_key_id and secret_access_key`}},
		{"several", Config{QueueURL: "q", Endpoint: "x", SecretAccessKey: secret}, []string{
			`queue_url: "q" is not an http(s) URL: write the queue's URL, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/tasks`,
			`endpoint: "x" is not an http(s) URL: write e.g. http://localhost:4566`,
			`access_key_id: missing: secret_access_key needs access_key_id (or remove both to use the default credential chain)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.SetDefaults()
			again := cfg
			again.SetDefaults()
			if again != cfg {
				t.Fatal("SetDefaults is not idempotent")
			}
			err := cfg.Validate()
			got := sinktest.Problems(t, err)
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Fatalf("error shows the secret: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Validate:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	c := Config{QueueURL: " https://sqs.us-east-1.amazonaws.com/1/q\n"}
	c.SetDefaults()
	if c.QueueURL != "https://sqs.us-east-1.amazonaws.com/1/q" {
		t.Fatalf("SetDefaults left %q", c.QueueURL)
	}
}

func TestSecretNeverInErrors(t *testing.T) {
	const secret = "s3cr3t-Value-That-Must-Not-Leak"
	h := newEnv(t)
	q := h.Queue("secret")
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	cfg := h.config(q)
	cfg.SecretAccessKey = secret
	cfg.SessionToken = secret
	// Validation, probe of a missing queue, unreachable endpoint.
	bad := cfg
	bad.AccessKeyID = ""
	collect(bad.Validate())
	_, err := New(context.Background(), bad, nil, nil)
	collect(err)
	_, err = New(context.Background(), cfg, []string{q + "-missing"}, nil)
	collect(err)
	down := newEnv(t)
	down.Server.Close()
	unreachable := cfg
	unreachable.Endpoint = down.URL
	_, err = New(context.Background(), unreachable, nil, nil)
	collect(err)
	// Publish failures: missing queue, rejected entry, too large.
	cfg.SkipProbe = true
	s := h.sink(cfg)
	m := event("t", "e")
	m.Target = q + "-missing"
	collect(s.Publish(context.Background(), []sinks.Message{m}))
	empty := event("t", "e")
	empty.Body = nil
	collect(s.Publish(context.Background(), []sinks.Message{empty}))
	if len(errs) != 6 {
		t.Fatalf("%d errors, want 6: %v", len(errs), errs)
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%+v", err), secret) {
			t.Fatalf("error shows the secret: %v", err)
		}
	}
}

// gate is a proxy in front of kumo that holds SendMessageBatch requests
// until let through, so that tests can fill every request slot of a
// queue and pile units up behind them.
type gate struct {
	proxy *httputil.ReverseProxy
	pass  chan struct{} // a token lets one held request through; closed, all
	once  sync.Once

	mu      sync.Mutex
	held    int // requests held now
	entries int // their entries
}

// gate starts a gate in front of h's kumo and returns it with its URL.
func (h *env) gate() (*gate, string) {
	h.t.Helper()
	target, err := url.Parse(h.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	g := &gate{proxy: httputil.NewSingleHostReverseProxy(target), pass: make(chan struct{})}
	g.proxy.ErrorLog = log.New(io.Discard, "", 0) // a client that gave up
	srv := httptest.NewServer(g)
	h.t.Cleanup(srv.Close)
	h.t.Cleanup(g.open) // before srv.Close, which waits for held requests
	return g, srv.URL
}

// gatedSink returns a sink whose requests go through a gate, and a new
// queue named after name, the sink's default.
func (h *env) gatedSink(name string) (*Sink, *gate, string) {
	h.t.Helper()
	g, endpoint := h.gate()
	q := h.Queue(name)
	cfg := h.config(q)
	cfg.Endpoint = endpoint
	s := h.sink(cfg)
	h.t.Cleanup(g.open) // before the sink's Close, which waits for held requests
	return s, g, q
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") == "AmazonSQS.SendMessageBatch" {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var in struct{ Entries []json.RawMessage }
		json.Unmarshal(body, &in)
		g.mu.Lock()
		g.held++
		g.entries += len(in.Entries)
		g.mu.Unlock()
		select {
		case <-g.pass:
		case <-r.Context().Done():
		}
		g.mu.Lock()
		g.held--
		g.entries -= len(in.Entries)
		g.mu.Unlock()
		if r.Context().Err() != nil {
			return // the client gave up: the request does not land
		}
	}
	g.proxy.ServeHTTP(w, r)
}

// open lets every request through, now and later.
func (g *gate) open() { g.once.Do(func() { close(g.pass) }) }

func (g *gate) counts() (held, entries int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.entries
}

// queued is the number of units waiting on queueURL's coalescer.
func queued(s *Sink, queueURL string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.queues[queueURL]; c != nil {
		return len(c.waiting)
	}
	return 0
}

// publishAsync publishes m in a goroutine; the channel gets the result.
func publishAsync(ctx context.Context, s *Sink, m sinks.Message) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Publish(ctx, []sinks.Message{m}) }()
	return done
}

// fill publishes one message at a time until every request slot of
// queueURL is held at g, and returns the messages and their results.
func fill(t *testing.T, s *Sink, g *gate, queueURL string) ([]sinks.Message, []<-chan error) {
	t.Helper()
	var msgs []sinks.Message
	var results []<-chan error
	for i := range maxInFlight {
		m := event("blocker", fmt.Sprintf("blocker-%d", i))
		msgs = append(msgs, m)
		results = append(results, publishAsync(context.Background(), s, m))
		sinktest.WaitFor(t, fmt.Sprintf("%d requests held", i+1), func() bool { held, _ := g.counts(); return held == i+1 })
	}
	return msgs, results
}

func wantNil(t *testing.T, what string, results ...<-chan error) {
	t.Helper()
	for _, r := range results {
		if err := <-r; err != nil {
			t.Errorf("%s: Publish: %v", what, err)
		}
	}
}

func TestCoalesceConcurrent(t *testing.T) {
	for _, name := range []string{"burst", "burst.fifo"} {
		t.Run(name, func(t *testing.T) {
			h := newEnv(t)
			s, g, q := h.gatedSink(name)
			const n = 200
			want := make([]string, n)
			results := make([]<-chan error, n)
			for i := range n {
				m := event(fmt.Sprintf("task-%d", i%20), fmt.Sprintf("ev-%d", i))
				want[i] = string(m.Body)
				results[i] = publishAsync(context.Background(), s, m)
			}
			// Hold the first requests until every message is in one
			// of them or queued: the queued ones must share requests.
			sinktest.WaitFor(t, "all messages held or queued", func() bool {
				held, entries := g.counts()
				return held == maxInFlight && entries+queued(s, q) == n
			})
			g.open()
			wantNil(t, "concurrent", results...)
			st := s.Stats()
			t.Logf("%d requests for %d messages: %.1f messages per request", st.Requests, st.Messages, float64(st.Messages)/float64(st.Requests))
			// The held requests hold at least one message each; the rest
			// go out in full requests.
			if most := int64(maxInFlight + (n-maxInFlight+maxEntries-1)/maxEntries); st.Messages != n || st.Requests > most {
				t.Errorf("stats %+v, want %d messages in at most %d requests", st, n, most)
			}
			sameBodies(t, sinktest.Bodies(h.Drain(q, n)), want)
			if left := h.Count(q); left != 0 {
				t.Fatalf("%d messages left after the drain", left)
			}
		})
	}
}

func TestCoalesceFailingEntry(t *testing.T) {
	h := newEnv(t)
	s, g, q := h.gatedSink("shared")
	blockers, blocked := fill(t, s, g, q)
	good1, bad, good2 := event("a", "a1"), event("b", "b1"), event("c", "c1")
	bad.Body = nil // SQS rejects an empty body for this entry only
	r1, rBad, r2 := publishAsync(context.Background(), s, good1), publishAsync(context.Background(), s, bad), publishAsync(context.Background(), s, good2)
	sinktest.WaitFor(t, "3 queued", func() bool { return queued(s, q) == 3 })
	g.open()
	wantNil(t, "blocker", blocked...)
	wantNil(t, "good message", r1, r2)
	be := batchErr(t, <-rBad)
	if got := failedIndexes(be); !slices.Equal(got, []int{0}) {
		t.Fatalf("failed %v, want [0]", got)
	}
	var se *SendError
	if !errors.As(be.Failed[0], &se) || se.Code != "MissingParameter" || !se.SenderFault || !sinks.IsPermanent(be.Failed[0]) {
		t.Fatalf("error %v, want a permanent MissingParameter *SendError", be.Failed[0])
	}
	if st := s.Stats(); st.Requests != maxInFlight+1 || st.Messages != maxInFlight+3 {
		t.Fatalf("stats %+v, want the 3 queued messages in one request", st)
	}
	want := []string{string(good1.Body), string(good2.Body)}
	for _, m := range blockers {
		want = append(want, string(m.Body))
	}
	sameBodies(t, sinktest.Bodies(h.Drain(q, maxInFlight+2)), want)
}

func TestCoalesceCancelQueued(t *testing.T) {
	h := newEnv(t)
	s, g, q := h.gatedSink("cancel-queued")
	_, blocked := fill(t, s, g, q)
	ctx, cancel := context.WithCancel(context.Background())
	rX := publishAsync(ctx, s, event("x", "x1"))
	y := event("y", "y1")
	rY := publishAsync(context.Background(), s, y)
	sinktest.WaitFor(t, "2 queued", func() bool { return queued(s, q) == 2 })
	cancel()
	err := sinks.MessageErr(<-rX, 0) // while every request is still held
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "not sent") {
		t.Fatalf("cancelled Publish: %v, want context.Canceled, not sent", err)
	}
	if n := queued(s, q); n != 1 {
		t.Fatalf("%d units queued after the cancel, want 1", n)
	}
	g.open()
	wantNil(t, "blocker", blocked...)
	wantNil(t, "other", rY)
	got := sinktest.Bodies(h.Drain(q, maxInFlight+1))
	if !slices.Contains(got, string(y.Body)) {
		t.Fatal("the other message did not arrive")
	}
}

func TestCoalesceCancelInFlight(t *testing.T) {
	h := newEnv(t)
	s, g, q := h.gatedSink("cancel-inflight")
	_, blocked := fill(t, s, g, q)
	// Nine callers that give up and one that waits share a request;
	// whoever starts it, the one left waiting keeps it going.
	ctx, cancel := context.WithCancel(context.Background())
	var quitters []<-chan error
	for i := range maxEntries - 1 {
		quitters = append(quitters, publishAsync(ctx, s, event("x", fmt.Sprintf("x%d", i))))
	}
	sinktest.WaitFor(t, "9 queued", func() bool { return queued(s, q) == maxEntries-1 })
	waiter := publishAsync(context.Background(), s, event("y", "y1"))
	sinktest.WaitFor(t, "10 queued", func() bool { return queued(s, q) == maxEntries })
	g.pass <- struct{}{} // one blocker through: the ten share the freed slot
	sinktest.WaitFor(t, "the ten held in one request", func() bool {
		held, entries := g.counts()
		return held == maxInFlight && entries == maxInFlight-1+maxEntries
	})
	cancel()
	for _, r := range quitters {
		err := sinks.MessageErr(<-r, 0)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "gave up waiting") {
			t.Fatalf("cancelled Publish: %v, want context.Canceled, gave up waiting", err)
		}
	}
	g.open()
	wantNil(t, "blocker", blocked...)
	wantNil(t, "waiter", waiter) // the request was not aborted with the others
	// The others landed too: they were in flight, as documented.
	h.Drain(q, maxInFlight+maxEntries)
}

func TestPublishLargeBatchInOrder(t *testing.T) {
	h := newEnv(t)
	q := h.Queue("order.fifo")
	s := h.sink(h.config(q))
	var batch []sinks.Message
	var want []string
	for i := range 25 {
		m := event("ordered", fmt.Sprintf("o%d", i))
		batch = append(batch, m)
		want = append(want, string(m.Body))
	}
	// Single messages to the same queue at the same time.
	var others []<-chan error
	for i := range 30 {
		others = append(others, publishAsync(context.Background(), s, event(fmt.Sprintf("other-%d", i), fmt.Sprintf("n%d", i))))
	}
	if err := s.Publish(context.Background(), batch); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	wantNil(t, "other", others...)
	var got []string
	for _, m := range sinktest.Bodies(h.DrainBy(q, 25+30, 1)) {
		if strings.Contains(m, `"subject":"ordered"`) {
			got = append(got, m)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the batch arrived as\n%v\nwant\n%v", got, want)
	}
}

func TestCloseWaitsForPublish(t *testing.T) {
	h := newEnv(t)
	q := h.Queue("close-wait")
	// holdOne starts a sink behind a gate and one Publish whose request
	// the gate holds.
	holdOne := func(t *testing.T) (*gate, *Sink, <-chan error) {
		g, endpoint := h.gate()
		cfg := h.config(q)
		cfg.Endpoint = endpoint
		s, err := New(context.Background(), cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		held := publishAsync(context.Background(), s, event("t", "held"))
		sinktest.WaitFor(t, "the request held", func() bool { n, _ := g.counts(); return n == 1 })
		return g, s, held
	}

	t.Run("waits", func(t *testing.T) {
		g, s, held := holdOne(t)
		closed := make(chan error, 1)
		go func() { closed <- s.Close(context.Background()) }()
		sinktest.WaitFor(t, "the sink closed", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.closed
		})
		if err := s.Publish(context.Background(), []sinks.Message{event("t", "late")}); err != errClosed {
			t.Fatalf("Publish while closing: %v, want errClosed", err)
		}
		select {
		case err := <-closed:
			t.Fatalf("Close returned %v with a request in flight", err)
		case <-time.After(50 * time.Millisecond):
		}
		g.open()
		wantNil(t, "held", held)
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		h.Drain(q, 1)
	})

	t.Run("ctx", func(t *testing.T) {
		g, s, held := holdOne(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close: %v, want context.DeadlineExceeded", err)
		}
		g.open()
		wantNil(t, "held", held) // still confirmed after Close gave up
		h.Drain(q, 1)
	})
}

func BenchmarkPublish(b *testing.B) {
	h := newEnv(b)
	msgs := make([]sinks.Message, 64)
	for i := range msgs {
		msgs[i] = event("task-"+strconv.Itoa(i), "ev-"+strconv.Itoa(i))
	}
	report := func(b *testing.B, s *Sink, before Stats) {
		st := s.Stats()
		if reqs := st.Requests - before.Requests; reqs > 0 {
			b.ReportMetric(float64(st.Messages-before.Messages)/float64(reqs), "msgs/req")
		}
	}
	b.Run("serial", func(b *testing.B) {
		s := h.sink(h.config(h.Queue("bench")))
		ctx := context.Background()
		before := s.Stats()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := s.Publish(ctx, msgs[i%len(msgs):i%len(msgs)+1]); err != nil {
				b.Fatal(err)
			}
		}
		report(b, s, before)
	})
	b.Run("parallel", func(b *testing.B) {
		s := h.sink(h.config(h.Queue("bench")))
		ctx := context.Background()
		before := s.Stats()
		b.ReportAllocs()
		b.SetParallelism(16) // 16 × GOMAXPROCS (2 here): ~32 webhooks in flight
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1))
			for pb.Next() {
				i++
				if err := s.Publish(ctx, msgs[i%len(msgs):i%len(msgs)+1]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, s, before)
	})
}
