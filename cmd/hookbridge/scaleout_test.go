package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestTwoReplicasShareTheJetStreamSpool runs two hookbridge processes on
// one jetstream spool behind a pretend load balancer: each task's events
// are posted one at a time, alternating between the replicas, and a failed
// post goes again, unchanged, to the other one. A third of the way in one
// replica is killed with SIGKILL; at two thirds it comes back unchanged.
// It proves that every event answered 200 reaches the sink stream exactly
// once and nothing else does, that each task's events arrive in the order
// they were sent, that the killed replica's unacknowledged messages are
// taken over (the spool drains to empty; with MaxAckPending 1 a message
// stuck with the dead replica would block its partition for good), and
// that both replicas then stop cleanly on SIGTERM.
func TestTwoReplicasShareTheJetStreamSpool(t *testing.T) {
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	ns := sinktest.NATS(t) // its cleanup runs after the replicas'

	// One config for both replicas; only the listen address, from the
	// environment, differs.
	const secret = "whsec_scaleout"
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`
server:
  listen: "${LISTEN_ADDR}"
  admin_listen: "127.0.0.1:0"
  publish_timeout: 2s
  write_timeout: 5s
  replay_cache: nats
spool:
  backend: jetstream
  url: %[1]q
  partitions: 4
  ack_wait: 3s
sources: [{name: browser-use, secrets: ["${BROWSER_USE_WEBHOOK_SECRET}"]}]
sinks: [{name: bus, type: nats, url: %[1]q, jetstream: true}]
routes: [{name: all, status: ["*"], to: [{sink: bus, subject: "task.{status}"}]}]
`, ns.ClientURL())), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(i int, addr string) *replica {
		r := &replica{cmd: exec.Command(bin, "serve", "-config", config), done: make(chan struct{})}
		r.cmd.Env = append(os.Environ(), "BROWSER_USE_WEBHOOK_SECRET="+secret, "LISTEN_ADDR="+addr)
		r.cmd.Stdout, r.cmd.Stderr = &r.logs, &r.logs
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { r.err = r.cmd.Wait(); close(r.done) }()
		t.Cleanup(func() {
			_ = r.cmd.Process.Kill()
			<-r.done
			if t.Failed() {
				t.Logf("replica %d (exit: %v) logged:\n%s", i, r.err, tail(r.logs.String(), 30))
			}
		})
		sinktest.WaitFor(t, "the replica to listen", func() bool { return strings.Contains(r.logs.String(), "hookbridge listening") })
		return r
	}
	// One after the other, as a replica joins a running deployment.
	addrs := [2]string{sinktest.FreeAddr(t), sinktest.FreeAddr(t)}
	replicas := [2]*replica{start(0, addrs[0]), start(1, addrs[1])}

	ctx := t.Context() // canceled as the test ends: senders give up then
	const senders, tasksPer, events = 4, 3, 25
	total := senders * tasksPer * events
	var mu sync.Mutex
	acked := map[string]string{} // event id -> task
	var sent sync.WaitGroup
	for w := range senders {
		sent.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for n := range events {
				for k := range tasksPer {
					task := fmt.Sprintf("task-%d-%d", w, k)
					body := fmt.Sprintf(`{"type":"agent.task.status_update","timestamp":%q,"payload":{"task_id":%q,"status":"running","metadata":{"n":"%d"}}}`,
						time.Now().UTC().Format(time.RFC3339Nano), task, n)
					deadline := time.Now().Add(60 * time.Second) // a bound, not an assertion
					for try := 0; ; try++ {
						id, err := postBody(ctx, client, "http://"+addrs[(n+k+try)%2]+"/webhook", secret, body)
						if err == nil {
							mu.Lock()
							acked[id] = task
							mu.Unlock()
							break
						}
						if ctx.Err() != nil {
							return
						}
						if time.Now().After(deadline) {
							t.Errorf("%s/%d: no replica took it: %v", task, n, err)
							return
						}
						if try%2 == 1 { // both failed: back off a little
							time.Sleep(20 * time.Millisecond)
						}
					}
				}
			}
		})
	}
	t.Cleanup(sent.Wait)
	awaitAcks := func(n int) {
		sinktest.WaitFor(t, fmt.Sprintf("%d acknowledged events", n), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= n
		})
	}

	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	awaitAcks(total / 3)
	if err := replicas[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-replicas[0].done
	spooled := sinktest.StreamCount(js, "HOOKBRIDGE_SPOOL")
	awaitAcks(2 * total / 3)
	replicas[0] = start(0, addrs[0])
	sent.Wait()
	if t.Failed() {
		return
	}
	if len(acked) != total {
		t.Fatalf("%d distinct ids acknowledged for %d distinct events", len(acked), total)
	}

	// Wait until the sink holds every acknowledged event and the spool is
	// empty, then check what the sink holds, in stream order.
	sinktest.WaitFor(t, "every event in the sink and an empty spool", func() bool {
		return sinktest.StreamCount(js, "HOOKBRIDGE") >= total && sinktest.StreamCount(js, "HOOKBRIDGE_SPOOL") == 0
	})
	var got []sinktest.CloudEvent
	for _, m := range sinktest.ReadStream(t, js, "HOOKBRIDGE") {
		got = append(got, sinktest.ReadCloudEvent(t, m.Data()))
	}
	copies, last := map[string]int{}, map[string]int{}
	for _, e := range got {
		copies[e.ID]++
		if _, ok := acked[e.ID]; !ok {
			t.Errorf("the sink holds event %s (%s/%d), which no replica acknowledged", e.ID, e.Data.TaskID, e.N())
		}
		if prev, ok := last[e.Data.TaskID]; ok && e.N() <= prev {
			t.Errorf("task %s: event %d reached the sink after event %d", e.Data.TaskID, e.N(), prev)
		}
		last[e.Data.TaskID] = e.N()
	}
	for id, task := range acked {
		if copies[id] != 1 {
			t.Errorf("acknowledged event %s of %s is in the sink %d times, want once", id, task, copies[id])
		}
	}

	// Redeliveries are the spool consumers' deliveries beyond one per
	// message stored: what the killed replica held came back after ack_wait.
	spool, err := js.Stream(ctx, "HOOKBRIDGE_SPOOL")
	if err != nil {
		t.Fatal(err)
	}
	redelivered := -int64(spool.CachedInfo().State.LastSeq)
	for ci := range spool.ListConsumers(ctx).Info() {
		redelivered += int64(ci.Delivered.Consumer)
	}
	t.Logf("%d events acknowledged, each in the sink once; %d spool messages waiting at the SIGKILL; %d redeliveries", total, spooled, redelivered)

	for _, r := range replicas {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
	for i, r := range replicas {
		select {
		case <-r.done:
			if r.err != nil {
				t.Errorf("replica %d after SIGTERM: %v", i, r.err)
			}
		case <-time.After(20 * time.Second): // a bound, not an assertion
			t.Errorf("replica %d still running 20s after SIGTERM", i)
		}
	}
}

// replica is one running hookbridge process.
type replica struct {
	cmd  *exec.Cmd
	logs sinktest.Buffer
	done chan struct{} // closed once it exited, with its exit in err
	err  error
}

// postBody signs and posts body, and returns the event id of a 200 answer.
func postBody(ctx context.Context, client *http.Client, url, secret, body string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err := signature.SignRequest(req, []byte(body), []byte(secret), strconv.FormatInt(time.Now().Unix(), 10)); err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var answer struct{ ID string }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&answer) != nil || answer.ID == "" {
		return "", fmt.Errorf("answered %s", resp.Status)
	}
	return answer.ID, nil
}

// webhookAnswer is how a webhook was answered.
type webhookAnswer struct {
	code   int
	header http.Header
	body   string
	id     string // on 200
}

// postWebhook posts body signed with secret and returns the answer,
// whatever its status.
func postWebhook(t *testing.T, client *http.Client, url, secret, body string) webhookAnswer {
	t.Helper()
	return postWebhookWith(t, client, url, secret, body, nil)
}

// postWebhookWith is postWebhook sending header too.
func postWebhookWith(t *testing.T, client *http.Client, url, secret, body string, header http.Header) webhookAnswer {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	if err := signature.SignRequest(req, []byte(body), []byte(secret), strconv.FormatInt(time.Now().Unix(), 10)); err != nil {
		t.Fatal(err)
	}
	resp, b := roundTrip(t, client, req)
	a := webhookAnswer{code: resp.StatusCode, header: resp.Header, body: b}
	if a.code == http.StatusOK {
		var ok struct{ ID string }
		if json.Unmarshal([]byte(b), &ok) != nil || ok.ID == "" {
			t.Fatalf("200 without an event id: %s", b)
		}
		a.id = ok.ID
	}
	return a
}
