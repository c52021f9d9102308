package main

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestTour runs the README's tour in-process on the shipped config.yaml
// (only its ports and storage moved): serve, tail, send.
func TestTour(t *testing.T) {
	dir := t.TempDir()
	webhookAddr, natsAddr := sinktest.FreeAddr(t), sinktest.FreeAddr(t)
	shipped, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		`listen: "127.0.0.1:8080"`, `listen: "`+webhookAddr+`"`,
		`listen: "127.0.0.1:4222"`, `listen: "`+natsAddr+`"`,
		`admin_listen: "127.0.0.1:9090"`, `admin_listen: "127.0.0.1:0"`,
		`store_dir: ./data/nats`, `store_dir: `+filepath.Join(dir, "nats"),
		`dir: ./data/spool`, `dir: `+filepath.Join(dir, "spool"),
	).Replace(string(shipped))
	if strings.Contains(cfg, `listen: "127.0.0.1:8080"`) || strings.Contains(cfg, "9090") || strings.Contains(cfg, `listen: "127.0.0.1:4222"`) || strings.Contains(cfg, "./data/") {
		t.Fatal("config.yaml changed shape: update this test's replacements")
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"BROWSER_USE_WEBHOOK_SECRET": "whsec_tour"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := func(out, errw *sinktest.Buffer) env {
		return env{stdin: strings.NewReader(""), stdout: out, stderr: errw,
			lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	}

	var serveOut, serveErr sinktest.Buffer
	serveDone := make(chan int, 1)
	go func() { serveDone <- run(ctx, []string{"serve", "-config", path}, e(&serveOut, &serveErr)) }()
	sinktest.WaitFor(t, "serve to listen", func() bool { return strings.Contains(serveErr.String(), "hookbridge listening") })

	tailCtx, stopTail := context.WithCancel(ctx)
	var tailOut, tailErr sinktest.Buffer
	tailDone := make(chan int, 1)
	go func() { tailDone <- run(tailCtx, []string{"tail", "-config", path}, e(&tailOut, &tailErr)) }()
	sinktest.WaitFor(t, "tail to subscribe", func() bool {
		select {
		case code := <-tailDone:
			t.Fatalf("tail exited %d: %s", code, tailErr.String())
		default:
		}
		return strings.Contains(tailErr.String(), "following")
	})

	url := "http://" + webhookAddr + "/webhook"
	for _, args := range [][]string{
		{"send", "-url", url, "-status", "finished", "-task-id", "t-finished"},
		{"send", "-url", url, "-status", "paused", "-task-id", "t-paused", "-flat"},
		{"send", "-url", url, "-test"},
	} {
		var out, errw sinktest.Buffer
		if code := run(ctx, args, e(&out, &errw)); code != 0 || !strings.HasPrefix(out.String(), "200 OK\n{\"id\":") {
			t.Fatalf("%v: code %d stdout %q stderr %q", args, code, out.String(), errw.String())
		}
	}
	var out, errw sinktest.Buffer
	if code := run(ctx, []string{"send", "-url", url, "-secret", "wrong"}, e(&out, &errw)); code != 1 || !strings.HasPrefix(out.String(), "403 Forbidden\n") {
		t.Errorf("send with a wrong secret: code %d stdout %q", code, out.String())
	}

	// finished once, paused on task.paused and alerts.task.paused; the test
	// ping is never routed. The paused event is two messages, one per
	// subject, of one event: tail used to print them alike, without the
	// subject, as if it showed one message twice.
	sinktest.WaitFor(t, "three events on tail", func() bool { return strings.Count(tailOut.String(), "\n") >= 3 })
	stopTail()
	if code := <-tailDone; code != 0 {
		t.Errorf("tail exited %d: %s", code, tailErr.String())
	}
	if !strings.Contains(tailErr.String(), `following stream "HOOKBRIDGE"`) {
		t.Errorf("tail does not follow the sink's stream: %s", tailErr.String())
	}
	seen := map[string]int{}
	ids := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(tailOut.String()), "\n") {
		var l struct {
			Subject string
			Event   struct{ ID, Subject, Status, Type string }
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("tail line %q: %v", line, err)
		}
		seen[l.Subject+" "+l.Event.Subject+" "+l.Event.Status]++
		ids[l.Subject] = l.Event.ID
	}
	want := map[string]int{"task.finished t-finished finished": 1, "task.paused t-paused paused": 1, "alerts.task.paused t-paused paused": 1}
	if !maps.Equal(seen, want) {
		t.Errorf("tail saw %v, want %v", seen, want)
	}
	if ids["task.paused"] != ids["alerts.task.paused"] {
		t.Errorf("the paused event has ids %q and %q on its two subjects", ids["task.paused"], ids["alerts.task.paused"])
	}

	cancel()
	if code := <-serveDone; code != 0 {
		t.Errorf("serve exited %d: %s", code, serveErr.String())
	}
	if strings.Contains(serveErr.String(), "whsec_tour") {
		t.Error("serve logged the secret")
	}
}
