package cetest

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
)

// TestCasesCover: the interop set holds what the interop tests claim to
// check, so that none of it goes untested when the set changes.
func TestCasesCover(t *testing.T) {
	cases := Cases(t)
	has := func(what string, pred func(Case) bool) {
		t.Helper()
		if !slices.ContainsFunc(cases, pred) {
			t.Errorf("no case with %s", what)
		}
	}
	attr := func(name string) func(Case) bool {
		return func(c Case) bool {
			return slices.ContainsFunc(c.Msg.Attrs, func(a sinks.Attr) bool { return a.Name == name })
		}
	}
	data := func(s string) func(Case) bool {
		return func(c Case) bool { d, _ := c.Msg.Data(); return bytes.Contains(d, []byte(s)) }
	}
	has("a traceparent", attr("traceparent"))
	has("a tracestate", attr("tracestate"))
	has("a browseruseenvelope", attr("browseruseenvelope"))
	has("a publish trace context beside the event's", func(c Case) bool {
		h := c.Msg.TraceHeaders()
		return c.Msg.Attr("traceparent") == Traceparent && c.Msg.Attr("tracestate") == Tracestate &&
			h[0].Value == PublishTraceparent && h[1].Value == PublishTracestate
	})
	has("the event's trace context alone", func(c Case) bool {
		return c.Msg.Trace == (sinks.TraceContext{}) && c.Msg.TraceHeaders()[0].Value == Traceparent
	})
	has("no subject", func(c Case) bool { return !attr("subject")(c) })
	has("an empty attribute", func(c Case) bool {
		return slices.ContainsFunc(c.Msg.Attrs, func(a sinks.Attr) bool { return a.Value == "" })
	})
	has("a line break in an attribute", func(c Case) bool {
		return slices.ContainsFunc(c.Msg.Attrs, func(a sinks.Attr) bool { return strings.ContainsAny(a.Value, "\r\n") })
	})
	has("non-ASCII text in an attribute", func(c Case) bool { return strings.Contains(c.Msg.Attr("subject"), "✓") })
	has("the envelope form (data is the payload)", func(c Case) bool { d, _ := c.Msg.Data(); return bytes.HasPrefix(d, []byte(`{"metadata"`)) })
	has("the flat form (data is the body)", data(`"status":"paused"`))
	for _, s := range []string{`1.0`, `2.5`, `12345678901234567890`, `-0.0`, `1e+100`, `\u00e9`, `\ud83d\ude80`, `\"hi\"`, `\\Users`, `[]`, `{}`, `null`, `true`} {
		has("data holding "+s, data(s))
	}

	var dead []Case
	for _, c := range cases {
		if c.DeadLetter {
			dead = append(dead, c)
		}
	}
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	for _, c := range dead {
		if c.Msg.Attr("deadlettersink") != DeadLetterSink || c.Msg.Attr("deadletterreason") != "the sink refuses it: "+Refusal {
			t.Errorf("%s: attributes %v", c.Name, c.Msg.Attrs)
		}
		if want := `{"deadlettersink":"` + DeadLetterSink + `","deadletterreason":`; !bytes.HasPrefix(c.Msg.Body, []byte(want)) {
			t.Errorf("%s: body %.100s, want it to start with %s", c.Name, c.Msg.Body, want)
		}
	}
	// SQS carries 10 attributes in binary mode: one dead letter fits, the
	// traced one does not.
	if n, m := len(dead[0].Msg.Attrs), len(dead[1].Msg.Attrs); n <= 10 || m > 10 {
		t.Errorf("the dead letters have %d and %d attributes, want more than 10 and at most 10", n, m)
	}
}
