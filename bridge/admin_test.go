package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/signature"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// operatedConfig is a config with a file sink, a core NATS sink on an
// embedded server, sync and spooled routes, and an admin listener.
func operatedConfig(dir, secret, auditFile string, pprof bool) string {
	return fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  pprof: %v
spool:
  dir: %q
sources:
  - name: browser-use
    secrets: [%q]
    tolerance: 0
sinks:
  - name: audit
    type: file
    path: %q
  - name: bus
    type: nats
    url: embedded
    embedded: {listen: "127.0.0.1:-1", store_dir: %q}
routes:
  - name: finished
    status: [finished]
    delivery: sync
    to:
      - {sink: audit}
  - name: everything
    status: ["*"]
    to:
      - {sink: bus, subject: "task.{status}"}
`, pprof, filepath.Join(dir, "spool"), secret, filepath.Join(dir, auditFile), filepath.Join(dir, "nats"))
}

func startOperated(t *testing.T, dir, yaml string) *Service {
	t.Helper()
	return startYAML(t, "operated.yaml", yaml, nil)
}

// send posts a signed envelope with the given status and extra headers.
func send(t *testing.T, svc *Service, secret, status string, header map[string]string) int {
	t.Helper()
	body := fmt.Sprintf(`{"type":"agent.task.status_update","timestamp":"2026-11-26T12:00:00Z","payload":{"task_id":"t-%s","status":%q}}`, status, status)
	req, _ := http.NewRequest(http.MethodPost, "http://"+svc.Addr().String()+"/webhook", strings.NewReader(body))
	if err := signature.SignRequest(req, []byte(body), []byte(secret), strconv.FormatInt(time.Now().Unix(), 10)); err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func adminGet(t *testing.T, svc *Service, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + svc.AdminAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample line that starts with series.
func metric(body, series string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			return v, err == nil
		}
	}
	return 0, false
}

func TestAdminMetricsAndProbes(t *testing.T) {
	dir := t.TempDir()
	svc := startOperated(t, dir, operatedConfig(dir, "whsec_admin", "audit.jsonl", false))

	for status, want := range map[string]int{"finished": 200, "paused": 200, "weird.status": 200} {
		if got := send(t, svc, "whsec_admin", status, nil); got != want {
			t.Fatalf("%s: %d", status, got)
		}
	}
	if got := send(t, svc, "wrong", "finished", nil); got != 403 {
		t.Fatalf("bad signature: %d", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := svc.Spooler().Drain(ctx); err != nil {
		t.Fatal(err)
	}

	code, body := adminGet(t, svc, MetricsPath)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for series, want := range map[string]float64{
		`hookbridge_webhooks_total{result="accepted",source="browser-use"}`:      3,
		`hookbridge_webhooks_total{result="bad_signature",source="browser-use"}`: 1,
		`hookbridge_events_total{route="finished",status="finished"}`:            1,
		`hookbridge_events_total{route="everything",status="finished"}`:          1,
		`hookbridge_events_total{route="everything",status="other"}`:             2, // paused and weird.status: no route names them
		`hookbridge_publishes_total{result="ok",sink="audit"}`:                   1,
		`hookbridge_publishes_total{result="ok",sink="bus"}`:                     3,
		`hookbridge_publish_duration_seconds_count{sink="audit"}`:                1,
		`hookbridge_spool_messages`:                                              0,
		`hookbridge_dead_letters_total{sink="bus"}`:                              -1, // absent until one happens
		`hookbridge_config_last_reload_successful`:                               1,
	} {
		got, ok := metric(body, series)
		if want == -1 {
			if ok {
				t.Errorf("%s present", series)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if strings.Contains(body, "whsec_admin") || strings.Contains(body, "t-finished") {
		t.Error("/metrics shows a secret or a task id")
	}

	if code, _ := adminGet(t, svc, HealthzPath); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := adminGet(t, svc, ReadyzPath); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if code, _ := adminGet(t, svc, PprofPath); code != 404 {
		t.Errorf("pprof is served although server.pprof is off: %d", code)
	}
	svc.draining.Store(true) // as Shutdown does first
	if code, body := adminGet(t, svc, ReadyzPath); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while draining: %d %s", code, body)
	}
}

func TestAdminPprofSwitch(t *testing.T) {
	dir := t.TempDir()
	svc := startOperated(t, dir, operatedConfig(dir, "s", "audit.jsonl", true))
	if code, _ := adminGet(t, svc, PprofPath); code != 200 {
		t.Errorf("pprof with server.pprof: true: %d", code)
	}
}

// TestTraceContextReachesTheBus: a W3C traceparent sent with the webhook
// is in the published message, as header and CloudEvents attribute.
func TestTraceContextReachesTheBus(t *testing.T) {
	dir := t.TempDir()
	svc := startOperated(t, dir, operatedConfig(dir, "s", "audit.jsonl", false))
	nc, err := natsgo.Connect(svc.Sinks()["bus"].(*natssink.Sink).ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("task.>")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	send(t, svc, "s", "paused", map[string]string{"traceparent": parent, "tracestate": "vendor=abc"})
	send(t, svc, "s", "stopped", map[string]string{"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"})
	for _, want := range []struct{ parent, state string }{{parent, "vendor=abc"}, {"", ""}} {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var ce map[string]any
		if err := json.Unmarshal(m.Data, &ce); err != nil {
			t.Fatal(err)
		}
		if m.Header.Get("traceparent") != want.parent || m.Header.Get("ce-traceparent") != "" ||
			m.Header.Get("tracestate") != want.state || (want.parent != "" && ce["traceparent"] != want.parent) ||
			(want.parent == "" && ce["traceparent"] != nil) {
			t.Errorf("%s: headers %v, event traceparent %v; want %q", m.Subject, m.Header, ce["traceparent"], want.parent)
		}
	}
}

// TestReload swaps routes and secrets: the new secret is accepted and the
// old refused, unchanged sinks stay connected, and an invalid file keeps
// the running config.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write := func(content string) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(operatedConfig(dir, "old-secret", "audit.jsonl", false))
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	svc := startConfig(t, cfg)
	bus := svc.Sinks()["bus"]

	write(operatedConfig(dir, "new-secret", "audit2.jsonl", false))
	if err := svc.ReloadFile(ctx, path, nil); err != nil {
		t.Fatal(err)
	}
	if got := send(t, svc, "old-secret", "finished", nil); got != 403 {
		t.Errorf("old secret after reload: %d, want 403", got)
	}
	if got := send(t, svc, "new-secret", "finished", nil); got != 200 {
		t.Errorf("new secret after reload: %d, want 200", got)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "audit2.jsonl")); err != nil || !strings.Contains(string(data), `"status":"finished"`) {
		t.Errorf("the reloaded route did not write to the new file: %v %q", err, data)
	}
	if svc.Sinks()["bus"] != bus {
		t.Error("an unchanged sink was reopened")
	}

	write("sinks: [this is not a config")
	if err := svc.ReloadFile(ctx, path, nil); err == nil {
		t.Fatal("an invalid file reloaded")
	}
	if got := send(t, svc, "new-secret", "finished", nil); got != 200 {
		t.Errorf("after a failed reload: %d, want 200", got)
	}
	_, body := adminGet(t, svc, MetricsPath)
	for series, want := range map[string]float64{
		`hookbridge_config_reloads_total{result="success"}`: 1,
		`hookbridge_config_reloads_total{result="failure"}`: 1,
		`hookbridge_config_last_reload_successful`:          0,
	} {
		if got, ok := metric(body, series); !ok || got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestWatchConfigReloadsOnChange: saving the file is enough.
func TestWatchConfigReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(operatedConfig(dir, "first", "audit.jsonl", false)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		svc.WatchConfig(ctx, path, nil, 10*time.Millisecond)
	}()
	if err := os.WriteFile(path, []byte(operatedConfig(dir, "second", "audit.jsonl", false)), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for send(t, svc, "second", "finished", nil) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the changed file was never reloaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := send(t, svc, "first", "started", nil); got != 403 {
		t.Errorf("the old secret after the reload: %d", got)
	}
	cancel()
	<-watched
}
