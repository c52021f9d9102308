package ingress

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/metrics"
	"github.com/hookbridge/hookbridge/bridge/route"
)

// conditionLogEvery is how often, at most, a route's failing condition is
// logged: one that fails on every event would otherwise write a line per
// event. The metric counts every failure.
const conditionLogEvery = time.Minute

// maxConditionError is the most bytes of a condition's error logged: CEL's
// messages are short, but one may quote a value from the event.
const maxConditionError = 200

// conditionLog counts the route conditions that failed on events, by
// route (hookbridge_route_errors_total), and logs the first failure of
// each route per conditionLogEvery, with the event id, never the body.
type conditionLog struct {
	log    *slog.Logger
	now    func() time.Time
	routes map[string]*conditionState // the routes with a condition
}

type conditionState struct {
	failures prometheus.Counter
	next     atomic.Int64  // Unix ns before which no line is written
	held     atomic.Uint64 // failures not logged since the last line
}

// newConditionLog makes the log for cfg's routes. The state of a route
// prev also had is kept, so that a reload does not reset its rate.
func newConditionLog(cfg *config.Config, m *metrics.Metrics, log *slog.Logger, now func() time.Time, prev *conditionLog) *conditionLog {
	l := &conditionLog{log: log, now: now, routes: map[string]*conditionState{}}
	for _, r := range cfg.Routes {
		if r.When == "" {
			continue
		}
		if prev != nil && prev.routes[r.Name] != nil {
			l.routes[r.Name] = prev.routes[r.Name]
			continue
		}
		// Created here, so the series exists at 0 before the first failure.
		l.routes[r.Name] = &conditionState{failures: m.RouteErrors(r.Name)}
	}
	return l
}

// failed records the conditions that failed on ev.
func (l *conditionLog) failed(src string, ev *event.Event, failures []route.ConditionFailure) {
	for _, f := range failures {
		st := l.routes[f.Route]
		if st == nil {
			continue // a router built from another config: nothing to count on
		}
		st.failures.Inc()
		now := l.now().UnixNano()
		next := st.next.Load()
		if now < next || !st.next.CompareAndSwap(next, now+int64(conditionLogEvery)) {
			st.held.Add(1)
			continue
		}
		l.log.Warn("route condition failed on an event, so the route did not match it; fix the when, e.g. with data.?key.orValue(...) for keys some events lack",
			"route", f.Route, "source", src, "id", ev.ID, "status", ev.Status, "err", clipTo(f.Err.Error(), maxConditionError),
			"unlogged_since_last", st.held.Swap(0))
	}
}
