package sinktest

import (
	"context"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// PubSubProject is the project the tests' topics and subscriptions
// live in on the fake server.
const PubSubProject = "hookbridge-test"

// PubSubServer is an in-process Google Cloud Pub/Sub (the client
// library's own fake, pstest) and a client to inspect it, both for one
// test.
type PubSubServer struct {
	// Addr is the gRPC endpoint, 127.0.0.1:port, plaintext and without
	// authentication.
	Addr string
	// Server is the fake.
	Server *pstest.Server
	// Client talks to Server in project PubSubProject.
	Client *pubsub.Client

	t         testing.TB
	closeOnce sync.Once
}

// Close shuts the fake down, making Pub/Sub unreachable. It may be
// called more than once (pstest's own Close may not).
func (s *PubSubServer) Close() {
	s.closeOnce.Do(func() {
		s.Client.Close()
		s.Server.Close()
	})
}

// PubSub runs pstest until the test ends. Its clock never returns the
// same time twice: pstest delivers a key's messages in publish-time
// order, so equal times would make that order a coin toss.
func PubSub(t testing.TB) *PubSubServer {
	t.Helper()
	srv := pstest.NewServer()
	var mu sync.Mutex
	var last time.Time
	srv.SetTimeNowFunc(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if !now.After(last) {
			now = last.Add(time.Nanosecond)
		}
		last = now
		return now
	})
	c, err := pubsub.NewClient(context.Background(), PubSubProject, PubSubOptions(srv.Addr)...)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	s := &PubSubServer{Addr: srv.Addr, Server: srv, Client: c, t: t}
	t.Cleanup(s.Close)
	return s
}

// PubSubOptions are the client options that reach a fake or emulator
// at addr: plaintext gRPC, no credentials.
func PubSubOptions(addr string) []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithTelemetryDisabled(),
	}
}

// Topic creates topic id and a subscription to it with message ordering
// enabled, which holds every message published from now on, and returns
// the subscription's full name.
func (s *PubSubServer) Topic(id string) (subscription string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topic := "projects/" + PubSubProject + "/topics/" + id
	if _, err := s.Client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		s.t.Fatalf("create topic %s: %v", id, err)
	}
	subscription = "projects/" + PubSubProject + "/subscriptions/" + id + "-all"
	if _, err := s.Client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: subscription, Topic: topic, EnableMessageOrdering: true, AckDeadlineSeconds: 60,
	}); err != nil {
		s.t.Fatalf("create subscription to %s: %v", id, err)
	}
	return subscription
}

// Pull returns every message subscription holds, and acknowledges them.
// With message ordering, Pub/Sub hands out a key's next message only
// once the one before is acknowledged, so each key's messages come in
// publish order; Pull stops at the first empty answer (pstest waits
// half a second before giving one).
func (s *PubSubServer) Pull(subscription string) []*pubsubpb.PubsubMessage {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*pubsubpb.PubsubMessage
	for {
		res, err := s.Client.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{
			Subscription: subscription, MaxMessages: 1000,
		})
		if err != nil {
			s.t.Fatalf("pull %s: %v", subscription, err)
		}
		if len(res.ReceivedMessages) == 0 {
			return out
		}
		ackIDs := make([]string, len(res.ReceivedMessages))
		for i, m := range res.ReceivedMessages {
			out = append(out, m.Message)
			ackIDs[i] = m.AckId
		}
		if err := s.Client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{
			Subscription: subscription, AckIds: ackIDs,
		}); err != nil {
			s.t.Fatalf("acknowledge on %s: %v", subscription, err)
		}
	}
}
