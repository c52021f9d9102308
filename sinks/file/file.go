// Package file is a sink that appends one CloudEvent JSON per line to a
// local file and fsyncs it before confirming: an audit log, or a bridge
// for tools that tail files.
package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/hookbridge/hookbridge/sinks"
)

// DefaultFsync is fsync's default: Publish confirms only what reached
// stable storage.
const DefaultFsync = true

// Config configures a file sink.
type Config struct {
	// Path is the file events are appended to, one JSON per line. It is
	// created (mode 0640) if missing; its directory must exist. Required.
	Path string `yaml:"path"`
	// Fsync makes Publish return only after the data reached stable
	// storage. Default DefaultFsync (true); false trades durability for
	// speed.
	Fsync *bool `yaml:"fsync"`
}

// SetDefaults fills unset fields with their defaults.
func (c *Config) SetDefaults() {
	if c.Fsync == nil {
		fsync := DefaultFsync
		c.Fsync = &fsync
	}
}

// Validate reports every problem in c, as *sinks.ConfigError values.
func (c *Config) Validate() error {
	if c.Path == "" {
		return sinks.Problemf("path", "missing: name the file events are appended to, e.g. ./events.jsonl")
	}
	return nil
}

// Sink appends events to a file. It is safe for concurrent use: one writer
// goroutine writes whatever concurrent Publish calls queued with one write
// and one fsync (group commit), so durability does not cap throughput at
// the disk's fsync rate.
type Sink struct {
	f     syncFile
	fsync bool

	mu      sync.Mutex // guards pending, waiters and closed
	pending []byte     // lines not yet written
	waiters []chan error
	closed  bool

	wake    chan struct{} // capacity 1: something was queued, or Close
	stopped chan struct{} // closed when the writer has exited
}

// New opens the file at cfg.Path for appending.
func New(cfg Config) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("file sink: cannot create %q: directory %q does not exist: create it or change path", cfg.Path, filepath.Dir(cfg.Path))
		}
		return nil, fmt.Errorf("file sink: %w (the directory must exist and be writable)", err)
	}
	return newSink(f, *cfg.Fsync), nil
}

// syncFile is the part of *os.File the sink uses.
type syncFile interface {
	Write(p []byte) (int, error)
	Sync() error
	Close() error
}

func newSink(f syncFile, fsync bool) *Sink {
	s := &Sink{f: f, fsync: fsync, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go s.writer()
	return s
}

var (
	errTarget  = errors.New("file sinks take no target: remove it from the route")
	errNewline = errors.New("body contains a raw newline: it would break the one-event-per-line format")
	errClosed  = errors.New("file sink is closed")
)

// Publish appends every message's body as one line and returns once it is
// written and, with Fsync, synced. A message with a target or a body that
// holds a raw newline fails alone; the others are still written. A failed
// write or fsync fails the whole batch; should it leave half a line behind,
// the next write starts on a new line so that later events stay whole.
// With ctx already done it writes nothing.
func (s *Sink) Publish(ctx context.Context, batch []sinks.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file sink: not written: %w", err)
	}
	var failed map[int]error
	lines := make([]byte, 0, 256*len(batch))
	for i, m := range batch {
		var err error
		switch {
		case m.Target != "":
			err = sinks.Permanent(errTarget)
		case bytes.IndexByte(m.Body, '\n') >= 0:
			err = sinks.Permanent(errNewline)
		}
		if err != nil {
			if failed == nil {
				failed = map[int]error{}
			}
			failed[i] = err
			continue
		}
		lines = append(lines, m.Body...)
		lines = append(lines, '\n')
	}
	if len(lines) > 0 {
		if err := s.write(ctx, lines); err != nil {
			return err // nothing of the batch can be counted as kept
		}
	}
	if failed != nil {
		return &sinks.BatchError{Failed: failed}
	}
	return nil
}

// write queues lines for the writer and waits until they are synced.
func (s *Sink) write(ctx context.Context, lines []byte) error {
	done := make(chan error, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	s.pending = append(s.pending, lines...)
	s.waiters = append(s.waiters, done)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // the writer is already due to run
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// The lines may still be written; the caller must not count them
		// as kept, and a retry may duplicate them (consumers dedupe on id).
		return ctx.Err()
	}
}

// writer writes everything queued since its last round with one write and
// one fsync, then wakes those callers. It exits once closed and drained.
func (s *Sink) writer() {
	defer close(s.stopped)
	var buf []byte
	torn := false // the last write failed after writing part of buf
	for {
		s.mu.Lock()
		for len(s.waiters) == 0 {
			if s.closed {
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		buf, s.pending = s.pending, buf[:0]
		waiters := s.waiters
		s.waiters = nil
		s.mu.Unlock()

		if torn {
			// The last write failed, maybe half way through a line: end
			// that line so it cannot swallow the first event of this one.
			buf = append([]byte{'\n'}, buf...)
		}
		n, err := s.f.Write(buf)
		torn = err != nil && n > 0 || torn && n == 0
		if err == nil && s.fsync {
			err = s.f.Sync()
		}
		if err != nil {
			err = fmt.Errorf("file sink: %w", err)
		}
		for _, w := range waiters {
			w <- err
		}
	}
}

// Close writes what is queued, stops the writer and closes the file.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		return errClosed
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case <-s.stopped:
		return s.f.Close()
	case <-ctx.Done():
		return fmt.Errorf("file sink: close: %w", ctx.Err())
	}
}
