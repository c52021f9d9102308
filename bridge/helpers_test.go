package bridge

import (
	"context"
	"fmt"
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

// natsJS connects to the NATS at url until the test ends.
func natsJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// busStream connects to the NATS sink named "bus" and returns the
// HOOKBRIDGE stream.
func busStream(t *testing.T, svc *Service) jetstream.Stream {
	t.Helper()
	js := natsJS(t, Unwrap(svc.Sinks()["bus"]).(*natssink.Sink).ClientURL())
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
	// Right after a NATS node stopped, a fetch can come back short while
	// the cluster settles: read again, a few times.
	var problem string
	for range 5 {
		out, err := fetchAll(ctx, st, int(info.State.Msgs))
		if err == nil && len(out) == int(info.State.Msgs) {
			return out
		}
		problem = fmt.Sprintf("fetched %d of the %d messages of stream %s (%v)", len(out), info.State.Msgs, name, err)
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatal(problem)
	return nil
}

// fetchAll reads the first n messages of st with an ordered consumer.
func fetchAll(ctx context.Context, st jetstream.Stream, n int) ([]jetstream.Msg, error) {
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		return nil, err
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	return out, batch.Error()
}
