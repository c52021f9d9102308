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
	defer receiver.Close()
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
delivery: sync
sources: [{name: browser-use, path: /webhook, secrets: ["` + busSecret + `"]}]
sinks: [{name: audit, type: file, path: ` + filepath.Join(t.TempDir(), "events.jsonl") + `}]
routes: [{name: all, status: ["*"], to: [{sink: audit}]}]
telemetry: {endpoint: "` + receiver.URL + `", protocol: http/protobuf}
`
	cfg, err := config.Parse("traced.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
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
	mu.Lock()
	defer mu.Unlock()
	all := bytes.Join(bodies, nil)
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
