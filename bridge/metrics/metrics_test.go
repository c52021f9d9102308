package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/sinks"
)

// partial is a sink whose batches fail message 1 retryably and message 2
// permanently.
type partial struct{}

func (partial) Publish(_ context.Context, batch []sinks.Message) error {
	return &sinks.BatchError{Failed: map[int]error{1: errors.New("timeout"), 2: sinks.Permanent(errors.New("too large"))}}
}
func (partial) Close(context.Context) error { return nil }

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg); err == nil {
		t.Error("a second set registered on the same registry")
	}
	m.Answered("browser-use", "accepted").Inc()
	m.Accepted("finished", "finished")
	m.Retried("bus")
	m.DeadLettered("bus")
	m.Reloaded(false)
	s := m.Instrument("bus", partial{})
	if err := s.Publish(context.Background(), make([]sinks.Message, 4)); err == nil {
		t.Fatal("the failing batch reported no error")
	}
	statsCalls := 0
	if err := m.WatchSpool(func(context.Context) (queue.Stats, error) {
		statsCalls++
		return queue.Stats{Pending: 3, PendingBytes: 300, Dead: 1, Oldest: time.Now().Add(-time.Minute)}, nil
	}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP hookbridge_publishes_total Messages handed to a sink, by sink and result (ok, error, permanent_error).
# TYPE hookbridge_publishes_total counter
hookbridge_publishes_total{result="error",sink="bus"} 1
hookbridge_publishes_total{result="ok",sink="bus"} 2
hookbridge_publishes_total{result="permanent_error",sink="bus"} 1
# HELP hookbridge_webhooks_total Webhooks answered, by source and result (accepted, unrouted, test, not_found, bad_method, too_large, bad_request, bad_signature, stale, no_status, unavailable, spool_full, duplicate, overloaded, slow_body).
# TYPE hookbridge_webhooks_total counter
hookbridge_webhooks_total{result="accepted",source="browser-use"} 1
# HELP hookbridge_config_last_reload_successful 1 if the last configuration reload succeeded (or none was tried), 0 if the running config is older than the file.
# TYPE hookbridge_config_last_reload_successful gauge
hookbridge_config_last_reload_successful 0
# HELP hookbridge_spool_messages Messages waiting in the spool (one per event and sink target).
# TYPE hookbridge_spool_messages gauge
hookbridge_spool_messages 3
# HELP hookbridge_spool_dead_letters Dead letters kept in the spool (hookbridge spool ls -dead).
# TYPE hookbridge_spool_dead_letters gauge
hookbridge_spool_dead_letters 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "hookbridge_publishes_total", "hookbridge_webhooks_total",
		"hookbridge_config_last_reload_successful", "hookbridge_spool_messages", "hookbridge_spool_dead_letters"); err != nil {
		t.Error(err)
	}
	// The four spool gauges cost one Stats per scrape: it may read a
	// record per sink.
	if statsCalls != 1 {
		t.Errorf("one scrape called the spool's Stats %d times, want 1", statsCalls)
	}
	for name, want := range map[string]float64{"hookbridge_events_total": 1, "hookbridge_spool_retries_total": 1, "hookbridge_dead_letters_total": 1,
		"hookbridge_config_reloads_total": 1, "hookbridge_build_info": 1} {
		if got, err := testutil.GatherAndCount(reg, name); err != nil || float64(got) != want {
			t.Errorf("%s: %d series (%v), want %v", name, got, err, want)
		}
	}
}

// TestNilMetricsCountNothing: tests and tools run without metrics.
func TestNilMetricsCountNothing(t *testing.T) {
	var m *Metrics
	m.Answered("s", "accepted").Inc()
	m.Accepted("r", "finished")
	m.RouteErrors("r").Inc()
	m.Retried("bus")
	m.DeadLettered("bus")
	m.Reloaded(true)
	if err := m.WatchSpool(nil); err != nil {
		t.Error(err)
	}
	if s := m.Instrument("bus", partial{}); s != (partial{}) {
		t.Errorf("Instrument wrapped the sink: %T", s)
	}
}
