// Package cetest is the support of hookbridge's CloudEvents interop
// tests, which read what each sink publishes with the official
// CloudEvents SDK for Go (github.com/cloudevents/sdk-go) and check that
// the SDK sees the event hookbridge sent.
//
// It holds, in one place: the events those tests publish (Cases), made
// by hookbridge's own code from raw webhook bodies; the comparison of an
// event the SDK read with the message hookbridge sent (Diff, Check); and
// readers for what the SDK has no binding for (SQSMessage) or needs a
// conversion to (NATSMsg).
//
// It is imported by tests only, and by no package of sinktest, so that
// only the interop tests link the SDK.
package cetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/delivery"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/queue/local"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// Case is one event of the interop set.
type Case struct {
	// Name says what the event exercises.
	Name string
	// Msg is what hookbridge hands a sink for the event, Target empty:
	// the test sets it.
	Msg sinks.Message
	// TaskID is the task_id the event's data holds, "" for none.
	TaskID string
	// DeadLetter marks a dead-letter copy. It keeps its event's id: a
	// broker that de-duplicates on it (JetStream's Nats-Msg-Id is
	// "<id>:<subject>", SQS FIFO's MessageDeduplicationId the id) drops
	// it where the original is, so tests send it to a target of its own,
	// as a dead_letter target is.
	DeadLetter bool
}

// Source is the source name the events come from: their "source".
const Source = "browser-use"

// DeadLetterSink names the sink the dead letters of Cases were refused
// by: their "deadlettersink".
const DeadLetterSink = "refuses"

// Refusal is the error that sink refused them with, marked permanent;
// their "deadletterreason" says so, non-ASCII and quotes included.
const Refusal = `kafka: topic "missing ✗" does not exist`

// received is when the events arrived: the flat form's time when the
// signed timestamp cannot be read (never here).
var received = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// Traceparent and Tracestate are the W3C trace context the traced event
// came with.
const (
	Traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	Tracestate  = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
)

// PublishTraceparent and PublishTracestate are the trace context of the
// publish of the event traced through a traced hookbridge: its producer
// span's, a child in the event's trace. Sinks send it in the broker's
// own trace headers, while the event's traceparent attribute stays
// Traceparent.
const (
	PublishTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
	PublishTracestate  = "hookbridge=b7ad6b7169203331,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
)

// webhook is one delivery as Browser Use sends it: a raw body, the
// signed timestamp header and the trace headers; and publish, the trace
// context hookbridge publishes it under when it traces.
type webhook struct {
	name, body, ts string
	trace          event.Trace
	taskID         string
	publish        sinks.TraceContext
}

