// Package sinktest is hookbridge's test support, in one place: the real
// brokers tests run against, started privately by the test (an in-process
// nats-server, a cluster of them, kfake for Kafka, kumo for SQS) and
// readers of what they hold, a proxy that can make a broker hang, free
// ports, message builders, a reader for the CloudEvents a broker holds,
// and the contract suite every sinks.Sink passes (Run, in contract.go).
//
// It is imported by tests only. Every helper stops what it started when
// the test ends.
package sinktest
