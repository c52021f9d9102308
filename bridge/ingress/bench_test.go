package ingress

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/metrics"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// acceptAll is a Deliverer that accepts every event at once, so
// BenchmarkIngress measures the handler's own cost.
type acceptAll struct{ n atomic.Uint64 }

func (a *acceptAll) Deliver(ctx context.Context, ev *event.Event, d []route.Delivery) error {
	a.n.Add(1)
	return nil
}

// benchWriter is a minimal reusable http.ResponseWriter. Its header map is
// kept from one request to the next (writeJSON sets the same keys every
// time), so what allocates is the handler, not the recorder.
type benchWriter struct {
	header http.Header
	status int
	body   []byte // the last Write, not copied: the handler does not reuse it
}

func newBenchWriter() *benchWriter { return &benchWriter{header: make(http.Header, 4)} }

func (w *benchWriter) Header() http.Header { return w.header }

func (w *benchWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = p
	return len(p), nil
}

// benchBody is a request body reset for each request without allocating.
type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

// benchRequest is one reusable signed POST to /webhook.
type benchRequest struct {
	req  *http.Request
	body benchBody
}

func newBenchRequest(ts string) *benchRequest {
	r := &benchRequest{req: httptest.NewRequest(http.MethodPost, "/webhook", nil)}
	r.req.Header.Set("Content-Type", "application/json")
	r.req.Header.Set(signature.HeaderTimestamp, ts)
	r.req.Header.Set(signature.HeaderSignature, "")
	r.req.Body = &r.body
	return r
}

// set makes the request carry body, signed with sig.
func (r *benchRequest) set(body []byte, sig string) *http.Request {
	r.body.Reset(body)
	r.req.ContentLength = int64(len(body))
	r.req.Header[signature.HeaderSignature][0] = sig
	return r.req
}

// serve answers one request with w and reports whether it was accepted
// and routed once: not an error, not a duplicate, not unrouted.
func (w *benchWriter) serve(h *Handler, r *http.Request) bool {
	w.status, w.body = 0, nil
	h.ServeHTTP(w, r)
	return w.status == http.StatusOK && bytes.HasSuffix(w.body, routedOnce)
}

var routedOnce = []byte(`,"routes":1}` + "\n")

// Replay protection: each accepted event id is remembered (for the
// source's tolerance), and the same body again is answered "duplicate"
// without being routed. BenchmarkIngress keeps it on, as configured by
// default, and rotates through benchBodies distinct pre-signed deliveries
// (each a body200 with its own session id) with the replay cache capped at
// benchReplayCache ids: by the time a body comes round again its id has
// been evicted, so every request takes the accepted path, and the cache
// works in its steady state (one lookup, one insertion, one eviction per
// request). The replay-off case (tolerance 0, replay_window 0) shows what
// the cache and the freshness check cost.
const (
	benchBodies      = 4096
	benchReplayCache = 1024 // < benchBodies
)

// signedBodies returns benchBodies distinct ~230-byte envelopes and their
// signatures at ts.
func signedBodies(b *testing.B, ts string) ([][]byte, []string) {
	b.Helper()
	const sessionTail = "73f083bc94b4" // of Delivery200's session_id
	if bytes.Count(sinktest.Delivery200, []byte(sessionTail)) != 1 {
		b.Fatal("sinktest.Delivery200 changed: update signedBodies")
	}
	bodies := make([][]byte, benchBodies)
	sigs := make([]string, benchBodies)
	var cz signature.Canonicalizer
	for i := range bodies {
		bodies[i] = bytes.Replace(sinktest.Delivery200, []byte(sessionTail), fmt.Appendf(nil, "%012x", i), 1)
		c, err := cz.Canonicalize(bodies[i])
		if err != nil {
			b.Fatal(err)
		}
		sigs[i] = signature.Sign([]byte(testSecret), ts, c.JSON)
	}
	return bodies, sigs
}

