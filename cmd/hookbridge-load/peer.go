package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sivchari/kumo"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A peer is the broker hookbridge publishes to during a run, started in
// this process so the run needs nothing installed.
type peer interface {
	// sinkYAML is the sink's entry under sinks:, named "bus".
	sinkYAML() string
	// target is the route's target for the sink, e.g. subject: ...
	target() string
	describe() string
	// requests counts the publish requests the broker received, for
	// brokers that batch (0 and "" where every event is its own request).
	requests() (n int64, what string)
	// read sends the event id of every message the broker holds, from
	// the first, until ctx is done.
	read(ctx context.Context, ids chan<- string) error
	close()
}

func startPeer(kind, dir string) (peer, error) {
	switch kind {
	case "nats":
		return startNATS(dir)
	case "embedded":
		return newEmbeddedPeer(dir)
	case "kafka":
		return startKafka()
	case "sqs":
		return startSQS()
	}
	return nil, fmt.Errorf("unknown sink %q", kind)
}

// natsPeer is a nats-server with JetStream and a file-backed stream, as a
// user would run one.
type natsPeer struct {
	srv *server.Server
	nc  *natsgo.Conn
	js  jetstream.JetStream
}

const loadStream = "LOAD"

func startNATS(dir string) (*natsPeer, error) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, err
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("nats-server did not start in 10s")
	}
	p := &natsPeer{srv: srv}
	if p.nc, err = natsgo.Connect(srv.ClientURL()); err != nil {
		p.close()
		return nil, err
	}
	p.js, _ = jetstream.New(p.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// LOAD for hookbridge, BARE for the bare-js baseline.
	for _, sc := range []jetstream.StreamConfig{streamConfig(loadStream, "load.>"), streamConfig(bareStream, "bare.>")} {
		if _, err := p.js.CreateStream(ctx, sc); err != nil {
			p.close()
			return nil, fmt.Errorf("create stream %s: %w", sc.Name, err)
		}
	}
	return p, nil
}

const bareStream = "BARE"

// streamConfig is a stream as a user would keep events: on file, with
// JetStream's default de-duplication window.
func streamConfig(name, subjects string) jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: name, Subjects: []string{subjects}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}
}

func (p *natsPeer) sinkYAML() string {
	return fmt.Sprintf("type: nats\n    url: %q\n    jetstream: true", p.srv.ClientURL())
}
func (p *natsPeer) target() string { return `subject: "load.{status}"` }
func (p *natsPeer) describe() string {
	return "NATS JetStream (nats-server " + server.VERSION + " in the load process, file storage, stream " + loadStream + ")"
}
func (p *natsPeer) requests() (int64, string) { return 0, "" }

func (p *natsPeer) read(ctx context.Context, ids chan<- string) error {
	return readStream(ctx, p.js, loadStream, ids)
}

// readStream sends the event id of every message in stream, from the first.
func readStream(ctx context.Context, js jetstream.JetStream, stream string, ids chan<- string) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case ids <- eventID(m.Headers().Get("ce-id"), m.Data()):
		case <-ctx.Done():
		}
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

func (p *natsPeer) close() {
	if p.nc != nil {
		p.nc.Close()
	}
	p.srv.Shutdown()
	p.srv.WaitForShutdown()
}

// embeddedPeer is the JetStream server hookbridge embeds (url: embedded,
// as in the default config.yaml): the broker runs inside hookbridge's
// process, so its cost counts as hookbridge's. The load tool only reads it
// back, over the embedded server's listener.
type embeddedPeer struct {
	addr, storeDir string
}

func newEmbeddedPeer(dir string) (*embeddedPeer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close() // hookbridge listens here; a race for the port is unlikely
	return &embeddedPeer{addr: addr, storeDir: dir}, nil
}

func (p *embeddedPeer) sinkYAML() string {
	return fmt.Sprintf("type: nats\n    url: embedded\n    jetstream: true\n    embedded: {listen: %q, store_dir: %q}", p.addr, p.storeDir)
}
func (p *embeddedPeer) target() string { return `subject: "load.{status}"` }
func (p *embeddedPeer) describe() string {
	return "NATS JetStream embedded in hookbridge (url: embedded, file storage, stream HOOKBRIDGE)"
}
func (p *embeddedPeer) requests() (int64, string) { return 0, "" }

func (p *embeddedPeer) read(ctx context.Context, ids chan<- string) error {
	nc, err := natsgo.Connect("nats://" + p.addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	return readStream(ctx, js, "HOOKBRIDGE", ids)
}

func (p *embeddedPeer) close() {}

// kafkaPeer is kfake, the in-process Kafka of franz-go, with a counter
// of produce requests: records per request is how well hookbridge
// batches.
type kafkaPeer struct {
	cluster  *kfake.Cluster
	produces atomic.Int64
}

const loadTopic = "load"

func startKafka() (*kafkaPeer, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, loadTopic))
	if err != nil {
		return nil, err
	}
	p := &kafkaPeer{cluster: c}
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		p.produces.Add(1)
		return nil, nil, false // only counted: kfake handles it
	})
	return p, nil
}

