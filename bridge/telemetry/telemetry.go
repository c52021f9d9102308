// Package telemetry builds hookbridge's OpenTelemetry tracer provider
// from the config's telemetry block and the standard OTEL_* environment,
// and shuts it down. Nothing here is global: the provider is passed to
// what traces (otel.SetTracerProvider is never called), so two services
// in one process, as in tests, do not share one.
//
// Precedence: a key written in the telemetry block wins over its OTEL_*
// variable, which wins over the default. The file says what runs; write
// ${OTEL_...} in it to defer to the environment. What the block has no
// key for (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION,
// _CERTIFICATE, the per-signal _TRACES_ variants) the exporters read from
// the environment themselves.
//
// Tracing is off unless asked for: telemetry.exporter (or
// OTEL_TRACES_EXPORTER) otlp, or an endpoint in the block or in
// OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.
// exporter none, or OTEL_SDK_DISABLED=true, turns it off whatever else
// is set. Off, the provider's tracer is nil: the ingress then skips
// tracing altogether instead of calling a no-op tracer per request.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookbridge/hookbridge/bridge/config"
)

// ScopeName is the instrumentation scope of hookbridge's spans.
const ScopeName = "github.com/hookbridge/hookbridge"

// Provider is the tracer provider a config builds; its zero value, and
// the one Off returns, traces nothing.
type Provider struct {
	tp   *sdktrace.TracerProvider // nil: off
	desc string                   // what Describe says
}

// Options are New's parts beside the config.
type Options struct {
	// Getenv reads the environment; nil means os.Getenv. The OTLP
	// exporters read the variables the block has no key for from the
	// process's environment whatever this is.
	Getenv func(string) string
	// Exporter, when set, receives the spans instead of an OTLP exporter
	// and turns tracing on (tests: tracetest.InMemoryExporter).
	Exporter sdktrace.SpanExporter
	// Version is hookbridge's version, the service.version attribute.
	Version string
}

// New builds the provider cfg and the environment ask for: an off one
// unless tracing is turned on (see the package comment). It contacts
// nobody: the exporter connects when it first exports.
func New(ctx context.Context, cfg config.Telemetry, opts Options) (*Provider, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	s, err := resolve(cfg, getenv)
	if err != nil {
		return nil, err
	}
	if !s.on && opts.Exporter == nil {
		return &Provider{desc: s.describe()}, nil
	}
	exp := opts.Exporter
	if exp == nil {
		if exp, err = newExporter(ctx, s); err != nil {
			return nil, err
		}
	}
	res, err := newResource(ctx, cfg, getenv, opts.Version)
	if err != nil {
		return nil, errors.Join(err, exp.Shutdown(ctx))
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(exp), sdktrace.WithResource(res)}
	if s.sampler != nil {
		tpOpts = append(tpOpts, sdktrace.WithSampler(s.sampler))
	} // else the SDK reads OTEL_TRACES_SAMPLER and _ARG itself
	desc := s.describe()
	if opts.Exporter != nil {
		desc = "to the exporter given in code"
	}
	return &Provider{tp: sdktrace.NewTracerProvider(tpOpts...), desc: desc}, nil
}

// Describe says whether cfg and the environment (read through getenv,
// nil: os.Getenv) turn tracing on, and where spans would go, or why they
// cannot: hookbridge check prints it.
func Describe(cfg config.Telemetry, getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	s, err := resolve(cfg, getenv)
	if err != nil {
		return "", err
	}
	return s.describe(), nil
}

// Enabled reports whether spans are recorded and exported.
func (p *Provider) Enabled() bool { return p != nil && p.tp != nil }

// Tracer returns hookbridge's tracer, nil when tracing is off: callers
// test for nil and skip their spans, which costs nothing.
func (p *Provider) Tracer() trace.Tracer {
	if !p.Enabled() {
		return nil
	}
	return p.tp.Tracer(ScopeName)
}

// W3C returns sc as a W3C traceparent and tracestate, "" and "" when sc
// is not valid: what a message or a queued record carries of a span.
func W3C(sc trace.SpanContext) (traceparent, tracestate string) {
	if !sc.IsValid() {
		return "", ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String(), sc.TraceState().String()
}

// Continue returns ctx with the span a W3C traceparent and tracestate
// name (what W3C writes, or what a webhook came with) as its remote
// parent: ctx as it is when traceparent is empty or malformed.
func Continue(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return traceContext.Extract(ctx, w3cCarrier{traceparent, tracestate})
}

// traceContext is the W3C Trace Context propagator, used explicitly
// rather than through the global one (see the package comment).
var traceContext propagation.TraceContext

// w3cCarrier reads a traceparent and tracestate to the propagator as the
// headers they came in, without the map a MapCarrier would allocate per
// call.
type w3cCarrier struct{ parent, state string }

func (c w3cCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.parent
	case "tracestate":
		return c.state
	}
	return ""
}

func (c w3cCarrier) Set(string, string) {}
func (c w3cCarrier) Keys() []string     { return []string{"traceparent", "tracestate"} }

// Describe says what p exports, for the start-up log line.
func (p *Provider) Describe() string {
	if p == nil || p.desc == "" {
		return "off"
	}
	return p.desc
}

