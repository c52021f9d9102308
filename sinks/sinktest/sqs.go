package sinktest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/sivchari/kumo"
)

// SQSServer is an in-process SQS (kumo) and a plain SDK client to
// inspect it, both for one test.
type SQSServer struct {
	// URL is the endpoint, http://127.0.0.1:port.
	URL string
	// Server is kumo's server: Close it to make SQS unreachable.
	Server *kumo.Server
	// Client talks to Server with static credentials "x".
	Client *awssqs.Client

	t testing.TB
}

// SQS runs kumo until the test ends.
func SQS(t testing.TB) *SQSServer {
	t.Helper()
	srv := kumo.NewServer()
	t.Cleanup(srv.Close)
	c := awssqs.New(awssqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "x", SecretAccessKey: "x"}, nil
		}),
	})
	return &SQSServer{URL: srv.URL, Server: srv, Client: c, t: t}
}

// queueSeq makes queue names unique: kumo keeps one SQS store per
// process, shared by every kumo.Server (and by -count runs).
var queueSeq atomic.Int64

// Queue creates a queue, FIFO when name ends in ".fifo", under a unique
// name made from name, and returns the URL kumo gives it
// (http://localhost:4566/...; requests still reach the server).
func (s *SQSServer) Queue(name string) string {
	s.t.Helper()
	base, fifo := strings.CutSuffix(name, ".fifo")
	name = fmt.Sprintf("%s-%d", base, queueSeq.Add(1))
	in := &awssqs.CreateQueueInput{QueueName: aws.String(name)}
	if fifo {
		in.QueueName = aws.String(name + ".fifo")
		in.Attributes = map[string]string{"FifoQueue": "true"}
	}
	out, err := s.Client.CreateQueue(context.Background(), in)
	if err != nil {
		s.t.Fatalf("create queue %s: %v", aws.ToString(in.QueueName), err)
	}
	return aws.ToString(out.QueueUrl)
}

// Count is the number of messages waiting in the queue (visible ones).
func (s *SQSServer) Count(queueURL string) int {
	s.t.Helper()
	visible, _ := s.counts(queueURL)
	return visible
}

// counts returns the visible and in-flight messages of the queue.
func (s *SQSServer) counts(queueURL string) (visible, inFlight int) {
	s.t.Helper()
	out, err := s.Client.GetQueueAttributes(context.Background(), &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		s.t.Fatalf("queue attributes of %s: %v", queueURL, err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight
}

// Drain receives (and deletes) messages, 10 at a time, until it has n,
// with a bounded number of receive calls, and fails the test if more than
// n arrive.
func (s *SQSServer) Drain(queueURL string, n int) []types.Message {
	s.t.Helper()
	return s.DrainBy(queueURL, n, 10)
}

// DrainBy is Drain receiving per messages at a time. One at a time keeps
// the order of a FIFO group even when a receive's answer is lost: kumo
// then redelivers the lost messages in random order.
func (s *SQSServer) DrainBy(queueURL string, n int, per int32) []types.Message {
	s.t.Helper()
	var got []types.Message
	for range n/int(per) + 30 {
		if len(got) >= n {
			break
		}
		got = append(got, s.receive(queueURL, per, 1)...)
	}
	if len(got) != n {
		s.t.Fatalf("received %d messages from %s, want %d", len(got), queueURL, n)
	}
	return got
}

// ReadAll receives (and deletes) every message of the queue, per at a
// time, until none is left, visible or in flight: all the queue held, in
// the order SQS gave them.
func (s *SQSServer) ReadAll(queueURL string, per int32) []types.Message {
	s.t.Helper()
	var got []types.Message
	deadline := time.Now().Add(30 * time.Second)
	for {
		msgs := s.receive(queueURL, per, 0)
		got = append(got, msgs...)
		if len(msgs) > 0 {
			continue
		}
		// A receive whose answer was lost leaves its messages in flight
		// for the visibility timeout: wait for them.
		if visible, inFlight := s.counts(queueURL); visible+inFlight == 0 {
			return got
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("queue %s: messages still in flight after 30s", queueURL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// receive receives up to per messages, waiting up to wait seconds for
// one, and deletes them.
func (s *SQSServer) receive(queueURL string, per, wait int32) []types.Message {
	s.t.Helper()
	out, err := s.Client.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{
		QueueUrl:              aws.String(queueURL),
		MaxNumberOfMessages:   per,
		MessageAttributeNames: []string{"All"},
		VisibilityTimeout:     2,
		WaitTimeSeconds:       wait,
	})
	if err != nil {
		s.t.Fatalf("receive from %s: %v", queueURL, err)
	}
	for _, m := range out.Messages {
		if _, err := s.Client.DeleteMessage(context.Background(), &awssqs.DeleteMessageInput{
			QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle,
		}); err != nil {
			s.t.Fatalf("delete from %s: %v", queueURL, err)
		}
	}
	return out.Messages
}

// Bodies returns the bodies of msgs.
func Bodies(msgs []types.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = aws.ToString(m.Body)
	}
	return out
}
