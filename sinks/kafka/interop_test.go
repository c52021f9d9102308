package kafka_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	cekafka "github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/hookbridge/hookbridge/sinks"
	kafkasink "github.com/hookbridge/hookbridge/sinks/kafka"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
	"github.com/hookbridge/hookbridge/sinks/sinktest/cetest"
)

// TestInterop publishes cetest's events through the real sink to kfake,
// in each content mode, and reads them back with the official
// CloudEvents SDK's Kafka binding (protocol/kafka_sarama/v2) over a
// sarama consumer, as a consumer application would: every attribute and
// the data must come back as hookbridge sent them. The binding adds
// kafkaoffset, kafkapartition and kafkatopic to the events it reads in
// binary mode, which the comparison ignores. sarama speaks its default
// protocol version: kfake answers it (some explicit versions it does
// not).
func TestInterop(t *testing.T) {
	cases := cetest.Cases(t)
	for _, mode := range []sinks.ContentMode{sinks.Structured, sinks.Binary} {
		t.Run(string(mode), func(t *testing.T) {
			// One partition: the records come back in publish order.
			const topic = "interop"
			c := sinktest.Kafka(t, kfake.SeedTopics(1, topic))
			brokers := c.ListenAddrs()
			s, err := kafkasink.New(context.Background(), kafkasink.Config{Brokers: brokers, ContentMode: mode}, []string{topic}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			batch := make([]sinks.Message, len(cases))
			for i, c := range cases {
				batch[i] = c.Msg
				batch[i].Target = topic
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Publish(ctx, batch); err != nil {
				t.Fatal(err)
			}

			fallbacks := 0
			for i, cm := range consume(ctx, t, brokers, topic, len(cases)) {
				c := cases[i]
				if string(cm.Key) != c.Msg.Key {
					t.Errorf("%s: key %q, want the task id %q", c.Name, cm.Key, c.Msg.Key)
				}
				// Binary mode sends an event structured when an attribute
				// has spaces at its ends, which the SDK's binary reader
				// would trim.
				arrives, want := mode, binding.EncodingStructured
				if mode == sinks.Binary && !sinks.Untrimmed(c.Msg.Attrs) {
					arrives = sinks.Structured
					fallbacks++
				}
				if arrives == sinks.Binary {
					want = binding.EncodingBinary
				}
				checkHeaders(t, c, arrives, cm.Headers)
				cetest.Check(t, c, cetest.Read(t, c.Name, cekafka.NewMessageFromConsumerMessage(cm), want), cetest.KafkaExtensions...)
			}
			if mode == sinks.Binary && fallbacks == 0 {
				t.Error("no event fell back to structured: the set lacks one with an attribute with spaces at its ends")
			}
		})
	}
}

// consume reads the first n records of partition 0 of topic with sarama.
func consume(ctx context.Context, t *testing.T, brokers []string, topic string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Consumer.Return.Errors = true
	consumer, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	for len(out) < n {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case err := <-pc.Errors():
			t.Fatalf("consume %s: %v", topic, err)
		case <-ctx.Done():
			t.Fatalf("consumed %d of %d records of %s: %v", len(out), n, topic, ctx.Err())
		}
	}
	return out
}

// checkHeaders checks the headers of the record of c in mode beside what
// the SDK reads: structured carries no ce_ header, binary one per
// attribute but datacontenttype, which is content-type; both carry the
// W3C trace context under its own names, the publish's when it has one
// (cetest.CheckTraceHeaders).
func checkHeaders(t *testing.T, c cetest.Case, mode sinks.ContentMode, headers []*sarama.RecordHeader) {
	t.Helper()
	h := map[string]string{}
	ce := 0
	for _, rh := range headers {
		h[string(rh.Key)] = string(rh.Value)
		if strings.HasPrefix(string(rh.Key), "ce_") {
			ce++
		}
	}
	want, wantCE := sinks.StructuredContentType, 0
	if mode == sinks.Binary {
		want, wantCE = c.Msg.Attr("datacontenttype"), len(c.Msg.Attrs)-1
	}
	if h["content-type"] != want || ce != wantCE || len(headers) != len(h) {
		t.Errorf("%s: content-type %q and %d ce_ headers, want %q and %d, each once: %v", c.Name, h["content-type"], ce, want, wantCE, h)
	}
	cetest.CheckTraceHeaders(t, c, func(name string) (string, bool) { v, ok := h[name]; return v, ok })
}