// Shutdown flushes the spans still batched and stops the exporter,
// within ctx. Off, it does nothing.
func (p *Provider) Shutdown(ctx context.Context) error {
	if !p.Enabled() {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: flushing spans: %w", err)
	}
	return nil
}

// settings are cfg's keys resolved against the environment.
type settings struct {
	on       bool
	protocol string
	endpoint string           // the block's, "" to let the exporter read the environment
	sampler  sdktrace.Sampler // nil: the SDK reads the environment
}

func (s settings) describe() string {
	if !s.on {
		return "off"
	}
	where := s.endpoint
	if where == "" {
		where = "the OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT), else the exporter's default"
	}
	sampling := "sampler from OTEL_TRACES_SAMPLER, else parentbased_always_on"
	if s.sampler != nil {
		sampling = "sampler " + s.sampler.Description()
	}
	return "OTLP " + s.protocol + " to " + where + ", " + sampling
}

func resolve(cfg config.Telemetry, getenv func(string) string) (settings, error) {
	var s settings
	if disabled, _ := strconv.ParseBool(getenv("OTEL_SDK_DISABLED")); disabled {
		return s, nil
	}
	exporter := first(cfg.Exporter, getenv("OTEL_TRACES_EXPORTER"))
	switch exporter {
	case config.ExporterNone:
		return s, nil
	case config.ExporterOTLP:
		s.on = true
	case "":
		s.on = cfg.Endpoint != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	default:
		return s, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q: hookbridge exports with otlp, or none", exporter)
	}
	s.protocol = first(cfg.Protocol, getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), config.DefaultTelemetryProtocol)
	if s.protocol != config.ProtocolGRPC && s.protocol != config.ProtocolHTTPProtobuf {
		return s, fmt.Errorf("telemetry: protocol %q: use grpc or http/protobuf", s.protocol)
	}
	s.endpoint = cfg.Endpoint
	if cfg.Sampler != "" {
		var err error
		if s.sampler, err = sampler(cfg.Sampler, cfg.SamplerArg); err != nil {
			return s, err
		}
	}
	return s, nil
}

// sampler builds the OTEL_TRACES_SAMPLER sampler name with ratio arg (1
// when nil), as the SDK does from the environment.
func sampler(name string, arg *float64) (sdktrace.Sampler, error) {
	ratio := 1.0
	if arg != nil {
		ratio = *arg
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	}
	return nil, fmt.Errorf("telemetry: sampler %q: use one of %s", name, strings.Join(config.Samplers, ", "))
}

// newExporter builds the OTLP exporter for s; it reads the OTEL_EXPORTER_OTLP_*
// variables s does not set itself.
func newExporter(ctx context.Context, s settings) (sdktrace.SpanExporter, error) {
	if s.protocol == config.ProtocolGRPC {
		var opts []otlptracegrpc.Option
		if s.endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(s.endpoint))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	var opts []otlptracehttp.Option
	if s.endpoint != "" {
		u, err := tracesURL(s.endpoint)
		if err != nil {
			return nil, err
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(u))
	}
	return otlptracehttp.New(ctx, opts...)
}

// tracesURL is the traces URL of base, an endpoint as
// OTEL_EXPORTER_OTLP_ENDPOINT gives it: the signal's path is appended
// (the exporter's WithEndpointURL takes the URL as is).
func tracesURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("telemetry: endpoint: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	return u.String(), nil
}

// newResource describes the service: service.name defaults to
// DefaultServiceName, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
// override it, and the block's keys override those (later wins).
func newResource(ctx context.Context, cfg config.Telemetry, getenv func(string) string, version string) (*resource.Resource, error) {
	base := []attribute.KeyValue{semconv.ServiceName(config.DefaultServiceName)}
	if version != "" {
		base = append(base, semconv.ServiceVersion(version))
	}
	env, err := envResource(getenv)
	if err != nil {
		return nil, err
	}
	var file []attribute.KeyValue
	pairs, err := cfg.Attributes()
	if err != nil {
		return nil, fmt.Errorf("telemetry.resource_attributes: %w", err)
	}
	for _, kv := range pairs {
		file = append(file, attribute.String(kv[0], kv[1]))
	}
	if cfg.ServiceName != "" {
		file = append(file, semconv.ServiceName(cfg.ServiceName))
	}
	res, err := resource.New(ctx, resource.WithSchemaURL(semconv.SchemaURL), resource.WithTelemetrySDK(),
		resource.WithAttributes(base...), resource.WithAttributes(env...), resource.WithAttributes(file...))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// envResource reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (which
// wins) through getenv, as the SDK's resource.WithFromEnv does from the
// process's environment.
func envResource(getenv func(string) string) ([]attribute.KeyValue, error) {
	var out []attribute.KeyValue
	pairs, err := (&config.Telemetry{ResourceAttributes: getenv("OTEL_RESOURCE_ATTRIBUTES")}).Attributes()
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	for _, kv := range pairs {
		out = append(out, attribute.String(kv[0], kv[1]))
	}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		out = append(out, semconv.ServiceName(name))
	}
	return out, nil
}

// first returns the first of vs that is not empty.
func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
