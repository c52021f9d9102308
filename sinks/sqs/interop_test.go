package sqs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
	"github.com/hookbridge/hookbridge/sinks/sinktest/cetest"
	sqssink "github.com/hookbridge/hookbridge/sinks/sqs"
)

// TestInterop publishes cetest's events through the real sink to kumo,
// in each content mode, receives them with aws-sdk-go-v2 and reads them
// with the official CloudEvents SDK through cetest.SQSMessage: the SDK
// has no SQS binding, so that reads hookbridge's documented mapping (a
// content-type attribute naming an event format: structured; else
// binary, ce_ attributes). Every attribute and the data must come back
// as hookbridge sent them. In binary mode, an event SQS cannot carry
// that way (more than 10 attributes: the traced dead letter; or an empty
// one) must arrive structured, and equal all the same.
func TestInterop(t *testing.T) {
	cases := cetest.Cases(t)
	srv := sinktest.SQS(t)
	for _, mode := range []sinks.ContentMode{sinks.Structured, sinks.Binary} {
		t.Run(string(mode), func(t *testing.T) {
			q := srv.Queue("interop")
			s, err := sqssink.New(context.Background(), sqssink.Config{Region: "us-east-1", Endpoint: srv.URL,
				AccessKeyID: "x", SecretAccessKey: "x", ContentMode: mode}, []string{q}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			fallbacks := 0
			for _, c := range cases {
				// One at a time: a standard queue does not keep order.
				m := c.Msg
				m.Target = q
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := s.Publish(ctx, []sinks.Message{m})
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				got := cetest.NewSQSMessage(srv.Drain(q, 1)[0])

				want := mode
				if mode == sinks.Binary && !fitsBinary(c.Msg) {
					want = sinks.Structured
					fallbacks++
				}
				checkAttributes(t, c, want, got.Attrs)
				enc := binding.EncodingStructured
				if want == sinks.Binary {
					enc = binding.EncodingBinary
				}
				cetest.Check(t, c, cetest.Read(t, c.Name, got, enc))
			}
			if mode == sinks.Binary && fallbacks == 0 {
				t.Error("no event fell back to structured: the set lacks one with more than 10 attributes or an empty one")
			}
		})
	}
}

// fitsBinary reports whether SQS carries m in binary mode: at most 10
// message attributes, none empty, none with spaces at its ends.
func fitsBinary(m sinks.Message) bool {
	if len(m.Attrs) > 10 || !sinks.Untrimmed(m.Attrs) {
		return false
	}
	for _, a := range m.Attrs {
		if a.Value == "" {
			return false
		}
	}
	return true
}

// checkAttributes checks the message attributes of c in mode beside
// what the SDK reads: structured carries content-type and the W3C trace
// context only, binary a ce_ attribute per attribute but
// datacontenttype, which is content-type. The trace context is the
// publish's when it has one (cetest.CheckTraceHeaders).
func checkAttributes(t *testing.T, c cetest.Case, mode sinks.ContentMode, attrs map[string]string) {
	t.Helper()
	ce := 0
	for k := range attrs {
		if strings.HasPrefix(k, "ce_") {
			ce++
		}
	}
	want, wantCE, wantTrace := sinks.StructuredContentType, 0, true
	if mode == sinks.Binary {
		want, wantCE, wantTrace = c.Msg.Attr("datacontenttype"), len(c.Msg.Attrs)-1, false
	}
	if attrs["content-type"] != want || ce != wantCE {
		t.Errorf("%s: content-type %q and %d ce_ attributes, want %q and %d: %v", c.Name, attrs["content-type"], ce, want, wantCE, attrs)
	}
	if wantTrace {
		cetest.CheckTraceHeaders(t, c, func(name string) (string, bool) { v, ok := attrs[name]; return v, ok })
		return
	}
	// Binary mode has the event's as ce_ attributes only: ten at most.
	for _, name := range []string{"traceparent", "tracestate"} {
		if got, ok := attrs[name]; ok {
			t.Errorf("%s: %s mode: attribute %s %q, want none", c.Name, mode, name, got)
		}
	}
}
