package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/ingress"
	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestServiceEndToEnd runs the whole path in-process: deliveries signed by
// CPython (the shared vectors) come in over HTTP, are verified, normalized
// and routed by a YAML config, and land in a real JetStream stream (an
// embedded nats-server) and a file.
func TestServiceEndToEnd(t *testing.T) {
	path := sinktest.SharedVectorsPath(t)
	vectors, ok := sinktest.Vectors(t, path)
	if !ok {
		t.Skipf("%s not found: the repository is expected beside shared/", path)
	}
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	yaml := `
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
delivery: sync
sources:
  - name: browser-use
    path: /webhook
    secrets: ["${SECRET_A}", "${SECRET_B}"]
    tolerance: 0   # the vectors were signed long ago
sinks:
  - name: bus
    type: nats
    url: embedded
    jetstream: true
    embedded: {listen: "127.0.0.1:-1", store_dir: "` + filepath.Join(dir, "nats") + `"}
  - name: audit
    type: file
    path: ` + events + `
routes:
  - name: finished
    status: [finished]
    to:
      - {sink: bus, subject: "task.{status}"}
  - name: alerting
    status: [paused, stopped]
    to:
      - {sink: bus, subject: "alerts.task.{status}"}
  - name: everything
    status: ["*"]
    to:
      - {sink: audit}
      - {sink: bus, subject: "task.{status}"}
`
	env := func(k string) (string, bool) {
		return map[string]string{"SECRET_A": "whsec_test_secret", "SECRET_B": "s3cr3t-ключ"}[k], strings.HasPrefix(k, "SECRET_")
	}
	ctx := context.Background()
	svc := startYAML(t, "e2e.yaml", yaml, env)
	url := "http://" + svc.Addr().String() + "/webhook"

	// Every valid CPython vector with a status and one of our secrets.
	wantSubjects := map[string]int{} // subject -> count in the stream
	var wantIDs []string
	post := func(v sinktest.Vector) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(v.Body(t)))
		req.Header.Set(signature.HeaderTimestamp, v.Timestamp)
		req.Header.Set(signature.HeaderSignature, v.Signature)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var answer map[string]any
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &answer); err != nil {
			t.Fatalf("%s: answer %q is not JSON", v.Name, b)
		}
		return resp.StatusCode, answer
	}
	statuses := map[string]bool{}
	for _, v := range vectors {
		if v.Expect != "valid" || (v.Secret != "whsec_test_secret" && v.Secret != "s3cr3t-ключ") {
			continue
		}
		code, answer := post(v)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %v", v.Name, code, answer)
		}
		if answer["test"] == true {
			continue
		}
		var cz signature.Canonicalizer
		c, _ := cz.Canonicalize(v.Body(t))
		ev, err := event.Normalize("browser-use", v.Timestamp, time.Now(), c, event.Trace{})
		if err != nil {
			t.Fatal(err)
		}
		if answer["id"] != ev.ID {
			t.Errorf("%s: answered id %v, want %s", v.Name, answer["id"], ev.ID)
		}
		statuses[ev.Status] = true
		wantIDs = append(wantIDs, ev.ID)
		switch ev.Status {
		case "finished":
			wantSubjects["task.finished"]++ // the two routes' identical targets collapse
		case "paused", "stopped":
			wantSubjects["alerts.task."+ev.Status]++
			wantSubjects["task."+ev.Status]++
		default:
			wantSubjects["task."+safeToken(ev.Status)]++
		}
	}
	for _, st := range []string{"initializing", "started", "paused", "stopped", "finished"} {
		if !statuses[st] {
			t.Errorf("no vector with status %q went through", st)
		}
	}

	// A redelivery of an envelope (new timestamp, new signature) is
	// recognized: answered 200, published nowhere again.
	redeliver := sinktest.VectorNamed(t, vectors, "envelope-finished")
	redeliver.Timestamp = "1738893999"
	var cz signature.Canonicalizer
	c, _ := cz.Canonicalize(redeliver.Body(t))
	redeliver.Signature = signature.Sign([]byte(redeliver.Secret), redeliver.Timestamp, c.JSON)
	if code, answer := post(redeliver); code != 200 || answer["duplicate"] != true {
		t.Fatalf("redelivery: %d %v, want 200 with duplicate: true", code, answer)
	}

	// JetStream holds each event once per subject.
	stream := busStream(t, svc)
	info, _ := stream.Info(ctx)
	total := 0
	for _, n := range wantSubjects {
		total += n
	}
	if int(info.State.Msgs) != total {
		t.Errorf("stream holds %d messages, want %d", info.State.Msgs, total)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(total, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	gotSubjects := map[string]int{}
	for m := range batch.Messages() {
		gotSubjects[m.Subject()]++
		var ce map[string]any
		if err := json.Unmarshal(m.Data(), &ce); err != nil {
			t.Errorf("%s: body is not JSON: %v", m.Subject(), err)
			continue
		}
		h := m.Headers()
		// Structured mode: the id and content type, and no ce- header,
		// which would make the CloudEvents SDKs read the body as data.
		if len(h) != 2 || h.Get("Nats-Msg-Id") != ce["id"].(string)+":"+m.Subject() || h.Get("content-type") != "application/cloudevents+json; charset=utf-8" || ce["source"] != "browser-use" {
			t.Errorf("%s: headers %v do not match the event %v", m.Subject(), h, ce)
		}
	}
	for s, n := range wantSubjects {
		if gotSubjects[s] != n {
			t.Errorf("subject %s: %d messages, want %d (got %v)", s, gotSubjects[s], n, gotSubjects)
		}
	}

	// The file has one line per accepted event: the redelivery was not
	// published again.
	f, err := os.Open(events)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ce struct{ ID string }
		if err := json.Unmarshal(sc.Bytes(), &ce); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, ce.ID)
	}
	if len(lines) != len(wantIDs) {
		t.Errorf("file has %d lines, want %d", len(lines), len(wantIDs))
	}
	for i, id := range wantIDs {
		if i < len(lines) && lines[i] != id {
			t.Errorf("line %d id %s, want %s", i, lines[i], id)
		}
	}
}

