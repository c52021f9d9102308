package cetest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding/format"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/hookbridge/hookbridge/sinks"
)

// TestDiffReports: Diff finds an event equal to itself, and each kind
// of difference the interop tests rely on it to find.
func TestDiffReports(t *testing.T) {
	c := Cases(t)[0]
	read := func() *cloudevents.Event {
		ev := cloudevents.New()
		if err := format.JSON.Unmarshal(c.Msg.Body, &ev); err != nil {
			t.Fatal(err)
		}
		return &ev
	}
	if d := Diff(c.Msg, read()); len(d) != 0 {
		t.Fatalf("Diff of the event with itself = %q", d)
	}
	withAttr := func(name, value string) sinks.Message {
		m := c.Msg
		m.Attrs = slices.Clone(m.Attrs)
		for i, a := range m.Attrs {
			if a.Name == name {
				m.Attrs[i].Value = value
			}
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		msg    sinks.Message
		change func(*cloudevents.Event)
		want   string
	}{
		{"another subject", c.Msg, func(e *cloudevents.Event) { e.SetSubject("other") }, "subject:"},
		{"no subject", c.Msg, func(e *cloudevents.Event) { e.SetSubject("") }, "subject:"},
		{"another extension value", c.Msg, func(e *cloudevents.Event) { e.SetExtension("status", "failed") }, "extension status:"},
		{"an extra extension", c.Msg, func(e *cloudevents.Event) { e.SetExtension("kafkatopic", "x") }, "extension kafkatopic:"},
		{"a missing extension", c.Msg, func(e *cloudevents.Event) { delete(e.Context.(*cloudevents.EventContextV1).Extensions, "traceparent") }, "extension traceparent:"},
		{"a non-string extension", c.Msg, func(e *cloudevents.Event) { e.SetExtension("status", 1) }, "extension status:"},
		{"data re-encoded", c.Msg, func(e *cloudevents.Event) {
			var v any
			if err := json.Unmarshal(e.Data(), &v); err != nil {
				t.Fatal(err)
			}
			if err := e.SetData(cloudevents.ApplicationJSON, v); err != nil {
				t.Fatal(err)
			}
		}, "data:"},
		{"the same instant, written otherwise", withAttr("time", "2025-05-25T09:22:22.269116+00:00"), func(*cloudevents.Event) {}, "time: the SDK writes"},
		{"another datacontenttype", c.Msg, func(e *cloudevents.Event) { e.SetDataContentType("text/plain") }, "datacontenttype:"},
	} {
		ev := read()
		tc.change(ev)
		d := Diff(tc.msg, ev)
		if !slices.ContainsFunc(d, func(s string) bool { return strings.HasPrefix(s, tc.want) }) {
			t.Errorf("%s: Diff = %q, want a line starting %q", tc.name, d, tc.want)
		}
	}
	// Extensions named to ignore are ignored, and only they.
	ev := read()
	ev.SetExtension("kafkatopic", "x")
	if d := Diff(c.Msg, ev, KafkaExtensions...); len(d) != 0 {
		t.Errorf("Diff ignoring %v = %q", KafkaExtensions, d)
	}
}
