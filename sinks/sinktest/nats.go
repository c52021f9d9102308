package sinktest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS runs a nats-server with JetStream on a free loopback port until the
// test ends.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	return NATSAt(t, -1, t.TempDir())
}

// NATSAt runs a nats-server with JetStream on port (-1: a free one) with
// its store in dir, until the test ends: a test can stop it and start it
// again where its clients expect it, with its data.
func NATSAt(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	return startNATS(t, &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
}

// NATSWith runs a nats-server with opts until the test ends, on loopback
// and without logs or signal handlers whatever opts say; with JetStream and
// no StoreDir, its store is in a temporary directory. Port 0 is a free one.
func NATSWith(t testing.TB, opts server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.NoLog, opts.NoSigs = "127.0.0.1", true, true
	if opts.Port == 0 {
		opts.Port = -1
	}
	if opts.JetStream && opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	return startNATS(t, &opts)
}

func startNATS(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server %s not ready", opts.ServerName)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// NATSCluster runs n clustered nats-servers with JetStream until the test
// ends, and waits until JetStream has a meta leader that sees them all. It
// returns the servers and their client URLs, comma-separated.
func NATSCluster(t testing.TB, n int) ([]*server.Server, string) {
	t.Helper()
	routes := make([]*url.URL, n)
	ports := make([]int, n)
	for i := range n {
		ports[i] = FreePort(t)
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	servers := make([]*server.Server, n)
	urls := make([]string, n)
	for i := range n {
		servers[i] = startNATS(t, &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "hookbridge-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		urls[i] = servers[i].ClientURL()
	}
	WaitFor(t, "a JetStream meta leader that sees every node", func() bool {
		for _, s := range servers {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == n {
				return true
			}
		}
		return false
	})
	return servers, strings.Join(urls, ",")
}

// JetStream connects to the NATS at url until the test ends.
func JetStream(t testing.TB, url string) (*natsgo.Conn, jetstream.JetStream) {
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
	return nc, js
}

// StreamCount is how many messages stream name holds, -1 if it cannot be
// read (no such stream yet).
func StreamCount(js jetstream.JetStream, name string) int {
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		return -1
	}
	info, err := st.Info(context.Background())
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// ReadStream reads every message of stream name, in stream order, with an
// ordered consumer; none when the stream is empty.
func ReadStream(t testing.TB, js jetstream.JetStream, name string) []jetstream.Msg {
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

// FreePort returns a TCP port free on loopback a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns a loopback host:port free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// WaitFor polls cond until it holds, failing the test after 30 seconds
// with what it waited for. Tests wait on conditions, never on time.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