// safeToken is the template substitution rule, spelled out independently.
func safeToken(s string) string {
	var b strings.Builder
	for _, r := range []byte(s) {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteByte(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// TestServiceSheds: past server.max_concurrent_requests a webhook is
// answered 503 with Retry-After at once instead of queueing without
// bound, and once a slot frees the next one goes through. The slot is held
// here by a request whose body is still on its way.
func TestServiceSheds(t *testing.T) {
	dir := t.TempDir()
	svc := startYAML(t, "shed.yaml", `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_concurrent_reads: 1}
delivery: sync
sources: [{name: browser-use, secrets: [whsec_shed]}]
sinks: [{name: audit, type: file, path: `+filepath.Join(dir, "events.jsonl")+`}]
routes: [{name: all, status: ["*"], to: [{sink: audit}]}]
`, nil)
	url := "http://" + svc.Addr().String() + "/webhook"
	post := func(task string) *http.Response {
		t.Helper()
		body := event.Sample{Status: "finished", TaskID: task, Time: time.Now()}.Body()
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err := signature.SignRequest(req, body, []byte("whsec_shed"), strconv.FormatInt(time.Now().Unix(), 10)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// The first request: its headers, then only part of its body. It
	// holds the one read slot (never a delivery slot: issue 16).
	slow, err := net.Dial("tcp", svc.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	const slowBody = `{"status":"finished","task_id":"t0"}`
	if _, err := fmt.Fprintf(slow, "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(slowBody), slowBody[:10]); err != nil {
		t.Fatal(err)
	}
	var shed *http.Response
	sinktest.WaitFor(t, "a webhook shed while the slow one holds the read slot", func() bool {
		shed = post("t1")
		return shed.StatusCode == http.StatusServiceUnavailable
	})
	if shed.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if n := svc.Ingress().Count(ingress.ResultOverloaded); n == 0 {
		t.Error("the shed webhook is not counted as overloaded")
	}
	// The slow request ends (unsigned: 400), and the slot is free again.
	if _, err := io.WriteString(slow, slowBody[10:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the slow request: %v, %v", resp, err)
	}
	if resp := post("t2"); resp.StatusCode != http.StatusOK {
		t.Errorf("after the slot freed: %d", resp.StatusCode)
	}
}
