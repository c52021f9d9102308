package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/bridge/queue/jetstream"
	"github.com/hookbridge/hookbridge/bridge/queue/local"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/sinks"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// faultySink is a Sink for unit-level fault injection: fail decides each
// message's fate; what was confirmed is recorded in order.
type faultySink struct {
	mu        sync.Mutex
	fail      func(m sinks.Message, attempt int) error
	attempts  map[string]int // by message id
	confirmed []sinks.Message
}

func (f *faultySink) Publish(ctx context.Context, batch []sinks.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attempts == nil {
		f.attempts = map[string]int{}
	}
	failed := map[int]error{}
	for i, m := range batch {
		f.attempts[m.ID]++
		if f.fail != nil {
			if err := f.fail(m, f.attempts[m.ID]); err != nil {
				failed[i] = err
				continue
			}
		}
		f.confirmed = append(f.confirmed, m)
	}
	if len(failed) > 0 {
		return &sinks.BatchError{Failed: failed}
	}
	return nil
}

func (f *faultySink) Close(context.Context) error { return nil }

func (f *faultySink) snapshot() []sinks.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sinks.Message(nil), f.confirmed...)
}

func (f *faultySink) tries(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[id]
}

// backend opens a queue of one kind, holding at most maxEvents messages.
type backend struct {
	name string
	open func(t *testing.T, maxEvents int) queue.Queue
}

// backends are the queues every Spool test runs on: the dispatcher is one
// for both.
var backends = []backend{
	{"local", func(t *testing.T, maxEvents int) queue.Queue {
		q, err := local.OpenQueue(t.TempDir(), local.Options{MaxEvents: maxEvents})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}},
	{"jetstream", func(t *testing.T, maxEvents int) queue.Queue {
		srv := sinktest.NATS(t)
		cfg := jetstream.Config{Connection: natssink.Connection{URL: srv.ClientURL()}, Partitions: 4, AckWait: 3 * time.Second}
		cfg.SetDefaults()
		cfg.Duplicates = time.Minute
		conn, err := jetstream.Dial(cfg, 5*time.Second, discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if maxEvents == 0 {
			maxEvents = 1_000_000
		}
		q, err := conn.OpenQueue(context.Background(), jetstream.Limits{MaxEvents: maxEvents, MaxBytes: 1 << 30}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}},
}

// startSpool runs a Spool over q and the given sinks, with fast retries;
// dead maps a sink to its dead-letter sink.
func startSpool(t *testing.T, q queue.Queue, retry config.Retry, dead map[string]string, open map[string]sinks.Sink) *Spool {
	t.Helper()
	var configured []config.Sink
	for name := range open {
		sc := config.Sink{Name: name, Retry: retry}
		if to, ok := dead[name]; ok {
			sc.DeadLetter = &config.Target{Sink: to, Target: "dlq"}
		}
		configured = append(configured, sc)
	}
	s := NewSpool(q, configured, open, Options{PublishTimeout: 5 * time.Second})
	s.Start(context.Background())
	t.Cleanup(s.Stop)
	return s
}

var discard = slog.New(slog.DiscardHandler)

var fastRetry = config.Retry{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxAge: time.Hour}

func testEvent(task string, n int) *event.Event {
	id := fmt.Sprintf("%s-%d", task, n)
	return &event.Event{ID: id, TaskID: task, Status: "started", JSON: []byte(`{"id":"` + id + `"}`)}
}

// TestSpoolKeepsTaskOrderAcrossRetries: a task whose first event fails a
// few times still delivers its events in order, and other tasks are not
// held up meanwhile.
func TestSpoolKeepsTaskOrderAcrossRetries(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			sink := &faultySink{fail: func(m sinks.Message, attempt int) error {
				if m.ID == "slow-0" && attempt <= 3 {
					return errors.New("broker busy")
				}
				return nil
			}}
			s := startSpool(t, b.open(t, 0), fastRetry, nil, map[string]sinks.Sink{"s": sink})
			for n := range 5 {
				for _, task := range []string{"slow", "fast"} {
					if err := s.Deliver(context.Background(), testEvent(task, n), []route.Delivery{{Sink: "s", Target: "t"}}); err != nil {
						t.Fatal(err)
					}
				}
			}
			sinktest.WaitFor(t, "all ten delivered", func() bool { return len(sink.snapshot()) == 10 })
			byTask := map[string][]string{}
			for _, m := range sink.snapshot() {
				byTask[m.Key] = append(byTask[m.Key], m.ID)
			}
			for _, task := range []string{"slow", "fast"} {
				want := []string{task + "-0", task + "-1", task + "-2", task + "-3", task + "-4"}
				if fmt.Sprint(byTask[task]) != fmt.Sprint(want) {
					t.Errorf("task %s delivered as %v, want %v", task, byTask[task], want)
				}
			}
			if n := sink.tries("slow-0"); n != 4 {
				t.Errorf("slow-0 attempted %d times, want 4", n)
			}
			if s.Retries() != 3 {
				t.Errorf("Retries() = %d, want 3", s.Retries())
			}
			// The fast task went first: it did not wait for the slow one.
			if first := sink.snapshot()[0].Key; first != "fast" {
				t.Errorf("first delivered is of task %s, want fast", first)
			}
		})
	}
}

