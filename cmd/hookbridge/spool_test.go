package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestSpoolCommandsNameTheStream: with backend jetstream there is no local
// spool to open; the command says where the spool is and how to see it.
func TestSpoolCommandsNameTheStream(t *testing.T) {
	config := "../../bridge/testdata/config/ok-jetstream.yaml"
	env := map[string]string{"BROWSER_USE_WEBHOOK_SECRET": "whsec_x"}
	code, _, stderr := runCmd(t, "", env, "spool", "ls", "-config", config)
	want := "nats stream view HOOKBRIDGE_SPOOL --subject 'hookbridge.spool.dead.>'"
	if code != 1 || !strings.Contains(stderr, "stream HOOKBRIDGE_SPOOL") || !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("spool ls: exit %d, stderr %q; want 1 and one line naming the stream and %q", code, stderr, want)
	}
}
