package bridge

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
	"github.com/hookbridge/hookbridge/sinks/sinktest/cetest"
)

// TestDeadLetterInSinksContentMode: a message dead-lettered to a NATS
// sink set to content_mode: binary arrives in binary mode, as everything
// that sink publishes: the event's data as the body, its attributes as
// ce- headers, ce-deadlettersink and ce-deadletterreason among them, and
// the official CloudEvents SDK reads it as the event plus those two.
// The sink that gives up is SQS at an address nothing listens on, tried
// once. No route uses the dead-letter subject: the NATS sink makes its
// stream cover it because the dead_letter target names it.
func TestDeadLetterInSinksContentMode(t *testing.T) {
	nats := sinktest.NATS(t)
	closed := sinktest.FreeAddr(t)
	yaml := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
spool:
  dir: %q
sources:
  - name: browser-use
    secrets: ["whsec_dead"]
sinks:
  - name: alerts
    type: sqs
    region: us-east-1
    endpoint: "http://%s"
    queue_url: "http://%s/000000000000/alerts"
    access_key_id: x
    secret_access_key: x
    skip_probe: true
    retry: {min_backoff: 10ms, max_backoff: 50ms, max_attempts: 1}
    dead_letter: {sink: dead, subject: dead.alerts}
  - name: dead
    type: nats
    url: %q
    jetstream: true
    content_mode: binary
routes:
  - name: all
    status: ["*"]
    to:
      - {sink: alerts}
`, filepath.Join(t.TempDir(), "spool"), closed, closed, nats.ClientURL())
	cfg, err := config.Parse("dead.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := Start(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Shut down within a bound: should the dead letter not get through,
	// the spool would otherwise drain it for ever.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		svc.Shutdown(ctx)
	})

	body := event.Sample{Status: "failed", TaskID: "task-dead", SessionID: "s", Time: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		Metadata: map[string]string{"note": "résumé ✓ 🚀"}}.Body()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, "http://"+svc.Addr().String()+"/webhook", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := signature.SignRequest(req, body, []byte("whsec_dead"), ts); err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", cetest.Traceparent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}

	_, js := sinktest.JetStream(t, nats.ClientURL())
	sinktest.WaitFor(t, "the dead letter on stream HOOKBRIDGE", func() bool { return sinktest.StreamCount(js, "HOOKBRIDGE") == 1 })
	stored := sinktest.ReadStream(t, js, "HOOKBRIDGE")[0]
	if stored.Subject() != "dead.alerts" {
		t.Errorf("dead letter on subject %q, want dead.alerts", stored.Subject())
	}

	// What the bridge sent the alerts sink: the event of this webhook.
	var cz signature.Canonicalizer
	c, err := cz.Canonicalize(body)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.Normalize("browser-use", ts, time.Now(), c, event.ParseTrace(cetest.Traceparent, ""))
	if err != nil {
		t.Fatal(err)
	}

	h := stored.Headers()
	reason := h.Get("ce-deadletterreason")
	if h.Get("ce-deadlettersink") != "alerts" || !strings.HasPrefix(reason, "undelivered after 1 attempts: ") {
		t.Errorf("headers ce-deadlettersink %q, ce-deadletterreason %q: want alerts and why", h.Get("ce-deadlettersink"), reason)
	}
	if h.Get("content-type") != "application/json" || h.Get("ce-id") != ev.ID || !bytes.Equal(stored.Data(), ev.Payload) {
		t.Errorf("headers %v, body %s: want binary mode, the event's data as the body", h, stored.Data())
	}

	// The SDK reads the event and the two dead-letter attributes.
	want := cetest.Case{Name: "dead letter", TaskID: "task-dead", Msg: sinks.Message{ID: ev.ID, Body: ev.JSON,
		Attrs: append(ev.Attrs[:len(ev.Attrs):len(ev.Attrs)],
			sinks.Attr{Name: "deadlettersink", Value: "alerts"}, sinks.Attr{Name: "deadletterreason", Value: reason})}}
	cetest.Check(t, want, cetest.Read(t, want.Name, cejs.NewMessage(cetest.NATSMsg(stored)), binding.EncodingBinary))
}
