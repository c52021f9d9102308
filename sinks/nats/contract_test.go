package nats

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// contractSubject is where the contract publishes; contractMaxSize is the
// limit past which the broker refuses a message, and refusedPad a body
// pad that passes it.
const (
	contractSubject = "contract.events"
	contractMaxSize = 64 << 10
	refusedPad      = 2 * contractMaxSize
)

// refuse makes m larger than the broker takes.
func refuse(m sinks.Message) sinks.Message {
	m.Body = append(bytes.TrimSuffix(m.Body, []byte("}")), []byte(`,"pad":"`+strings.Repeat("x", refusedPad)+`"}`)...)
	return m
}

// TestContract runs the sink contract on core NATS and on JetStream, on an
// in-process nats-server the sink reaches through a proxy that can hang.
//
// Core NATS holds nothing: "what the broker holds" is what a subscriber
// got, in order, with the ce-id header. Its server takes payloads of up
// to 64 KiB (max_payload), so a larger message is refused, alone and for
// good, before it is sent.
//
// JetStream publishes into a stream of the user's that stores messages of
// up to 64 KiB (max_msg_size): the server refuses a larger one in its
// PubAck, alone and for good. It de-duplicates on Nats-Msg-Id, which the
// contract reads as the id.
func TestContract(t *testing.T) {
	t.Run("core", func(t *testing.T) {
		features := sinktest.Features{IDs: true, PerKeyOrder: true, PartialFailure: true, Permanent: true}
		sinktest.Run(t, features, func(t *testing.T) sinktest.Harness {
			srv := sinktest.NATSWith(t, server.Options{MaxPayload: contractMaxSize})
			nc, _ := sinktest.JetStream(t, srv.ClientURL())
			sub, err := nc.SubscribeSync(">")
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			proxy := sinktest.StartProxy(t, srv.Addr().String())
			s, err := New(context.Background(), Config{Connection: Connection{URL: "nats://" + proxy.Addr()}}, nil, discard)
			if err != nil {
				t.Fatal(err)
			}
			return sinktest.Harness{
				Sink: s, Target: contractSubject,
				Read: func(t *testing.T) []sinktest.Received {
					// The server sends the PONG after the messages it
					// routed to this connection before.
					if err := nc.Flush(); err != nil {
						t.Fatal(err)
					}
					var out []sinktest.Received
					for {
						m, err := sub.NextMsg(10 * time.Millisecond)
						if errors.Is(err, natsgo.ErrTimeout) {
							return out
						}
						if err != nil {
							t.Fatal(err)
						}
						out = append(out, sinktest.Received{Body: m.Data, ID: sinktest.BodyID(m.Data)})
					}
				},
				Refuse: refuse,
				Stop:   srv.Shutdown,
				Hang:   proxy.Hold,
			}
		})
	})
	t.Run("jetstream", func(t *testing.T) {
		features := sinktest.Features{IDs: true, PerKeyOrder: true, PartialFailure: true, Permanent: true, Dedup: true}
		sinktest.Run(t, features, func(t *testing.T) sinktest.Harness {
			ctx := context.Background()
			srv := sinktest.NATS(t)
			_, js := sinktest.JetStream(t, srv.ClientURL())
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
				Name: "CONTRACT", Subjects: []string{"contract.>"}, MaxMsgSize: contractMaxSize, Duplicates: time.Minute,
			}); err != nil {
				t.Fatal(err)
			}
			proxy := sinktest.StartProxy(t, srv.Addr().String())
			s, err := New(ctx, Config{Connection: Connection{URL: "nats://" + proxy.Addr()}, JetStream: true}, []string{"contract.*"}, discard)
			if err != nil {
				t.Fatal(err)
			}
			return sinktest.Harness{
				Sink: s, Target: contractSubject,
				Read: func(t *testing.T) []sinktest.Received {
					var out []sinktest.Received
					for _, m := range sinktest.ReadStream(t, js, "CONTRACT") {
						// Nats-Msg-Id is "<event id>:<subject>".
						id, _ := strings.CutSuffix(m.Headers().Get(jetstream.MsgIDHeader), ":"+m.Subject())
						out = append(out, sinktest.Received{Body: m.Data(), ID: id})
					}
					return out
				},
				Refuse: refuse,
				Stop:   srv.Shutdown,
				Hang:   proxy.Hold,
			}
		})
	})
}
