package bridge

import (
	"context"
	"errors"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hookbridge/hookbridge/sinks"
)

// Metrics are hookbridge's Prometheus metrics, on a registry of their own
// (no global state: tests and reloads build as many as they like). Label
// values are bounded: sources, routes and sinks come from the config, and
// a status no route names is counted as "other".
type Metrics struct {
	Registry *prometheus.Registry

	webhooks       *prometheus.CounterVec
	events         *prometheus.CounterVec
	publishes      *prometheus.CounterVec
	publishSeconds *prometheus.HistogramVec
	retries        *prometheus.CounterVec
	deadLetters    *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	reloadOK       prometheus.Gauge
}

// NewMetrics registers every metric on a new registry, with the Go
// runtime's and the process's own.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_webhooks_total",
			Help: "Webhooks answered, by source and result (accepted, unrouted, test, not_found, bad_method, too_large, bad_request, bad_signature, stale, no_status, unavailable, spool_full).",
		}, []string{"source", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_events_total",
			Help: `Accepted events by route and status ("other" for statuses no route names).`,
		}, []string{"route", "status"}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_publishes_total",
			Help: "Messages handed to a sink, by sink and result (ok, error, permanent_error).",
		}, []string{"sink", "result"}),
		publishSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookbridge_publish_duration_seconds",
			Help:    "How long one Publish call (a batch) took until the broker confirmed or failed it, by sink.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"sink"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_spool_retries_total",
			Help: "Failed publishes from the spool that were scheduled for another attempt, by sink.",
		}, []string{"sink"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_dead_letters_total",
			Help: "Messages dead-lettered, by the sink that would not take them.",
		}, []string{"sink"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_config_reloads_total",
			Help: "Configuration reloads, by result (success, failure).",
		}, []string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookbridge_config_last_reload_successful",
			Help: "1 if the last configuration reload succeeded (or none was tried), 0 if the running config is older than the file.",
		}),
	}
	m.reloadOK.Set(1)
	version := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hookbridge_build_info", Help: "Always 1; the version label says which build runs.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	m.Registry.MustRegister(m.webhooks, m.events, m.publishes, m.publishSeconds, m.retries,
		m.deadLetters, m.reloads, m.reloadOK, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerSpool adds gauges read from the spool at each scrape.
func (m *Metrics) registerSpool(stats func() (spoolStats, error)) {
	gauge := func(name, help string, value func(spoolStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			st, err := stats()
			if err != nil {
				return -1
			}
			return value(st)
		})
	}
	m.Registry.MustRegister(
		gauge("hookbridge_spool_messages", "Messages waiting in the spool (one per event and sink target).",
			func(s spoolStats) float64 { return float64(s.Pending) }),
		gauge("hookbridge_spool_bytes", "Bytes of the messages waiting in the spool.",
			func(s spoolStats) float64 { return float64(s.PendingBytes) }),
		gauge("hookbridge_spool_oldest_age_seconds", "Age of the oldest message waiting in the spool; 0 when empty.",
			func(s spoolStats) float64 {
				if s.Oldest.IsZero() {
					return 0
				}
				return time.Since(s.Oldest).Seconds()
			}),
		gauge("hookbridge_spool_dead_letters", "Dead letters kept in the spool (hookbridge spool ls -dead).",
			func(s spoolStats) float64 { return float64(s.Dead) }),
	)
}

type spoolStats struct {
	Pending      int
	PendingBytes int64
	Oldest       time.Time
	Dead         int
}

// instrumented wraps a sink to count and time its publishes. Its metric
// children are looked up once, not on every publish.
type instrumented struct {
	sinks.Sink
	seconds               prometheus.Observer
	ok, failed, permanent prometheus.Counter
}

func newInstrumented(s sinks.Sink, name string, m *Metrics) *instrumented {
	return &instrumented{
		Sink:      s,
		seconds:   m.publishSeconds.WithLabelValues(name),
		ok:        m.publishes.WithLabelValues(name, "ok"),
		failed:    m.publishes.WithLabelValues(name, "error"),
		permanent: m.publishes.WithLabelValues(name, "permanent_error"),
	}
}

func (s *instrumented) Publish(ctx context.Context, batch []sinks.Message) error {
	start := time.Now()
	err := s.Sink.Publish(ctx, batch)
	s.seconds.Observe(time.Since(start).Seconds())
	if err == nil {
		s.ok.Add(float64(len(batch)))
		return nil
	}
	var ok, failed, permanent int
	for i := range batch {
		switch e := sinks.MessageErr(err, i); {
		case e == nil:
			ok++
		case sinks.IsPermanent(e):
			permanent++
		default:
			failed++
		}
	}
	add := func(c prometheus.Counter, n int) {
		if n > 0 {
			c.Add(float64(n))
		}
	}
	add(s.ok, ok)
	add(s.failed, failed)
	add(s.permanent, permanent)
	return err
}

// Unwrap returns the sink it instruments.
func (s *instrumented) Unwrap() sinks.Sink { return s.Sink }

// Unwrap returns the sink under any instrumentation, so callers can reach
// a sink's own methods (e.g. the NATS sink's ClientURL).
func Unwrap(s sinks.Sink) sinks.Sink {
	for {
		u, ok := s.(interface{ Unwrap() sinks.Sink })
		if !ok {
			return s
		}
		s = u.Unwrap()
	}
}

// ready reports a sink's own view of its connection, for sinks that have
// one (NATS); nil otherwise.
func sinkReady(s sinks.Sink) error {
	if r, ok := Unwrap(s).(interface{ Ready() error }); ok {
		return r.Ready()
	}
	return nil
}

var errDraining = errors.New("shutting down")
