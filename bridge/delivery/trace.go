package delivery

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/telemetry"
	"github.com/hookbridge/hookbridge/sinks"
)

// This file makes the producer spans of publishes, as OpenTelemetry's
// messaging conventions lay them out:
//
//   - a publish of one message is one "send <destination>" span of kind
//     producer, a child of the span that handed the message over (the
//     webhook's hookbridge.deliver span, read back from the queued record
//     when the spool publishes it later or on another replica), and its
//     context is the one the message carries in the broker's trace
//     headers;
//   - a publish of a batch is one "create <destination>" producer span per
//     message, each a child of its own webhook's span and the context its
//     message carries, plus one "send" span of kind client for the batch
//     with messaging.batch.message_count and a link to every create span:
//     a batch mixes webhooks, so it has no single parent.
//
// The event's traceparent attribute is left as it is: it names the trace
// the event started in (the CloudEvents distributed-tracing extension),
// where the broker's trace headers name this hop.
//
// What a span never holds: a message's body, key (the task id) or
// attributes, an error's text (a broker's may quote its URL and
// credentials), and a destination expanded from a template that may show
// a payload member or, unless telemetry.task_id_attribute is on, a task
// id: for those the template is recorded instead.

// Attribute keys of hookbridge's own on producer spans.
const (
	AttrSink    = attribute.Key("hookbridge.sink")    // the sink's name
	AttrAttempt = attribute.Key("hookbridge.attempt") // 1 for the first publish of a queued message
)

// Operation names, for span names and messaging.operation.name.
const (
	opSend   = "send"
	opCreate = "create"
)

// Tracing makes producer spans around publishes. A nil *Tracing traces
// nothing, and costs one nil check per publish.
type Tracing struct {
	tracer trace.Tracer
	sinks  map[string]*sinkTracing // by sink name
}

// sinkTracing is what the spans of one sink say about where it publishes.
type sinkTracing struct {
	system        attribute.KeyValue
	defaultTarget string
	private       []privateTemplate // templates whose expansions stay out of traces
}

type privateTemplate struct {
	template string
	match    *regexp.Regexp
}

// NewTracing returns the tracing of cfg's sinks' publishes to tracer, nil
// when tracer is nil (tracing off).
func NewTracing(tracer trace.Tracer, cfg *config.Config) *Tracing {
	if tracer == nil {
		return nil
	}
	t := &Tracing{tracer: tracer, sinks: map[string]*sinkTracing{}}
	taskIDs := cfg.Telemetry.TaskIDAttribute
	for _, sc := range cfg.Sinks {
		system := sc.Kind.System
		if system == "" {
			system = sc.Type
		}
		st := &sinkTracing{system: semconv.MessagingSystemKey.String(system)}
		if sc.Options != nil {
			st.defaultTarget = sc.Options.DefaultTarget()
		}
		for _, tt := range cfg.TargetTemplates(sc.Name) {
			rt, ok := tt.(route.Template)
			if ok && rt.Private(taskIDs) {
				// The template as written may hold a credential too
				// (a token in an http target's query): shown drops it.
				st.private = append(st.private, privateTemplate{template: shown(rt.String()), match: regexp.MustCompile(rt.Pattern())})
			}
		}
		t.sinks[sc.Name] = st
	}
	return t
}

// destination returns the span-name part and the attribute for target:
// messaging.destination.name, or messaging.destination.template when the
// target may be an expansion of a private template.
func (st *sinkTracing) destination(target string) (string, attribute.KeyValue) {
	if target == "" {
		target = st.defaultTarget
	}
	for _, p := range st.private {
		if !p.match.MatchString(target) {
			continue
		}
		if p.template == "" {
			return "", attribute.KeyValue{}
		}
		return p.template, semconv.MessagingDestinationTemplate(p.template)
	}
	if target = shown(target); target == "" {
		return "", attribute.KeyValue{}
	}
	return target, semconv.MessagingDestinationName(target)
}

// shown is a destination as a trace may show it: a URL (an http sink's
// target, an SQS queue URL) loses its user info, query and fragment,
// which may hold credentials. It works on the text, not a parsed URL, so
// that a template's {variables} stay as written.
func shown(target string) string {
	scheme, rest, isURL := strings.Cut(target, "://")
	if !isURL {
		return target
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	authority := len(rest)
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority = i
	}
	if at := strings.LastIndexByte(rest[:authority], '@'); at >= 0 {
		rest = rest[at+1:]
	}
	return scheme + "://" + rest
}

