package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestServiceFansOutToEveryBroker is docs/configuration.md's worked example, end to
// end against real protocol peers in-process: signed deliveries of every
// status come in over HTTP; finished goes to a Kafka topic (kfake), paused
// and stopped to an SQS FIFO alerting queue (kumo), everything to a
// JetStream stream (embedded nats-server).
func TestServiceFansOutToEveryBroker(t *testing.T) {
	ctx := context.Background()
	kafka := sinktest.Kafka(t, kfake.SeedTopics(4, "task.finished"))
	sqs := sinktest.SQS(t)
	queueURL := sqs.Queue("alerts.fifo")

	yaml := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
delivery: sync
sources:
  - name: browser-use
    secrets: ["${SECRET}"]
sinks:
  - name: bus
    type: nats
    url: embedded
    jetstream: true
    embedded: {listen: "127.0.0.1:-1", store_dir: %q}
  - name: events
    type: kafka
    brokers: [%q]
    content_mode: binary
  - name: alerts
    type: sqs
    region: us-east-1
    endpoint: %q
    queue_url: %q
    content_mode: binary
    access_key_id: "${KEY}"
    secret_access_key: "${KEY}"
routes:
  - name: finished-to-kafka
    status: [finished]
    to:
      - {sink: events, topic: task.finished}
  - name: alerting
    status: [paused, stopped]
    to:
      - {sink: alerts}
  - name: everything
    status: ["*"]
    to:
      - {sink: bus, subject: "task.{status}"}
`, filepath.Join(t.TempDir(), "nats"), kafka.ListenAddrs()[0], sqs.URL, queueURL)
	env := map[string]string{"SECRET": "whsec_e2e", "KEY": "x"}
	svc := startYAML(t, "e2e.yaml", yaml, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	url := "http://" + svc.Addr().String() + "/webhook"

	post := func(body string, ts time.Time) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := signature.SignRequest(req, []byte(body), []byte("whsec_e2e"), strconv.FormatInt(ts.Unix(), 10)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var answer struct {
			ID    string
			Error string
		}
		_ = json.NewDecoder(resp.Body).Decode(&answer)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", body, resp.StatusCode, answer.Error)
		}
		return answer.ID
	}
	ids := map[string]string{} // status -> event id
	statuses := []string{"initializing", "started", "paused", "stopped", "finished"}
	now := time.Now()
	for i, st := range statuses {
		body := fmt.Sprintf(`{"type": "agent.task.status_update", "timestamp": "%s", "payload": {"session_id": "s", "task_id": "task-%s", "status": %q, "metadata": {"team": "ops"}}}`,
			now.Add(time.Duration(i)*time.Millisecond).UTC().Format("2006-01-02T15:04:05.000000+00:00"), st, st)
		ids[st] = post(body, now)
		if st == "paused" {
			// Browser Use retries with a new timestamp and signature: the
			// same event, which SQS FIFO and JetStream store once.
			if again := post(body, now.Add(time.Second)); again != ids[st] {
				t.Fatalf("a redelivery changed the id: %s vs %s", again, ids[st])
			}
		}
	}

	// Kafka, in binary mode: the finished event, keyed by task id, its
	// data as the value and its attributes as ce_ headers.
	records := sinktest.KafkaRecords(t, kafka.ListenAddrs(), "task.finished")
	if len(records) == 0 {
		t.Fatal("kafka: no record in task.finished")
	}
	r := records[0]
	headers := map[string]string{}
	for _, h := range r.Headers {
		headers[h.Key] = string(h.Value)
	}
	if string(r.Key) != "task-finished" || headers["ce_id"] != ids["finished"] || headers["ce_status"] != "finished" ||
		headers["ce_source"] != "browser-use" || headers["content-type"] != "application/json" {
		t.Errorf("kafka record key %q headers %v", r.Key, headers)
	}
	if want := `{"metadata":{"team":"ops"},"session_id":"s","status":"finished","task_id":"task-finished"}`; string(r.Value) != want {
		t.Errorf("kafka record value %s, want the data %s", r.Value, want)
	}
	if len(records) != 1 {
		t.Errorf("kafka got %d records, want 1", len(records))
	}

	// SQS: paused and stopped, in order, the paused redelivery dropped.
	// delivery: sync, so everything is there once the webhooks are
	// answered.
	var sqsStatuses []string
	for _, m := range sqs.ReadAll(queueURL, 1) {
		attr := func(k string) string {
			if v, ok := m.MessageAttributes[k]; ok && v.StringValue != nil {
				return *v.StringValue
			}
			return ""
		}
		st := attr("ce_status")
		sqsStatuses = append(sqsStatuses, st)
		if attr("ce_id") != ids[st] || attr("ce_subject") != "task-"+st || attr("ce_type") != event.StatusUpdateType || attr("content-type") != "application/json" {
			t.Errorf("sqs message attributes %v", m.MessageAttributes)
		}
		if !strings.Contains(aws.ToString(m.Body), `"status":"`+st+`"`) || strings.Contains(aws.ToString(m.Body), "specversion") {
			t.Errorf("sqs body %s, want the data alone", aws.ToString(m.Body))
		}
	}
	if strings.Join(sqsStatuses, ",") != "paused,stopped" {
		t.Errorf("sqs received %v, want paused,stopped once each", sqsStatuses)
	}

	// NATS: every status once.
	stream := busStream(t, svc)
	info, _ := stream.Info(ctx)
	if info.State.Msgs != uint64(len(statuses)) {
		t.Errorf("stream holds %d messages, want %d", info.State.Msgs, len(statuses))
	}
}
