package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/signature"
)

// ctxRecorder is a Deliverer that keeps the span context it is handed
// and each event's traceparent attribute, and fails on demand.
type ctxRecorder struct {
	mu          sync.Mutex
	spans       []trace.SpanContext
	traceparent []string
	fail        error
}

func (d *ctxRecorder) Deliver(ctx context.Context, ev *event.Event, _ []route.Delivery) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.spans = append(d.spans, trace.SpanContextFromContext(ctx))
	tp := ""
	for _, a := range ev.Attrs {
		if a.Name == "traceparent" {
			tp = a.Value
		}
	}
	d.traceparent = append(d.traceparent, tp)
	return d.fail
}

// newTracedIngress is newTestIngress with a tracer recording every span.
func newTracedIngress(t *testing.T, d Deliverer, mutate func(*config.Config)) (*Handler, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg := testConfig(mutate)
	h, err := New(cfg, Options{Router: route.New(cfg.Rules()), Deliverer: d, Tracer: tp.Tracer("test"),
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return h, rec
}

const (
	senderTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	senderSpanID  = "00f067aa0ba902b7"
	senderParent  = "00-" + senderTraceID + "-" + senderSpanID + "-01"
	tracedBody    = `{"session_id": "s", "task_id": "task-secret-77", "status": "finished", "note": "body-marker-x9"}`
)

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// byName returns the ended spans by name, failing on a repeated one.
func byName(t *testing.T, rec *tracetest.SpanRecorder) map[string]sdktrace.ReadOnlySpan {
	t.Helper()
	out := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if _, dup := out[s.Name()]; dup {
			t.Fatalf("two spans named %q", s.Name())
		}
		out[s.Name()] = s
	}
	if n := len(rec.Started()); n != len(rec.Ended()) {
		t.Errorf("%d spans started, %d ended", n, len(rec.Ended()))
	}
	return out
}

// TestTraceAccepted: an accepted webhook's span tree, continuing the
// sender's traceparent, and its attributes.
func TestTraceAccepted(t *testing.T) {
	d := &ctxRecorder{}
	h, rec := newTracedIngress(t, d, nil)
	req := signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10), tracedBody)
	req.Header.Set("Traceparent", senderParent)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Fatalf("answered %d %s", w.Code, w.Body)
	}
	spans := byName(t, rec)
	if len(spans) != 3 {
		t.Fatalf("spans %v, want the server span, verify and deliver", keys(spans))
	}
	server, verify, deliver := spans["POST /webhook"], spans[SpanVerify], spans[SpanDeliver]
	if server == nil || verify == nil || deliver == nil {
		t.Fatalf("spans %v", keys(spans))
	}
	if server.SpanKind() != trace.SpanKindServer {
		t.Errorf("server span kind %v", server.SpanKind())
	}
	if got := server.SpanContext().TraceID().String(); got != senderTraceID {
		t.Errorf("trace id %s, want the sender's %s", got, senderTraceID)
	}
	if p := server.Parent(); !p.IsRemote() || p.SpanID().String() != senderSpanID {
		t.Errorf("server span's parent %v, want the sender's span %s", p, senderSpanID)
	}
	for _, c := range []sdktrace.ReadOnlySpan{verify, deliver} {
		if c.Parent().SpanID() != server.SpanContext().SpanID() || c.SpanContext().TraceID() != server.SpanContext().TraceID() {
			t.Errorf("%s is not a child of the server span", c.Name())
		}
	}
	want := map[attribute.Key]string{
		"http.request.method": "POST", "url.path": "/webhook", "url.scheme": "http", "http.route": "/webhook",
		"http.response.status_code": "200", "network.protocol.version": "1.1",
		AttrResult: "accepted", AttrSource: "browser-use", AttrTaskStatus: "finished",
	}
	got := attrs(server)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if got[AttrEventID] == "" {
		t.Error("no event id")
	}
	if _, ok := got[AttrTaskID]; ok {
		t.Error("task id recorded with task_id_attribute off")
	}
	if server.Status().Code != codes.Unset {
		t.Errorf("status %v", server.Status())
	}
	if deliver.Status().Code != codes.Unset {
		t.Errorf("deliver span status %v, want unset", deliver.Status())
	}
	if ev := server.Events(); len(ev) != 1 || ev[0].Name != EventRouted {
		t.Errorf("events %v, want %s", ev, EventRouted)
	}
	// The deliverer works inside the deliver span, for the sinks' spans
	// to come; the event still carries the sender's traceparent.
	if d.spans[0].SpanID() != deliver.SpanContext().SpanID() {
		t.Errorf("deliverer's context holds span %s, want deliver's %s", d.spans[0].SpanID(), deliver.SpanContext().SpanID())
	}
	if d.traceparent[0] != senderParent {
		t.Errorf("event traceparent %q, want the sender's %q", d.traceparent[0], senderParent)
	}
}

// TestTraceNewTrace: with no traceparent the server span is a root, and
// the event starts in its trace: the CloudEvents distributed-tracing
// extension lets a hop add the starting trace the source did not give.
func TestTraceNewTrace(t *testing.T) {
	d := &ctxRecorder{}
	h, rec := newTracedIngress(t, d, nil)
	h.ServeHTTP(httptest.NewRecorder(), signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10), tracedBody))
	server := byName(t, rec)["POST /webhook"]
	if server == nil || server.Parent().IsValid() || !server.SpanContext().IsValid() {
		t.Fatalf("server span %v: want a new root", server)
	}
	sc := server.SpanContext()
	if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; d.traceparent[0] != want {
		t.Errorf("event traceparent %q, want the server span's %q", d.traceparent[0], want)
	}
}

