package nats_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats/v2"
	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/sinks"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
	"github.com/hookbridge/hookbridge/sinks/sinktest/cetest"
)

// The interop tests publish cetest's events through the real sink, in
// each content mode, and read them back with the official CloudEvents
// SDK for Go: every attribute and the data must come back as hookbridge
// sent them.

var modes = []sinks.ContentMode{sinks.Structured, sinks.Binary}

// arrives is the mode c arrives in from a sink set to mode: binary mode
// sends a message structured when one of its attributes is empty, holds
// a line break or has spaces around it, which a NATS header would not
// keep.
func arrives(c cetest.Case, mode sinks.ContentMode) sinks.ContentMode {
	unfit := func(a sinks.Attr) bool {
		return a.Value == "" || strings.ContainsAny(a.Value, "\r\n") || strings.TrimSpace(a.Value) != a.Value
	}
	if mode == sinks.Binary && slices.ContainsFunc(c.Msg.Attrs, unfit) {
		return sinks.Structured
	}
	return mode
}

// encoding is the SDK's name for a content mode.
func encoding(mode sinks.ContentMode) binding.Encoding {
	if mode == sinks.Binary {
		return binding.EncodingBinary
	}
	return binding.EncodingStructured
}

// openSink opens a NATS sink for cfg until the test ends.
func openSink(t *testing.T, cfg natssink.Config, subjects []string) *natssink.Sink {
	t.Helper()
	s, err := natssink.New(context.Background(), cfg, subjects, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// publish publishes every case's message in one batch: to
// subject+".events", dead letters to subject+".dead".
func publish(t *testing.T, s sinks.Sink, cases []cetest.Case, subject string) {
	t.Helper()
	batch := make([]sinks.Message, len(cases))
	for i, c := range cases {
		batch[i] = c.Msg
		batch[i].Target = target(c, subject)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Publish(ctx, batch); err != nil {
		t.Fatal(err)
	}
}

// target is where c goes under subject.
func target(c cetest.Case, subject string) string {
	if c.DeadLetter {
		return subject + ".dead"
	}
	return subject + ".events"
}

// checkHeaders checks the headers of m, the message of c in mode, beside
// what the SDK reads: structured carries no ce- header, binary one per
// attribute but datacontenttype, which is content-type; both carry the
// W3C trace context under its own names, the publish's when it has one
// (cetest.CheckTraceHeaders).
func checkHeaders(t *testing.T, c cetest.Case, mode sinks.ContentMode, h natsgo.Header) {
	t.Helper()
	var ce int
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "ce-") {
			ce++
		}
	}
	want, wantCE := sinks.StructuredContentType, 0
	if mode == sinks.Binary {
		want, wantCE = c.Msg.Attr("datacontenttype"), len(c.Msg.Attrs)-1
	}
	if got := h.Get("content-type"); got != want || ce != wantCE {
		t.Errorf("%s: content-type %q and %d ce- headers, want %q and %d: %v", c.Name, got, ce, want, wantCE, h)
	}
	cetest.CheckTraceHeaders(t, c, func(name string) (string, bool) {
		v, ok := h[name]
		return strings.Join(v, ","), ok
	})
}

// TestInteropCore publishes on core NATS and reads what a subscriber
// gets with the SDK: with protocol/nats/v2, whose messages are always
// structured (so only in structured mode), and with
// protocol/nats_jetstream/v2, which reads binary mode when the message
// has a ce-specversion header. The SDK has no other reader of binary
// NATS messages, and that one is not JetStream-specific (NewMessage
// takes a plain *nats.Msg), so it reads core NATS here too. Both
// receivers wrap each *nats.Msg they get with their NewMessage, as this
// test does with a plain subscription, which is known to be subscribed
// before the sink publishes.
func TestInteropCore(t *testing.T) {
	cases := cetest.Cases(t)
	srv := sinktest.NATS(t)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			subject := "interop.core." + string(mode)
			nc, _ := sinktest.JetStream(t, srv.ClientURL())
			sub, err := nc.SubscribeSync(subject + ".*")
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			s := openSink(t, natssink.Config{Connection: natssink.Connection{URL: srv.ClientURL()}, ContentMode: mode}, nil)
			publish(t, s, cases, subject)
			for _, c := range cases {
				msg, err := sub.NextMsg(30 * time.Second)
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				m := arrives(c, mode)
				checkHeaders(t, c, m, msg.Header)
				if m == sinks.Structured {
					cetest.Check(t, c, cetest.Read(t, c.Name, cenats.NewMessage(msg), binding.EncodingStructured))
				}
				cetest.Check(t, c, cetest.Read(t, c.Name, cejs.NewMessage(msg), encoding(m)))
			}
		})
	}
}

