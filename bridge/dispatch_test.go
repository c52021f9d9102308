package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/spool"
	"github.com/hookbridge/hookbridge/sinks"
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

// newTestSpooler runs a Spooler over a fresh store and the given sinks,
// with fast retries.
func newTestSpooler(t *testing.T, opts spool.Options, retry RetryConfig, dead map[string]string, open map[string]sinks.Sink) (*Spooler, *spool.Store) {
	t.Helper()
	st, err := spool.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Server: ServerConfig{PublishTimeout: 5 * time.Second}}
	for name := range open {
		sc := SinkConfig{Name: name, Retry: retry}
		if to, ok := dead[name]; ok {
			sc.DeadLetter = &TargetConfig{Sink: to}
		}
		cfg.Sinks = append(cfg.Sinks, sc)
	}
	s := NewSpooler(cfg, st, open, slog.New(slog.DiscardHandler), nil)
	s.Start(context.Background())
	t.Cleanup(func() {
		s.Stop()
		st.Close()
	})
	return s, st
}

var fastRetry = RetryConfig{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxAge: time.Hour}

func testEvent(task string, n int) *Event {
	id := fmt.Sprintf("%s-%d", task, n)
	return &Event{ID: id, TaskID: task, Status: "started", JSON: []byte(`{"id":"` + id + `"}`)}
}

func drain(t *testing.T, s *Spooler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolKeepsTaskOrderAcrossRetries: a task whose first event fails a
// few times still delivers its events in order, and other tasks are not
// held up meanwhile.
func TestSpoolKeepsTaskOrderAcrossRetries(t *testing.T) {
	sink := &faultySink{fail: func(m sinks.Message, attempt int) error {
		if m.ID == "slow-0" && attempt <= 3 {
			return errors.New("broker busy")
		}
		return nil
	}}
	s, _ := newTestSpooler(t, spool.Options{}, fastRetry, nil, map[string]sinks.Sink{"s": sink})
	ctx := context.Background()
	for n := range 5 {
		for _, task := range []string{"slow", "fast"} {
			if err := s.Deliver(ctx, testEvent(task, n), []Delivery{{Sink: "s"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	drain(t, s)
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
	if sink.attempts["slow-0"] != 4 {
		t.Errorf("slow-0 attempted %d times, want 4", sink.attempts["slow-0"])
	}
}

// TestSpoolDeadLetters: a permanent error dead-letters at once and the
// copy goes to the dead-letter sink with the reason; a transient one after
// max_attempts.
func TestSpoolDeadLetters(t *testing.T) {
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
	s, st := newTestSpooler(t, spool.Options{}, retry, map[string]string{"main": "dlq"},
		map[string]sinks.Sink{"main": main, "dlq": dlq})
	ctx := context.Background()
	for _, ev := range []*Event{testEvent("poison", 0), testEvent("ok", 0), testEvent("flaky", 0), testEvent("ok", 1)} {
		if err := s.Deliver(ctx, ev, []Delivery{{Sink: "main", Target: "t"}}); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, s)
	if main.attempts["poison-0"] != 1 || main.attempts["flaky-0"] != 3 {
		t.Errorf("attempts: poison %d (want 1), flaky %d (want 3)", main.attempts["poison-0"], main.attempts["flaky-0"])
	}
	if got := len(main.snapshot()); got != 2 {
		t.Errorf("main confirmed %d messages, want the 2 good ones", got)
	}
	forwarded := dlq.snapshot()
	if len(forwarded) != 2 {
		t.Fatalf("dead-letter sink got %d messages, want 2", len(forwarded))
	}
	for _, m := range forwarded {
		if !strings.Contains(string(m.Body), `"deadlettersink":"main"`) || !strings.Contains(string(m.Body), `"deadletterreason":`) {
			t.Errorf("dead letter body lacks the reason: %s", m.Body)
		}
	}
	dead, err := st.Dead(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 || !strings.Contains(dead[0].Reason, "message too large") || !strings.Contains(dead[1].Reason, "after 3 attempts") {
		t.Errorf("dead letters = %+v", dead)
	}
	if s.DeadLetters() != 2 {
		t.Errorf("DeadLetters() = %d", s.DeadLetters())
	}
}

// TestSpoolFullIs503: a full spool turns webhooks away with 503 and
// Retry-After, and takes them again once there is room.
func TestSpoolFullIs503(t *testing.T) {
	down := true
	var mu sync.Mutex
	sink := &faultySink{fail: func(sinks.Message, int) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("connection refused")
		}
		return nil
	}}
	s, _ := newTestSpooler(t, spool.Options{MaxEvents: 2}, fastRetry, nil, map[string]sinks.Sink{"bus": sink})
	h := newTestIngress(t, s, nil)
	post := func(task string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10),
			`{"task_id":"`+task+`","status":"finished"}`))
		return w
	}
	for _, task := range []string{"a", "b"} {
		if w := post(task); w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", task, w.Code, w.Body)
		}
	}
	w := post("c")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "spool is full") {
		t.Fatalf("full spool answered %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	drain(t, s)
	if w := post("c"); w.Code != http.StatusOK {
		t.Fatalf("after draining: %d %s", w.Code, w.Body)
	}
	drain(t, s)
	if got := len(sink.snapshot()); got != 3 {
		t.Errorf("%d delivered, want 3", got)
	}
}

func TestBackoff(t *testing.T) {
	r := RetryConfig{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		for range 20 {
			if got := backoff(r, n); got > want || got < want/2 {
				t.Errorf("backoff(%d) = %v, want within [%v, %v]", n, got, want/2, want)
			}
		}
	}
}