// TestTraceTaskID: the task id is an attribute only when turned on.
func TestTraceTaskID(t *testing.T) {
	for _, on := range []bool{false, true} {
		h, rec := newTracedIngress(t, &ctxRecorder{}, func(c *config.Config) { c.Telemetry.TaskIDAttribute = on })
		h.ServeHTTP(httptest.NewRecorder(), signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10), tracedBody))
		got, ok := attrs(byName(t, rec)["POST /webhook"])[AttrTaskID]
		if ok != on || (on && got != "task-secret-77") {
			t.Errorf("task_id_attribute %v: hookbridge.task_id = %q, %v", on, got, ok)
		}
	}
}

// TestTraceRejected: a rejection's result is on the server span, whose
// status is an error for a 5xx only (a 4xx is the client's, per the HTTP
// conventions for servers); no span holds the secret, the body, its
// task id or the signature.
func TestTraceRejected(t *testing.T) {
	ts := strconv.FormatInt(testNow.Unix(), 10)
	tests := []struct {
		name   string
		req    func(t *testing.T) *http.Request
		fail   error
		status int
		result string
		spans  []string
	}{
		{"bad signature", func(t *testing.T) *http.Request {
			r := signedRequest(t, "/webhook", testSecret, ts, tracedBody)
			r.Body = ioNop(strings.Replace(tracedBody, "finished", "stopped", 1))
			return r
		}, nil, 403, "bad_signature", []string{"POST /webhook", SpanVerify}},
		{"too large", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, ts, `{"status":"finished","pad":"`+strings.Repeat("x", 9000)+`", "note": "body-marker-x9"}`)
		}, nil, 413, "too_large", []string{"POST /webhook"}},
		{"unknown path", func(t *testing.T) *http.Request {
			return signedRequest(t, "/nope?token=body-marker-x9", testSecret, ts, tracedBody)
		}, nil, 404, "not_found", []string{"POST"}},
		{"sink down", func(t *testing.T) *http.Request { return signedRequest(t, "/webhook", testSecret, ts, tracedBody) },
			errors.New("broker at nats://user:body-marker-x9@host refused"), 503, "unavailable", []string{"POST /webhook", SpanVerify, SpanDeliver}},
		{"spool full", func(t *testing.T) *http.Request { return signedRequest(t, "/webhook", testSecret, ts, tracedBody) },
			fmt.Errorf("appending: %w", queue.ErrFull), 503, "spool_full", []string{"POST /webhook", SpanVerify, SpanDeliver}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rec := newTracedIngress(t, &ctxRecorder{fail: tt.fail}, func(c *config.Config) { c.Server.MaxBodyBytes = 8192 })
			req := tt.req(t)
			sig := req.Header.Get(signature.HeaderSignature)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.status {
				t.Fatalf("answered %d, want %d", w.Code, tt.status)
			}
			spans := byName(t, rec)
			if len(spans) != len(tt.spans) {
				t.Errorf("spans %v, want %v", keys(spans), tt.spans)
			}
			server := spans[tt.spans[0]]
			if server == nil {
				t.Fatalf("no span %q in %v", tt.spans[0], keys(spans))
			}
			a := attrs(server)
			if a[AttrResult] != tt.result || a["http.response.status_code"] != strconv.Itoa(tt.status) {
				t.Errorf("result %q status %q, want %s %d", a[AttrResult], a["http.response.status_code"], tt.result, tt.status)
			}
			// A failed delivery fails its deliver span, described by the
			// result and never the error's text.
			if d := spans[SpanDeliver]; d != nil && tt.fail != nil && (d.Status().Code != codes.Error || d.Status().Description != tt.result) {
				t.Errorf("deliver span status %v, want Error %q", d.Status(), tt.result)
			}
			wantCode := codes.Unset
			if tt.status >= 500 {
				wantCode = codes.Error
				if a["error.type"] != strconv.Itoa(tt.status) {
					t.Errorf("error.type %q", a["error.type"])
				}
			}
			if server.Status().Code != wantCode {
				t.Errorf("status %v, want %v", server.Status(), wantCode)
			}
			for _, s := range rec.Ended() {
				values := []string{s.Name(), s.Status().Description}
				for _, kv := range s.Attributes() {
					values = append(values, kv.Value.String())
				}
				for _, e := range s.Events() {
					values = append(values, e.Name)
					for _, kv := range e.Attributes {
						values = append(values, kv.Value.String())
					}
				}
				for _, v := range values {
					for _, never := range []string{testSecret, "body-marker-x9", "task-secret-77", sig, "session_id"} {
						if never != "" && strings.Contains(v, never) {
							t.Errorf("span %s holds %q: %q", s.Name(), never, v)
						}
					}
				}
			}
		})
	}
}

// TestNoTracer: without a tracer no span reaches the deliverer, even with
// a traceparent, and the event keeps the sender's traceparent.
func TestNoTracer(t *testing.T) {
	d := &ctxRecorder{}
	h := newTestIngress(t, d, nil)
	req := signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10), tracedBody)
	req.Header.Set("Traceparent", senderParent)
	h.ServeHTTP(httptest.NewRecorder(), req)
	if len(d.spans) != 1 || d.spans[0].IsValid() || d.traceparent[0] != senderParent {
		t.Fatalf("deliverer saw %v, traceparent %v", d.spans, d.traceparent)
	}
}

func keys(m map[string]sdktrace.ReadOnlySpan) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func ioNop(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
