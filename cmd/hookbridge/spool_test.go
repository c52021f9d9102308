package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/hookbridge/hookbridge/bridge"
	"github.com/hookbridge/hookbridge/bridge/spool"
	"github.com/hookbridge/hookbridge/sinks"
)

// TestSpoolCommands lists, replays and drops dead letters of a spool left
// by a stopped hookbridge.
func TestSpoolCommands(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yaml")
	shipped, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(shipped), "dir: ./data/spool", "dir: "+filepath.Join(dir, "spool"), 1)
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := []spool.Record{
		{Sink: "bus", Message: sinks.Message{Target: "task.finished", Key: "t1", ID: "ev1", Body: []byte("{}")}, Received: time.Now()},
		{Sink: "bus", Message: sinks.Message{Target: "task.paused", Key: "t2", ID: "ev2", Body: []byte("{}")}, Received: time.Now()},
		{Sink: "bus", Message: sinks.Message{Target: "task.started", Key: "t3", ID: "ev3", Body: []byte("{}")}, Received: time.Now()},
	}
	if err := st.Append(recs); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[:2] {
		if err := st.Kill("bus", r.Seq, "the sink refuses it: too large", nil); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	// No secret needed to look at the spool.
	code, stdout, stderr := runCmd(t, "", nil, "spool", "ls", "-config", config, "-dead")
	folded := strings.Join(strings.Fields(stdout), " ")
	if code != 0 || !strings.Contains(folded, "waiting: 1 messages") || !strings.Contains(folded, "dead letters: 2") ||
		!strings.Contains(folded, "bus task.finished t1 ev1 0") || !strings.Contains(folded, "the sink refuses it: too large") {
		t.Fatalf("spool ls -dead: %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = runCmd(t, "", nil, "spool", "ls", "-config", config)
	if code != 0 || !strings.Contains(strings.Join(strings.Fields(stdout), " "), "bus task.started t3 ev3") {
		t.Fatalf("spool ls: %d\n%s", code, stdout)
	}
	seq := strconv.FormatUint(recs[0].Seq, 10)
	if code, stdout, stderr = runCmd(t, "", nil, "spool", "replay", "-config", config, seq); code != 0 || stdout != "1 dead letters back in line: the next serve delivers them\n" {
		t.Fatalf("spool replay %s: %d %q %q", seq, code, stdout, stderr)
	}
	if code, stdout, _ = runCmd(t, "", nil, "spool", "drop", "-config", config, "-all"); code != 0 || stdout != "1 dead letters dropped\n" {
		t.Fatalf("spool drop -all: %d %q", code, stdout)
	}
	code, stdout, _ = runCmd(t, "", nil, "spool", "ls", "-config", config)
	if code != 0 || !strings.Contains(stdout, "waiting: 2 messages") || !strings.Contains(stdout, "dead letters: 0") {
		t.Fatalf("after replay and drop: %s", stdout)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"spool"}, "hookbridge spool: say ls, replay, drop (run 'hookbridge help spool')\n"},
		{[]string{"spool", "replay", "-config", config}, "hookbridge spool: name the SEQs (spool ls -dead lists them), or -all (run 'hookbridge help spool')\n"},
		{[]string{"spool", "drop", "-config", config, "x1"}, "hookbridge spool: \"x1\" is not a SEQ: give the numbers spool ls prints (run 'hookbridge help spool')\n"},
	} {
		if code, _, stderr := runCmd(t, "", nil, tt.args...); code != 2 || stderr != tt.want {
			t.Errorf("%v: %d %q, want 2 %q", tt.args, code, stderr, tt.want)
		}
	}
}

// TestSpoolCommandsOnTheJetStreamSpool lists, replays and drops on the
// shared stream of spool.backend: jetstream, as on a local spool file.
func TestSpoolCommandsOnTheJetStreamSpool(t *testing.T) {
	ns := startNATS(t)
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`
spool: {backend: jetstream, url: %[1]q, partitions: 4}
sources: [{name: browser-use, secrets: ["whsec_x"]}]
sinks: [{name: bus, type: nats, url: %[1]q, jetstream: true}]
routes: [{name: all, status: ["*"], to: [{sink: bus, subject: "task.{status}"}]}]
`, ns.ClientURL())), 0o600); err != nil {
		t.Fatal(err)
	}
	spoolCmd := func(args ...string) (int, string, string) {
		return runCmd(t, "", nil, append([]string{"spool"}, append(args[:1:1], append([]string{"-config", config}, args[1:]...)...)...)...)
	}
	if code, _, stderr := spoolCmd("ls"); code != 1 || !strings.Contains(stderr, "no stream HOOKBRIDGE_SPOOL") {
		t.Errorf("ls before any replica ran: exit %d, %q", code, stderr)
	}

	// What replicas would have left: one waiting message, two dead letters.
	cfg, err := bridge.LoadConfig(config, nil)
	if err != nil {
		t.Fatal(err)
	}
	js, err := bridge.OpenJetStreamSpool(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	js.Close()
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	put := func(subject, id, reason string) {
		r := spool.Record{Sink: "bus", Message: sinks.Message{Target: "task.paused", Key: "t-" + id, ID: id, Body: []byte("{}")},
			Received: time.Now(), Attempts: 3, Reason: reason}
		if reason != "" {
			r.Died = time.Now()
		}
		if err := nc.Publish(subject, spool.Marshal(&r)); err != nil {
			t.Fatal(err)
		}
	}
	put("hookbridge.spool.q.bus.3", "w1", "")
	put("hookbridge.spool.dead.bus", "d1", "the sink refuses it: too large")
	put("hookbridge.spool.dead.bus", "d2", "undelivered after 3 attempts: down")
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		args []string
		want []string
	}{
		{[]string{"ls"}, []string{"waiting: 1 messages", "dead letters: 2", "\nSEQ ", "\n1 ", " w1 ", " - "}},
		{[]string{"ls", "-dead"}, []string{"\n2 ", " d1 ", "the sink refuses it: too large", "\n3 ", " d2 "}},
		{[]string{"replay", "2"}, []string{"1 dead letters back in line: the running replicas deliver them"}},
		{[]string{"ls"}, []string{"waiting: 2 messages", "dead letters: 1", " d1 "}},
		{[]string{"drop", "-all"}, []string{"1 dead letters dropped"}},
		{[]string{"drop", "-pending", "-sink", "bus", "-all"}, []string{`every waiting message of sink "bus" dropped (2 were waiting)`}},
		{[]string{"ls"}, []string{"waiting: 0 messages", "dead letters: 0"}},
	}
	for _, st := range steps {
		code, stdout, stderr := spoolCmd(st.args...)
		t.Logf("spool %s:\n%s", strings.Join(st.args, " "), stdout)
		if code != 0 {
			t.Fatalf("spool %s: exit %d: %s", strings.Join(st.args, " "), code, stderr)
		}
		for _, w := range st.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("spool %s: output lacks %q:\n%s", strings.Join(st.args, " "), w, stdout)
			}
		}
	}
}
