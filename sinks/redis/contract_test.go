package redis

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// discard is a logger for sinks whose warnings a test does not read.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// contractStream is where the contract publishes; wrongTypeKey is a key
// holding a string, which Redis never lets an XADD add to.
const (
	contractStream = "contract.events"
	wrongTypeKey   = "contract.not-a-stream"
)

// TestContract runs the sink contract on a private redis-server, in
// structured mode, where an entry's "event" field is the body the contract
// compares. Features:
//
//   - IDs: Read takes the id from the "event" JSON, read back with XRANGE.
//   - PerKeyOrder: a stream keeps entries in the order they were added,
//     and a batch is one pipeline on one connection, in order.
//   - PartialFailure and Permanent: Redis refuses an XADD by key, not by
//     content (an entry has no size limit short of 512 MB, which breaks the
//     connection instead of failing one command): the only refusal one
//     message of a pipeline meets alone is a key of another type,
//     WRONGTYPE, for good until the key is deleted. So, unlike other
//     harnesses, Refuse sends the message to such a key rather than keeping
//     its target; ID and Key are kept, and Read still checks that the
//     contract's stream holds nothing it did not confirm.
//   - Dedup: no; Redis adds a redelivered message again.
//
// Stop kills the server (connections refused); Hang sends it SIGSTOP, so
// that connections stay open and nothing is answered.
func TestContract(t *testing.T) {
	features := sinktest.Features{IDs: true, PerKeyOrder: true, PartialFailure: true, Permanent: true}
	sinktest.Run(t, features, func(t *testing.T) sinktest.Harness {
		ctx := context.Background()
		url, stop, srv := sinktest.Redis(t)
		cl := sinktest.RedisClient(t, url)
		if err := cl.Set(ctx, wrongTypeKey, "a string, not a stream", 0).Err(); err != nil {
			t.Fatal(err)
		}
		s, err := New(ctx, Config{URL: url}, []string{contractStream}, discard)
		if err != nil {
			t.Fatal(err)
		}
		return sinktest.Harness{
			Sink: s, Target: contractStream,
			Read: func(t *testing.T) []sinktest.Received {
				var out []sinktest.Received
				for _, e := range sinktest.RedisStream(t, cl, contractStream) {
					body, _ := e.Values[EventField].(string)
					out = append(out, sinktest.Received{Body: []byte(body), ID: sinktest.BodyID([]byte(body))})
				}
				return out
			},
			Refuse: func(m sinks.Message) sinks.Message {
				m.Target = wrongTypeKey
				return m
			},
			Stop: stop,
			Hang: srv.Hang,
		}
	})
}
