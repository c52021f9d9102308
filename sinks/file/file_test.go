package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

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
	if !errors.As(err, &be) || len(be.Failed) != 2 || !errors.Is(be.Failed[1], errTarget) || !errors.Is(be.Failed[2], errNewline) || !sinks.IsPermanent(be.Failed[1]) {
		t.Fatalf("err = %v, want messages 1 and 2 failed", err)
	}
	if sinks.MessageErr(err, 0) != nil || sinks.MessageErr(err, 3) != nil {
		t.Error("good messages reported as failed")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{`{"old":1}`, `{"id":"a"}`, `{"id":"d"}`}
	if got := sinktest.FileLines(t, path); strings.Join(got, "|") != strings.Join(want, "|") {
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
	for _, l := range sinktest.FileLines(t, path) {
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
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := New(Config{Path: filepath.Join(dir, "events.jsonl")})
	want := fmt.Sprintf("file sink: cannot create %q: directory %q does not exist: create it or change path", filepath.Join(dir, "events.jsonl"), dir)
	if err == nil || err.Error() != want {
		t.Errorf("New in a missing directory: %v, want %q", err, want)
	}
}

func TestPublishHonoursContext(t *testing.T) {
	s, err := New(Config{Path: filepath.Join(t.TempDir(), "e.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// An already-cancelled context writes nothing: a caller that retries
	// the event later does not duplicate it.
	err = s.Publish(ctx, []sinks.Message{{Body: []byte("{}")}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled context = %v, want context.Canceled", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sinktest.FileLines(t, s.f.(*os.File).Name()); len(got) != 0 {
		t.Errorf("Publish with a cancelled context wrote %d lines", len(got))
	}
}

// flakyFile fails chosen writes after writing part of them, as a full disk
// does, and records what reached the "disk".
type flakyFile struct {
	mu       sync.Mutex
	data     []byte
	failNext int // bytes to write before failing the next write; -1: none
	syncErr  error
}

func (f *flakyFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext >= 0 {
		n := min(f.failNext, len(p))
		f.failNext = -1
		f.data = append(f.data, p[:n]...)
		return n, errors.New("no space left on device")
	}
	f.data = append(f.data, p...)
	return len(p), nil
}

func (f *flakyFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.syncErr
	f.syncErr = nil
	return err
}

func (f *flakyFile) Close() error { return nil }

func TestFailedWriteDoesNotTearTheNextLine(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		failAt   int   // bytes written before the first write fails; -1: it does not
		syncErr  error // the first Sync's error
		want     string
		firstErr string
	}{
		{"torn write", 5, nil, `{"id"` + "\n" + `{"id":"b"}` + "\n", "file sink: no space left on device"},
		{"nothing written", 0, nil, `{"id":"b"}` + "\n", "file sink: no space left on device"},
		{"sync fails", -1, errors.New("input/output error"), `{"id":"a"}` + "\n" + `{"id":"b"}` + "\n", "file sink: input/output error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &flakyFile{failNext: tt.failAt, syncErr: tt.syncErr}
			s := newSink(f, true)
			err := s.Publish(ctx, []sinks.Message{{Body: []byte(`{"id":"a"}`)}})
			if err == nil || err.Error() != tt.firstErr {
				t.Errorf("first Publish = %v, want %q", err, tt.firstErr)
			}
			var be *sinks.BatchError
			if errors.As(err, &be) {
				t.Errorf("a failed write must fail the whole batch, not some messages: %v", err)
			}
			if err := s.Publish(ctx, []sinks.Message{{Body: []byte(`{"id":"b"}`)}}); err != nil {
				t.Errorf("second Publish = %v", err)
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if got := string(f.data); got != tt.want {
				t.Errorf("file = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestTwoProcessesAppend runs this test binary a second time as a child that
// appends to the same file while this process does.
func TestTwoProcessesAppend(t *testing.T) {
	const perProcess = 300
	if path := os.Getenv("HOOKBRIDGE_FILE_SINK_CHILD"); path != "" {
		appendLines(t, path, "child", perProcess)
		return
	}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	cmd := exec.Command(os.Args[0], "-test.run=^TestTwoProcessesAppend$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HOOKBRIDGE_FILE_SINK_CHILD="+path)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, "parent", perProcess)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	seen := map[string]int{}
	for _, l := range sinktest.FileLines(t, path) {
		var ev struct {
			Who string `json:"who"`
			I   int    `json:"i"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		seen[fmt.Sprint(ev.Who, ev.I)]++
	}
	if len(seen) != 2*perProcess {
		t.Errorf("%d distinct events, want %d", len(seen), 2*perProcess)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("event %s written %d times", k, n)
		}
	}
}

func appendLines(t *testing.T, path, who string, n int) {
	t.Helper()
	s, err := New(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < n; i += 4 {
				body := fmt.Sprintf(`{"who":%q,"i":%d,"pad":%q}`, who, i, strings.Repeat("y", 500*(i%7)))
				if err := s.Publish(ctx, []sinks.Message{{Body: []byte(body)}}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
