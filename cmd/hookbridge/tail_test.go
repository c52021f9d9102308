package main

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// tailer is a hookbridge tail running in-process until the test stops it.
type tailer struct {
	out, errw sinktest.Buffer
	done      chan int
	cancel    context.CancelFunc
}

// startTail runs hookbridge tail with args and waits until it follows
// (its "following" line): what is published from then on, it shows. now,
// when set, is its clock.
func startTail(t *testing.T, now func() time.Time, args ...string) *tailer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tl := &tailer{done: make(chan int, 1), cancel: cancel}
	go func() {
		tl.done <- run(ctx, append([]string{"tail"}, args...), env{
			stdin: strings.NewReader(""), stdout: &tl.out, stderr: &tl.errw, now: now,
			lookupEnv: func(string) (string, bool) { return "", false },
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-tl.done
	})
	sinktest.WaitFor(t, "tail to follow", func() bool {
		select {
		case code := <-tl.done:
			tl.done <- code
			t.Fatalf("tail %v exited %d: %s", args, code, tl.errw.String())
		default:
		}
		return strings.Contains(tl.errw.String(), "following")
	})
	return tl
}

// lines are the complete lines tail has printed so far.
func (tl *tailer) lines() []string {
	out := tl.out.String()
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		return strings.Split(out[:i], "\n")
	}
	return nil
}

// waitLines waits until tail has printed n lines and returns them.
func (tl *tailer) waitLines(t *testing.T, n int) []string {
	t.Helper()
	sinktest.WaitFor(t, fmt.Sprintf("%d lines from tail", n), func() bool { return len(tl.lines()) >= n })
	return tl.lines()
}

// stop interrupts tail and checks that it exited 0.
func (tl *tailer) stop(t *testing.T) {
	t.Helper()
	tl.cancel()
	code := <-tl.done
	tl.done <- code // for the cleanup
	if code != 0 {
		t.Errorf("tail exited %d: %s", code, tl.errw.String())
	}
}

// tailLine is a line of tail -format json.
type tailLine struct {
	Subject string          `json:"subject"`
	Event   json.RawMessage `json:"event"`
}

func parseTailLines(t *testing.T, lines []string) []tailLine {
	t.Helper()
	out := make([]tailLine, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &out[i]); err != nil || out[i].Subject == "" {
			t.Fatalf("tail line %q is not {\"subject\":…,\"event\":…}: %v", l, err)
		}
	}
	return out
}

// shown is what the json lines show: "subject id" each.
func shown(t *testing.T, lines []string) []string {
	t.Helper()
	var out []string
	for _, l := range parseTailLines(t, lines) {
		out = append(out, l.Subject+" "+sinktest.ReadCloudEvent(t, l.Event).ID)
	}
	return out
}

// taskEvent normalizes a Browser Use delivery of task taskID reaching
// status at the n-th second, as serve does.
func taskEvent(t *testing.T, taskID, status string, n int) *event.Event {
	t.Helper()
	body := event.Sample{Status: status, TaskID: taskID, SessionID: "s-" + taskID,
		Time: time.Date(2026, 12, 3, 10, 0, n, 123456000, time.UTC), Metadata: map[string]string{"n": fmt.Sprint(n)}}.Body()
	return normalize(t, body, event.Trace{})
}

