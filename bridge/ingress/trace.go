package ingress

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/telemetry"
)

// This file traces webhooks (Options.Tracer). Each one gets a server span
// named after the source's path, as the HTTP semantic conventions name a
// span by its route, continuing the sender's traceparent when it sent one.
// Verification and delivery are child spans, as they take time worth
// seeing (canonicalizing and an HMAC; an fsync or a broker's
// confirmation), and the delivery span's context is what the deliverer
// gets, so spans of the spool and the sinks join the trace. Routing, a
// few microseconds in memory, is an event on the server span.
//
// What a span never holds: the body or any part of it but the event's id
// and status, a header (the signature and timestamp included), the query
// string, an error's text (a broker's may quote its URL and credentials),
// and the task id unless telemetry.task_id_attribute is on.
//
// With no tracer, none of this runs: ServeHTTP goes straight to serve,
// and the hooks in serve test h.tracer first.

// Attribute keys of hookbridge's own, beside the semantic conventions'.
const (
	AttrResult     = attribute.Key("hookbridge.result")      // Result.String()
	AttrSource     = attribute.Key("hookbridge.source")      // the source's name
	AttrEventID    = attribute.Key("hookbridge.event_id")    // the CloudEvent id
	AttrTaskStatus = attribute.Key("hookbridge.task_status") // the event's status
	AttrTaskID     = attribute.Key("hookbridge.task_id")     // only with telemetry.task_id_attribute
	AttrRoutes     = attribute.Key("hookbridge.routes")      // routes the event matched
	AttrTargets    = attribute.Key("hookbridge.targets")     // deliveries it was handed to
)

// Span names of the children and events.
const (
	SpanVerify   = "hookbridge.verify"
	SpanDeliver  = "hookbridge.deliver"
	EventRouted  = "hookbridge.routed"
	maxPathAttrs = 256 // url.path is clipped to this: it is the sender's
)

// tracedWriter records what a traced request was answered, for its span:
// the status written and the result counted. Unwrap keeps
// http.ResponseController (the body read's deadlines) working through it.
type tracedWriter struct {
	http.ResponseWriter
	span    trace.Span
	status  int
	result  Result
	counted bool
	open    []trace.Span // children to end if the request stops inside them
}

func (t *tracedWriter) WriteHeader(code int) {
	if t.status == 0 {
		t.status = code
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *tracedWriter) Write(b []byte) (int, error) {
	if t.status == 0 {
		t.status = http.StatusOK
	}
	return t.ResponseWriter.Write(b)
}

func (t *tracedWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// serveTraced serves r inside its server span.
func (h *Handler) serveTraced(w http.ResponseWriter, r *http.Request) {
	ctx := telemetry.Continue(r.Context(), r.Header.Get("Traceparent"), r.Header.Get("Tracestate"))
	method, known := methodAttr(r.Method)
	name := "HTTP"
	if known {
		name = r.Method
	}
	src, isSource := h.sources[r.URL.Path]
	if isSource {
		// The path is the source's, from the config: a route template
		// with no variables, so it is low-cardinality as a name must be.
		name += " " + r.URL.Path
	}
	// Attributes go only on a span that records: hookbridge's samplers
	// decide on the trace id and the parent, never on attributes, and
	// with a ratio most spans are not recorded.
	ctx, span := h.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(method, semconv.URLPath(clipTo(r.URL.Path, maxPathAttrs)), semconv.URLScheme(scheme(r)))
		if v := protocolVersion(r); v != "" {
			span.SetAttributes(semconv.NetworkProtocolVersion(v))
		}
		if isSource {
			span.SetAttributes(semconv.HTTPRoute(r.URL.Path), AttrSource.String(src.name))
		}
	}
	tw := &tracedWriter{ResponseWriter: w, span: span}
	defer func() {
		for _, c := range tw.open {
			c.End() // a no-op on a span ended already
		}
		endServerSpan(tw)
	}()
	h.serve(tw, r.WithContext(ctx))
}

// endServerSpan records the answer on the server span and ends it. As
// the HTTP semantic conventions have it for a server, only a 5xx is an
// error: a 4xx is the client's doing and leaves the status unset, its
// cause in hookbridge.result.
func endServerSpan(tw *tracedWriter) {
	if !tw.span.IsRecording() {
		tw.span.End()
		return
	}
	if tw.status != 0 {
		tw.span.SetAttributes(semconv.HTTPResponseStatusCode(tw.status))
	}
	if tw.counted {
		tw.span.SetAttributes(AttrResult.String(tw.result.String()))
	}
	if tw.status >= 500 {
		tw.span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(tw.status)))
		desc := ""
		if tw.counted {
			desc = tw.result.String()
		}
		tw.span.SetStatus(codes.Error, desc)
	}
	tw.span.End()
}

