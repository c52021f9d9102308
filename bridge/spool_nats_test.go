package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// natsOnPort runs a JetStream nats-server on a fixed port and directory,
// so a test can stop it and start it again where clients expect it.
func natsOnPort(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// busConfig is the spool tests' config: one source, the NATS sink "bus"
// on natsURL with fast retries, every status to task.{status}. spool is
// the lines under spool:, extraSink more sinks.
func busConfig(t *testing.T, natsURL, spool, extraSink string) *Config {
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
    secrets: ["whsec_spool"]
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
`, spool, natsURL, extraSink)
	cfg, err := ParseConfig("spool.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// spoolConfig is busConfig with the local spool in spoolDir.
func spoolConfig(t *testing.T, natsURL, spoolDir string, extraSink string) *Config {
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
	body := fmt.Sprintf(`{"type":"agent.task.status_update","timestamp":"2026-11-26T12:00:00.%06d+00:00","payload":{"task_id":%q,"status":"started","metadata":{"n":"%d"}}}`, n, task, n)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, hostileSign("whsec_spool", ts, []byte(body)))
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var answer struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer.ID, nil
}

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

// streamEvents reads every message of the HOOKBRIDGE stream: event id by
// stream order, with the task and metadata.n of each.
type streamEvent struct {
	ID, Task string
	N        int
}

func streamEvents(t *testing.T, js jetstream.JetStream) []streamEvent {
	t.Helper()
	var out []streamEvent
	for _, m := range readAll(t, js, "HOOKBRIDGE") {
		out = append(out, streamEventOf(t, m))
	}
	return out
}

// streamEventOf reads a sink message's CloudEvent: its id, task and
// metadata.n.
func streamEventOf(t *testing.T, m jetstream.Msg) streamEvent {
	t.Helper()
	var ce struct {
		ID   string
		Data struct {
			TaskID   string `json:"task_id"`
			Metadata struct{ N string }
		}
	}
	if err := json.Unmarshal(m.Data(), &ce); err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(ce.Data.Metadata.N)
	return streamEvent{ID: ce.ID, Task: ce.Data.TaskID, N: n}
}

// checkDelivered asserts every acknowledged id is in the stream exactly
// once and each task's events are in the order they were accepted.
func checkDelivered(t *testing.T, got []streamEvent, acked map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	last := map[string]int{}
	for _, e := range got {
		seen[e.ID]++
		if prev, ok := last[e.Task]; ok && e.N < prev {
			t.Errorf("task %s: event %d arrived after %d", e.Task, e.N, prev)
		}
		last[e.Task] = e.N
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

// TestSpoolRidesOutBrokerOutage stops NATS in the middle of steady traffic
// and starts it again: every webhook is answered 200 throughout, and every
// acknowledged event reaches JetStream once, in order per task.
func TestSpoolRidesOutBrokerOutage(t *testing.T) {
	port, natsDir := freeTCPPort(t), t.TempDir()
	srv := natsOnPort(t, port, natsDir)
	cfg := spoolConfig(t, srv.ClientURL(), t.TempDir(), "")
	ctx := context.Background()
	svc, err := Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(ctx)
	url := "http://" + svc.Addr().String() + "/webhook"

	const workers, perWorker = 4, 60
	var mu sync.Mutex
	acked := map[string]bool{}
	var sent sync.WaitGroup
	progress := make(chan int, workers*perWorker)
	for w := range workers {
		sent.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for n := range perWorker {
				task := fmt.Sprintf("task-%d-%d", w, n%3) // each task is one worker's
				code, id := postEvent(t, client, url, task, n)
				if code != http.StatusOK {
					t.Errorf("%s/%d answered %d while the broker was away: the spool should take it", task, n, code)
					continue
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
				progress <- 1
			}
		})
	}
	// Stop the broker a third of the way in, start it again at two thirds.
	done := 0
	for done < workers*perWorker/3 {
		done += <-progress
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	// HOOKBRIDGE_TEST_OUTAGE (e.g. 30s) holds the broker down at least that
	// long; by default the outage lasts a third of the traffic.
	outage, _ := time.ParseDuration(os.Getenv("HOOKBRIDGE_TEST_OUTAGE"))
	back := time.After(outage)
	for done < 2*workers*perWorker/3 {
		done += <-progress
	}
	<-back
	srv = natsOnPort(t, port, natsDir)
	sent.Wait()

	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := svc.Spooler().Drain(dctx); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, streamEvents(t, natsJS(t, srv.ClientURL())), acked)
	if svc.Spooler().Retries() == 0 {
		t.Error("no publish was retried: the outage did not happen under traffic")
	}
}

// TestSpoolRedeliversAfterRestart: events accepted while the broker is
// unreachable stay in the spool across a restart of hookbridge (as after a
// crash between the fsync and the publish) and are delivered by the next
// start.
func TestSpoolRedeliversAfterRestart(t *testing.T) {
	port, spoolDir := freeTCPPort(t), t.TempDir()
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	ctx := context.Background()

	cfg := spoolConfig(t, natsURL, spoolDir, "")
	cfg.SkipProbes() // the broker is not there yet
	svc, err := Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + svc.Addr().String() + "/webhook"
	acked := map[string]bool{}
	for n := range 10 {
		code, id := postEvent(t, http.DefaultClient, url, "t", n)
		if code != http.StatusOK {
			t.Fatalf("event %d: %d", n, code)
		}
		acked[id] = true
	}
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := svc.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	st, err := OpenSpool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stats, _ := st.Stats()
	st.Close()
	if stats.Pending != 10 {
		t.Fatalf("the spool holds %d messages after shutdown, want 10", stats.Pending)
	}

	srv := natsOnPort(t, port, t.TempDir())
	svc, err = Start(ctx, spoolConfig(t, natsURL, spoolDir, ""), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(ctx)
	dctx, cancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer cancel2()
	if err := svc.Spooler().Drain(dctx); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, streamEvents(t, natsJS(t, srv.ClientURL())), acked)
}
