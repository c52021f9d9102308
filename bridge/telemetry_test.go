package bridge

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hookbridge/hookbridge/bridge/config"
)

// TestServiceExportsSpans: with telemetry.endpoint set, the service
// traces webhooks and its shutdown flushes their spans to the OTLP
// receiver (here a fake one that keeps the request bodies), which hold
// the server span's name and neither the task id nor the secret.
func TestServiceExportsSpans(t *testing.T) {
	url, exported := otlpBodies(t)
	cfg := tracedConfig(t, `telemetry: {endpoint: "`+url+`", protocol: http/protobuf}`)
	svc, err := Start(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := postEvent(t, http.DefaultClient, "http://"+svc.Addr().String()+"/webhook", "task-in-trace-42", 1); code != 200 {
		t.Errorf("answered %d", code)
	}
	if err := svc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	all := exported()
	for _, want := range []string{"POST /webhook", "hookbridge.verify", "hookbridge.deliver", "hookbridge"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("the exported spans lack %q", want)
		}
	}
	for _, never := range []string{"task-in-trace-42", busSecret} {
		if bytes.Contains(all, []byte(never)) {
			t.Errorf("the exported spans hold %q", never)
		}
	}
}

// TestReloadSwitchesTracing: a reload applies the telemetry block. Turned
// on, the next webhooks are traced; turned off again, the spans of the
// traced generation are flushed to the receiver as it retires, and the
// webhooks after that are not traced.
func TestReloadSwitchesTracing(t *testing.T) {
	// Spans stay batched until a flush, however slow the machine: what
	// reaches the receiver is what the reloads flushed.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	url, bodies := otlpBodies(t)
	exported := func() int { return bytes.Count(bodies(), []byte("POST /webhook")) }
	parse := func(telemetry string) *config.Config { return tracedConfig(t, telemetry) }
	svc, err := Start(context.Background(), parse(""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	webhook := "http://" + svc.Addr().String() + "/webhook"
	post := func(n int) {
		t.Helper()
		if code, _ := postEvent(t, http.DefaultClient, webhook, "reload-task", n); code != 200 {
			t.Fatalf("webhook %d answered %d", n, code)
		}
	}

	post(1) // off
	on := parse(`telemetry: {endpoint: "` + url + `", protocol: http/protobuf}`)
	if err := svc.Reload(context.Background(), on); err != nil {
		t.Fatal(err)
	}
	post(2)
	post(3)
	// task_id_attribute alone keeps the provider (and its batch).
	onWithTasks := parse(`telemetry: {endpoint: "` + url + `", protocol: http/protobuf, task_id_attribute: true}`)
	if err := svc.Reload(context.Background(), onWithTasks); err != nil {
		t.Fatal(err)
	}
	if got := exported(); got != 0 {
		t.Errorf("%d server spans exported by a reload that kept the exporter, want 0 (still batched)", got)
	}
	post(4)
	if err := svc.Reload(context.Background(), parse("")); err != nil { // off again: flushes
		t.Fatal(err)
	}
	if got := exported(); got != 3 {
		t.Errorf("%d server spans exported when tracing was turned off, want the 3 traced webhooks'", got)
	}
	post(5)
	if err := svc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := exported(); got != 3 {
		t.Errorf("%d server spans exported in all, want 3: webhooks 1 and 5 came while tracing was off", got)
	}
}

// otlpBodies runs a fake OTLP/HTTP receiver that keeps every export's
// body; exported returns them joined.
func otlpBodies(t *testing.T) (url string, exported func() []byte) {
	t.Helper()
	var mu sync.Mutex
	var bodies [][]byte
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("receiver got %s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
	}))
	t.Cleanup(receiver.Close)
	return receiver.URL, func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Join(bodies, nil)
	}
}

// tracedConfig is a sync config delivering to a file, plus extra.
func tracedConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
delivery: sync
sources: [{name: browser-use, path: /webhook, secrets: ["` + busSecret + `"]}]
sinks: [{name: audit, type: file, path: ` + filepath.Join(t.TempDir(), "events.jsonl") + `}]
routes: [{name: all, status: ["*"], to: [{sink: audit}]}]
` + extra
	cfg, err := config.Parse("traced.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
