package file

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
)

// countingFile is an *os.File that counts the writer's writes and fsyncs,
// to report how many messages share one (the group commit).
type countingFile struct {
	*os.File
	writes, syncs atomic.Int64
}

func (f *countingFile) Write(p []byte) (int, error) {
	f.writes.Add(1)
	return f.File.Write(p)
}

func (f *countingFile) Sync() error {
	f.syncs.Add(1)
	return f.File.Sync()
}

// benchBody is a 407-byte structured CloudEvent on one line, the size the
// bridge writes for a typical 200-byte Browser Use delivery (body200 in
// bridge's tests).
var benchBody = []byte(`{"specversion":"1.0","id":"3f1c9a7e5b2d4c6e8a0b1c2d3e4f5a6b","source":"browser-use","type":"com.browser-use.agent.task.status_update","subject":"5b73fb3f-a3cb-4912-be40-17ce9e9e1a45","time":"2025-05-25T09:22:22.269116Z","status":"finished","datacontenttype":"application/json","data":{"session_id":"cd9cc7bf-e3af-4181-80a2-73f083bc94b4","status":"finished","task_id":"5b73fb3f-a3cb-4912-be40-17ce9e9e1a45"}}`)

// BenchmarkPublish appends 1-message batches of a ~400-byte CloudEvent,
// from one goroutine and from ~32 at once, with fsync (the default: each
// Publish returns once its line is on stable storage, so ns/op is bounded
// by the disk's fsync latency, shared by the callers of one group commit)
// and without. msgs/write is how many Publish calls one write (and, with
// fsync, one fsync) served; the file's size is checked at the end.
func BenchmarkPublish(b *testing.B) {
	if bytes.IndexByte(benchBody, '\n') >= 0 {
		b.Fatal("benchBody holds a newline")
	}
	for _, fsync := range []bool{true, false} {
		name := "fsync"
		if !fsync {
			name = "nofsync"
		}
		run := func(b *testing.B, parallel bool) {
			path := filepath.Join(b.TempDir(), "events.jsonl")
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
			if err != nil {
				b.Fatal(err)
			}
			cf := &countingFile{File: f}
			s := newSink(cf, fsync)
			ctx := context.Background()
			batch := []sinks.Message{{ID: "3f1c9a7e5b2d4c6e8a0b1c2d3e4f5a6b", Body: benchBody}}
			b.SetBytes(int64(len(benchBody) + 1))
			b.ReportAllocs()
			if parallel {
				b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0))) // ~32 publishers
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.Publish(ctx, batch); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if err := s.Publish(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			if err := s.Close(ctx); err != nil {
				b.Fatal(err)
			}
			if w := cf.writes.Load(); w > 0 {
				b.ReportMetric(float64(b.N)/float64(w), "msgs/write")
			}
			if fsync != (cf.syncs.Load() == cf.writes.Load()) {
				b.Fatalf("fsync %v: %d writes, %d fsyncs", fsync, cf.writes.Load(), cf.syncs.Load())
			}
			st, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			if want := int64(b.N) * int64(len(benchBody)+1); st.Size() != want {
				b.Fatalf("file holds %d bytes, want %d for %d messages", st.Size(), want, b.N)
			}
		}
		b.Run(name+"/serial", func(b *testing.B) { run(b, false) })
		b.Run(name+"/parallel", func(b *testing.B) { run(b, true) })
	}
}
