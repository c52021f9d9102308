package nats

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// benchMessage is what the bridge hands a sink for a typical 200-byte
// Browser Use delivery (body200 in bridge's tests): eight CloudEvents
// attributes and a 407-byte structured CloudEvent.
func benchMessage(subject string) sinks.Message {
	const id = "3f1c9a7e5b2d4c6e8a0b1c2d3e4f5a6b"
	attrs := []sinks.Attr{
		{Name: "specversion", Value: "1.0"},
		{Name: "id", Value: id},
		{Name: "source", Value: "browser-use"},
		{Name: "type", Value: "com.browser-use.agent.task.status_update"},
		{Name: "subject", Value: "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45"},
		{Name: "time", Value: "2025-05-25T09:22:22.269116Z"},
		{Name: "status", Value: "finished"},
		{Name: "datacontenttype", Value: "application/json"},
	}
	body := []byte{'{'}
	for _, a := range attrs {
		body = strconv.AppendQuote(body, a.Name)
		body = append(body, ':')
		body = strconv.AppendQuote(body, a.Value)
		body = append(body, ',')
	}
	body = append(body, `"data":{"session_id":"cd9cc7bf-e3af-4181-80a2-73f083bc94b4","status":"finished","task_id":"5b73fb3f-a3cb-4912-be40-17ce9e9e1a45"}}`...)
	return sinks.Message{Target: subject, Key: "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45", ID: id, Attrs: attrs, Body: body}
}

// benchIDs gives every published message an id of its own: JetStream drops
// a Nats-Msg-Id it has seen within the duplicates window, which would
// measure the duplicate path. Making the id costs the benchmark one
// 32-byte allocation per message.
var benchIDs atomic.Uint64

// publisher is one goroutine's message, with its own Attrs to put the id in.
type publisher struct {
	batch [1]sinks.Message
	id    [32]byte
}

func newPublisher(subject string) *publisher {
	p := &publisher{batch: [1]sinks.Message{benchMessage(subject)}}
	m := &p.batch[0]
	m.Attrs = append([]sinks.Attr(nil), m.Attrs...)
	copy(p.id[:], m.ID)
	return p
}

// next returns a 1-message batch with a new id.
func (p *publisher) next() []sinks.Message {
	n := benchIDs.Add(1)
	const hex = "0123456789abcdef"
	for i := len(p.id) - 1; i >= len(p.id)-16; i-- {
		p.id[i] = hex[n&0xf]
		n >>= 4
	}
	m := &p.batch[0]
	m.ID = string(p.id[:])
	m.Attrs[1].Value = m.ID
	return p.batch[:]
}

// BenchmarkPublish publishes 1-message batches of a ~400-byte CloudEvent:
// through JetStream (file storage, waiting for each PubAck) and on core
// NATS (publish and flush, one round trip), from one goroutine and from
// ~32 at once, as concurrent webhooks would.
func BenchmarkPublish(b *testing.B) {
	srv := sinktest.NATS(b)
	ctx := context.Background()
	for _, mode := range []struct {
		name      string
		jetStream bool
		subject   string
	}{
		{"jetstream", true, "task.finished"},
		// A subject no stream covers: the server only routes it.
		{"core", false, "core.task.finished"},
	} {
		s, err := New(ctx, Config{Connection: Connection{URL: srv.ClientURL()}, JetStream: mode.jetStream}, []string{"task.*"}, discard)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := s.Close(ctx); err != nil {
				b.Error(err)
			}
		})
		if (s.js != nil) != mode.jetStream {
			b.Fatalf("%s: JetStream = %v", mode.name, s.js != nil)
		}
		size := int64(len(benchMessage(mode.subject).Body))
		// stored checks, with JetStream, that every publish was stored:
		// none was taken for a duplicate.
		stored := func(b *testing.B, run func()) {
			before := streamCount(b, s)
			run()
			if got := streamCount(b, s) - before; mode.jetStream && got != uint64(b.N) {
				b.Fatalf("%d publishes, %d stored", b.N, got)
			}
		}

		b.Run(mode.name+"/serial", func(b *testing.B) {
			p := newPublisher(mode.subject)
			b.SetBytes(size)
			b.ReportAllocs()
			stored(b, func() {
				for b.Loop() {
					if err := s.Publish(ctx, p.next()); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run(mode.name+"/parallel", func(b *testing.B) {
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0))) // ~32 publishers
			b.SetBytes(size)
			b.ReportAllocs()
			stored(b, func() {
				b.RunParallel(func(pb *testing.PB) {
					p := newPublisher(mode.subject)
					for pb.Next() {
						if err := s.Publish(ctx, p.next()); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

// streamCount returns how many messages the sink's stream holds (0 on
// core NATS).
func streamCount(b *testing.B, s *Sink) uint64 {
	b.Helper()
	if s.js == nil {
		return 0
	}
	n := sinktest.StreamCount(s.js, s.cfg.Stream.Name)
	if n < 0 {
		b.Fatalf("cannot read stream %s", s.cfg.Stream.Name)
	}
	return uint64(n)
}

// BenchmarkMsg lays the benchmark message out in each content mode,
// without the network: what binary mode costs over structured (finding
// data in the body, a header per attribute).
func BenchmarkMsg(b *testing.B) {
	m := benchMessage("task.finished")
	for _, mode := range []sinks.ContentMode{sinks.Structured, sinks.Binary} {
		s := &Sink{cfg: Config{ContentMode: mode}}
		b.Run(string(mode), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.msg(&m, m.Target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