// The bodies are written as Browser Use's Python sender writes them
// (", " and ": "), but with raw UTF-8 where it would write \u escapes:
// json.loads reads both alike, and hookbridge's canonical form, which
// data holds, escapes it again. Their data holds what JSON encoders get
// wrong: non-ASCII text, quotes and backslashes, floats that end in
// zeros (1.0, 2.50), -0.0 and exponents, an integer wider than 64 bits,
// nested objects and arrays, empty ones, null and booleans.
var webhooks = []webhook{
	{
		name: "envelope, traced",
		body: `{"type": "agent.task.status_update", "timestamp": "2025-05-25T09:22:22.269116+00:00", "payload": {"session_id": "cd9cc7bf-e3af-4181-80a2-73f083bc94b4", "task_id": "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45", "status": "finished", ` +
			`"metadata": {"note": "résumé ✓ 🚀", "quote": "she said \"hi\"", "path": "C:\\Users\\bob\\new", "ratio": 1.0, "price": 2.50, "big": 12345678901234567890, "zero": -0.0, "huge": 1e100, ` +
			`"nested": {"list": [1, 2.0, "three", null, true, {"deep": ["x", []]}], "empty": {}}, "tags": ["a", "b"]}}}`,
		ts:     "1748164942",
		trace:  event.ParseTrace(Traceparent, Tracestate),
		taskID: "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45",
	},
	{
		// Envelope keys besides type, timestamp and payload travel in the
		// browseruseenvelope extension.
		name:   "envelope with extra keys",
		body:   `{"type": "agent.task.status_update", "timestamp": "2025-05-25T09:22:23.000001+00:00", "webhook_id": "wh_42 ✓", "attempt": 2, "payload": {"session_id": "cd9cc7bf-e3af-4181-80a2-73f083bc94b4", "task_id": "9d3e5a1c-0000-4000-8000-000000000001", "status": "started", "metadata": {"cost": 0.10, "n": 12345678901234567890}}}`,
		ts:     "1748164943",
		taskID: "9d3e5a1c-0000-4000-8000-000000000001",
	},
	{
		// The older flat form: data is the whole body, time the signed
		// timestamp; a task id with non-ASCII text puts it in a header.
		name: "flat",
		body: `{"session_id": "s-1", "task_id": "tâche-42 ✓", "status": "paused", "updated_at": "2025-05-25T09:22:24+00:00", ` +
			`"output": {"price": 2.50, "count": 12345678901234567890, "ratio": 1.0, "text": "line one\nline two \"quoted\" back\\slash 🚀"}, "steps": [{"n": 1}, {"n": 2.5, "ok": false}]}`,
		ts:     "1764158400",
		taskID: "tâche-42 ✓",
	},
	{
		// Attributes a NATS header cannot carry as they are: a line break
		// and a tab inside one (the subject), spaces at the ends of
		// another (status).
		name:   "flat, line breaks and edge spaces in attributes",
		body:   `{"task_id": "line\r\nbreak\tand tab", "status": " started "}`,
		ts:     "1764158402",
		taskID: "line\r\nbreak\tand tab",
	},
	{
		// A subject with spaces at its ends, which the SDK's binary
		// readers trim (as they do id, type and datacontenttype): binary
		// sinks send it structured.
		name:   "flat, task id with edge spaces",
		body:   `{"task_id": "  t-edge ", "status": "finished"}`,
		ts:     "1764158404",
		taskID: "  t-edge ",
	},
	{
		// An empty attribute (status), which SQS cannot carry.
		name:   "flat, empty status",
		body:   `{"task_id": "t-empty", "status": ""}`,
		ts:     "1764158403",
		taskID: "t-empty",
	},
	{
		// No task id: no subject, and no key.
		name: "flat without a task id",
		body: `{"status": "stopped", "reason": "quota ✗", "limits": {"max": 1.0}}`,
		ts:   "1764158401",
	},
	{
		// Traced by its sender and by hookbridge: the broker's trace
		// headers carry hookbridge's producer span, the traceparent
		// attribute still the sender's.
		name:    "envelope, traced, published under hookbridge's span",
		body:    `{"type": "agent.task.status_update", "timestamp": "2025-05-25T09:22:25.000002+00:00", "payload": {"session_id": "cd9cc7bf-e3af-4181-80a2-73f083bc94b4", "task_id": "9d3e5a1c-0000-4000-8000-000000000002", "status": "finished", "metadata": {"hop": true}}}`,
		ts:      "1748164945",
		trace:   event.ParseTrace(Traceparent, Tracestate),
		taskID:  "9d3e5a1c-0000-4000-8000-000000000002",
		publish: sinks.TraceContext{Parent: PublishTraceparent, State: PublishTracestate},
	},
}

// testDelivery is the dashboard's test delivery. It is verified and
// answered, never routed, so no sink ever publishes it: Cases checks it
// normalizes as a test and leaves it out.
const testDelivery = `{"type": "test", "timestamp": "2025-05-25T09:22:22.269116+00:00", "payload": {"test": "ok"}}`