func normalize(t *testing.T, body []byte, trace event.Trace) *event.Event {
	t.Helper()
	var cz signature.Canonicalizer
	c, err := cz.Canonicalize(body)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.Normalize("browser-use", "1796292000", time.Now(), c, trace)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// jetStreamSink is a NATS sink publishing through JetStream into stream
// HOOKBRIDGE (task.*, alerts.task.*) in mode, until the test ends.
func jetStreamSink(t *testing.T, url string, mode sinks.ContentMode) *natssink.Sink {
	t.Helper()
	sk, err := natssink.New(context.Background(), natssink.Config{
		Connection: natssink.Connection{URL: url}, JetStream: true, ContentMode: mode,
	}, []string{"task.*", "alerts.task.*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close(context.Background()) })
	return sk
}

// publish publishes ev on subject through sk, as a route would.
func publish(t *testing.T, sk sinks.Sink, subject string, ev *event.Event) {
	t.Helper()
	msg := sinks.Message{Target: subject, Key: ev.TaskID, ID: ev.ID, Attrs: ev.Attrs, Body: ev.JSON}
	if err := sk.Publish(context.Background(), []sinks.Message{msg}); err != nil {
		t.Fatal(err)
	}
}

// TestTailStreamHistory: on a stream, tail shows the history the flags ask
// for, each event with its subject, in stream order, and then follows: a
// message published once it runs shows up after the history.
func TestTailStreamHistory(t *testing.T) {
	// Eight events on two subjects; the -since cut is between the third
	// and the fourth.
	subjects := []string{"task.a", "task.b", "task.a", "task.b", "task.a", "task.b", "task.b", "task.b"}
	const cut = 3
	tests := []struct {
		name string
		args []string
		want []int // the events of the history tail shows, by index
	}{
		{"default: new messages only", nil, nil},
		{"-all", []string{"-all"}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{"-last 2", []string{"-last", "2"}, []int{6, 7}},
		{"-last more than the stream holds", []string{"-last", "100"}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		// The last two on task.a, although the stream's last four are on
		// task.b: the window grows until it holds two.
		{"-last 2 -subject task.a", []string{"-last", "2", "-subject", "task.a"}, []int{2, 4}},
		{"-since", []string{"-since", "1h"}, []int{3, 4, 5, 6, 7}},
		{"-since -subject task.a", []string{"-since", "1h", "-subject", "task.a"}, []int{4}},
		{"-all -subject task.a", []string{"-all", "-subject", "task.a"}, []int{0, 2, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := sinktest.NATS(t)
			sk := jetStreamSink(t, srv.ClientURL(), sinks.Structured)
			var cutAt time.Time
			var ids []string
			for i, subj := range subjects {
				if i == cut {
					// Every message before it was stored before this
					// moment (its PubAck is in), every one after, after.
					cutAt = time.Now()
				}
				ev := taskEvent(t, fmt.Sprintf("task-%d", i), "finished", i)
				publish(t, sk, subj, ev)
				ids = append(ids, ev.ID)
			}
			// tail -since 1h counts back from its clock: an hour after
			// the cut starts it at the cut.
			now := func() time.Time { return cutAt.Add(time.Hour) }
			args := append([]string{"-url", srv.ClientURL(), "-stream", "HOOKBRIDGE"}, tt.args...)
			tl := startTail(t, now, args...)

			var want []string
			for _, i := range tt.want {
				want = append(want, subjects[i]+" "+ids[i])
			}
			tl.waitLines(t, len(want))
			// Then it follows.
			next := taskEvent(t, "task-next", "paused", 99)
			publish(t, sk, "task.a", next)
			want = append(want, "task.a "+next.ID)
			tl.waitLines(t, len(want))
			tl.stop(t)
			if got := shown(t, tl.lines()); !slices.Equal(got, want) {
				t.Errorf("tail %v showed\n%s\nwant\n%s", tt.args, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestTailFollowsTheSinksStream: with a config whose NATS sink has
// jetstream: true, tail reads that sink's stream (stream.name) with no
// -stream, history and all.
func TestTailFollowsTheSinksStream(t *testing.T) {
	srv := sinktest.NATS(t)
	cfg := writeConfig(t, `
sources: [{name: browser-use, secrets: ["${BROWSER_USE_WEBHOOK_SECRET}"]}]
sinks: [{name: bus, type: nats, url: "`+srv.ClientURL()+`", jetstream: true, stream: {name: EVENTS}}]
routes: [{name: all, status: ["*"], to: [{sink: bus, subject: "task.{status}"}]}]
`)
	sk, err := natssink.New(context.Background(), natssink.Config{
		Connection: natssink.Connection{URL: srv.ClientURL()}, JetStream: true, Stream: natssink.StreamConfig{Name: "EVENTS"},
	}, []string{"task.*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close(context.Background())
	old := taskEvent(t, "task-1", "paused", 1)
	publish(t, sk, "task.paused", old)

	tl := startTail(t, nil, "-config", cfg, "-last", "1")
	if !strings.Contains(tl.errw.String(), `stream "EVENTS"`) {
		t.Errorf("tail does not say it follows stream EVENTS: %s", tl.errw.String())
	}
	next := taskEvent(t, "task-2", "finished", 2)
	publish(t, sk, "task.finished", next)
	got := shown(t, tl.waitLines(t, 2))
	tl.stop(t)
	if want := []string{"task.paused " + old.ID, "task.finished " + next.ID}; !slices.Equal(got, want) {
		t.Errorf("tail showed %q, want %q", got, want)
	}
}

// TestTailOverlappingSubjects: on core NATS a connection gets a message
// once per subscription that matches it. Routes to task.{status} and to
// task.paused made tail subscribe to task.* and task.paused, and print a
// paused event twice, identically. Each message is printed once now,
// also where neither of two subjects covers the other (task.*.x and
// task.paused.*).
func TestTailOverlappingSubjects(t *testing.T) {
	srv := sinktest.NATS(t)
	cfg := writeConfig(t, `
sources: [{name: browser-use, secrets: [whsec_x]}]
sinks: [{name: bus, type: nats, url: "`+srv.ClientURL()+`"}]
routes:
  - {name: all, status: ["*"], to: [{sink: bus, subject: "task.{status}"}]}
  - {name: paused, status: [paused], to: [{sink: bus, subject: task.paused}]}
  - {name: x, status: ["*"], to: [{sink: bus, subject: "task.{status}.x"}]}
  - {name: px, status: [paused], to: [{sink: bus, subject: "task.paused.{status}"}]}
`)
	sk, err := natssink.New(context.Background(), natssink.Config{Connection: natssink.Connection{URL: srv.ClientURL()}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close(context.Background())

	tl := startTail(t, nil, "-config", cfg)
	var want, ids []string
	for i, subj := range []string{"task.paused", "task.paused.x", "task.finished", "task.finished.x", "task.paused.paused"} {
		ev := taskEvent(t, fmt.Sprint("task-", i), "paused", i)
		publish(t, sk, subj, ev)
		want = append(want, subj+" "+ev.ID)
		ids = append(ids, ev.ID)
	}
	// Once the last one published is in, every copy of the others is: the
	// server sends one message's copies before the next message's.
	sinktest.WaitFor(t, "the last event", func() bool { return strings.Contains(tl.out.String(), ids[len(ids)-1]) })
	tl.stop(t)
	// Whatever the output's shape, an event's id is in it once per copy.
	for i, id := range ids {
		if n := strings.Count(tl.out.String(), id); n != 1 {
			t.Errorf("the event on %s is printed %d times", want[i], n)
		}
	}
	if got := shown(t, tl.lines()); !slices.Equal(got, want) {
		t.Errorf("tail showed\n%s\nwant each once:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if follows := tl.errw.String(); !strings.Contains(follows, "following task.*, task.*.x, task.paused.* on") {
		t.Errorf("tail subscribed to: %s", follows)
	}
}

func TestPruneSubjects(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"task.*", "alerts.task.*"}, []string{"task.*", "alerts.task.*"}},
		{[]string{"task.*", "task.paused"}, []string{"task.*"}},
		{[]string{"task.paused", "task.*"}, []string{"task.*"}},
		{[]string{"task.*", "task.*"}, []string{"task.*"}},
		{[]string{"task.finished", "task.>", "alerts.>", ">"}, []string{">"}},
		{[]string{"task.*.x", "task.paused.*"}, []string{"task.*.x", "task.paused.*"}},
	}
	for _, tt := range tests {
		if got := pruneSubjects(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("pruneSubjects(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Where two remaining subjects overlap, the first one's subscription
	// prints the message.
	if got := firstMatch([]string{"task.*.x", "task.paused.*"}, "task.paused.x"); got != "task.*.x" {
		t.Errorf("firstMatch = %q", got)
	}
}

// TestTailContentModes: an event published in binary mode prints exactly
// as the same event published structured, as JSON and as a line, and the
// event tail rebuilds from a binary message is the structured event.
func TestTailContentModes(t *testing.T) {
	srv := sinktest.NATS(t)
	structured := jetStreamSink(t, srv.ClientURL(), sinks.Structured)
	binary := jetStreamSink(t, srv.ClientURL(), sinks.Binary)
	// With every optional attribute hookbridge sets: trace context and
	// the envelope extension; data with escapes and non-ASCII text.
	ev := normalize(t, []byte(`{"type": "agent.task.status_update", "timestamp": "2026-12-03T10:00:00.123456+00:00", "region": "eu <1> & \"2\"",
		"payload": {"task_id": "task-123", "session_id": "s", "status": "paused", "note": "résumé ✓ \"q\" <b>"}}`),
		event.ParseTrace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=1"))
	if ev.Attrs[len(ev.Attrs)-1].Name != "browseruseenvelope" {
		t.Fatalf("the event lacks the envelope extension: %v", ev.Attrs)
	}
	publish(t, structured, "task.paused", ev)
	publish(t, binary, "alerts.task.paused", ev)

	for _, format := range []string{"json", "line"} {
		t.Run(format, func(t *testing.T) {
			tl := startTail(t, nil, "-url", srv.ClientURL(), "-stream", "HOOKBRIDGE", "-all", "-format", format)
			lines := tl.waitLines(t, 2)
			tl.stop(t)
			if len(lines) != 2 {
				t.Fatalf("tail printed %q", lines)
			}
			if format == "line" {
				want := "2026-12-03T10:00:00.123Z  %-18s  paused      task-123                              " + ev.ID
				if lines[0] != fmt.Sprintf(want, "task.paused") || lines[1] != fmt.Sprintf(want, "alerts.task.paused") {
					t.Errorf("lines\n%s\n%s\nwant\n%s", lines[0], lines[1], fmt.Sprintf(want, "task.paused"))
				}
				return
			}
			got := parseTailLines(t, lines)
			if got[0].Subject != "task.paused" || got[1].Subject != "alerts.task.paused" {
				t.Errorf("subjects %q and %q", got[0].Subject, got[1].Subject)
			}
			if string(got[0].Event) != string(got[1].Event) {
				t.Errorf("structured and binary print differently:\n%s\n%s", got[0].Event, got[1].Event)
			}
			var printed, published map[string]any
			if err := json.Unmarshal(got[1].Event, &printed); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(ev.JSON, &published); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(printed, published) {
				t.Errorf("the event rebuilt from the binary message\n%s\nis not the one published\n%s", got[1].Event, ev.JSON)
			}
			if !strings.HasPrefix(string(got[0].Event), `{"specversion":"1.0","id":"`+ev.ID+`","source":"browser-use","type":`) ||
				!strings.Contains(string(got[0].Event), `"region\":\"eu <1> & \\\"2\\\"\"`) {
				t.Errorf("event JSON: %s", got[0].Event)
			}
		})
	}
}

// TestTailOtherMessages: a binary message whose data is not JSON prints
// with data_base64; a message that is no CloudEvent is reported on stderr
// with its subject, and tail goes on.
func TestTailOtherMessages(t *testing.T) {
	srv := sinktest.NATS(t)
	jetStreamSink(t, srv.ClientURL(), sinks.Structured) // creates the stream
	_, js := sinktest.JetStream(t, srv.ClientURL())
	ctx := context.Background()
	pub := func(subject string, h natsgo.Header, body string) {
		t.Helper()
		if _, err := js.PublishMsg(ctx, &natsgo.Msg{Subject: subject, Header: h, Data: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	pub("task.text", natsgo.Header{"Ce-Specversion": {"1.0"}, "ce-id": {"e1"}, "ce-source": {"s"}, "ce-type": {"t"}, "Content-Type": {"text/plain"}}, "hello")
	pub("task.junk", nil, "not an event")
	pub("task.json", nil, `{"no":"specversion"}`)
	pub("task.ok", nil, `{"specversion":"1.0","id":"e2","source":"s","type":"t","data":{"a": [1, 2]}}`)

	tl := startTail(t, nil, "-url", srv.ClientURL(), "-stream", "HOOKBRIDGE", "-all")
	lines := tl.waitLines(t, 2)
	tl.stop(t)
	want := []string{
		`{"subject":"task.text","event":{"specversion":"1.0","id":"e1","source":"s","type":"t","datacontenttype":"text/plain","data_base64":"aGVsbG8="}}`,
		`{"subject":"task.ok","event":{"specversion":"1.0","id":"e2","source":"s","type":"t","data":{"a":[1,2]}}}`,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("stdout\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	stderr := tl.errw.String()
	for _, w := range []string{
		`hookbridge tail: task.junk: not a CloudEvent, not printed: no ce-specversion header, and the body is not a JSON object with a specversion: 12 bytes: "not an event"` + "\n",
		`hookbridge tail: task.json: not a CloudEvent, not printed: `,
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

// TestTailLeavesTheStreamAlone: reading a stream with tail consumes
// nothing: the stream holds as many messages, an application's durable
// consumer is where it was, and tail's own consumers are gone once it
// exits, the ones -last creates to find its start included. A stream
// whose consumers remove messages (interest retention) is refused.
func TestTailLeavesTheStreamAlone(t *testing.T) {
	srv := sinktest.NATS(t)
	sk := jetStreamSink(t, srv.ClientURL(), sinks.Binary)
	for i := range 6 {
		publish(t, sk, []string{"task.a", "task.b"}[i%2], taskEvent(t, fmt.Sprint("task-", i), "finished", i))
	}
	_, js := sinktest.JetStream(t, srv.ClientURL())
	ctx := context.Background()
	app, err := js.CreateConsumer(ctx, "HOOKBRIDGE", jetstream.ConsumerConfig{Durable: "app", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := app.Fetch(2)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	state := func() string {
		info, err := app.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("stream %d messages; app delivered %d, ack floor %d, pending %d, waiting ack %d, redelivered %d",
			sinktest.StreamCount(js, "HOOKBRIDGE"), info.Delivered.Stream, info.AckFloor.Stream, info.NumPending, info.NumAckPending, info.NumRedelivered)
	}
	consumers := func() []string {
		var names []string
		st, err := js.Stream(ctx, "HOOKBRIDGE")
		if err != nil {
			t.Fatal(err)
		}
		lister := st.ConsumerNames(ctx)
		for n := range lister.Name() {
			names = append(names, n)
		}
		if err := lister.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		return names
	}
	before := state()

	for _, args := range [][]string{{"-all"}, {"-last", "2", "-subject", "task.a"}, {"-since", "1h"}, {}} {
		tl := startTail(t, nil, append([]string{"-url", srv.ClientURL(), "-stream", "HOOKBRIDGE"}, args...)...)
		if len(args) > 0 {
			tl.waitLines(t, 2)
		}
		if names := consumers(); len(names) != 2 || !strings.HasPrefix(names[1], "hookbridge_tail_") {
			t.Errorf("tail %v reads through %q, want app and one of its own", args, names)
		}
		tl.stop(t)
		if names := consumers(); !slices.Equal(names, []string{"app"}) {
			t.Errorf("after tail %v the stream's consumers are %q, want only app", args, names)
		}
		if after := state(); after != before {
			t.Errorf("tail %v changed the stream:\nbefore %s\nafter  %s", args, before, after)
		}
	}

	// Interest retention: an ordered consumer's deliveries would count as
	// acknowledged and remove the messages.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"work.>"}, Retention: jetstream.InterestPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "WORK", jetstream.ConsumerConfig{Durable: "worker", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "work.1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd(t, "", nil, "tail", "-url", srv.ClientURL(), "-stream", "WORK", "-all")
	want := `hookbridge tail: stream "WORK" on ` + srv.ClientURL() + ` has interest retention: a consumer that reads it removes messages from it, so tail does not; read a stream with limits retention` + "\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Errorf("tail of an interest stream: code %d stdout %q stderr %q, want 1 and %q", code, stdout, stderr, want)
	}
	if n := sinktest.StreamCount(js, "WORK"); n != 1 {
		t.Errorf("stream WORK holds %d messages, want 1", n)
	}
}

func TestTailMisuse(t *testing.T) {
	core := writeConfig(t, `
sources: [{name: browser-use, secrets: [whsec_x]}]
sinks: [{name: bus, type: nats, url: "nats://127.0.0.1:4222"}]
routes: [{name: all, status: ["*"], to: [{sink: bus, subject: "task.{status}"}]}]
`)
	const url = "nats://127.0.0.1:1"
	const noStream = "reads a JetStream stream's history, and there is no stream to read: name one with -stream, or follow a NATS sink with jetstream: true"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-url", url, "-stream", "S", "-all", "-last", "2"}, "-all and -last each choose where to start: use one of -all, -since, -last"},
		{[]string{"-url", url, "-stream", "S", "-since", "1h", "-last", "2"}, "-since and -last each choose where to start: use one of -all, -since, -last"},
		{[]string{"-url", url, "-stream", "S", "-all", "-since", "1h", "-last", "2"}, "-all and -since and -last each choose where to start: use one of -all, -since, -last"},
		{[]string{"-url", url, "-stream", "S", "-last", "0"}, "-last 0: use a count of 1 or more"},
		{[]string{"-url", url, "-stream", "S", "-last", "-3"}, "-last -3: use a count of 1 or more"},
		{[]string{"-url", url, "-stream", "S", "-since", "-5m"}, "-since -5m0s: use a positive duration such as 30m or 24h"},
		{[]string{"-url", url, "-format", "yaml"}, `-format "yaml": use json or line`},
		{[]string{"-url", url, "-subject", "task..x"}, `-subject "task..x" is not a NATS subject: write tokens separated by dots, e.g. task.paused or task.>`},
		{[]string{"-url", url, "-stream", "A.B"}, `-stream "A.B": a stream name cannot hold spaces, dots, *, >, / or \`},
		{[]string{"-url", url, "-all"}, "-all " + noStream},
		{[]string{"-url", url, "-since", "1h"}, "-since " + noStream},
		{[]string{"-config", core, "-last", "5"}, "-last " + noStream},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCmd(t, "", nil, append([]string{"tail"}, tt.args...)...)
		want := "hookbridge tail: " + tt.want + " (run 'hookbridge help tail')\n"
		if code != 2 || stdout != "" || stderr != want {
			t.Errorf("tail %v: code %d stdout %q stderr %q\nwant 2 and %q", tt.args, code, stdout, stderr, want)
		}
	}
}

// TestTailNoStream: a stream that is not there is an error that says what
// to do.
func TestTailNoStream(t *testing.T) {
	srv := sinktest.NATS(t)
	code, _, stderr := runCmd(t, "", nil, "tail", "-url", srv.ClientURL(), "-stream", "NOPE")
	want := `hookbridge tail: no stream "NOPE" on ` + srv.ClientURL() + `: name an existing one with -stream (hookbridge serve creates a jetstream sink's stream when it starts)` + "\n"
	if code != 1 || stderr != want {
		t.Errorf("code %d stderr %q, want 1 and %q", code, stderr, want)
	}
}

// TestTailScrubsSecrets: what tail reports is scrubbed of the config's
// secrets, here a stream name that came from ${VAR} and that tail quotes
// when the stream does not exist.
func TestTailScrubsSecrets(t *testing.T) {
	srv := sinktest.NATS(t)
	const secret = "SECRETSTREAM42"
	cfg := writeConfig(t, `
sources: [{name: browser-use, secrets: ["${BROWSER_USE_WEBHOOK_SECRET}"]}]
sinks: [{name: bus, type: nats, url: "`+srv.ClientURL()+`", jetstream: true, stream: {name: "${STREAM}"}}]
routes: [{name: all, status: ["*"], to: [{sink: bus, subject: "task.{status}"}]}]
`)
	code, _, stderr := runCmd(t, "", map[string]string{"STREAM": secret}, "tail", "-config", cfg)
	if code != 1 || !strings.Contains(stderr, "no stream") {
		t.Fatalf("code %d, stderr %q: want 1 and the missing stream", code, stderr)
	}
	if strings.Contains(stderr, secret) || !strings.Contains(stderr, "[redacted]") {
		t.Errorf("stderr shows the secret: %q", stderr)
	}
}
