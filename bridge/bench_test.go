package bridge

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of the webhook hot path: Normalize, Router.Route and the whole
// Ingress.ServeHTTP. The bodies are those of BenchmarkCanonicalVerify*
// (body200, body20K in canonical_test.go), plus bodyFlat200 for the older
// flat form.

// bodyFlat200 is a ~200-byte delivery in the flat form (no envelope): the
// event id then includes the signed timestamp header.
var bodyFlat200 = []byte(`{"session_id": "cd9cc7bf-e3af-4181-80a2-73f083bc94b4", "task_id": "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45", "status": "finished", "updated_at": "2025-05-25T09:22:22.269116+00:00"}`)

// BenchmarkNormalize calls Normalize on an already canonicalized body, as
// Ingress.ServeHTTP does after verifying it.
func BenchmarkNormalize(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"flat-200B", bodyFlat200},
		{"envelope-200B", body200},
		{"envelope-20KB", body20K},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var cz Canonicalizer
			c, err := cz.Canonicalize(bc.body)
			if err != nil {
				b.Fatal(err)
			}
			const ts = "1748164942"
			received := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				ev, err := Normalize("browser-use", ts, received, c, Trace{})
				if err != nil {
					b.Fatal(err)
				}
				if ev.Status != "finished" || ev.Test || len(ev.JSON) < len(c.JSON)/2 {
					b.Fatalf("unexpected event: status %q test %v, %d bytes", ev.Status, ev.Test, len(ev.JSON))
				}
			}
		})
	}
}

// routeStatuses are the statuses the 50-route config names, then one it
// does not (taken by the "*" routes only).
var routeStatuses = []string{"created", "started", "running", "paused", "resumed", "stopped", "finished", "failed", "timed_out", "unnamed_status"}

// routes50YAML is a config with 50 routes over NATS, Kafka and file sinks:
// exact statuses (one or two per route), every seventh route "*", static
// targets and {status}, {task_id} and {source} templates, some sync.
func routes50YAML() string {
	var b strings.Builder
	b.WriteString(`sources:
  - name: browser-use
    secrets: ["whsec_test_secret"]
sinks:
  - name: bus
    type: nats
    url: nats://127.0.0.1:4222
    jetstream: true
  - name: events
    type: kafka
    brokers: [kafka-1:9092]
  - name: audit
    type: file
    path: ./events.jsonl
routes:
`)
	named := routeStatuses[:len(routeStatuses)-1]
	for i := range 50 {
		fmt.Fprintf(&b, "  - name: route-%02d\n", i)
		if i%11 == 5 {
			b.WriteString("    delivery: sync\n")
		}
		switch {
		case i%7 == 0:
			b.WriteString("    status: [\"*\"]\n")
		case i%3 == 0:
			fmt.Fprintf(&b, "    status: [%s, %s]\n", named[i%len(named)], named[(i*5+1)%len(named)])
		default:
			fmt.Fprintf(&b, "    status: [%s]\n", named[i%len(named)])
		}
		b.WriteString("    to:\n")
		switch i % 5 {
		case 0:
			b.WriteString("      - {sink: bus, subject: \"task.{status}\"}\n")
		case 1:
			b.WriteString("      - {sink: bus, subject: \"by-task.{task_id}.{status}\"}\n")
		case 2:
			b.WriteString("      - {sink: events, topic: task-events}\n")
		case 3:
			fmt.Fprintf(&b, "      - {sink: bus, subject: \"route%02d.{source}.{status}\"}\n", i)
		case 4:
			b.WriteString("      - {sink: audit}\n")
			b.WriteString("      - {sink: events, topic: \"events-{status}\"}\n")
		}
	}
	return b.String()
}

