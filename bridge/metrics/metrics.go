// Package metrics is hookbridge's Prometheus metrics. They register on a
// prometheus.Registerer handed in: no global registry, so tests and
// reloads build as many as they like. Label values are bounded: sources,
// routes and sinks come from the config, and a status no route names is
// counted as "other".
//
// A nil *Metrics counts nothing, for tests and tools that do not export
// metrics.
package metrics

import (
	"context"
	"errors"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/sinks"
)

// Metrics are hookbridge's own metrics.
type Metrics struct {
	reg            prometheus.Registerer
	webhooks       *prometheus.CounterVec
	events         *prometheus.CounterVec
	routeErrors    *prometheus.CounterVec
	publishes      *prometheus.CounterVec
	publishSeconds *prometheus.HistogramVec
	retries        *prometheus.CounterVec
	deadLetters    *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	reloadOK       prometheus.Gauge
	spoolSync      prometheus.Histogram
	spoolRequests  prometheus.Counter
}

// New makes the metrics and registers them, with hookbridge_build_info,
// on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reg: reg,
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_webhooks_total",
			Help: "Webhooks answered, by source and result (accepted, unrouted, test, not_found, bad_method, too_large, bad_request, bad_signature, stale, no_status, unavailable, spool_full, duplicate, overloaded, slow_body).",
		}, []string{"source", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_events_total",
			Help: `Accepted events by route and status ("other" for statuses no route names).`,
		}, []string{"route", "status"}),
		routeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_route_errors_total",
			Help: "Events on which a route's when condition failed to evaluate (so the route did not match them), by route.",
		}, []string{"route"}),
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
		spoolSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookbridge_spool_sync_duration_seconds",
			Help:    "How long one group commit of the local spool took to write and fdatasync; its count is the number of commits. A quiet disk stays in the lowest buckets; a stalling one shows in the tail.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		spoolRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookbridge_spool_sync_requests_total",
			Help: "Changes (appends, removals, retries, ...) the local spool's group commits carried; divided by the commit count, the requests per fdatasync.",
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
	for _, c := range []prometheus.Collector{m.webhooks, m.events, m.routeErrors, m.publishes, m.publishSeconds, m.retries,
		m.deadLetters, m.reloads, m.reloadOK, m.spoolSync, m.spoolRequests, info} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Answered returns the counter of source's webhooks answered with result:
// look it up once, count on it per request. With nil Metrics it is a
// counter of its own that no registry exports.
func (m *Metrics) Answered(source, result string) prometheus.Counter {
	if m == nil {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "hookbridge_webhooks_total"})
	}
	return m.webhooks.WithLabelValues(source, result)
}

// Accepted counts an accepted event of status that route matched.
func (m *Metrics) Accepted(route, status string) {
	if m != nil {
		m.events.WithLabelValues(route, status).Inc()
	}
}

// RouteErrors returns the counter of events on which route's condition
// failed: look it up once, count on it per event. With nil Metrics it is
// a counter of its own that no registry exports.
func (m *Metrics) RouteErrors(route string) prometheus.Counter {
	if m == nil {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "hookbridge_route_errors_total"})
	}
	return m.routeErrors.WithLabelValues(route)
}

// Retried counts a failed publish from the spool that will be retried.
func (m *Metrics) Retried(sink string) {
	if m != nil {
		m.retries.WithLabelValues(sink).Inc()
	}
}

// DeadLettered counts a message sink would not take.
func (m *Metrics) DeadLettered(sink string) {
	if m != nil {
		m.deadLetters.WithLabelValues(sink).Inc()
	}
}

// Reloaded counts a configuration reload and whether it took.
func (m *Metrics) Reloaded(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.reloads.WithLabelValues("success").Inc()
		m.reloadOK.Set(1)
	} else {
		m.reloads.WithLabelValues("failure").Inc()
		m.reloadOK.Set(0)
	}
}

// WatchSpool registers gauges read from the spool at each scrape: one
// Stats call for all four, as it may read a record per sink.
func (m *Metrics) WatchSpool(stats func(context.Context) (queue.Stats, error)) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(&spoolCollector{
		stats:    stats,
		messages: prometheus.NewDesc("hookbridge_spool_messages", "Messages waiting in the spool (one per event and sink target).", nil, nil),
		bytes:    prometheus.NewDesc("hookbridge_spool_bytes", "Bytes of the messages waiting in the spool.", nil, nil),
		oldest:   prometheus.NewDesc("hookbridge_spool_oldest_age_seconds", "Age of the oldest message waiting in the spool; 0 when empty.", nil, nil),
		dead:     prometheus.NewDesc("hookbridge_spool_dead_letters", "Dead letters kept in the spool (hookbridge spool ls -dead).", nil, nil),
	})
}

// spoolCollector is the spool's gauges, from one Stats per scrape.
type spoolCollector struct {
	stats                         func(context.Context) (queue.Stats, error)
	messages, bytes, oldest, dead *prometheus.Desc
}

func (c *spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.bytes
	ch <- c.oldest
	ch <- c.dead
}

// Collect reports -1 for every gauge when the spool cannot be read.
func (c *spoolCollector) Collect(ch chan<- prometheus.Metric) {
	messages, bytes, oldest, dead := -1.0, -1.0, -1.0, -1.0
	if st, err := c.stats(context.Background()); err == nil {
		messages, bytes, dead, oldest = float64(st.Pending), float64(st.PendingBytes), float64(st.Dead), 0
		if !st.Oldest.IsZero() {
			oldest = time.Since(st.Oldest).Seconds()
		}
	}
	for _, g := range []struct {
		desc  *prometheus.Desc
		value float64
	}{{c.messages, messages}, {c.bytes, bytes}, {c.oldest, oldest}, {c.dead, dead}} {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.value)
	}
}

// SpoolSynced records one group commit of the local spool: how long its
// write and fdatasync took and how many requests it carried.
func (m *Metrics) SpoolSynced(took time.Duration, requests int) {
	if m == nil {
		return
	}
	m.spoolSync.Observe(took.Seconds())
	m.spoolRequests.Add(float64(requests))
}

// WatchSpoolLog registers the local spool's log gauges: its size on disk
// (read at each scrape) and the torn writes its last start cut off.
func (m *Metrics) WatchSpoolLog(logBytes func() int64, tornWrites int) error {
	if m == nil {
		return nil
	}
	torn := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hookbridge_spool_torn_writes",
		Help: "Writes the last start found cut short at the end of the local spool's log (a crash during a write that was never acknowledged) and dropped.",
	})
	torn.Set(float64(tornWrites))
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hookbridge_spool_log_bytes",
		Help: "Size of the local spool's log files on disk: the waiting messages, the dead letters and what is not yet reclaimed.",
	}, func() float64 { return float64(logBytes()) })
	return errors.Join(m.reg.Register(torn), m.reg.Register(size))
}

// Instrument wraps s to count and time its publishes as sink name.
func (m *Metrics) Instrument(name string, s sinks.Sink) sinks.Sink {
	if m == nil {
		return s
	}
	return &instrumented{
		Sink:      s,
		seconds:   m.publishSeconds.WithLabelValues(name),
		ok:        m.publishes.WithLabelValues(name, "ok"),
		failed:    m.publishes.WithLabelValues(name, "error"),
		permanent: m.publishes.WithLabelValues(name, "permanent_error"),
	}
}

// instrumented counts and times a sink's publishes. Its metric children
// are looked up once, not on every publish.
type instrumented struct {
	sinks.Sink
	seconds               prometheus.Observer
	ok, failed, permanent prometheus.Counter
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