// TestSpoolDeadLetters: a permanent error dead-letters at once and a copy
// goes to the dead-letter sink with the reason; a transient one after
// max_attempts; both are kept as dead letters of their sink.
func TestSpoolDeadLetters(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			main := &faultySink{fail: func(m sinks.Message, attempt int) error {
				switch m.Key {
				case "poison":
					return sinks.Permanent(errors.New("message too large"))
				case "flaky":
					return errors.New("timeout")
				}
				return nil
			}}
			dlq := &faultySink{}
			retry := fastRetry
			retry.MaxAttempts = 3
			q := b.open(t, 0)
			s := startSpool(t, q, retry, map[string]string{"main": "dlq"}, map[string]sinks.Sink{"main": main, "dlq": dlq})
			for _, ev := range []*event.Event{testEvent("poison", 0), testEvent("ok", 0), testEvent("flaky", 0), testEvent("ok", 1)} {
				if err := s.Deliver(context.Background(), ev, []route.Delivery{{Sink: "main", Target: "t"}}); err != nil {
					t.Fatal(err)
				}
			}
			sinktest.WaitFor(t, "two dead letters forwarded and two delivered", func() bool {
				return len(dlq.snapshot()) == 2 && len(main.snapshot()) == 2
			})
			if main.tries("poison-0") != 1 || main.tries("flaky-0") != 3 {
				t.Errorf("attempts: poison %d (want 1), flaky %d (want 3)", main.tries("poison-0"), main.tries("flaky-0"))
			}
			for _, m := range dlq.snapshot() {
				if m.Target != "dlq" || !strings.Contains(string(m.Body), `"deadlettersink":"main"`) || !strings.Contains(string(m.Body), `"deadletterreason":`) {
					t.Errorf("dead letter to %q lacks the reason: %s", m.Target, m.Body)
				}
			}
			var st queue.Stats
			sinktest.WaitFor(t, "the dead letters kept, nothing waiting", func() bool {
				var err error
				st, err = q.Stats(context.Background())
				return err == nil && st.Dead == 2 && st.Pending == 0
			})
			// A dead letter, kept for days, is not the oldest waiting message.
			if !st.Oldest.IsZero() {
				t.Errorf("Oldest = %v with nothing waiting, want zero", st.Oldest)
			}
			if s.DeadLetters() != 2 {
				t.Errorf("DeadLetters() = %d", s.DeadLetters())
			}
		})
	}
}