// TestInteropJetStream publishes through JetStream and reads the stream
// with the SDK's JetStream consumer (protocol/nats_jetstream/v2), as a
// consumer application would.
func TestInteropJetStream(t *testing.T) {
	cases := cetest.Cases(t)
	srv := sinktest.NATS(t)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			subject, stream := "interop.js."+string(mode), "INTEROP_"+strings.ToUpper(string(mode))
			s := openSink(t, natssink.Config{Connection: natssink.Connection{URL: srv.ClientURL()}, JetStream: true,
				Stream: natssink.StreamConfig{Name: stream, Storage: "memory"}, ContentMode: mode}, []string{subject + ".*"})
			publish(t, s, cases, subject)

			// An ordered consumer: the stream's messages in stream order,
			// nothing to acknowledge.
			consumer, err := cejs.NewConsumer(srv.ClientURL(), stream, subject+".*", nil, nil, []natsgo.SubOpt{natsgo.OrderedConsumer()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			opened := make(chan error, 1)
			go func() { opened <- consumer.OpenInbound(ctx) }()
			defer func() {
				cancel()
				if err := <-opened; err != nil {
					t.Errorf("OpenInbound: %v", err)
				}
				consumer.Close(context.Background())
			}()
			for _, c := range cases {
				msg, err := consumer.Receive(ctx)
				if err == io.EOF {
					t.Fatalf("%s: not received: %v", c.Name, ctx.Err())
				}
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				nm := msg.(*cejs.Message).Msg
				checkHeaders(t, c, arrives(c, mode), nm.Header)
				if got, want := nm.Header.Get(jetstream.MsgIDHeader), c.Msg.ID+":"+target(c, subject); got != want {
					t.Errorf("%s: Nats-Msg-Id %q, want %q", c.Name, got, want)
				}
				cetest.Check(t, c, cetest.Read(t, c.Name, msg, encoding(arrives(c, mode))))
			}
		})
	}
}

// TestInteropDiffCatchesHybridLayout: hookbridge's old layout, the
// structured event as the body beside a ce- header for every attribute
// (and "Content-Type", which the SDK, matching "content-type" exactly,
// does not see), is what the interop tests must catch. The SDK's
// JetStream binding reads such a message as binary and takes the whole
// structured event for data; cetest.Diff must report that, so the tests
// above fail on that layout. (The core binding, structured only, reads
// the body and misses it: hence both readers in TestInteropCore.)
func TestInteropDiffCatchesHybridLayout(t *testing.T) {
	c := cetest.Cases(t)[0]
	hybrid := &natsgo.Msg{Subject: "interop.hybrid", Header: natsgo.Header{}, Data: c.Msg.Body}
	hybrid.Header.Set("Content-Type", sinks.StructuredContentType)
	for _, a := range c.Msg.Attrs {
		hybrid.Header.Set("ce-"+a.Name, a.Value)
	}

	diffs := cetest.Diff(c.Msg, cetest.Read(t, c.Name, cejs.NewMessage(hybrid), binding.EncodingBinary))
	if !slices.ContainsFunc(diffs, func(d string) bool { return strings.HasPrefix(d, "data:") }) {
		t.Errorf("Diff of the hybrid layout read as binary = %q, want a data difference", diffs)
	}
	if diffs := cetest.Diff(c.Msg, cetest.Read(t, c.Name, cenats.NewMessage(hybrid), binding.EncodingStructured)); len(diffs) != 0 {
		t.Errorf("the structured-only binding reads the hybrid body as the event, yet Diff = %q", diffs)
	}
}
