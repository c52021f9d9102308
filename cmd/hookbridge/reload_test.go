package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestSIGHUPReloadsSecrets rotates the webhook secret in the config file
// and sends SIGHUP to the running serve: the new secret is accepted and
// the old one refused, without a restart.
func TestSIGHUPReloadsSecrets(t *testing.T) {
	dir := t.TempDir()
	webhookAddr := sinktest.FreeAddr(t)
	config := func(secret string) string {
		return `
server:
  listen: "` + webhookAddr + `"
  admin_listen: "127.0.0.1:0"
delivery: sync
sources:
  - name: browser-use
    secrets: ["` + secret + `"]
sinks:
  - name: audit
    type: file
    path: ` + filepath.Join(dir, "events.jsonl") + `
routes:
  - name: all
    status: ["*"]
    to: [{sink: audit}]
`
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(config("before")), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs sinktest.Buffer
	done := make(chan int, 1)
	// A long -watch: the reload must come from the signal.
	go func() {
		done <- run(ctx, []string{"serve", "-config", path, "-watch", "1h"}, env{stdin: strings.NewReader(""), stdout: &logs, stderr: &logs,
			lookupEnv: func(string) (string, bool) { return "", false }})
	}()
	sinktest.WaitFor(t, "serve to listen", func() bool { return strings.Contains(logs.String(), "hookbridge listening") })

	url := "http://" + webhookAddr + "/webhook"
	sendWith := func(secret string) string {
		var out, errw sinktest.Buffer
		run(ctx, []string{"send", "-url", url, "-secret", secret}, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errw,
			lookupEnv: func(string) (string, bool) { return "", false }})
		return strings.SplitN(out.String(), "\n", 2)[0]
	}
	if got := sendWith("before"); got != "200 OK" {
		t.Fatalf("before the reload: %s", got)
	}
	if err := os.WriteFile(path, []byte(config("after")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	sinktest.WaitFor(t, "the reload", func() bool { return strings.Contains(logs.String(), "config reloaded") })
	if got := sendWith("after"); got != "200 OK" {
		t.Errorf("new secret after SIGHUP: %s", got)
	}
	if got := sendWith("before"); got != "403 Forbidden" {
		t.Errorf("old secret after SIGHUP: %s", got)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("serve exited %d:\n%s", code, logs.String())
	}
}
