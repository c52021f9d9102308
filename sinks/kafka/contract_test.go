package kafka

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestContract runs the sink contract on a kfake cluster whose topic has
// four partitions. Kafka keeps the key (the record key) and the event id
// (the ce_id header), and the order of a key's records, which share a
// partition; it does not de-duplicate (kafka-go has no idempotent
// producer). A record larger than batch_bytes, 64 KiB here, is refused
// alone and for good: by the sink, before it would fail its whole
// partition's produce request at the broker.
func TestContract(t *testing.T) {
	const topic = "contract"
	features := sinktest.Features{IDs: true, Keys: true, PerKeyOrder: true, PartialFailure: true, Permanent: true}
	sinktest.Run(t, features, func(t *testing.T) sinktest.Harness {
		c := sinktest.Kafka(t, kfake.SeedTopics(4, topic))
		brokers := c.ListenAddrs()
		s, err := New(context.Background(), Config{Brokers: brokers, BatchBytes: 64 << 10}, []string{topic}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sinktest.Harness{
			Sink: s, Target: topic,
			Read: func(t *testing.T) []sinktest.Received {
				var out []sinktest.Received
				for _, r := range sinktest.KafkaRecords(t, brokers, topic) {
					out = append(out, sinktest.Received{Body: r.Value, Key: string(r.Key), ID: sinktest.BodyID(r.Value)})
				}
				return out
			},
			Refuse: func(m sinks.Message) sinks.Message {
				m.Body = append(bytes.TrimSuffix(m.Body, []byte("}")), []byte(`,"pad":"`+strings.Repeat("x", 128<<10)+`"}`)...)
				return m
			},
			Stop: c.Close,
			Hang: func() func() { return sinktest.HangKafka(c) },
		}
	})
}
