package ingress

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/metrics"
	"github.com/hookbridge/hookbridge/bridge/route"
)

// TestFailingConditionIsCountedAndSampled: a when that errors on an event
// (a plain select of a key the event lacks) does not match it, is counted
// on every event, and is logged once a minute per route with the event id,
// never the body. The event is still accepted and the other routes still
// deliver it.
func TestFailingConditionIsCountedAndSampled(t *testing.T) {
	var out bytes.Buffer
	var now atomic.Int64
	now.Store(testNow.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	cfg := testConfig(func(c *config.Config) {
		c.Routes = append(c.Routes,
			config.Route{Name: "vip", Status: []string{"finished"}, When: `data.metadata.tier == "vip"`,
				To: []config.Target{{Sink: "bus", Key: "subject", Target: "vip.{status}"}}},
			config.Route{Name: "safe", When: `data.?metadata.?tier.orValue("") == "vip"`,
				To: []config.Target{{Sink: "bus", Key: "subject", Target: "safe.{status}"}}})
	})
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	h, err := New(cfg, Options{Router: route.New(cfg.Rules()), Deliverer: rec, Metrics: m,
		Log: slog.New(slog.NewTextHandler(&out, nil)), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	send := func(task string) {
		t.Helper()
		body := `{"session_id": "secret-session-value", "task_id": "` + task + `", "status": "finished"}`
		w := httptest.NewRecorder()
		h.ServeHTTP(w, signedRequest(t, "/webhook", testSecret, strconv.FormatInt(clock().Unix(), 10), body))
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"routes":1`) {
			t.Fatalf("%s: %d %s", task, w.Code, w.Body.String())
		}
	}
	for i := range 5 {
		send("t" + strconv.Itoa(i))
	}
	if got := testutil.ToFloat64(m.RouteErrors("vip")); got != 5 {
		t.Errorf("route errors of vip = %v, want 5", got)
	}
	// The routes with a when are exported from the start, at 0 until one
	// fails; routes without one are not.
	if n := testutil.CollectAndCount(reg, "hookbridge_route_errors_total"); n != 2 {
		t.Errorf("%d route error series, want 2 (vip, safe)", n)
	}
	if got := testutil.ToFloat64(m.RouteErrors("safe")); got != 0 {
		t.Errorf("route errors of safe = %v, want 0", got)
	}
	if len(rec.got) != 5 || rec.got[0].deliveries[0].Target != "task.finished" {
		t.Fatalf("deliveries %v", rec.got)
	}
	lines := strings.Count(out.String(), "route condition failed")
	if lines != 1 || !strings.Contains(out.String(), "route=vip") || !strings.Contains(out.String(), "id="+rec.got[0].ev.ID) ||
		!strings.Contains(out.String(), "no such key: metadata") {
		t.Errorf("%d lines, want 1 naming the route, the first event's id and the error:\n%s", lines, out.String())
	}
	if strings.Contains(out.String(), "secret-session-value") {
		t.Errorf("the log shows the body:\n%s", out.String())
	}

	// A minute later, one more line, saying how many went unlogged.
	now.Add(int64(conditionLogEvery))
	send("t5")
	if n := strings.Count(out.String(), "route condition failed"); n != 2 || !strings.Contains(out.String(), "unlogged_since_last=4") {
		t.Errorf("after a minute: %d lines, want 2 with unlogged_since_last=4:\n%s", n, out.String())
	}

	// A reload keeps the rate: no new line within the minute.
	h2, err := New(cfg, Options{Router: route.New(cfg.Rules()), Deliverer: rec, Metrics: m,
		Log: slog.New(slog.NewTextHandler(&out, nil)), Now: clock, Previous: h})
	if err != nil {
		t.Fatal(err)
	}
	h = h2
	send("t6")
	if n := strings.Count(out.String(), "route condition failed"); n != 2 {
		t.Errorf("after a reload: %d lines, want still 2", n)
	}
	if got := testutil.ToFloat64(m.RouteErrors("vip")); got != 7 {
		t.Errorf("route errors of vip = %v, want 7", got)
	}
}