// Cases returns the interop events, each as hookbridge would hand it to
// a sink: the webhooks above normalized by event.Normalize and turned
// into messages by delivery.Sync, then dead-letter copies of two of
// them made by delivery.Spool when a sink refuses them for good (one
// traced, with 12 attributes: more than SQS carries in binary mode). The
// messages are what hookbridge's own code makes, not copies of its
// logic, so the tests follow it when it changes.
func Cases(t testing.TB) []Case {
	t.Helper()
	var cases []Case
	var events []*event.Event
	for _, w := range webhooks {
		ev := normalize(t, w.body, w.ts, w.trace)
		if ev.Test {
			t.Fatalf("%s: normalized as a test delivery", w.name)
		}
		msg := deliver(t, ev)
		// delivery.Sync runs untraced here: set the publish's context as
		// hookbridge's producer span would.
		msg.Trace = w.publish
		cases = append(cases, Case{Name: w.name, Msg: msg, TaskID: w.taskID})
		events = append(events, ev)
	}
	if ev := normalize(t, testDelivery, "1748164942", event.Trace{}); !ev.Test {
		t.Fatal("the test delivery did not normalize as a test")
	}

	// Dead letters of the traced envelope and of the flat event.
	for i, dl := range deadLetters(t, events[0], events[2]) {
		from := []Case{cases[0], cases[2]}[i]
		cases = append(cases, Case{Name: "dead letter of " + from.Name, Msg: dl, TaskID: from.TaskID, DeadLetter: true})
	}
	for _, c := range cases {
		if _, err := c.Msg.Data(); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}
	return cases
}

// normalize canonicalizes body and normalizes it, as the ingress does
// with a verified delivery.
func normalize(t testing.TB, body, ts string, trace event.Trace) *event.Event {
	t.Helper()
	var cz signature.Canonicalizer
	c, err := cz.Canonicalize([]byte(body))
	if err != nil {
		t.Fatalf("canonicalize %.60s: %v", body, err)
	}
	ev, err := event.Normalize(Source, ts, received, c, trace)
	if err != nil {
		t.Fatalf("normalize %.60s: %v", body, err)
	}
	return ev
}

// keeper is a sink that keeps what it is given.
type keeper struct {
	mu   sync.Mutex
	msgs []sinks.Message
}

func (k *keeper) Publish(_ context.Context, batch []sinks.Message) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.msgs = append(k.msgs, batch...)
	return nil
}

func (k *keeper) Close(context.Context) error { return nil }

func (k *keeper) kept() []sinks.Message {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.msgs)
}

// refuser is a sink that refuses everything for good.
type refuser struct{}

func (refuser) Publish(context.Context, []sinks.Message) error {
	return sinks.Permanent(errors.New(Refusal))
}

func (refuser) Close(context.Context) error { return nil }

// deliver returns the message delivery.Sync hands a sink for ev.
func deliver(t testing.TB, ev *event.Event) sinks.Message {
	t.Helper()
	k := &keeper{}
	if err := delivery.NewSync(map[string]sinks.Sink{"keep": k}, nil).Deliver(context.Background(), ev, []route.Delivery{{Sink: "keep"}}); err != nil {
		t.Fatal(err)
	}
	return k.kept()[0]
}

// deadLetters returns the dead-letter copies delivery.Spool forwards of
// evs, in order, when DeadLetterSink refuses them: through a local
// spool queue, as `delivery: spool` runs.
func deadLetters(t testing.TB, evs ...*event.Event) []sinks.Message {
	t.Helper()
	q, err := local.OpenQueue(t.TempDir(), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	k := &keeper{}
	retry := config.Retry{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: 1, MaxAge: time.Hour}
	s := delivery.NewSpool(q, []config.Sink{
		{Name: DeadLetterSink, Retry: retry, DeadLetter: &config.Target{Sink: "keep"}},
		{Name: "keep", Retry: retry},
	}, map[string]sinks.Sink{DeadLetterSink: refuser{}, "keep": k}, delivery.Options{PublishTimeout: 10 * time.Second})
	s.Start(context.Background())
	defer s.Stop()
	for _, ev := range evs {
		// One at a time, so the copies come back in order. The count to
		// wait for is taken before Deliver: the copy may be kept before
		// Deliver returns.
		n := len(k.kept()) + 1
		if err := s.Deliver(context.Background(), ev, []route.Delivery{{Sink: DeadLetterSink}}); err != nil {
			t.Fatal(err)
		}
		sinktest.WaitFor(t, "the dead-letter copy", func() bool { return len(k.kept()) == n })
	}
	return k.kept()
}
