package rabbitmq_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/rabbitmq"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
	"github.com/hookbridge/hookbridge/sinks/sinktest/cetest"
)

// The interop test publishes cetest's events through the real sink, in
// each content mode, gets them from a queue with the broker's client,
// and reads them with the official CloudEvents SDK for Go's binding
// machinery: every attribute and the data must come back as hookbridge
// sent them.
//
// The SDK's AMQP binding (protocol/amqp/v2) speaks AMQP 1.0 through
// Azure's go-amqp, not RabbitMQ's AMQP 0-9-1, so deliveryMessage reads
// a delivery as that binding reads a message: the content type, then
// the application properties (here the headers) named "cloudEvents:"
// plus the attribute, found with the SDK's spec.WithPrefix.

// bindingPrefix is the CloudEvents AMQP binding's prefix, written out
// rather than taken from the sink, so that the tests check the sink
// against the binding.
const bindingPrefix = "cloudEvents:" // as rabbitmq_test.go states it

var ceSpecs = spec.WithPrefix(bindingPrefix)

// deliveryMessage is an AMQP 0-9-1 delivery as a binding.Message.
type deliveryMessage struct{ d amqp.Delivery }

var _ binding.MessageMetadataReader = deliveryMessage{}

func (m deliveryMessage) header(name string) (string, bool, error) {
	v, ok := m.d.Headers[name]
	if !ok {
		return "", false, nil
	}
	s, isString := v.(string)
	if !isString {
		return "", true, fmt.Errorf("header %q is a %T, not a string", name, v)
	}
	return s, true, nil
}

// ReadEncoding implements binding.MessageReader as the SDK's AMQP
// binding does: an event format's content type is structured, a
// cloudEvents:specversion header binary.
func (m deliveryMessage) ReadEncoding() binding.Encoding {
	if format.Lookup(m.d.ContentType) != nil {
		return binding.EncodingStructured
	}
	if v, _, _ := m.header(ceSpecs.PrefixedSpecVersionName()); ceSpecs.Version(v) != nil {
		return binding.EncodingBinary
	}
	return binding.EncodingUnknown
}

// ReadStructured implements binding.MessageReader.
func (m deliveryMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	f := format.Lookup(m.d.ContentType)
	if f == nil {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, f, bytes.NewReader(m.d.Body))
}

// ReadBinary implements binding.MessageReader.
func (m deliveryMessage) ReadBinary(_ context.Context, w binding.BinaryWriter) error {
	sv, _, _ := m.header(ceSpecs.PrefixedSpecVersionName())
	version := ceSpecs.Version(sv)
	if version == nil {
		return binding.ErrNotBinary
	}
	if m.d.ContentType != "" {
		if err := w.SetAttribute(version.AttributeFromKind(spec.DataContentType), m.d.ContentType); err != nil {
			return err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.d.Headers)) {
		if !strings.HasPrefix(k, bindingPrefix) {
			continue
		}
		v, _, err := m.header(k)
		if err != nil {
			return err
		}
		if attr := version.Attribute(k); attr != nil {
			err = w.SetAttribute(attr, v)
		} else {
			err = w.SetExtension(strings.TrimPrefix(k, bindingPrefix), v)
		}
		if err != nil {
			return err
		}
	}
	if len(m.d.Body) > 0 {
		return w.SetData(bytes.NewReader(m.d.Body))
	}
	return nil
}

// GetAttribute implements binding.MessageMetadataReader.
func (m deliveryMessage) GetAttribute(k spec.Kind) (spec.Attribute, any) {
	sv, _, _ := m.header(ceSpecs.PrefixedSpecVersionName())
	version := ceSpecs.Version(sv)
	if version == nil {
		return nil, nil
	}
	attr := version.AttributeFromKind(k)
	if attr == nil {
		return nil, nil
	}
	if k == spec.DataContentType {
		if m.d.ContentType == "" {
			return attr, nil
		}
		return attr, m.d.ContentType
	}
	if v, ok, _ := m.header(attr.PrefixedName()); ok {
		return attr, v
	}
	return attr, nil
}

// GetExtension implements binding.MessageMetadataReader.
func (m deliveryMessage) GetExtension(name string) any {
	if v, ok, _ := m.header(bindingPrefix + name); ok {
		return v
	}
	return nil
}

// Finish implements binding.Message.
func (deliveryMessage) Finish(error) error { return nil }

// arrives is the mode c arrives in from a sink set to mode: binary mode
// sends an event structured when an attribute has spaces at either end,
// which the SDKs' binary readers trim.
func arrives(c cetest.Case, mode sinks.ContentMode) binding.Encoding {
	if mode == sinks.Binary && sinks.Untrimmed(c.Msg.Attrs) {
		return binding.EncodingBinary
	}
	return binding.EncodingStructured
}

// TestInterop publishes every interop case in each mode and reads each
// with the SDK.
func TestInterop(t *testing.T) {
	cases := cetest.Cases(t)
	srv := rabbitmq.Broker(t)
	ex := rabbitmq.Exchange(t, srv)
	for _, mode := range []sinks.ContentMode{sinks.Structured, sinks.Binary} {
		t.Run(string(mode), func(t *testing.T) {
			queue := rabbitmq.UniqueName(t, "q")
			key := "interop." + string(mode)
			sinktest.RabbitMQQueue(t, srv.URL(), ex, queue, key)
			s := rabbitmq.OpenSink(t, rabbitmq.Config{URL: srv.URL(), Exchange: ex, ContentMode: mode}, nil)
			batch := make([]sinks.Message, len(cases))
			for i, c := range cases {
				batch[i] = c.Msg
				batch[i].Target = key
			}
			rabbitmq.Publish(t, s, batch...)
			got := sinktest.ReadRabbitMQQueue(t, srv.URL(), queue)
			if len(got) != len(cases) {
				t.Fatalf("the queue holds %d messages, want %d", len(got), len(cases))
			}
			for i, c := range cases {
				d := got[i]
				if d.MessageId != c.Msg.ID {
					t.Errorf("%s: message_id %q, want %q", c.Name, d.MessageId, c.Msg.ID)
				}
				cetest.CheckTraceHeaders(t, c, func(name string) (string, bool) {
					v, ok := d.Headers[name]
					s, _ := v.(string)
					return s, ok
				})
				cetest.Check(t, c, cetest.Read(t, c.Name, deliveryMessage{d}, arrives(c, mode)))
			}
		})
	}
}