// publish publishes msgs to s, the sink called name, inside producer
// spans. parent returns the context message i continues (its webhook's
// span); attempts, when not nil, are the messages' attempt numbers (a
// queued message's, from 1).
//
// Attributes and links are added only to spans that record: with a ratio
// sampler most spans do not, and they then cost a span context and the
// trace header, not the attributes.
func (t *Tracing) publish(ctx context.Context, name string, s sinks.Sink, msgs []sinks.Message, parent func(i int) context.Context, attempts []int) error {
	st := t.sinks[name]
	if st == nil {
		st = &sinkTracing{system: semconv.MessagingSystemKey.String(name)}
	}
	out := make([]sinks.Message, len(msgs))
	copy(out, msgs)

	// Every message gets a producer span, a child of its webhook's, whose
	// context it carries: "send" when it goes alone, "create" in a batch,
	// which then gets a send span of its own below.
	op, opType := opCreate, semconv.MessagingOperationTypeCreate
	var one [1]trace.Span // a lone message's span, without allocating
	spans := one[:]
	if len(msgs) == 1 {
		op, opType = opSend, semconv.MessagingOperationTypeSend
	} else {
		spans = make([]trace.Span, len(msgs))
	}
	batchDest, batchAttr := "", attribute.KeyValue{}
	for i := range msgs {
		dest, destAttr := st.destination(msgs[i].Target)
		if i == 0 || (dest == batchDest && destAttr == batchAttr) {
			batchDest, batchAttr = dest, destAttr
		} else {
			batchDest, batchAttr = "", attribute.KeyValue{} // mixed: the batch names none
		}
		_, sp := t.tracer.Start(parent(i), spanName(op, dest), trace.WithSpanKind(trace.SpanKindProducer))
		if sp.IsRecording() {
			sp.SetAttributes(st.system, AttrSink.String(name), semconv.MessagingOperationName(op),
				opType, semconv.MessagingMessageID(msgs[i].ID))
			setValid(sp, destAttr)
			if attempts != nil {
				sp.SetAttributes(AttrAttempt.Int(attempts[i]))
			}
		}
		spans[i] = sp
		out[i].Trace = contextOf(sp)
	}
	if len(msgs) == 1 {
		err := s.Publish(ctx, out)
		endPublish(spans[0], err)
		return err
	}

	_, send := t.tracer.Start(ctx, spanName(opSend, batchDest), trace.WithSpanKind(trace.SpanKindClient))
	if send.IsRecording() {
		send.SetAttributes(st.system, AttrSink.String(name), semconv.MessagingOperationName(opSend),
			semconv.MessagingOperationTypeSend, semconv.MessagingBatchMessageCount(len(msgs)))
		setValid(send, batchAttr)
		for _, sp := range spans {
			send.AddLink(trace.Link{SpanContext: sp.SpanContext()})
		}
	}
	err := s.Publish(ctx, out)
	for i, sp := range spans {
		endPublish(sp, sinks.MessageErr(err, i))
	}
	endPublish(send, err)
	return err
}

// setValid sets those of attrs that are set: a zero KeyValue is an
// attribute that does not apply.
func setValid(span trace.Span, attrs ...attribute.KeyValue) {
	for _, a := range attrs {
		if a.Valid() {
			span.SetAttributes(a)
		}
	}
}

func spanName(op, dest string) string {
	if dest == "" {
		return op
	}
	return op + " " + dest
}

// endPublish ends a producer span with the publish's outcome: on a
// failure, error.type says what kind (never the error's text) and the
// status is Error.
func endPublish(span trace.Span, err error) {
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		span.SetStatus(codes.Error, "publish failed")
	}
	span.End()
}

// errorType is error.type for a failed publish: a low-cardinality class.
func errorType(err error) string {
	var be *sinks.BatchError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case sinks.IsPermanent(err):
		return "permanent"
	case errors.As(err, &be):
		return "batch_partly_failed"
	}
	return "_OTHER"
}

// contextOf is span's W3C trace context, for a message's trace headers
// or a queued record.
func contextOf(span trace.Span) sinks.TraceContext {
	return traceContextOf(span.SpanContext())
}

func traceContextOf(sc trace.SpanContext) sinks.TraceContext {
	parent, state := telemetry.W3C(sc)
	return sinks.TraceContext{Parent: parent, State: state}
}

// queuedTrace is the trace context a record queued from ctx carries: the
// span ctx holds (the webhook's hookbridge.deliver span), or none.
func queuedTrace(ctx context.Context) sinks.TraceContext {
	return traceContextOf(trace.SpanContextFromContext(ctx))
}

// continuing returns ctx with the remote span context of a queued
// record's trace as its parent: the record's own when it has one, else the
// event's traceparent attribute (a record queued while tracing was off
// still joins the sender's trace), else none, a new trace.
func continuing(ctx context.Context, r *queue.Record) context.Context {
	tc := r.Trace
	if tc.Parent == "" {
		h := r.Message.TraceHeaders()
		tc = sinks.TraceContext{Parent: h[0].Value, State: h[1].Value}
	}
	return telemetry.Continue(ctx, tc.Parent, tc.State)
}