// newRouter50 builds the Router of routes50YAML through the config loader.
func newRouter50(b *testing.B) *Router {
	b.Helper()
	cfg, err := ParseConfig("routes50.yaml", []byte(routes50YAML()), nil)
	if err != nil {
		b.Fatal(err)
	}
	if len(cfg.Routes) != 50 {
		b.Fatalf("%d routes, want 50", len(cfg.Routes))
	}
	r, err := NewRouter(cfg.Routes)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// routeEvents returns one event per status of routeStatuses.
func routeEvents() []*Event {
	evs := make([]*Event, len(routeStatuses))
	for i, st := range routeStatuses {
		evs[i] = &Event{Source: "browser-use", Type: StatusUpdateType, Status: st, TaskID: "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45"}
	}
	return evs
}

// BenchmarkRoute50 routes events of every status (and one no route names)
// through a 50-route Router, in turn. deliveries/event is the fan-out after
// de-duplication, averaged over the statuses.
func BenchmarkRoute50(b *testing.B) {
	r := newRouter50(b)
	evs := routeEvents()
	total := 0
	for _, ev := range evs {
		d, _ := r.Route(ev)
		if len(d) == 0 {
			b.Fatalf("status %q: no delivery, but there are * routes", ev.Status)
		}
		total += len(d)
	}
	perEvent := float64(total) / float64(len(evs))

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			d, routes := r.Route(evs[i%len(evs)])
			i++
			if len(d) == 0 || len(routes) == 0 {
				b.Fatal("no delivery")
			}
		}
		b.ReportMetric(perEvent, "deliveries/event")
	})
	// The Router is immutable and takes no lock; this shows whether
	// anything in Route still serializes concurrent webhooks.
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var start atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(start.Add(1))
			for pb.Next() {
				d, routes := r.Route(evs[i%len(evs)])
				i++
				if len(d) == 0 || len(routes) == 0 {
					b.Error("no delivery")
					return
				}
			}
		})
		b.ReportMetric(perEvent, "deliveries/event")
	})
}

// acceptAll is a Deliverer that accepts every event at once, so
// BenchmarkIngress measures the handler's own cost.
type acceptAll struct{ n atomic.Uint64 }

func (a *acceptAll) Deliver(ctx context.Context, ev *Event, d []Delivery) error {
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
	r.req.Header.Set(HeaderTimestamp, ts)
	r.req.Header.Set(HeaderSignature, "")
	r.req.Body = &r.body
	return r
}

// set makes the request carry body, signed with sig.
func (r *benchRequest) set(body []byte, sig string) *http.Request {
	r.body.Reset(body)
	r.req.ContentLength = int64(len(body))
	r.req.Header[HeaderSignature][0] = sig
	return r.req
}

// serve answers one request with w and reports whether it was accepted
// and routed once: not an error, not a duplicate, not unrouted.
func (w *benchWriter) serve(h *Ingress, r *http.Request) bool {
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
	const sessionTail = "73f083bc94b4" // of body200's session_id
	if bytes.Count(body200, []byte(sessionTail)) != 1 {
		b.Fatal("body200 changed: update signedBodies")
	}
	bodies := make([][]byte, benchBodies)
	sigs := make([]string, benchBodies)
	var cz Canonicalizer
	for i := range bodies {
		bodies[i] = bytes.Replace(body200, []byte(sessionTail), fmt.Appendf(nil, "%012x", i), 1)
		c, err := cz.Canonicalize(bodies[i])
		if err != nil {
			b.Fatal(err)
		}
		sigs[i] = Signature([]byte(testSecret), ts, c.JSON)
	}
	return bodies, sigs
}

// newBenchIngress is newTestIngress with one source at /webhook (one
// secret to try) and the replay cache on or off.
func newBenchIngress(b *testing.B, d Deliverer, replay bool) *Ingress {
	b.Helper()
	h := newTestIngress(b, d, func(cfg *Config) {
		cfg.Sources = []SourceConfig{{Name: "browser-use", Path: "/webhook", Secrets: []Secret{testSecret}}}
		cfg.Server.ReplayCacheSize = benchReplayCache
		if !replay {
			var off time.Duration
			cfg.Sources[0].Tolerance = &off
			cfg.Server.ReplayWindow = &off
		}
	})
	if on := h.sources["/webhook"].replay != nil; on != replay {
		b.Fatalf("replay cache on = %v, want %v", on, replay)
	}
	return h
}

// BenchmarkIngress is the whole Ingress.ServeHTTP for a signed 200-byte
// envelope answered 200 (routed to one target) by a Deliverer that accepts
// at once: read, canonicalize, verify, check freshness and replay,
// normalize, route, answer.
func BenchmarkIngress(b *testing.B) {
	ts := strconv.FormatInt(testNow.Unix(), 10)
	bodies, sigs := signedBodies(b, ts)

	serial := func(b *testing.B, replay, metrics bool) {
		d := &acceptAll{}
		h := newBenchIngress(b, d, replay)
		if metrics {
			h.setMetrics(NewMetrics()) // as Service.build does
		}
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
	b.Run("accepted", func(b *testing.B) { serial(b, true, false) })
	b.Run("replay-off", func(b *testing.B) { serial(b, false, false) })
	b.Run("metrics", func(b *testing.B) { serial(b, true, true) })
	// Concurrent webhooks share the sync.Pools, the Verifier's pool and the
	// replay cache's mutex.
	b.Run("parallel", func(b *testing.B) {
		d := &acceptAll{}
		h := newBenchIngress(b, d, true)
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
