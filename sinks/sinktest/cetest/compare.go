package cetest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/hookbridge/hookbridge/sinks"
)

// KafkaExtensions are the extensions the SDK's Kafka binding
// (protocol/kafka_sarama) adds to every event it reads in binary mode:
// where the record was, not what hookbridge sent. Kafka tests pass them
// to Diff and Check to be ignored.
var KafkaExtensions = []string{"kafkaoffset", "kafkapartition", "kafkatopic"}

// contextAttrs are the CloudEvents 1.0 context attributes that are not
// extensions, with how the SDK's event reports each.
var contextAttrs = map[string]func(*cloudevents.Event) string{
	"specversion":     (*cloudevents.Event).SpecVersion,
	"id":              (*cloudevents.Event).ID,
	"source":          (*cloudevents.Event).Source,
	"type":            (*cloudevents.Event).Type,
	"subject":         (*cloudevents.Event).Subject,
	"datacontenttype": (*cloudevents.Event).DataContentType,
	"dataschema":      (*cloudevents.Event).DataSchema,
	// time is compared apart, as an instant and as text.
}

// Diff returns how got, an event the SDK read back, differs from m, the
// message hookbridge sent: one line per difference, none when they are
// equal. Equal means every attribute of m.Attrs, and no other, with the
// same value (time: the same instant, and the SDK's RFC 3339 text equal
// to hookbridge's), and data byte for byte what m's structured body
// holds. Extensions named in ignore are left out of the comparison.
func Diff(m sinks.Message, got *cloudevents.Event, ignore ...string) []string {
	var diffs []string
	differ := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }

	sent := map[string]string{}
	for _, a := range m.Attrs {
		if _, dup := sent[a.Name]; dup {
			differ("hookbridge sent attribute %q twice", a.Name)
		}
		sent[a.Name] = a.Value
	}
	for _, name := range slices.Sorted(maps.Keys(contextAttrs)) {
		if g, want := contextAttrs[name](got), sent[name]; g != want {
			differ("%s: the SDK read %q, hookbridge sent %q", name, g, want)
		}
	}

	wantTime, hasTime := sent["time"]
	switch gotTime := got.Time(); {
	case !hasTime && !gotTime.IsZero():
		differ("time: the SDK read %v, hookbridge sent none", gotTime)
	case hasTime:
		instant, err := time.Parse(time.RFC3339Nano, wantTime)
		if err != nil {
			differ("time: hookbridge sent %q, not RFC 3339: %v", wantTime, err)
		} else if !gotTime.Equal(instant) {
			differ("time: the SDK read %v, hookbridge sent %v", gotTime, instant)
		}
		if text := types.FormatTime(gotTime); text != wantTime {
			differ("time: the SDK writes %q, hookbridge sent %q", text, wantTime)
		}
	}

	exts := got.Extensions()
	for _, name := range slices.Sorted(maps.Keys(sent)) {
		if _, ok := contextAttrs[name]; ok || name == "time" {
			continue
		}
		v, ok := exts[name]
		switch s, isString := v.(string); {
		case !ok:
			differ("extension %s: the SDK read none, hookbridge sent %q", name, sent[name])
		case !isString:
			differ("extension %s: the SDK read %v (%T), hookbridge sent the string %q", name, v, v, sent[name])
		case s != sent[name]:
			differ("extension %s: the SDK read %q, hookbridge sent %q", name, s, sent[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(exts)) {
		if _, ok := sent[name]; !ok && !slices.Contains(ignore, name) {
			differ("extension %s: the SDK read %v, hookbridge sent none", name, exts[name])
		}
	}

	data, err := m.Data()
	switch {
	case err != nil:
		differ("data: hookbridge's body has none to compare: %v", err)
	case !bytes.Equal(got.Data(), data):
		differ("data: the SDK read %.300q, hookbridge sent %.300q", got.Data(), data)
	}
	return diffs
}

// Check fails t unless got, the SDK's reading of what a sink published
// for c, is valid by the SDK's rules, equal to c.Msg (see Diff, which
// ignore is passed to), and its data, decoded by the SDK, holds c's task
// id.
func Check(t testing.TB, c Case, got *cloudevents.Event, ignore ...string) {
	t.Helper()
	if err := got.Validate(); err != nil {
		t.Errorf("%s: the SDK finds the event invalid: %v", c.Name, err)
	}
	for _, d := range Diff(c.Msg, got, ignore...) {
		t.Errorf("%s: %s", c.Name, d)
	}
	var payload struct {
		TaskID *string `json:"task_id"`
	}
	if err := got.DataAs(&payload); err != nil {
		t.Errorf("%s: DataAs: %v", c.Name, err)
		return
	}
	switch {
	case c.TaskID == "" && payload.TaskID != nil:
		t.Errorf("%s: DataAs: task_id %q, want none", c.Name, *payload.TaskID)
	case c.TaskID != "" && payload.TaskID == nil:
		t.Errorf("%s: DataAs: no task_id, want %q", c.Name, c.TaskID)
	case c.TaskID != "" && *payload.TaskID != c.TaskID:
		t.Errorf("%s: DataAs: task_id %q, want %q", c.Name, *payload.TaskID, c.TaskID)
	}
}

// Read is the SDK's binding.ToEvent of msg, failing t unless the SDK's
// binding reads msg in encoding want (binding.EncodingStructured or
// binding.EncodingBinary): the content mode it finds is the one the sink
// was set to.
func Read(t testing.TB, name string, msg binding.MessageReader, want binding.Encoding) *cloudevents.Event {
	t.Helper()
	if got := msg.ReadEncoding(); got != want {
		t.Fatalf("%s: the SDK reads the message as %v, want %v", name, got, want)
	}
	ev, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		t.Fatalf("%s: the SDK cannot read the message: %v", name, err)
	}
	return ev
}

// CheckTraceHeaders fails t unless the broker's own trace headers of
// what a sink published for c, which header looks up by name (absent:
// false), carry the publish's trace context (c.Msg.Trace) when it has
// one, else the event's traceparent and tracestate attributes, and are
// absent when empty. The event's traceparent attribute, which Check
// compares, stays the event's. The rule is spelt out here rather than
// taken from c.Msg.TraceHeaders, which the sinks use, so that a sink and
// its test cannot be wrong together.
func CheckTraceHeaders(t testing.TB, c Case, header func(name string) (string, bool)) {
	t.Helper()
	parent, state := c.Msg.Attr("traceparent"), c.Msg.Attr("tracestate")
	if c.Msg.Trace.Parent != "" {
		parent, state = c.Msg.Trace.Parent, c.Msg.Trace.State
	}
	for _, want := range []sinks.Attr{{Name: "traceparent", Value: parent}, {Name: "tracestate", Value: state}} {
		got, ok := header(want.Name)
		switch {
		case want.Value == "" && ok:
			t.Errorf("%s: trace header %s %q, want none", c.Name, want.Name, got)
		case want.Value != "" && got != want.Value:
			t.Errorf("%s: trace header %s %q, want %q", c.Name, want.Name, got, want.Value)
		}
	}
}
