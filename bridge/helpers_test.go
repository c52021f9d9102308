package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/signature"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// startConfig runs a Service for cfg until the test ends.
func startConfig(t *testing.T, cfg *config.Config) *Service {
	t.Helper()
	svc, err := Start(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Shutdown(context.Background()) })
	return svc
}

// startYAML parses yaml (name is used in errors) and runs it.
func startYAML(t *testing.T, name, yaml string, lookupEnv func(string) (string, bool)) *Service {
	t.Helper()
	cfg, err := config.Parse(name, []byte(yaml), lookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	return startConfig(t, cfg)
}

// busStream connects to the NATS sink named "bus" and returns the
// HOOKBRIDGE stream.
func busStream(t *testing.T, svc *Service) jetstream.Stream {
	t.Helper()
	_, js := sinktest.JetStream(t, svc.Sinks()["bus"].(*natssink.Sink).ClientURL())
	stream, err := js.Stream(context.Background(), "HOOKBRIDGE")
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// busSecret signs the deliveries of busConfig's source.
const busSecret = "whsec_spool"

// busConfig is the spool tests' config: one source, the NATS sink "bus"
// on natsURL with fast retries, every status to task.{status}. spool is
// the lines under spool:, extraSink more sinks.
func busConfig(t *testing.T, natsURL, spool, extraSink string) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  publish_timeout: 2s
  write_timeout: 5s
spool:
%s
sources:
  - name: browser-use
    secrets: [%q]
    tolerance: 0
sinks:
  - name: bus
    type: nats
    url: %q
    jetstream: true
    connect_timeout: 1s
    retry: {min_backoff: 20ms, max_backoff: 200ms}
%s
routes:
  - name: all
    status: ["*"]
    to:
      - {sink: bus, subject: "task.{status}"}
`, spool, busSecret, natsURL, extraSink)
	cfg, err := config.Parse("spool.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// spoolConfig is busConfig with the local spool in spoolDir.
func spoolConfig(t *testing.T, natsURL, spoolDir string, extraSink string) *config.Config {
	t.Helper()
	return busConfig(t, natsURL, fmt.Sprintf("  dir: %q", spoolDir), extraSink)
}

// postEvent signs and posts one envelope event; it returns the HTTP status
// and the event id from the answer.
func postEvent(t *testing.T, client *http.Client, url, task string, n int) (int, string) {
	t.Helper()
	code, id, err := tryPost(client, url, task, n)
	if err != nil {
		t.Errorf("post %s/%d: %v", task, n, err)
	}
	return code, id
}

// tryPost is postEvent returning transport errors instead of failing the
// test: a replica may be gone. The same task and n make the same body, so
// a retry is the same delivery.
func tryPost(client *http.Client, url, task string, n int) (int, string, error) {
	body := event.Sample{Status: "started", TaskID: task, Time: sampleTime.Add(time.Duration(n) * time.Microsecond),
		Metadata: map[string]string{"n": strconv.Itoa(n)}}.Body()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if err := signature.SignRequest(req, body, []byte(busSecret), strconv.FormatInt(time.Now().Unix(), 10)); err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var answer struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer.ID, nil
}

// sampleTime is the time of event 0 of tryPost; event n is n µs later.
var sampleTime = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// postEvents posts events from to to (exclusive) to url, event n for task
// "task-<n mod tasks>", each expected to be answered 200, and records the
// ids in acked.
func postEvents(t *testing.T, url string, from, to, tasks int, acked map[string]bool) {
	t.Helper()
	for n := from; n < to; n++ {
		code, id := postEvent(t, http.DefaultClient, url, fmt.Sprintf("task-%d", n%tasks), n)
		if code != http.StatusOK {
			t.Fatalf("event %d answered %d", n, code)
		}
		acked[id] = true
	}
}

// streamEvents reads every event of the HOOKBRIDGE stream, in stream
// order.
func streamEvents(t *testing.T, js jetstream.JetStream) []sinktest.CloudEvent {
	t.Helper()
	var out []sinktest.CloudEvent
	for _, m := range sinktest.ReadStream(t, js, "HOOKBRIDGE") {
		out = append(out, sinktest.ReadCloudEvent(t, m.Data()))
	}
	return out
}

// checkDelivered asserts every acknowledged id is in the stream exactly
// once and each task's events are in the order they were accepted.
func checkDelivered(t *testing.T, got []sinktest.CloudEvent, acked map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	last := map[string]int{}
	for _, e := range got {
		seen[e.ID]++
		task, n := e.Data.TaskID, e.N()
		if prev, ok := last[task]; ok && n < prev {
			t.Errorf("task %s: event %d arrived after %d", task, n, prev)
		}
		last[task] = n
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged event %s is in the stream %d times, want once", id, seen[id])
		}
	}
	if len(got) != len(acked) {
		t.Errorf("stream holds %d events, %d were acknowledged", len(got), len(acked))
	}
}
