package bridge

import (
	"context"
	"log/slog"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// startConfig runs a Service for cfg until the test ends.
func startConfig(t *testing.T, cfg *Config) *Service {
	t.Helper()
	svc, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Shutdown(context.Background()) })
	return svc
}

// startYAML parses yaml (name is used in errors) and runs it.
func startYAML(t *testing.T, name, yaml string, lookupEnv func(string) (string, bool)) *Service {
	t.Helper()
	cfg, err := ParseConfig(name, []byte(yaml), lookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	return startConfig(t, cfg)
}

// busStream connects to the NATS sink named "bus" and returns the
// HOOKBRIDGE stream.
func busStream(t *testing.T, svc *Service) jetstream.Stream {
	t.Helper()
	nc, err := natsgo.Connect(Unwrap(svc.Sinks()["bus"]).(*natssink.Sink).ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(context.Background(), "HOOKBRIDGE")
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// readAll fetches every message of stream name, in stream order.
func readAll(t *testing.T, js jetstream.JetStream, name string) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(int(info.State.Msgs), jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	if len(out) != int(info.State.Msgs) {
		t.Fatalf("fetched %d of the %d messages of stream %s", len(out), info.State.Msgs, name)
	}
	return out
}
