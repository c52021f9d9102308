package pubsub

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// testPublishTimeout bounds the client's attempts at a publish request
// in tests, so that Close after the broker went down returns soon.
const testPublishTimeout = 5 * time.Second

// topicSeq makes topic ids unique within a test binary.
var topicSeq atomic.Int64

// TestContract runs the sink contract on pstest, the client library's
// in-process Pub/Sub, reached through a proxy that can hang, in
// structured mode (binary mode is TestContentModes' and TestInterop's).
// Pub/Sub keeps the ordering key and, on a subscription with message
// ordering, each key's order; it does not de-duplicate. The message it
// refuses for good is one over its 10 MB limit: the sink refuses it
// before the client does, alone, so that the task's key is not paused.
func TestContract(t *testing.T) {
	sinktest.Run(t, sinktest.Features{IDs: true, Keys: true, PerKeyOrder: true, PartialFailure: true, Permanent: true},
		func(t *testing.T) sinktest.Harness {
			srv := sinktest.PubSub(t)
			topic := fmt.Sprintf("contract-%d", topicSeq.Add(1))
			sub := srv.Topic(topic)
			proxy := sinktest.StartProxy(t, srv.Addr)
			s, err := newSink(context.Background(), Config{Project: sinktest.PubSubProject}, []string{topic}, nil,
				testPublishTimeout, sinktest.PubSubOptions(proxy.Addr())...)
			if err != nil {
				t.Fatal(err)
			}
			return sinktest.Harness{
				Sink: s, Target: topic,
				Read: func(t *testing.T) []sinktest.Received {
					var out []sinktest.Received
					for _, m := range srv.Pull(sub) {
						out = append(out, sinktest.Received{Body: m.Data, ID: sinktest.BodyID(m.Data), Key: m.OrderingKey})
					}
					return out
				},
				Refuse: func(m sinks.Message) sinks.Message {
					m.Body = bytes.Replace(m.Body, []byte(`"data":{`), []byte(`"data":{"padding":"`+string(bytes.Repeat([]byte("x"), 10<<20))+`",`), 1)
					return m
				},
				Stop: srv.Close,
				Hang: proxy.Hold,
			}
		})
}