func (p *kafkaPeer) sinkYAML() string {
	return fmt.Sprintf("type: kafka\n    brokers: [%q]", p.cluster.ListenAddrs()[0])
}
func (p *kafkaPeer) target() string { return "topic: " + loadTopic }
func (p *kafkaPeer) describe() string {
	return "Kafka (kfake in the load process, topic " + loadTopic + ", 4 partitions)"
}
func (p *kafkaPeer) requests() (int64, string) { return p.produces.Load(), "produce requests" }

func (p *kafkaPeer) read(ctx context.Context, ids chan<- string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.cluster.ListenAddrs()...), kgo.ConsumeTopics(loadTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		var send error
		fs.EachRecord(func(r *kgo.Record) {
			header := ""
			for _, h := range r.Headers {
				if h.Key == "ce_id" {
					header = string(h.Value)
				}
			}
			id := eventID(header, r.Value)
			select {
			case ids <- id:
			case <-ctx.Done():
				send = ctx.Err()
			}
		})
		if send != nil {
			return nil
		}
	}
	return nil
}

func (p *kafkaPeer) close() { p.cluster.Close() }

// sqsPeer is kumo, an in-process SQS, behind a proxy that counts
// SendMessageBatch calls.
type sqsPeer struct {
	kumo     *kumo.Server
	proxy    *http.Server
	proxyURL string
	client   *awssqs.Client
	queueURL string
	batches  atomic.Int64
}

func startSQS() (*sqsPeer, error) {
	k := kumo.NewServer()
	p := &sqsPeer{kumo: k}
	target, err := url.Parse(k.URL)
	if err != nil {
		k.Close()
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		k.Close()
		return nil, err
	}
	p.proxy = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") == "AmazonSQS.SendMessageBatch" {
			p.batches.Add(1)
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.proxy.Serve(ln) }()
	p.proxyURL = "http://" + ln.Addr().String()
	p.client = awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(k.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "load", SecretAccessKey: "load"}, nil
		})})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := p.client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("load-%d", time.Now().UnixNano()))})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("create queue: %w", err)
	}
	p.queueURL = aws.ToString(out.QueueUrl)
	return p, nil
}

func (p *sqsPeer) sinkYAML() string {
	return fmt.Sprintf("type: sqs\n    region: us-east-1\n    endpoint: %q\n    access_key_id: load\n    secret_access_key: \"${LOAD_AWS_SECRET}\"", p.proxyURL)
}
func (p *sqsPeer) target() string { return fmt.Sprintf("queue_url: %q", p.queueURL) }
func (p *sqsPeer) describe() string {
	return "SQS (kumo in the load process, one standard queue)"
}
func (p *sqsPeer) requests() (int64, string) { return p.batches.Load(), "SendMessageBatch calls" }

func (p *sqsPeer) read(ctx context.Context, ids chan<- string) error {
	for ctx.Err() == nil {
		out, err := p.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl: aws.String(p.queueURL), MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(out.Messages) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		del := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
		for i, m := range out.Messages {
			del[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle}
			header := ""
			if a, ok := m.MessageAttributes["ce_id"]; ok {
				header = aws.ToString(a.StringValue)
			}
			id := eventID(header, []byte(aws.ToString(m.Body)))
			select {
			case ids <- id:
			case <-ctx.Done():
				return nil
			}
		}
		if _, err := p.client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(p.queueURL), Entries: del}); err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

func (p *sqsPeer) close() {
	if p.proxy != nil {
		_ = p.proxy.Close()
	}
	p.kumo.Close()
}

// arrival is what the broker holds of the events hookbridge acknowledged.
type arrival struct {
	acked, found, missing, duplicated, unknown int
	waited                                     time.Duration
}

// checkArrival reads the broker until every acknowledged id was seen and
// nothing new came for a second (so late duplicates still count), or
// until wait passes.
func checkArrival(ctx context.Context, p peer, acked []string, wait time.Duration) (arrival, error) {
	start := time.Now()
	want := make(map[string]bool, len(acked))
	for _, id := range acked {
		want[id] = true
	}
	a := arrival{acked: len(want)}
	seen := make(map[string]int, len(want))
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ids := make(chan string, 1024)
	readErr := make(chan error, 1)
	go func() { readErr <- p.read(rctx, ids) }()
	missing := len(want)
	const quiet = time.Second
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	for done := false; !done; {
		select {
		case id := <-ids:
			seen[id]++
			if seen[id] == 1 && want[id] {
				missing--
			}
			if missing == 0 {
				idle.Reset(quiet)
			}
		case <-idle.C:
			done = true
		case <-rctx.Done():
			done = true
		case err := <-readErr:
			if err != nil {
				return a, fmt.Errorf("reading the broker back: %w", err)
			}
			done = true
		}
	}
	cancel()
	a.waited = time.Since(start)
	for id, n := range seen {
		if !want[id] {
			a.unknown += n
			continue
		}
		a.found++
		if n > 1 {
			a.duplicated += n - 1
		}
	}
	a.missing = len(want) - a.found
	return a, nil
}

// eventID is a message's event id: its ce-id (ce_id) header in binary
// content mode, else the "id" of the structured CloudEvent that is its
// body.
func eventID(header string, body []byte) string {
	if header != "" {
		return header
	}
	var ev struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &ev) // a body that is no event has no id: counted as unknown
	return ev.ID
}
