package main

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// otlpReceiver is an OTLP/HTTP endpoint (protobuf, as the exporters send
// by default) keeping every span it is sent.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	raw   [][]byte
}

func newOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	rcv := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("receiver got %s %s (%s): %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			t.Errorf("receiver: not an ExportTraceServiceRequest: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rcv.mu.Lock()
		rcv.raw = append(rcv.raw, body)
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				rcv.spans = append(rcv.spans, ss.Spans...)
			}
		}
		rcv.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return rcv, srv.URL
}

// named returns the spans received so far called name.
func (r *otlpReceiver) named(name string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// spanAttrs are s's string attributes.
func spanAttrs(s *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value.GetStringValue()
	}
	return m
}

// intAttr is s's integer attribute key, -1 if it has none.
func intAttr(s *tracepb.Span, key string) int64 {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetIntValue()
		}
	}
	return -1
}

// TestTracesFromWebhookToBroker runs the real binary, spooling to a
// nats-server, with its spans exported over OTLP/HTTP to a receiver in
// the test. An accepted webhook carrying a traceparent gives the span
// tree server → verify, deliver → send (the spool's publish, a producer
// span, later and on another goroutine), all in the sender's trace; the
// consumer finds the producer span's context in the message's
// traceparent header and the sender's in the CloudEvent's traceparent
// attribute. A webhook with a bad signature is one server span, 403,
// without a deliver child; no span holds the body, the task id or the
// secret.
func TestTracesFromWebhookToBroker(t *testing.T) {
	rcv, endpoint := newOTLPReceiver(t)
	bin, config, url, _, js := spoolingBinary(t, "telemetry:\n  endpoint: "+endpoint+"\n  protocol: http/protobuf\n")
	consumed := make(chan *nats.Msg, 4)
	if _, err := js.Conn().ChanSubscribe("task.>", consumed); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // export within 50 ms, not 5 s
	p := startBinary(t, bin, config)
	if l := p.line(t, "hookbridge listening"); l == nil || !strings.Contains(l["tracing"].(string), endpoint) {
		t.Errorf("start-up line %v does not say where spans go", l)
	}

	const (
		senderTrace = "0af7651916cd43dd8448eb211c80319c"
		senderSpan  = "b7ad6b7169203331"
		taskID      = "task-in-trace-7731"
		bodyMarker  = "body-marker-q8"
	)
	senderParent := "00-" + senderTrace + "-" + senderSpan + "-01"
	body := string(envelope(taskID, "finished", 1, map[string]string{"note": bodyMarker}))
	a := postWebhookWith(t, http.DefaultClient, url, crashSecret, body, http.Header{"Traceparent": {senderParent}})
	if a.code != 200 {
		t.Fatalf("answered %d %s", a.code, a.body)
	}
	acceptedID := a.id
	if a := postWebhook(t, http.DefaultClient, url, "whsec_not-the-secret", body); a.code != http.StatusForbidden {
		t.Fatalf("forged webhook answered %d %s", a.code, a.body)
	}

	var msg *nats.Msg
	select {
	case msg = <-consumed:
	case <-time.After(10 * time.Second):
		t.Fatal("no message on task.> within 10s")
	}
	sinktest.WaitFor(t, "the producer span and both server spans at the receiver", func() bool {
		return len(rcv.named("send task.finished")) == 1 && len(rcv.named("POST /webhook")) == 2
	})
	p.stop(t) // flushes what is left

	var accSrv, rejSrv *tracepb.Span
	for _, s := range rcv.named("POST /webhook") {
		switch spanAttrs(s)["hookbridge.result"] {
		case "accepted":
			accSrv = s
		case "bad_signature":
			rejSrv = s
		}
	}
	if accSrv == nil || rejSrv == nil {
		t.Fatalf("server spans %v, want one accepted and one bad_signature", rcv.named("POST /webhook"))
	}
	trace := hex.EncodeToString(accSrv.TraceId)
	if trace != senderTrace || hex.EncodeToString(accSrv.ParentSpanId) != senderSpan || accSrv.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("accepted server span: trace %s parent %x kind %v, want the sender's %s/%s, server", trace, accSrv.ParentSpanId, accSrv.Kind, senderTrace, senderSpan)
	}
	child := func(name string) *tracepb.Span {
		t.Helper()
		for _, s := range rcv.named(name) {
			if hex.EncodeToString(s.TraceId) == senderTrace {
				if string(s.ParentSpanId) != string(accSrv.SpanId) {
					t.Errorf("%s's parent %x, want the server span %x", name, s.ParentSpanId, accSrv.SpanId)
				}
				return s
			}
		}
		t.Fatalf("no %s span in the sender's trace", name)
		return nil
	}
	child("hookbridge.verify")
	deliver := child("hookbridge.deliver")

	send := rcv.named("send task.finished")[0]
	if hex.EncodeToString(send.TraceId) != senderTrace || string(send.ParentSpanId) != string(deliver.SpanId) || send.Kind != tracepb.Span_SPAN_KIND_PRODUCER {
		t.Errorf("send span: trace %x parent %x kind %v, want the sender's trace under deliver %x, producer", send.TraceId, send.ParentSpanId, send.Kind, deliver.SpanId)
	}
	want := map[string]string{"messaging.system": "nats", "messaging.destination.name": "task.finished",
		"messaging.operation.type": "send", "messaging.message.id": acceptedID, "hookbridge.sink": "bus"}
	got := spanAttrs(send)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("send span %s = %q, want %q", k, got[k], v)
		}
	}
	if n := intAttr(send, "hookbridge.attempt"); n != 1 {
		t.Errorf("send span hookbridge.attempt = %d, want 1", n)
	}

	// The consumer: the broker's trace header is the producer span's
	// context; the CloudEvent's traceparent attribute is the sender's.
	wantHeader := "00-" + senderTrace + "-" + hex.EncodeToString(send.SpanId) + "-01"
	if h := msg.Header.Get("traceparent"); h != wantHeader {
		t.Errorf("message traceparent header %q, want the producer span's %q", h, wantHeader)
	}
	var ce map[string]any
	if err := json.Unmarshal(msg.Data, &ce); err != nil {
		t.Fatal(err)
	}
	if ce["traceparent"] != senderParent || ce["id"] != acceptedID {
		t.Errorf("CloudEvent traceparent %v id %v, want the sender's %s and %s", ce["traceparent"], ce["id"], senderParent, acceptedID)
	}

	// The forged webhook: one server span, 403, not an error, no children.
	if code := intAttr(rejSrv, "http.response.status_code"); code != 403 {
		t.Errorf("rejected span http.response.status_code %d, want 403", code)
	}
	if rejSrv.Status != nil && rejSrv.Status.Code == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("a 403 marked the server span an error: %v", rejSrv.Status)
	}
	for _, name := range []string{"hookbridge.deliver", "send task.finished"} {
		for _, s := range rcv.named(name) {
			if string(s.TraceId) == string(rejSrv.TraceId) {
				t.Errorf("the rejected webhook has a %s span", name)
			}
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, raw := range rcv.raw {
		for _, never := range []string{taskID, bodyMarker, crashSecret, "whsec_not-the-secret"} {
			if strings.Contains(string(raw), never) {
				t.Errorf("the exported spans hold %q", never)
			}
		}
	}
}
