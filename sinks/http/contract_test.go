package httpsink

import (
	"bytes"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// refuse marks m's body so that the receiver answers 422, which the sink
// must take as a refusal for good.
func refuse(m sinks.Message) sinks.Message {
	m.Body = bytes.Replace(m.Body, []byte("{"), []byte("{"+refuseMarker+","), 1)
	return m
}

// TestContract runs the sink contract against a real HTTP server that
// verifies every signature with the Standard Webhooks library. "What the
// broker holds" is what the receiver answered 2xx to, with webhook-id as
// the id. Requests of a batch go concurrently, so the order of arrival is
// not kept (no PerKeyOrder), and a receiver has no de-duplication of its
// own (no Dedup): receivers de-duplicate on webhook-id. It runs in
// structured mode, whose body the contract compares; what binary mode
// sends is read by the CloudEvents SDK in TestInterop.
func TestContract(t *testing.T) {
	features := sinktest.Features{IDs: true, PartialFailure: true, Permanent: true}
	sinktest.Run(t, features, func(t *testing.T) sinktest.Harness {
		secret := newSecret(t)
		rc := newReceiver(t, secret)
		s, err := New(Config{URL: rc.URL("/default"), Secret: secret}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sinktest.Harness{
			Sink: s, Target: rc.URL("/events"),
			Read: func(t *testing.T) []sinktest.Received {
				var out []sinktest.Received
				for _, r := range rc.received(t) {
					if r.Path != "/events" {
						t.Errorf("a request went to %s, not to the target /events", r.Path)
					}
					out = append(out, sinktest.Received{Body: r.Body, ID: r.Header.Get("webhook-id")})
				}
				return out
			},
			Refuse: refuse,
			Stop:   rc.srv.Close,
			Hang:   rc.Hang,
		}
	})
}
