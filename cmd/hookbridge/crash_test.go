package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestKill9LosesNoAcknowledgedEvent runs the real binary under steady
// traffic, kills it with SIGKILL, starts it again on the same data and
// checks that every event it answered 200 reaches JetStream exactly once.
func TestKill9LosesNoAcknowledgedEvent(t *testing.T) {
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	webhookAddr, natsAddr := sinktest.FreeAddr(t), sinktest.FreeAddr(t)
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`
server:
  listen: %q
  admin_listen: "127.0.0.1:0"
delivery: spool
spool:
  dir: %q
sources:
  - name: browser-use
    secrets: ["${BROWSER_USE_WEBHOOK_SECRET}"]
sinks:
  - name: bus
    type: nats
    url: embedded
    jetstream: true
    embedded: {listen: %q, store_dir: %q}
routes:
  - name: all
    status: ["*"]
    to:
      - {sink: bus, subject: "task.{status}"}
`, webhookAddr, filepath.Join(dir, "spool"), natsAddr, filepath.Join(dir, "nats"))), 0o600); err != nil {
		t.Fatal(err)
	}

	start := func() (*exec.Cmd, *syncBuffer) {
		cmd := exec.Command(bin, "serve", "-config", config)
		cmd.Env = append(os.Environ(), "BROWSER_USE_WEBHOOK_SECRET=whsec_crash")
		var logs syncBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sinktest.WaitFor(t, "hookbridge to listen", func() bool { return strings.Contains(logs.String(), "hookbridge listening") })
		return cmd, &logs
	}
	proc, _ := start()

	// Steady traffic from four clients until the kill; record what was
	// answered 200.
	url := "http://" + webhookAddr + "/webhook"
	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var clients sync.WaitGroup
	for w := range 4 {
		clients.Go(func() {
			client := &http.Client{Timeout: 5 * time.Second}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id, ok := postSigned(client, url, fmt.Sprintf("task-%d", w), n)
				if ok {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				}
			}
		})
	}
	sinktest.WaitFor(t, "300 acknowledged events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 300
	})
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	close(stop)
	clients.Wait()

	proc, logs := start()
	defer func() {
		_ = proc.Process.Signal(syscall.SIGTERM)
		_ = proc.Wait()
	}()
	nc, err := natsgo.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	var stored map[string]int
	sinktest.WaitFor(t, "every acknowledged event in JetStream", func() bool {
		stored = storedIDs(t, ctx, js)
		for id := range acked {
			if stored[id] == 0 {
				return false
			}
		}
		return true
	})
	for id, n := range stored {
		if n != 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	t.Logf("%d events acknowledged before SIGKILL, %d stored; second run's log:\n%s", len(acked), len(stored), tail(logs.String(), 5))
}

// buildBinary builds hookbridge into dir, or skips the test under -short.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(dir, "hookbridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// postSigned posts one signed envelope event and reports its id if it was
// answered 200.
func postSigned(client *http.Client, url, task string, n int) (string, bool) {
	body := fmt.Sprintf(`{"type":"agent.task.status_update","timestamp":"%s","payload":{"task_id":%q,"status":"started","metadata":{"n":"%d"}}}`,
		time.Now().UTC().Format(time.RFC3339Nano), task, n)
	id, err := postBody(context.Background(), client, url, "whsec_crash", body)
	return id, err == nil
}

// storedIDs counts the events in the HOOKBRIDGE stream by CloudEvents id.
func storedIDs(t *testing.T, ctx context.Context, js jetstream.JetStream) map[string]int {
	t.Helper()
	ids := map[string]int{}
	if sinktest.StreamCount(js, "HOOKBRIDGE") <= 0 {
		return ids // no stream yet: the caller polls again
	}
	for _, m := range sinktest.ReadStream(t, js, "HOOKBRIDGE") {
		ids[sinktest.ReadCloudEvent(t, m.Data()).ID]++
	}
	return ids
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