// TestSpoolFull: once the queue holds max_events messages, Deliver fails
// with queue.ErrFull and keeps nothing more.
func TestSpoolFull(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			down := &faultySink{fail: func(sinks.Message, int) error { return errors.New("connection refused") }}
			q := b.open(t, 3)
			s := startSpool(t, q, config.Retry{MinBackoff: time.Hour, MaxBackoff: time.Hour, MaxAge: time.Hour}, nil, map[string]sinks.Sink{"bus": down})
			var err error
			for n := range 4 {
				err = s.Deliver(context.Background(), testEvent(fmt.Sprint(n), n), []route.Delivery{{Sink: "bus", Target: "x"}})
				if n < 3 && err != nil {
					t.Fatalf("event %d: %v", n, err)
				}
			}
			if !errors.Is(err, queue.ErrFull) {
				t.Errorf("the 4th event: %v, want a spool-full error", err)
			}
			// The shared queue's counts are read at most once a second.
			var st queue.Stats
			sinktest.WaitFor(t, "3 waiting for bus", func() bool {
				st, err = q.Stats(context.Background())
				return err == nil && st.Pending == 3 && st.BySink["bus"] == 3
			})
			if st.Oldest.IsZero() || time.Since(st.Oldest) > time.Minute {
				t.Errorf("stats = %+v; want the oldest from just now", st)
			}
		})
	}
}

// TestSpoolSyncRoutesWait: a sync delivery is published before Deliver
// returns, beside the spooled ones.
func TestSpoolSyncRoutesWait(t *testing.T) {
	q := backends[0].open(t, 0)
	now, later := &faultySink{}, &faultySink{fail: func(sinks.Message, int) error { return errors.New("down") }}
	s := startSpool(t, q, config.Retry{MinBackoff: time.Hour, MaxBackoff: time.Hour, MaxAge: time.Hour}, nil, map[string]sinks.Sink{"now": now, "later": later})
	if err := s.Deliver(context.Background(), testEvent("t", 0), []route.Delivery{{Sink: "now", Target: "a", Sync: true}, {Sink: "later", Target: "b"}}); err != nil {
		t.Fatal(err)
	}
	if got := now.snapshot(); len(got) != 1 || got[0].Target != "a" {
		t.Errorf("the sync sink has %v when Deliver returned", got)
	}
	st, _ := q.Stats(context.Background())
	if st.BySink["later"] != 1 || st.BySink["now"] != 0 {
		t.Errorf("spooled %v, want only later's", st.BySink)
	}
}

func TestBackoff(t *testing.T) {
	r := config.Retry{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		for range 20 {
			if got := backoff(r, n); got > want || got < want/2 {
				t.Errorf("backoff(%d) = %v, want within [%v, %v]", n, got, want/2, want)
			}
		}
	}
}

// TestSpoolHonoursRetryAfter: a message its sink failed with a retry hint
// (an HTTP answer's Retry-After) waits for it, on either queue, while one
// failed without a hint is retried at the backoff's pace.
func TestSpoolHonoursRetryAfter(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			q := b.open(t, 0)
			sink := &faultySink{fail: func(m sinks.Message, attempt int) error {
				switch {
				case m.ID == "hinted-1":
					return sinks.RetryLater(errors.New("429 Too Many Requests"), time.Hour)
				case m.ID == "plain-1" && attempt < 4:
					return errors.New("503 Service Unavailable")
				}
				return nil
			}}
			s := startSpool(t, q, fastRetry, nil, map[string]sinks.Sink{"bus": sink})
			for _, task := range []string{"hinted", "plain"} {
				if err := s.Deliver(context.Background(), testEvent(task, 1), []route.Delivery{{Sink: "bus", Target: "t"}}); err != nil {
					t.Fatal(err)
				}
			}
			// The plain one goes through its three retries in milliseconds;
			// by then the hinted one must not have been tried again.
			deadline := time.Now().Add(10 * time.Second)
			for sink.tries("plain-1") < 4 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			if got := sink.tries("plain-1"); got != 4 {
				t.Fatalf("the message without a hint was tried %d times, want 4", got)
			}
			if got := sink.tries("hinted-1"); got != 1 {
				t.Errorf("the message whose sink said Retry-After: 1h was tried %d times, want 1", got)
			}
		})
	}
}
