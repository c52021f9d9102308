package pubsub_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"

	"github.com/hookbridge/hookbridge/sinks"
	pubsubsink "github.com/hookbridge/hookbridge/sinks/pubsub"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
	"github.com/hookbridge/hookbridge/sinks/sinktest/cetest"
)

// TestInterop publishes cetest's events through the real sink to
// pstest, in each content mode, pulls them with the client library and
// reads them with the official CloudEvents SDK for Go through
// sdkMessage, which reads a Pub/Sub message as the SDK's Pub/Sub
// binding (github.com/cloudevents/sdk-go/protocol/pubsub/v2) does; that
// module is built on the v1 client, so it is mirrored here rather than
// imported. Every attribute and the data must come back as hookbridge
// sent them. In binary mode, an event with an attribute Pub/Sub would
// not carry unchanged (spaces at its ends) must arrive structured, and
// equal all the same.
func TestInterop(t *testing.T) {
	cases := cetest.Cases(t)
	srv := sinktest.PubSub(t)
	// The sink reaches pstest as any deployment reaches an emulator.
	t.Setenv(pubsubsink.EmulatorHostEnv, srv.Addr)
	for _, mode := range []sinks.ContentMode{sinks.Structured, sinks.Binary} {
		t.Run(string(mode), func(t *testing.T) {
			topic := "interop-" + string(mode)
			sub := srv.Topic(topic)
			s, err := pubsubsink.New(context.Background(), pubsubsink.Config{Project: sinktest.PubSubProject, Topic: topic, ContentMode: mode}, []string{topic}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			fallbacks := 0
			for _, c := range cases {
				// One at a time: events without a task id are unordered.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := s.Publish(ctx, []sinks.Message{c.Msg})
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				got := srv.Pull(sub)
				if len(got) != 1 {
					t.Fatalf("%s: the subscription holds %d messages, want 1", c.Name, len(got))
				}
				if got[0].OrderingKey != c.Msg.Key {
					t.Errorf("%s: ordering key %q, want the task id %q", c.Name, got[0].OrderingKey, c.Msg.Key)
				}
				want := mode
				if mode == sinks.Binary && !sinks.Untrimmed(c.Msg.Attrs) {
					want = sinks.Structured
					fallbacks++
				}
				checkAttributes(t, c, want, got[0].Attributes)
				enc := binding.EncodingStructured
				if want == sinks.Binary {
					enc = binding.EncodingBinary
				}
				cetest.Check(t, c, cetest.Read(t, c.Name, newSDKMessage(got[0]), enc))
			}
			if mode == sinks.Binary && fallbacks == 0 {
				t.Error("no event fell back to structured: the set lacks one with spaces at the ends of an attribute")
			}
		})
	}
}

// checkAttributes checks the attributes of c's message in mode beside
// what the SDK reads: structured carries Content-Type and the W3C trace
// context only, binary a ce- attribute per attribute but
// datacontenttype, which is Content-Type, and the W3C trace context
// under its own names too, the publish's when it has one
// (cetest.CheckTraceHeaders).
func checkAttributes(t *testing.T, c cetest.Case, mode sinks.ContentMode, attrs map[string]string) {
	t.Helper()
	ce := 0
	for k := range attrs {
		if strings.HasPrefix(k, "ce-") {
			ce++
		}
	}
	want, wantCE := sinks.StructuredContentType, 0
	if mode == sinks.Binary {
		want, wantCE = c.Msg.Attr("datacontenttype"), len(c.Msg.Attrs)-1
	}
	if attrs["Content-Type"] != want || ce != wantCE {
		t.Errorf("%s: Content-Type %q and %d ce- attributes, want %q and %d: %v", c.Name, attrs["Content-Type"], ce, want, wantCE, attrs)
	}
	cetest.CheckTraceHeaders(t, c, func(name string) (string, bool) { v, ok := attrs[name]; return v, ok })
}

// The names of the SDK's Pub/Sub binding: the attributes' prefix and
// the attribute that says the data's media type, case as it writes and
// reads them.
const (
	sdkPrefix      = "ce-"
	sdkContentType = "Content-Type"
)

var sdkSpecs = spec.WithPrefix(sdkPrefix)

// sdkMessage is a pulled Pub/Sub message as the SDK's Pub/Sub binding
// reads it: a Content-Type attribute naming an event format means
// structured mode; a ce-specversion attribute, binary mode.
type sdkMessage struct {
	m       *pubsubpb.PubsubMessage
	format  format.Format
	version spec.Version
}

var (
	_ binding.Message               = (*sdkMessage)(nil)
	_ binding.MessageMetadataReader = (*sdkMessage)(nil)
)

func newSDKMessage(m *pubsubpb.PubsubMessage) *sdkMessage {
	sm := &sdkMessage{m: m}
	if s := m.Attributes[sdkContentType]; format.IsFormat(s) {
		sm.format = format.Lookup(s)
	}
	if s := m.Attributes[sdkSpecs.PrefixedSpecVersionName()]; s != "" {
		sm.version = sdkSpecs.Version(s)
	}
	return sm
}

func (m *sdkMessage) ReadEncoding() binding.Encoding {
	switch {
	case m.version != nil:
		return binding.EncodingBinary
	case m.format != nil:
		return binding.EncodingStructured
	}
	return binding.EncodingUnknown
}

func (m *sdkMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	if m.version != nil || m.format == nil {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, m.format, bytes.NewReader(m.m.Data))
}

func (m *sdkMessage) ReadBinary(_ context.Context, w binding.BinaryWriter) error {
	if m.version == nil {
		return binding.ErrNotBinary
	}
	for _, k := range slices.Sorted(maps.Keys(m.m.Attributes)) {
		v := m.m.Attributes[k]
		var err error
		switch {
		case strings.HasPrefix(k, sdkPrefix):
			if attr := m.version.Attribute(k); attr != nil {
				err = w.SetAttribute(attr, v)
			} else {
				err = w.SetExtension(strings.TrimPrefix(k, sdkPrefix), v)
			}
		case k == sdkContentType:
			err = w.SetAttribute(m.version.AttributeFromKind(spec.DataContentType), v)
		}
		if err != nil {
			return fmt.Errorf("attribute %s: %w", k, err)
		}
	}
	if m.m.Data != nil {
		return w.SetData(bytes.NewReader(m.m.Data))
	}
	return nil
}

func (m *sdkMessage) GetAttribute(k spec.Kind) (spec.Attribute, any) {
	if m.version == nil {
		return nil, nil
	}
	attr := m.version.AttributeFromKind(k)
	if attr == nil {
		return nil, nil
	}
	if k == spec.DataContentType {
		if v, ok := m.m.Attributes[sdkContentType]; ok {
			return attr, v
		}
		return attr, nil
	}
	if v, ok := m.m.Attributes[attr.PrefixedName()]; ok {
		return attr, v
	}
	return attr, nil
}

func (m *sdkMessage) GetExtension(name string) any {
	if v, ok := m.m.Attributes[sdkPrefix+name]; ok {
		return v
	}
	return nil
}

func (m *sdkMessage) Finish(error) error { return nil }
