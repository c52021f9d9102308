package file

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestContract runs the sink contract on a real file, opened by New. The
// file keeps every line in order and holds no id or key; it refuses a
// body with a raw newline, alone and for good. To stop or hang "the
// broker", the sink's file is wrapped so that its writes fail with EIO,
// as a dead disk's do, or block, as a stuck one's do.
func TestContract(t *testing.T) {
	features := sinktest.Features{PerKeyOrder: true, PartialFailure: true, Permanent: true}
	sinktest.Run(t, features, func(t *testing.T) sinktest.Harness {
		path := filepath.Join(t.TempDir(), "events.jsonl")
		s, err := New(Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		disk := &faultyDisk{File: s.f.(*os.File)}
		disk.cond = sync.NewCond(&disk.mu)
		s.f = disk // before any Publish, so before the writer touches it
		return sinktest.Harness{
			Sink: s,
			Read: func(t *testing.T) []sinktest.Received {
				var out []sinktest.Received
				for _, l := range sinktest.FileLines(t, path) {
					out = append(out, sinktest.Received{Body: []byte(l)})
				}
				return out
			},
			Refuse: func(m sinks.Message) sinks.Message {
				m.Body = bytes.Replace(m.Body, []byte(`,"id"`), []byte(",\n\"id\""), 1)
				return m
			},
			Stop: disk.fail,
			Hang: disk.hang,
		}
	})
}

// faultyDisk is a real file whose writes and syncs can be made to fail or
// to block.
type faultyDisk struct {
	*os.File
	mu     sync.Mutex
	cond   *sync.Cond
	failed bool
	held   bool
}

func (d *faultyDisk) Write(p []byte) (int, error) {
	if err := d.wait("write"); err != nil {
		return 0, err
	}
	return d.File.Write(p)
}

func (d *faultyDisk) Sync() error {
	if err := d.wait("sync"); err != nil {
		return err
	}
	return d.File.Sync()
}

// wait blocks while the disk hangs, then fails op if the disk failed.
func (d *faultyDisk) wait(op string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.held {
		d.cond.Wait()
	}
	if d.failed {
		return &fs.PathError{Op: op, Path: d.Name(), Err: syscall.EIO}
	}
	return nil
}

func (d *faultyDisk) fail() {
	d.mu.Lock()
	d.failed = true
	d.mu.Unlock()
}

func (d *faultyDisk) hang() (release func()) {
	d.mu.Lock()
	d.held = true
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		d.held = false
		d.cond.Broadcast()
		d.mu.Unlock()
	}
}
