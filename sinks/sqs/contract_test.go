package sqs

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestContract runs the sink contract on kumo, reached through a proxy
// that can hang, with a standard queue and with a FIFO queue. SQS keeps
// the event id (the ce_id attribute) and refuses an entry with an empty
// body alone and for good (MissingParameter, a sender fault). A FIFO
// queue keeps each group's order and de-duplicates on
// MessageDeduplicationId; kumo does not return MessageGroupId, so the
// key cannot be read back.
func TestContract(t *testing.T) {
	for _, tc := range []struct {
		queue    string
		features sinktest.Features
	}{
		{"contract", sinktest.Features{IDs: true, PartialFailure: true, Permanent: true}},
		{"contract.fifo", sinktest.Features{IDs: true, PerKeyOrder: true, PartialFailure: true, Permanent: true, Dedup: true}},
	} {
		fifo := isFIFO(tc.queue)
		name := "standard"
		if fifo {
			name = "fifo"
		}
		t.Run(name, func(t *testing.T) {
			sinktest.Run(t, tc.features, func(t *testing.T) sinktest.Harness {
				srv := sinktest.SQS(t)
				q := srv.Queue(tc.queue)
				proxy := sinktest.StartProxy(t, strings.TrimPrefix(srv.URL, "http://"))
				cfg := Config{Region: "us-east-1", Endpoint: "http://" + proxy.Addr(), AccessKeyID: "x", SecretAccessKey: "x"}
				s, err := New(context.Background(), cfg, []string{q}, nil)
				if err != nil {
					t.Fatal(err)
				}
				per := int32(10)
				if fifo {
					per = 1 // keeps a group's order even when a receive's answer is lost
				}
				return sinktest.Harness{
					Sink: s, Target: q,
					Read: func(t *testing.T) []sinktest.Received {
						var out []sinktest.Received
						for _, m := range srv.ReadAll(q, per) {
							out = append(out, sinktest.Received{
								Body: []byte(aws.ToString(m.Body)),
								ID:   sinktest.BodyID([]byte(aws.ToString(m.Body))),
							})
						}
						return out
					},
					Refuse: func(m sinks.Message) sinks.Message {
						m.Body = nil
						return m
					},
					Stop: srv.Server.Close,
					Hang: proxy.Hold,
				}
			})
		})
	}
}
