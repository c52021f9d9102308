package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookbridge/hookbridge/bridge/config"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestResolve: what turns tracing on, and the precedence of the block
// over the environment over the defaults.
func TestResolve(t *testing.T) {
	tests := []struct {
		name        string
		cfg         config.Telemetry
		env         map[string]string
		on          bool
		protocol    string
		endpoint    string
		fileSampler string // the sampler's description when the block sets it
		wantErr     bool
	}{
		{name: "off by default"},
		{name: "on with the env endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, on: true, protocol: "http/protobuf"},
		{name: "on with the env traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, on: true, protocol: "http/protobuf"},
		{name: "on with the file endpoint", cfg: config.Telemetry{Endpoint: "http://c:4318"}, on: true, protocol: "http/protobuf", endpoint: "http://c:4318"},
		{name: "on with exporter otlp alone", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true, protocol: "http/protobuf"},
		{name: "env exporter none wins over an endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{name: "file exporter otlp wins over env none", cfg: config.Telemetry{Exporter: "otlp"}, env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}, on: true, protocol: "http/protobuf"},
		{name: "file exporter none wins over env otlp", cfg: config.Telemetry{Exporter: "none"}, env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}},
		{name: "sdk disabled", cfg: config.Telemetry{Exporter: "otlp"}, env: map[string]string{"OTEL_SDK_DISABLED": "true"}},
		{name: "env protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true, protocol: "grpc"},
		{name: "env traces protocol over the general one", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, on: true, protocol: "http/protobuf"},
		{name: "file protocol wins", cfg: config.Telemetry{Exporter: "otlp", Protocol: "http/protobuf"}, env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true, protocol: "http/protobuf"},
		{name: "file sampler wins", cfg: config.Telemetry{Exporter: "otlp", Sampler: "traceidratio", SamplerArg: new(0.5)}, env: map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, on: true, protocol: "http/protobuf", fileSampler: "TraceIDRatioBased{0.5}"},
		{name: "unknown env exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: true},
		{name: "unknown env protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := resolve(tt.cfg, envOf(tt.env))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if s.on != tt.on || (s.on && (s.protocol != tt.protocol || s.endpoint != tt.endpoint)) {
				t.Errorf("on %v, protocol %q, endpoint %q; want %v, %q, %q", s.on, s.protocol, s.endpoint, tt.on, tt.protocol, tt.endpoint)
			}
			switch {
			case tt.fileSampler == "" && s.sampler != nil:
				t.Errorf("sampler %s set: the SDK should read the environment's", s.sampler.Description())
			case tt.fileSampler != "" && (s.sampler == nil || s.sampler.Description() != tt.fileSampler):
				t.Errorf("sampler %v, want %s", s.sampler, tt.fileSampler)
			}
		})
	}
}

// TestOffByDefault: with nothing configured there is no exporter and
// no tracer, and shutting down does nothing.
func TestOffByDefault(t *testing.T) {
	p, err := New(context.Background(), config.Telemetry{}, Options{Getenv: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Enabled() || p.Tracer() != nil || p.tp != nil || p.Describe() != "off" {
		t.Errorf("enabled %v, tracer %v, describe %q: want off", p.Enabled(), p.Tracer(), p.Describe())
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestOTLPExporters: each protocol builds its exporter without
// contacting the receiver, and shuts down with nothing to flush.
func TestOTLPExporters(t *testing.T) {
	for _, proto := range []string{config.ProtocolGRPC, config.ProtocolHTTPProtobuf} {
		t.Run(proto, func(t *testing.T) {
			p, err := New(context.Background(), config.Telemetry{Endpoint: "http://127.0.0.1:1", Protocol: proto}, Options{Getenv: envOf(nil)})
			if err != nil {
				t.Fatal(err)
			}
			if !p.Enabled() || p.Tracer() == nil {
				t.Fatal("not enabled with an endpoint")
			}
			if want := "OTLP " + proto + " to http://127.0.0.1:1, sampler from OTEL_TRACES_SAMPLER, else parentbased_always_on"; p.Describe() != want {
				t.Errorf("describe %q, want %q", p.Describe(), want)
			}
			if err := p.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://c:4318":   "http://c:4318/v1/traces",
		"http://c:4318/":  "http://c:4318/v1/traces",
		"https://c/otlp":  "https://c/otlp/v1/traces",
		"https://c/otlp/": "https://c/otlp/v1/traces",
	} {
		if got, err := tracesURL(in); err != nil || got != want {
			t.Errorf("tracesURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestResource: service.name and the resource attributes, block over
// environment over default.
func TestResource(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.Telemetry
		env  map[string]string
		want map[string]string
	}{
		{name: "default", want: map[string]string{"service.name": "hookbridge"}},
		{name: "env", env: map[string]string{"OTEL_SERVICE_NAME": "hb-env", "OTEL_RESOURCE_ATTRIBUTES": "team=a,region=eu%20west"},
			want: map[string]string{"service.name": "hb-env", "team": "a", "region": "eu west"}},
		{name: "env service name over env attributes", env: map[string]string{"OTEL_SERVICE_NAME": "hb-env", "OTEL_RESOURCE_ATTRIBUTES": "service.name=attr"},
			want: map[string]string{"service.name": "hb-env"}},
		{name: "block over env", cfg: config.Telemetry{ServiceName: "hb-file", ResourceAttributes: "team=b"},
			env:  map[string]string{"OTEL_SERVICE_NAME": "hb-env", "OTEL_RESOURCE_ATTRIBUTES": "team=a,region=eu"},
			want: map[string]string{"service.name": "hb-file", "team": "b", "region": "eu"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := newResource(context.Background(), tt.cfg, envOf(tt.env), "v1.2.3")
			if err != nil {
				t.Fatal(err)
			}
			got := map[attribute.Key]string{}
			for _, kv := range res.Attributes() {
				got[kv.Key] = kv.Value.String()
			}
			for k, v := range tt.want {
				if got[attribute.Key(k)] != v {
					t.Errorf("%s = %q, want %q", k, got[attribute.Key(k)], v)
				}
			}
			if got["service.version"] != "v1.2.3" {
				t.Errorf("service.version = %q", got["service.version"])
			}
		})
	}
}

// TestSamplerPrecedence: with the block silent the SDK samples as
// OTEL_TRACES_SAMPLER says; the block's sampler wins over it.
func TestSamplerPrecedence(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	for _, tt := range []struct {
		sampler string
		sampled bool
	}{{"", false}, {"always_on", true}} {
		exp := tracetest.NewInMemoryExporter()
		p, err := New(context.Background(), config.Telemetry{Sampler: tt.sampler}, Options{Exporter: exp})
		if err != nil {
			t.Fatal(err)
		}
		_, span := p.Tracer().Start(context.Background(), "x")
		if span.SpanContext().IsSampled() != tt.sampled {
			t.Errorf("sampler %q: sampled %v, want %v", tt.sampler, span.SpanContext().IsSampled(), tt.sampled)
		}
		span.End()
		// InMemoryExporter forgets its spans on Shutdown: count them first.
		if err := p.tp.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := len(exp.GetSpans()); (n == 1) != tt.sampled {
			t.Errorf("sampler %q: %d spans exported", tt.sampler, n)
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		cfg  config.Telemetry
		env  map[string]string
		want string
	}{
		{want: "off"},
		{cfg: config.Telemetry{Endpoint: "http://c:4318", Sampler: "always_on"}, want: "OTLP http/protobuf to http://c:4318, sampler AlwaysOnSampler"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: "OTLP grpc to the OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT), else the exporter's default, sampler from OTEL_TRACES_SAMPLER, else parentbased_always_on"},
	}
	for _, tt := range tests {
		got, err := Describe(tt.cfg, envOf(tt.env))
		if err != nil || got != tt.want {
			t.Errorf("Describe(%+v, %v) = %q, %v; want %q", tt.cfg, tt.env, got, err, tt.want)
		}
	}
	if _, err := Describe(config.Telemetry{}, envOf(map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"})); err == nil {
		t.Error("an unsupported OTEL_TRACES_EXPORTER is not refused")
	}
}

// TestW3CContinue: what W3C writes of a span, Continue reads back as that
// span, remote, with its tracestate; no traceparent or a malformed one
// leaves the context as it was.
func TestW3CContinue(t *testing.T) {
	ts, err := trace.ParseTraceState("rojo=00f067aa0ba902b7")
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0xb7, 2},
		TraceFlags: trace.FlagsSampled, TraceState: ts})
	parent, state := W3C(sc)
	if want := "00-4bf90100000000000000000000000000-b702000000000000-01"; parent != want || state != "rojo=00f067aa0ba902b7" {
		t.Errorf("W3C = %q, %q; want %q and the tracestate", parent, state, want)
	}
	got := trace.SpanContextFromContext(Continue(context.Background(), parent, state))
	if !got.Equal(sc.WithRemote(true)) {
		t.Errorf("Continue read %v, want %v", got, sc.WithRemote(true))
	}
	if p, s := W3C(trace.SpanContext{}); p != "" || s != "" {
		t.Errorf("W3C of an invalid span context = %q, %q", p, s)
	}
	ctx := context.Background()
	for _, bad := range []string{"", "00-0-0-01", "00-00000000000000000000000000000000-b702000000000000-01"} {
		if Continue(ctx, bad, "a=1") != ctx {
			t.Errorf("Continue(%q) changed the context", bad)
		}
	}
}