// noteResult records res on w's span, if w is a traced request's.
func (h *Handler) noteResult(w http.ResponseWriter, res Result) {
	if tw, ok := w.(*tracedWriter); ok {
		tw.result, tw.counted = res, true
	}
}

// startChild starts a child span of r's named name, ended by the caller
// or, should the request stop first, by serveTraced. nil when untraced.
func (h *Handler) startChild(w http.ResponseWriter, ctx context.Context, name string) (context.Context, trace.Span) {
	tw, ok := w.(*tracedWriter)
	if !ok {
		return ctx, nil
	}
	ctx, sp := h.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
	tw.open = append(tw.open, sp)
	return ctx, sp
}

// noteEvent records ev's identity on w's span: its id and status, and its
// task id only when telemetry.task_id_attribute is on.
func (h *Handler) noteEvent(w http.ResponseWriter, ev *event.Event) {
	tw, ok := w.(*tracedWriter)
	if !ok || !tw.span.IsRecording() {
		return
	}
	tw.span.SetAttributes(AttrEventID.String(ev.ID), AttrTaskStatus.String(clipTo(ev.Status, maxPathAttrs)))
	if h.taskIDAttr && ev.TaskID != "" {
		tw.span.SetAttributes(AttrTaskID.String(clipTo(ev.TaskID, maxPathAttrs)))
	}
}

// noteRouted adds the routing event to w's span.
func (h *Handler) noteRouted(w http.ResponseWriter, routes, targets, failed int) {
	if tw, ok := w.(*tracedWriter); ok && tw.span.IsRecording() {
		tw.span.AddEvent(EventRouted, trace.WithAttributes(AttrRoutes.Int(routes), AttrTargets.Int(targets),
			attribute.Int("hookbridge.conditions_failed", failed)))
	}
}

// startingTrace is the trace an event starts in when its webhook came
// without a traceparent: the server span's, which ctx holds. The
// CloudEvents distributed-tracing extension lets a hop add the starting
// trace when the source gave none; where the source gave one, the event
// keeps it, and this hop's context travels in the broker's own headers.
func startingTrace(ctx context.Context) event.Trace {
	parent, state := telemetry.W3C(trace.SpanContextFromContext(ctx))
	return event.Trace{Parent: parent, State: state}
}

// endChild ends sp (nil: untraced), an error if failed, with res as its
// description and never the error's text.
func endChild(sp trace.Span, failed bool, res Result) {
	if sp == nil {
		return
	}
	if failed && sp.IsRecording() {
		sp.SetStatus(codes.Error, res.String())
	}
	sp.End()
}

// methodAttr is http.request.method: a known method as sent, any other
// as _OTHER (the conventions bound the attribute's values).
func methodAttr(m string) (attribute.KeyValue, bool) {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return semconv.HTTPRequestMethodKey.String(m), true
	}
	return semconv.HTTPRequestMethodOther, false
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// protocolVersion is network.protocol.version: "1.1", "2", ...
func protocolVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor == 1:
		return "1." + strconv.Itoa(r.ProtoMinor)
	case r.ProtoMajor > 1:
		return strconv.Itoa(r.ProtoMajor)
	}
	return ""
}
