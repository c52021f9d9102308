package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/signature"
)

// TestMain lets the test binary be the trivial server, as the real
// program is when it runs itself.
func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "trivial":
		os.Exit(serveTrivial())
	case "bare":
		os.Exit(serveBare())
	}
	code := m.Run()
	if buildOnce.bin != "" {
		os.RemoveAll(filepath.Dir(buildOnce.bin))
	}
	os.Exit(code)
}

var buildOnce struct {
	sync.Once
	bin string
	err error
	out []byte
}

// hookbridgeBinary builds cmd/hookbridge once for the package's tests.
func hookbridgeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hookbridge-load-test-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.bin = filepath.Join(dir, "hookbridge")
		buildOnce.out, buildOnce.err = exec.Command("go", "build", "-o", buildOnce.bin, "../hookbridge").CombinedOutput()
	})
	if buildOnce.err != nil {
		t.Fatalf("go build: %v\n%s", buildOnce.err, buildOnce.out)
	}
	return buildOnce.bin
}

// TestLoadChecksEveryAcknowledgedEvent runs the tool as a user would,
// small, for each broker and delivery mode, and reads its report: every
// acknowledged event must be found in the broker, once.
func TestLoadChecksEveryAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := hookbridgeBinary(t)
	cases := []struct {
		args     []string
		batching string
	}{
		{args: []string{"-sink", "nats", "-delivery", "sync"}},
		{args: []string{"-sink", "embedded", "-delivery", "sync"}},
		{args: []string{"-sink", "nats", "-delivery", "spool", "-flat"}},
		{args: []string{"-sink", "nats", "-delivery", "jetstream"}},
		{args: []string{"-sink", "kafka", "-delivery", "sync"}, batching: "produce requests"},
		{args: []string{"-sink", "sqs", "-delivery", "sync", "-trivial=false"}, batching: "SendMessageBatch calls"},
		// Binary mode: the ids come from ce-id / ce_id, not the body.
		{args: []string{"-sink", "nats", "-delivery", "sync", "-content-mode", "binary"}},
		{args: []string{"-sink", "kafka", "-delivery", "sync", "-content-mode", "binary", "-trivial=false"}, batching: "produce requests"},
		// Routing on content: 50 routes, each event still delivered once.
		{args: []string{"-sink", "nats", "-delivery", "sync", "-routes", "content"}},
		{args: []string{"-sink", "embedded", "-delivery", "spool", "-routes", "content", "-flat"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"-bin", bin, "-n", "300", "-warmup", "50", "-c", "16"}, tc.args...)
			if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			out := stdout.String()
			for _, want := range []string{
				"arrival: 350 acknowledged (warm-up included), 350 found in the broker by event id, 0 missing, 0 duplicated, 0 not acknowledged",
				"memory: hookbridge RSS",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
			// hookbridge's row: a rate, four latencies and no failure.
			if !hookbridgeRow.MatchString(out) {
				t.Errorf("report lacks hookbridge's row of figures:\n%s", out)
			}
			if !strings.Contains(strings.Join(tc.args, " "), "-trivial=false") && !strings.Contains(out, "ratio: ") {
				t.Errorf("report lacks the ratio:\n%s", out)
			}
			if joined := strings.Join(tc.args, " "); strings.Contains(joined, "-sink nats") || strings.Contains(joined, "-sink embedded") {
				// The floor of the same delivery mode: a bare publish for
				// sync, a bare fsynced log for spool.
				want := "bare-js ÷ trivial: "
				if strings.Contains(joined, "-delivery spool") {
					want = "bare-spool ÷ trivial: "
				}
				if !strings.Contains(out, want) || !regexp.MustCompile(`(?m)^bare-(js|spool) +[1-9][0-9]* +`).MatchString(out) {
					t.Errorf("report lacks the bare baseline (%q and its row):\n%s", want, out)
				}
			}
			if !regexp.MustCompile(`at most [0-9.]+ MiB anonymous \(heap, stacks\), beside [0-9.]+ MiB of the binary's mapped pages`).MatchString(out) {
				t.Errorf("report lacks the anonymous/mapped split of hookbridge's memory:\n%s", out)
			}
			// The local spool's commits, read from hookbridge's metrics:
			// at least one, carrying at least one request each.
			spoolDisk := regexp.MustCompile(`spool disk: [1-9][0-9]* group commits, [0-9.]+ requests per fdatasync; one commit \(write \+ fdatasync\) p50 ≤ \S+, p99 ≤ \S+`)
			if local := strings.Contains(strings.Join(tc.args, " "), "-delivery spool"); local != spoolDisk.MatchString(out) {
				t.Errorf("local spool %v, but the report's spool disk line says otherwise:\n%s", local, out)
			}
			if tc.batching != "" && !strings.Contains(out, tc.batching) {
				t.Errorf("report lacks the batching line (%s):\n%s", tc.batching, out)
			}
		})
	}
}