// newBenchIngress is newTestIngress with one source at /webhook (one
// secret to try) and the replay cache on or off.
func newBenchIngress(b *testing.B, d Deliverer, replay bool, m *metrics.Metrics, tracer trace.Tracer) *Handler {
	b.Helper()
	cfg := testConfig(func(cfg *config.Config) {
		cfg.Sources = []config.Source{{Name: "browser-use", Path: "/webhook", Secrets: []config.Secret{testSecret}}}
		cfg.Server.ReplayCacheSize = benchReplayCache
		if !replay {
			var off time.Duration
			cfg.Sources[0].Tolerance = &off
			cfg.Server.ReplayWindow = &off
		}
	})
	h, err := New(cfg, Options{Router: route.New(cfg.Rules()), Deliverer: d, Metrics: m, Tracer: tracer, Now: func() time.Time { return testNow }})
	if err != nil {
		b.Fatal(err)
	}
	if on := h.sources["/webhook"].replay != nil; on != replay {
		b.Fatalf("replay cache on = %v, want %v", on, replay)
	}
	return h
}

// BenchmarkIngress is the whole Handler.ServeHTTP for a signed 200-byte
// envelope answered 200 (routed to one target) by a Deliverer that accepts
// at once: read, canonicalize, verify, check freshness and replay,
// normalize, route, answer.
func BenchmarkIngress(b *testing.B) {
	ts := strconv.FormatInt(testNow.Unix(), 10)
	bodies, sigs := signedBodies(b, ts)

	serial := func(b *testing.B, replay, withMetrics bool, tracer trace.Tracer) {
		d := &acceptAll{}
		var m *metrics.Metrics
		if withMetrics {
			var err error
			if m, err = metrics.New(prometheus.NewRegistry()); err != nil {
				b.Fatal(err)
			}
		}
		h := newBenchIngress(b, d, replay, m, tracer)
		r, w := newBenchRequest(ts), newBenchWriter()
		b.SetBytes(int64(len(bodies[0])))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := i % len(bodies)
			i++
			if !w.serve(h, r.set(bodies[k], sigs[k])) {
				b.Fatalf("request %d: answered %d %s, want 200 routed once", i, w.status, w.body)
			}
		}
		if got := h.Count(ResultAccepted); got != uint64(i) || d.n.Load() != uint64(i) {
			b.Fatalf("%d requests, %d accepted, %d delivered", i, got, d.n.Load())
		}
	}
	b.Run("accepted", func(b *testing.B) { serial(b, true, false, nil) })
	b.Run("replay-off", func(b *testing.B) { serial(b, false, false, nil) })
	b.Run("metrics", func(b *testing.B) { serial(b, true, true, nil) })
	// Telemetry on: every webhook sampled, its three spans batched as in
	// production and handed to an exporter that drops them.
	b.Run("traced", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		serial(b, true, false, tp.Tracer("bench"))
	})
	// Telemetry on, no webhook sampled (as most are with a low
	// traceidratio): the spans exist but record nothing.
	b.Run("traced-unsampled", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}), sdktrace.WithSampler(sdktrace.NeverSample()))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		serial(b, true, false, tp.Tracer("bench"))
	})
	// Concurrent webhooks share the sync.Pools, the Verifier's pool and the
	// replay cache's mutex.
	b.Run("parallel", func(b *testing.B) {
		d := &acceptAll{}
		h := newBenchIngress(b, d, true, nil, nil)
		b.SetBytes(int64(len(bodies[0])))
		b.ReportAllocs()
		var next atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			r, w := newBenchRequest(ts), newBenchWriter()
			for pb.Next() {
				k := (next.Add(1) - 1) % uint64(len(bodies))
				if !w.serve(h, r.set(bodies[k], sigs[k])) {
					b.Errorf("answered %d %s, want 200 routed once", w.status, w.body)
					return
				}
			}
		})
		if n := next.Load(); h.Count(ResultAccepted) != n || d.n.Load() != n {
			b.Fatalf("%d requests, %d accepted, %d delivered", n, h.Count(ResultAccepted), d.n.Load())
		}
	})
}

// discardExporter drops the spans it is given.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }
