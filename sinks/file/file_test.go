package file

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
)

func lines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func TestPublishAppendsLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(`{"old":1}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = s.Publish(ctx, []sinks.Message{
		{ID: "a", Body: []byte(`{"id":"a"}`)},
		{ID: "b", Body: []byte(`{"id":"b"}`), Target: "elsewhere"},
		{ID: "c", Body: []byte("{\"id\":\n\"c\"}")},
		{ID: "d", Body: []byte(`{"id":"d"}`)},
	})
	var be *sinks.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 || be.Failed[1] != errTarget || be.Failed[2] != errNewline {
		t.Fatalf("err = %v, want messages 1 and 2 failed", err)
	}
	if sinks.MessageErr(err, 0) != nil || sinks.MessageErr(err, 3) != nil {
		t.Error("good messages reported as failed")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{`{"old":1}`, `{"id":"a"}`, `{"id":"d"}`}
	if got := lines(t, path); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("file = %q, want %q", got, want)
	}
	if err := s.Publish(ctx, []sinks.Message{{Body: []byte("{}")}}); !errors.Is(err, errClosed) {
		t.Errorf("Publish after Close = %v, want errClosed", err)
	}
}

// TestConcurrentPublish checks that concurrent batches, which share
// fsyncs, each land exactly once and whole on their own lines, also with a
// second sink appending to the same file.
func TestConcurrentPublish(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	a, err := New(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 50 {
		s := a
		if g%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range 20 {
				body := fmt.Sprintf(`{"g":%d,"i":%d,"pad":"%s"}`, g, i, strings.Repeat("x", 100*(i%5)))
				if err := s.Publish(ctx, []sinks.Message{{Body: []byte(body)}}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, s := range []*Sink{a, b} {
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	for _, l := range lines(t, path) {
		seen[l]++
	}
	if len(seen) != 1000 {
		t.Errorf("%d distinct lines, want 1000", len(seen))
	}
	for l, n := range seen {
		if n != 1 || !strings.HasPrefix(l, `{"g":`) || !strings.HasSuffix(l, `"}`) {
			t.Errorf("line %q seen %d times", l, n)
		}
	}
}

func TestConfig(t *testing.T) {
	var c Config
	c.SetDefaults()
	if c.Fsync == nil || !*c.Fsync {
		t.Error("fsync does not default to true")
	}
	var ce *sinks.ConfigError
	if err := c.Validate(); !errors.As(err, &ce) || ce.Key != "path" {
		t.Errorf("Validate() = %v, want a path error", err)
	}
	_, err := New(Config{Path: filepath.Join(t.TempDir(), "missing", "events.jsonl")})
	if err == nil || !strings.Contains(err.Error(), "the directory must exist") {
		t.Errorf("New in a missing directory: %v", err)
	}
}

func TestPublishHonoursContext(t *testing.T) {
	s, err := New(Config{Path: filepath.Join(t.TempDir(), "e.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Either outcome is allowed for an already-cancelled context (the
	// writer may win the race), but it must not hang or panic.
	_ = s.Publish(ctx, []sinks.Message{{Body: []byte("{}")}})
}