var hookbridgeRow = regexp.MustCompile(`(?m)^hookbridge +[1-9][0-9]* +(?:[0-9.]+ms +){4}0 +`)

func TestMisuseIsOneLineAndExit2(t *testing.T) {
	for _, args := range [][]string{
		{"-sink", "redis"},
		{"-delivery", "later"},
		{"-content-mode", "hybrid"},
		{"-routes", "fancy"},
		{"-routes", "content", "-sink", "kafka"},
		{"-delivery", "jetstream", "-sink", "kafka"},
		{"-n", "0"},
		{"-c", "-1"},
		{"-rate", "-5"},
		{"-drain", "0s"},
		{"-bogus"},
		{"-n", "many"},
		{"extra"},
		{"-env", "GOGC"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		msg := stderr.String()
		if code != 2 || stdout.Len() != 0 || !strings.HasPrefix(msg, "hookbridge-load: ") || strings.Count(msg, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
}

// fakePeer replays a fixed list of ids: unit-level, for the accounting.
type fakePeer struct{ ids []string }

func (f *fakePeer) sinkYAML() string          { return "" }
func (f *fakePeer) target() string            { return "" }
func (f *fakePeer) describe() string          { return "fake" }
func (f *fakePeer) requests() (int64, string) { return 0, "" }
func (f *fakePeer) close()                    {}
func (f *fakePeer) read(ctx context.Context, ids chan<- string) error {
	for _, id := range f.ids {
		select {
		case ids <- id:
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

func TestCheckArrivalCounts(t *testing.T) {
	cases := []struct {
		name   string
		acked  []string
		broker []string
		want   arrival
	}{
		{"all once", []string{"a", "b"}, []string{"b", "a"}, arrival{acked: 2, found: 2}},
		{"one missing", []string{"a", "b", "c"}, []string{"a", "c"}, arrival{acked: 3, found: 2, missing: 1}},
		{"duplicates and strangers", []string{"a", "b"}, []string{"a", "x", "b", "a", "a"}, arrival{acked: 2, found: 2, duplicated: 2, unknown: 1}},
		{"nothing arrived", []string{"a"}, nil, arrival{acked: 1, missing: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := checkArrival(context.Background(), &fakePeer{ids: tc.broker}, tc.acked, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			got.waited = 0
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDeliveriesVerifyAndAreUnique(t *testing.T) {
	secret := []byte("whsec_test")
	for _, flat := range []bool{false, true} {
		ds, err := makeDeliveries(secret, 10, 50, flat, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		v, err := signature.NewVerifier([][]byte{secret})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		var cz signature.Canonicalizer
		for _, d := range ds {
			c, err := cz.Canonicalize(d.body)
			if err != nil {
				t.Fatal(err)
			}
			if !v.Verify(d.ts, c.JSON, d.sig) {
				t.Fatalf("flat=%v: %s does not verify", flat, d.body)
			}
			if seen[string(d.body)] {
				t.Fatalf("flat=%v: %s twice", flat, d.body)
			}
			seen[string(d.body)] = true
		}
	}
}

func TestResultFigures(t *testing.T) {
	r := &result{sent: 4, elapsed: 2 * time.Second, statuses: map[int]int{200: 2, 503: 1}, errors: 1,
		latencies: []time.Duration{1, 2, 3, 10}}
	if r.rps() != 2 || r.non2xx() != 2 || r.percentile(0) != 1 || r.percentile(1) != 10 || r.percentile(.5) != 2 {
		t.Errorf("rps %v non2xx %d p0 %v p50 %v p100 %v", r.rps(), r.non2xx(), r.percentile(0), r.percentile(.5), r.percentile(1))
	}
	if got := answerID([]byte(`{"id":"abc123","routes":1}`)); got != "abc123" {
		t.Errorf("answerID = %q", got)
	}
	if got := answerID([]byte(`{"ok":true}`)); got != "" {
		t.Errorf("answerID of the trivial answer = %q", got)
	}
}
