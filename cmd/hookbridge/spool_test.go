package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	hbconfig "github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/bridge/queue/jetstream"
	"github.com/hookbridge/hookbridge/bridge/queue/local"
	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// leaveInSpool puts in q what a stopped hookbridge may leave: one message
// waiting for sink bus (ev3, after a failed attempt) and two dead letters
// (ev1, ev2), made through the queue as the dispatchers make them.
func leaveInSpool(t *testing.T, q queue.Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := []queue.Record{
		{Sink: "bus", Message: sinks.Message{Target: "task.finished", Key: "t1", ID: "ev1", Body: []byte("{}")}, Received: time.Now()},
		{Sink: "bus", Message: sinks.Message{Target: "task.paused", Key: "t2", ID: "ev2", Body: []byte("{}")}, Received: time.Now()},
		{Sink: "bus", Message: sinks.Message{Target: "task.started", Key: "t3", ID: "ev3", Body: []byte("{}")}, Received: time.Now()},
	}
	if err := q.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	recv := q.Receiver("bus")
	defer recv.Close()
	for settled := 0; settled < len(recs); {
		leases, err := recv.Receive(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leases {
			r, err := l.Record()
			if err != nil {
				t.Fatal(err)
			}
			if r.Message.ID == "ev3" {
				err = l.Retry(time.Hour, errors.New("down"))
			} else {
				err = l.Kill("the sink refuses it: too large", nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			settled++
		}
	}
}

// TestSpoolCommands lists, replays and drops on both spools, with the same
// commands: the local file of a stopped hookbridge, and the shared stream
// of spool.backend: jetstream while replicas run.
func TestSpoolCommands(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setUp   func(t *testing.T) (config string)
		replays string // who delivers a replayed dead letter
	}{
		{"local", func(t *testing.T) string {
			dir := t.TempDir()
			shipped, err := os.ReadFile("../../config.yaml")
			if err != nil {
				t.Fatal(err)
			}
			config := writeConfig(t, strings.Replace(string(shipped), "dir: ./data/spool", "dir: "+filepath.Join(dir, "spool"), 1))
			q, err := local.OpenQueue(filepath.Join(dir, "spool"), local.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			leaveInSpool(t, q)
			return config
		}, "the next serve delivers them"},
		{"jetstream", func(t *testing.T) string {
			ns := sinktest.NATS(t)
			config := writeConfig(t, fmt.Sprintf(`
spool: {backend: jetstream, url: %[1]q, partitions: 4}
sources: [{name: browser-use, secrets: ["${BROWSER_USE_WEBHOOK_SECRET}"]}]
sinks: [{name: bus, type: nats, url: %[1]q, jetstream: true}]
routes: [{name: all, status: ["*"], to: [{sink: bus, subject: "task.{status}"}]}]
`, ns.ClientURL()))
			if code, _, stderr := runCmd(t, "", nil, "spool", "ls", "-config", config); code != 1 || !strings.Contains(stderr, "no stream HOOKBRIDGE_SPOOL") {
				t.Errorf("ls before any replica ran: exit %d, %q", code, stderr)
			}
			cfg, err := hbconfig.Load(config, func(string) (string, bool) { return "whsec_x", true })
			if err != nil {
				t.Fatal(err)
			}
			conn, err := jetstream.Dial(cfg.Spool.JetStream, 5*time.Second, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			q, err := conn.OpenQueue(context.Background(), jetstream.Limits{MaxEvents: 100, MaxBytes: 1 << 20}, nil)
			if err != nil {
				t.Fatal(err)
			}
			leaveInSpool(t, q)
			return config
		}, "the running replicas deliver them"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config := tc.setUp(t)
			// No secret needed to look at the spool.
			spool := func(args ...string) (int, string, string) {
				return runCmd(t, "", nil, append([]string{"spool"}, append(args[:1:1], append([]string{"-config", config}, args[1:]...)...)...)...)
			}
			code, stdout, stderr := spool("ls", "-dead")
			folded := strings.Join(strings.Fields(stdout), " ")
			if code != 0 || !strings.Contains(folded, "waiting: 1 messages") || !strings.Contains(folded, "dead letters: 2") ||
				!strings.Contains(folded, "bus task.finished t1 ev1") || !strings.Contains(folded, "the sink refuses it: too large") {
				t.Fatalf("spool ls -dead: %d\n%s%s", code, stdout, stderr)
			}
			seq := seqOf(t, stdout, "ev1")
			code, stdout, _ = spool("ls")
			if code != 0 || !strings.Contains(strings.Join(strings.Fields(stdout), " "), "bus task.started t3 ev3") {
				t.Fatalf("spool ls: %d\n%s", code, stdout)
			}
			steps := []struct {
				args []string
				want string
			}{
				{[]string{"replay", seq}, "1 dead letters back in line: " + tc.replays + "\n"},
				{[]string{"drop", "-all"}, "1 dead letters dropped\n"},
				{[]string{"drop", "-pending", "-sink", "bus", "-all"}, `every waiting message of sink "bus" dropped (2 were waiting)` + "\n"},
			}
			for _, st := range steps {
				if code, stdout, stderr := spool(st.args...); code != 0 || stdout != st.want {
					t.Fatalf("spool %s: %d %q %q, want %q", strings.Join(st.args, " "), code, stdout, stderr, st.want)
				}
			}
			code, stdout, _ = spool("ls")
			if code != 0 || !strings.Contains(stdout, "waiting: 0 messages") || !strings.Contains(stdout, "dead letters: 0") {
				t.Fatalf("after replay and drops: %s", stdout)
			}

			for _, tt := range []struct {
				args []string
				want string
			}{
				{[]string{"spool"}, "hookbridge spool: say ls, replay, drop (run 'hookbridge help spool')\n"},
				{[]string{"spool", "replay", "-config", config}, "hookbridge spool: name the SEQs (spool ls -dead lists them), or -all (run 'hookbridge help spool')\n"},
				{[]string{"spool", "drop", "-config", config, "x1"}, "hookbridge spool: \"x1\" is not a SEQ: give the numbers spool ls prints (run 'hookbridge help spool')\n"},
				{[]string{"spool", "drop", "-config", config, "-pending", "-all"}, "hookbridge spool: drop -pending needs -sink NAME (run 'hookbridge help spool')\n"},
				{[]string{"spool", "ls", "-config", config, "7"}, "hookbridge spool: ls takes no SEQ (run 'hookbridge help spool')\n"},
			} {
				if code, _, stderr := runCmd(t, "", nil, tt.args...); code != 2 || stderr != tt.want {
					t.Errorf("%v: %d %q, want 2 %q", tt.args, code, stderr, tt.want)
				}
			}
		})
	}
}

// writeConfig writes a config file for a test and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// seqOf returns the SEQ spool ls printed for event id.
func seqOf(t *testing.T, ls, id string) string {
	t.Helper()
	for _, line := range strings.Split(ls, "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == id {
			return f[0]
		}
	}
	t.Fatalf("spool ls lists no event %s:\n%s", id, ls)
	return ""
}
