package rabbitmq

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// shared is the one broker the tests of this package share: a
// rabbitmq-server takes seconds to start, so each test isolates itself
// with exchanges and queues of its own instead. TestMain stops it.
var shared struct {
	once sync.Once
	dir  string
	srv  *sinktest.RabbitMQServer
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Close()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// broker returns the shared broker, started by the first test that
// needs it.
func broker(t *testing.T) *sinktest.RabbitMQServer {
	t.Helper()
	sinktest.NeedRabbitMQ(t)
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "hookbridge-rabbitmq-")
		if shared.err == nil {
			shared.srv, shared.err = sinktest.StartRabbitMQ(shared.dir)
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.srv
}

// uniqueName is a name for t's exchange or queue, unique on the shared
// broker across tests and runs.
func uniqueName(t *testing.T, what string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '.'
	}, t.Name())
	return fmt.Sprintf("%s.%s.%d", what, clean, time.Now().UnixNano())
}

// exchange declares a durable topic exchange of t's own on the shared
// broker, deleted when the test ends, and returns its name.
func exchange(t *testing.T, srv *sinktest.RabbitMQServer) string {
	t.Helper()
	name := uniqueName(t, "ex")
	ch := sinktest.RabbitMQChannel(t, srv.URL())
	if err := ch.ExchangeDeclare(name, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.ExchangeDelete(name, false, false) })
	return name
}

// Where the contract publishes, and where Refuse sends a message: a
// routing key no queue is bound to.
const (
	contractKey = "contract.events"
	unboundKey  = "contract.unbound"
)

// TestContract runs the sink contract on the shared broker, reached
// through a proxy that can hang or close (the broker looks down, while
// other tests keep it). Each subtest publishes to an exchange of its own
// with one durable queue bound for contractKey, read with the real
// client.
//
// RabbitMQ refuses a message for good when no queue is bound for its
// routing key: mandatory, it is returned, and fails alone, permanent. So
// Refuse changes the target (unlike the harness's usual rule, which keeps
// it: nothing else about a message makes the broker refuse it alone).
// One channel into one queue keeps each key's order; the broker does not
// de-duplicate, and message_id is the event id.
func TestContract(t *testing.T) {
	features := sinktest.Features{IDs: true, PerKeyOrder: true, PartialFailure: true, Permanent: true}
	sinktest.Run(t, features, func(t *testing.T) sinktest.Harness {
		srv := broker(t)
		ex := exchange(t, srv)
		queue := uniqueName(t, "q")
		sinktest.RabbitMQQueue(t, srv.URL(), ex, queue, contractKey)
		proxy := sinktest.StartProxy(t, srv.Addr())
		s, err := New(context.Background(), Config{URL: "amqp://guest:guest@" + proxy.Addr() + "/", Exchange: ex}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sinktest.Harness{
			Sink: s, Target: contractKey,
			Read: func(t *testing.T) []sinktest.Received {
				var out []sinktest.Received
				for _, d := range sinktest.ReadRabbitMQQueue(t, srv.URL(), queue) {
					out = append(out, sinktest.Received{Body: d.Body, ID: d.MessageId})
				}
				return out
			},
			Refuse: func(m sinks.Message) sinks.Message {
				m.Target = unboundKey
				return m
			},
			Stop: func() { proxy.Close() },
			Hang: proxy.Hold,
		}
	})
}
