package cetest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSMsg is m, a message nats.go's jetstream package fetched, as the
// *nats.Msg the SDK's NATS bindings wrap (subject, headers and data, as
// stored).
func NATSMsg(m jetstream.Msg) *natsgo.Msg {
	return &natsgo.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
}

// sqsPrefix and contentType are the names of hookbridge's SQS mapping:
// its attributes' prefix, as the SDK's Kafka binding has it, and the
// attribute that says the body's media type.
const (
	sqsPrefix   = "ce_"
	contentType = "content-type"
)

var sqsSpecs = spec.WithPrefix(sqsPrefix)

// SQSMessage is an SQS message as a binding.Message of the CloudEvents
// SDK, which has no SQS binding: it reads hookbridge's mapping
// (docs/configuration.md, sqs.content_mode), which follows the SDK's
// Kafka binding. A content-type attribute that names an event format
// (application/cloudevents+json...) means structured mode: the body is
// the event in that format. Otherwise, with a ce_specversion attribute,
// binary mode: the body is data, content-type its datacontenttype and
// each ce_<name> attribute the attribute <name>. binding.ToEvent turns
// it into the SDK's event.
type SQSMessage struct {
	Body  string
	Attrs map[string]string // the String message attributes
	err   error             // an attribute that is not a String
}

var (
	_ binding.Message               = (*SQSMessage)(nil)
	_ binding.MessageMetadataReader = (*SQSMessage)(nil) // binary messages must be one
)

// NewSQSMessage wraps m, received with its message attributes.
func NewSQSMessage(m sqstypes.Message) *SQSMessage {
	sm := &SQSMessage{Body: aws.ToString(m.Body), Attrs: map[string]string{}}
	for _, k := range slices.Sorted(maps.Keys(m.MessageAttributes)) {
		v := m.MessageAttributes[k]
		if aws.ToString(v.DataType) != "String" || v.StringValue == nil {
			sm.err = fmt.Errorf("sqs message attribute %q is of type %q, not a String", k, aws.ToString(v.DataType))
			continue
		}
		sm.Attrs[k] = *v.StringValue
	}
	return sm
}

// ReadEncoding implements binding.MessageReader.
func (m *SQSMessage) ReadEncoding() binding.Encoding {
	switch {
	case format.Lookup(m.Attrs[contentType]) != nil:
		return binding.EncodingStructured
	case sqsSpecs.Version(m.Attrs[sqsSpecs.PrefixedSpecVersionName()]) != nil:
		return binding.EncodingBinary
	}
	return binding.EncodingUnknown
}

// ReadStructured implements binding.MessageReader.
func (m *SQSMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	f := format.Lookup(m.Attrs[contentType])
	if f == nil {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, f, strings.NewReader(m.Body))
}

// ReadBinary implements binding.MessageReader.
func (m *SQSMessage) ReadBinary(_ context.Context, w binding.BinaryWriter) error {
	if m.err != nil {
		return m.err
	}
	version := sqsSpecs.Version(m.Attrs[sqsSpecs.PrefixedSpecVersionName()])
	if version == nil {
		return binding.ErrNotBinary
	}
	for _, k := range slices.Sorted(maps.Keys(m.Attrs)) {
		v := m.Attrs[k]
		var err error
		switch {
		case strings.HasPrefix(k, sqsPrefix):
			if attr := version.Attribute(k); attr != nil {
				err = w.SetAttribute(attr, v)
			} else {
				err = w.SetExtension(strings.TrimPrefix(k, sqsPrefix), v)
			}
		case k == contentType:
			err = w.SetAttribute(version.AttributeFromKind(spec.DataContentType), v)
		}
		if err != nil {
			return err
		}
	}
	if m.Body != "" {
		return w.SetData(bytes.NewBufferString(m.Body))
	}
	return nil
}

// GetAttribute implements binding.MessageMetadataReader for binary mode.
func (m *SQSMessage) GetAttribute(k spec.Kind) (spec.Attribute, any) {
	version := sqsSpecs.Version(m.Attrs[sqsSpecs.PrefixedSpecVersionName()])
	if version == nil {
		return nil, nil
	}
	attr := version.AttributeFromKind(k)
	if attr == nil {
		return nil, nil
	}
	if k == spec.DataContentType {
		if v, ok := m.Attrs[contentType]; ok {
			return attr, v
		}
		return attr, nil
	}
	if v, ok := m.Attrs[attr.PrefixedName()]; ok {
		return attr, v
	}
	return attr, nil
}

// GetExtension implements binding.MessageMetadataReader for binary mode.
func (m *SQSMessage) GetExtension(name string) any {
	if v, ok := m.Attrs[sqsPrefix+name]; ok {
		return v
	}
	return nil
}

// Finish implements binding.Message.
func (m *SQSMessage) Finish(error) error { return nil }
