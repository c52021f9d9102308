package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/bridge/queue/jetstream"
	"github.com/hookbridge/hookbridge/bridge/queue/local"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/sinks"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// senderParent is a webhook's incoming traceparent: the event's
// CloudEvents traceparent attribute.
const senderParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// tracingConfig is a config whose sink "bus" has plain, task-id and data
// templates.
func tracingConfig(t *testing.T, taskIDs bool) *config.Config {
	t.Helper()
	yml := fmt.Sprintf(`
sources:
  - name: browser-use
    path: /webhook
    secrets: [whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=]
sinks:
  - name: bus
    type: nats
    url: nats://127.0.0.1:4222
routes:
  - name: all
    status: ["*"]
    to:
      - {sink: bus, subject: "task.{status}"}
      - {sink: bus, subject: "by-task.{task_id}"}
      - {sink: bus, subject: "team.{data.team}"}
      - {sink: bus, subject: "https://user:pw@hooks.test/t/{task_id}?token=abc"}
telemetry:
  task_id_attribute: %v
`, taskIDs)
	cfg, err := config.Parse("tracing.yaml", []byte(yml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// recorder returns a tracer whose spans end up, synchronously, in the
// returned exporter.
func recorder(t *testing.T) (trace.Tracer, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp.Tracer("test"), exp
}

func attrsOf(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// w3c is span context sc as a traceparent.
func w3c(sc trace.SpanContext) string {
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

func tracedEvent(id, task string) *event.Event {
	return &event.Event{ID: id, TaskID: task, Status: "finished", JSON: []byte(`{"id":"` + id + `"}`),
		Attrs: []sinks.Attr{{Name: "id", Value: id}, {Name: "traceparent", Value: senderParent}}}
}

// TestSyncPublishIsAProducerSpan: a sync publish of one message is a
// "send" producer span, child of the deliver span, whose context the
// message carries in its trace headers while the event's traceparent
// attribute stays the sender's; a destination expanded from a task-id
// or data template is recorded as its template.
func TestSyncPublishIsAProducerSpan(t *testing.T) {
	tests := []struct {
		name, target string
		taskIDs      bool
		span         string
		destKey      attribute.Key
		destValue    string
	}{
		{"plain", "task.finished", false, "send task.finished", "messaging.destination.name", "task.finished"},
		{"task id hidden", "by-task.t-1", false, "send by-task.{task_id}", "messaging.destination.template", "by-task.{task_id}"},
		{"task id allowed", "by-task.t-1", true, "send by-task.t-1", "messaging.destination.name", "by-task.t-1"},
		{"data never shown", "team.ops", true, "send team.{data.team}", "messaging.destination.template", "team.{data.team}"},
		{"no credentials of a URL", "https://user:pw@hooks.test/in?token=abc#f", false, "send https://hooks.test/in", "messaging.destination.name", "https://hooks.test/in"},
		{"no credentials of a template", "https://user:pw@hooks.test/t/t-1?token=abc", false, "send https://hooks.test/t/{task_id}", "messaging.destination.template", "https://hooks.test/t/{task_id}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tracer, exp := recorder(t)
			sink := &faultySink{}
			d := NewSync(map[string]sinks.Sink{"bus": sink}, NewTracing(tracer, tracingConfig(t, tt.taskIDs)))
			ctx, deliver := tracer.Start(context.Background(), "hookbridge.deliver")
			ev := tracedEvent("e1", "t-1")
			if err := d.Deliver(ctx, ev, []route.Delivery{{Sink: "bus", Target: tt.target}}); err != nil {
				t.Fatal(err)
			}
			deliver.End()

			spans := exp.GetSpans()
			if len(spans) != 2 {
				t.Fatalf("%d spans, want send and deliver: %v", len(spans), spans)
			}
			send := spans[0]
			if send.Name != tt.span || send.SpanKind != trace.SpanKindProducer {
				t.Errorf("span %q kind %v, want %q producer", send.Name, send.SpanKind, tt.span)
			}
			if send.Parent.SpanID() != deliver.SpanContext().SpanID() || send.SpanContext.TraceID() != deliver.SpanContext().TraceID() {
				t.Errorf("send's parent %v, want the deliver span %v", send.Parent, deliver.SpanContext())
			}
			a := attrsOf(send)
			want := map[attribute.Key]string{
				"messaging.system": "nats", "messaging.operation.name": "send", "messaging.operation.type": "send",
				"messaging.message.id": "e1", "hookbridge.sink": "bus", tt.destKey: tt.destValue,
			}
			for k, v := range want {
				if a[k].AsString() != v {
					t.Errorf("%s = %q, want %q", k, a[k].AsString(), v)
				}
			}
			if v, ok := a[AttrAttempt]; ok {
				t.Errorf("a sync publish, not queued, recorded %s %v", AttrAttempt, v.String())
			}
			for _, k := range []attribute.Key{"messaging.destination.name", "messaging.destination.template"} {
				if _, ok := a[k]; ok && k != tt.destKey {
					t.Errorf("%s recorded beside %s: %v", k, tt.destKey, a[k].AsString())
				}
			}
			got := sink.snapshot()
			if len(got) != 1 || got[0].Trace.Parent != w3c(send.SpanContext) {
				t.Fatalf("published %+v, want the send span's context %s in its trace headers", got, w3c(send.SpanContext))
			}
			if got[0].Attr("traceparent") != senderParent {
				t.Errorf("the event's traceparent attribute became %q", got[0].Attr("traceparent"))
			}
		})
	}
}

// TestSpooledBatchContinuesEachWebhooksTrace: messages queued under two
// webhooks' spans and published later in one batch get a create span
// each, a child of their own webhook's span and the context their message
// carries; the batch is one client send span linking to them. A message
// that failed is marked on its create span, and its retry, alone, is a
// producer span in its webhook's trace with the attempt number. A record
// queued untraced continues the sender's traceparent.
func TestSpooledBatchContinuesEachWebhooksTrace(t *testing.T) {
	tracer, exp := recorder(t)
	q, err := local.OpenQueue(t.TempDir(), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	fails := 0
	sink := &faultySink{fail: func(m sinks.Message, attempt int) error {
		if m.ID == "b" && attempt == 1 {
			fails++
			return errors.New("broker said no")
		}
		return nil
	}}
	tracing := NewTracing(tracer, tracingConfig(t, false))
	s := NewSpool(q, []config.Sink{{Name: "bus", Retry: fastRetry}}, map[string]sinks.Sink{"bus": sink},
		Options{PublishTimeout: 5 * time.Second, Tracing: tracing})

	ctxA, spanA := tracer.Start(context.Background(), "deliver a")
	ctxB, spanB := tracer.Start(context.Background(), "deliver b")
	for _, c := range []struct {
		ctx context.Context
		ev  *event.Event
	}{{ctxA, tracedEvent("a", "t-a")}, {ctxB, tracedEvent("b", "t-b")}, {context.Background(), tracedEvent("c", "t-c")}} {
		if err := s.Deliver(c.ctx, c.ev, []route.Delivery{{Sink: "bus", Target: "task.finished"}}); err != nil {
			t.Fatal(err)
		}
	}
	spanA.End()
	spanB.End()
	s.Start(context.Background())
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for len(sink.snapshot()) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s.Stop()
	if len(sink.snapshot()) != 3 || fails != 1 {
		t.Fatalf("confirmed %d messages with %d failures, want 3 and 1", len(sink.snapshot()), fails)
	}

	parentOf := map[string]trace.SpanContext{"a": spanA.SpanContext(), "b": spanB.SpanContext()}
	var creates, sends, retries []tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		switch {
		case sp.Name == "create task.finished":
			creates = append(creates, sp)
		case sp.Name == "send task.finished" && sp.SpanKind == trace.SpanKindClient:
			sends = append(sends, sp)
		case sp.Name == "send task.finished":
			retries = append(retries, sp)
		}
	}
	if len(creates) != 3 || len(sends) != 1 || len(retries) != 1 {
		t.Fatalf("%d create, %d batch send and %d single send spans; want 3, 1 and 1 (all: %v)", len(creates), len(sends), len(retries), exp.GetSpans())
	}
	published := map[string][]string{} // trace headers each message was published with
	for _, m := range sink.snapshot() {
		published[m.ID] = append(published[m.ID], m.Trace.Parent)
	}
	for _, c := range creates {
		id := attrsOf(c)["messaging.message.id"].AsString()
		switch want, ok := parentOf[id]; {
		case ok && (c.Parent.SpanID() != want.SpanID() || c.SpanContext.TraceID() != want.TraceID()):
			t.Errorf("create span of %s: parent %v, want its webhook's span %v", id, c.Parent, want)
		case !ok && c.SpanContext.TraceID().String() != senderParent[3:35]:
			t.Errorf("create span of untraced record %s is in trace %s, want the sender's %s", id, c.SpanContext.TraceID(), senderParent[3:35])
		}
		if c.SpanKind != trace.SpanKindProducer || attrsOf(c)["hookbridge.attempt"].AsInt64() != 1 {
			t.Errorf("create span of %s: kind %v, attempt %v", id, c.SpanKind, attrsOf(c)["hookbridge.attempt"])
		}
		if failed := c.Status.Code == codes.Error; failed != (id == "b") {
			t.Errorf("create span of %s: status %v", id, c.Status)
		}
		if id != "b" && (len(published[id]) != 1 || published[id][0] != w3c(c.SpanContext)) {
			t.Errorf("%s published with trace headers %v, want its create span's %s", id, published[id], w3c(c.SpanContext))
		}
	}
	send := sends[0]
	if a := attrsOf(send); a["messaging.batch.message_count"].AsInt64() != 3 || a["messaging.destination.name"].AsString() != "task.finished" {
		t.Errorf("batch send attributes %v", send.Attributes)
	}
	if len(send.Links) != 3 || send.Status.Code != codes.Error || attrsOf(send)["error.type"].AsString() != "batch_partly_failed" {
		t.Errorf("batch send: %d links, status %v, error.type %v", len(send.Links), send.Status, attrsOf(send)["error.type"])
	}
	retry := retries[0]
	if a := attrsOf(retry); a["messaging.message.id"].AsString() != "b" || a["hookbridge.attempt"].AsInt64() != 2 ||
		retry.Parent.SpanID() != spanB.SpanContext().SpanID() || retry.SpanKind != trace.SpanKindProducer {
		t.Errorf("retry span %v parent %v, want b's second attempt under %v", retry.Attributes, retry.Parent, spanB.SpanContext())
	}
	if got := published["b"]; len(got) != 1 || got[0] != w3c(retry.SpanContext) {
		t.Errorf("b confirmed with trace headers %v, want its retry span's %s", got, w3c(retry.SpanContext))
	}
}

// TestUntracedPublishCarriesNoContext: with tracing off the messages go
// out as they were queued, their trace headers left to the event's
// attributes, and records carry no trace context.
func TestUntracedPublishCarriesNoContext(t *testing.T) {
	tracer, _ := recorder(t)
	sink := &faultySink{}
	q, err := local.OpenQueue(t.TempDir(), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	appended := &appendLog{Queue: q}
	s := startSpool(t, appended, fastRetry, nil, map[string]sinks.Sink{"bus": sink})
	ctx, span := tracer.Start(context.Background(), "a span nobody asked to continue")
	defer span.End()
	if err := s.Deliver(ctx, tracedEvent("a", "t"), []route.Delivery{{Sink: "bus", Target: "task.finished"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(sink.snapshot()) < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := sink.snapshot()
	if len(got) != 1 || got[0].Trace != (sinks.TraceContext{}) {
		t.Fatalf("published %+v, want one message without a trace context of its own", got)
	}
	if h := got[0].TraceHeaders(); h[0].Value != senderParent {
		t.Errorf("trace headers %v, want the sender's %s", h, senderParent)
	}
	// Were the span queued, a traced spool (after a reload turning
	// tracing on, or another replica) would continue it.
	for _, r := range appended.records() {
		if r.Trace != (sinks.TraceContext{}) {
			t.Errorf("record of %s queued with trace context %+v, want none", r.Message.ID, r.Trace)
		}
	}
}

// appendLog is a queue that keeps a copy of every record appended.
type appendLog struct {
	queue.Queue
	mu       sync.Mutex
	appended []queue.Record
}

func (a *appendLog) Append(ctx context.Context, recs []queue.Record) error {
	a.mu.Lock()
	a.appended = append(a.appended, recs...)
	a.mu.Unlock()
	return a.Queue.Append(ctx, recs)
}

func (a *appendLog) records() []queue.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.appended)
}

// TestAnotherReplicaContinuesTheTrace: with the shared queue, a message
// queued by one replica under its webhook's span and published by
// another still joins that webhook's trace: the record carries the
// context through the JetStream stream.
func TestAnotherReplicaContinuesTheTrace(t *testing.T) {
	srv := sinktest.NATS(t)
	openQueue := func() queue.Queue {
		cfg := jetstream.Config{Connection: natssink.Connection{URL: srv.ClientURL()}, Partitions: 4, AckWait: 3 * time.Second}
		cfg.SetDefaults()
		conn, err := jetstream.Dial(cfg, 5*time.Second, discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		q, err := conn.OpenQueue(context.Background(), jetstream.Limits{MaxEvents: 1000, MaxBytes: 1 << 20}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	tracerA, _ := recorder(t) // replica A's provider: it only accepts
	tracerB, exp := recorder(t)
	sink := &faultySink{}
	sinksOf := map[string]sinks.Sink{"bus": sink}
	configured := []config.Sink{{Name: "bus", Retry: fastRetry}}
	a := NewSpool(openQueue(), configured, sinksOf, Options{PublishTimeout: 5 * time.Second, Tracing: NewTracing(tracerA, tracingConfig(t, false))})
	b := NewSpool(openQueue(), configured, sinksOf, Options{PublishTimeout: 5 * time.Second, Tracing: NewTracing(tracerB, tracingConfig(t, false))})

	ctx, deliver := tracerA.Start(context.Background(), "hookbridge.deliver")
	if err := a.Deliver(ctx, tracedEvent("a", "t-a"), []route.Delivery{{Sink: "bus", Target: "task.finished"}}); err != nil {
		t.Fatal(err)
	}
	deliver.End()
	b.Start(context.Background())
	t.Cleanup(b.Stop)
	sinktest.WaitFor(t, "replica B to publish", func() bool { return len(sink.snapshot()) == 1 })
	b.Stop()

	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "send task.finished" {
		t.Fatalf("replica B's spans %v, want one send", spans)
	}
	send := spans[0]
	if send.Parent.SpanID() != deliver.SpanContext().SpanID() || send.SpanContext.TraceID() != deliver.SpanContext().TraceID() || !send.Parent.IsRemote() {
		t.Errorf("send's parent %v, want replica A's deliver span %v", send.Parent, deliver.SpanContext())
	}
	if got := sink.snapshot()[0].Trace.Parent; got != w3c(send.SpanContext) {
		t.Errorf("published with trace headers %q, want the send span's %q", got, w3c(send.SpanContext))
	}
}
