package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestServiceEndToEnd runs the whole path in-process: deliveries signed by
// CPython (the shared vectors) come in over HTTP, are verified, normalized
// and routed by a YAML config, and land in a real JetStream stream (an
// embedded nats-server) and a file.
func TestServiceEndToEnd(t *testing.T) {
	vectors, ok := loadVectors(t, sharedVectors)
	if !ok {
		t.Skipf("%s not found: the repository is expected beside shared/", sharedVectors)
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
	post := func(v vector) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(v.body(t)))
		req.Header.Set(HeaderTimestamp, v.Timestamp)
		req.Header.Set(HeaderSignature, v.Signature)
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
		var cz Canonicalizer
		c, _ := cz.Canonicalize(v.body(t))
		ev, err := Normalize("browser-use", v.Timestamp, time.Now(), c, Trace{})
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
	redeliver := vectorNamed(t, vectors, "envelope-finished")
	redeliver.Timestamp = "1738893999"
	var cz Canonicalizer
	c, _ := cz.Canonicalize(redeliver.body(t))
	redeliver.Signature = Signature([]byte(redeliver.Secret), redeliver.Timestamp, c.JSON)
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
		if h.Get("Nats-Msg-Id") != ce["id"].(string)+":"+m.Subject() || h.Get("ce-id") != ce["id"] || h.Get("ce-status") != ce["status"] || h.Get("ce-source") != "browser-use" {
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

func vectorNamed(t *testing.T, vs []vector, name string) vector {
	t.Helper()
	for _, v := range vs {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no vector %q", name)
	return vector{}
}
