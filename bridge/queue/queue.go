// Package queue is the durable buffer behind delivery: spool. A webhook is
// answered 200 once its messages are in a Queue; one dispatcher per sink
// (package delivery) then takes them out through a Receiver, publishes
// them and settles each: done, retry later, or dead letter.
//
// Two backends implement it: package local (a log on the replica's disk,
// spool.backend: local) and package jetstream (a JetStream stream shared
// by every replica, spool.backend: jetstream). Both store records in the
// format of this package (Marshal, Unmarshal), and both are administered
// through Admin (hookbridge spool ls|replay|drop).
package queue

import (
	"context"
	"errors"
	"time"
)

// ErrFull is returned (wrapped) by Append when the queue cannot take the
// records: spool.max_bytes or spool.max_events is reached. Test with
// errors.Is; the webhook is answered 503 so the sender retries.
var ErrFull = errors.New("spool is full")

// ErrNotFound is returned (wrapped) when a record to settle is no longer
// waiting, for instance because an operator dropped it meanwhile.
var ErrNotFound = errors.New("spool record not found")

// A Queue holds the messages waiting for sinks, durably. Its methods are
// safe for concurrent use. Whoever opened a queue closes it, with the
// backend's own Close, once its receivers are closed.
type Queue interface {
	// Append stores recs and returns once they are kept (fsynced, or
	// acknowledged by NATS): only then may the webhook be answered. It
	// fails with an error wrapping ErrFull, storing nothing, when the
	// queue is full.
	Append(ctx context.Context, recs []Record) error
	// Receiver returns the receiver of sink's records. There is one per
	// sink for the life of the queue; a dispatcher uses it until it
	// stops, and the next dispatcher (after a reload) takes it over.
	Receiver(sink string) Receiver
	// Stats counts what waits, per sink, and the dead letters.
	Stats(ctx context.Context) (Stats, error)
	// Ready reports why the queue cannot take records now (full, cut off
	// from its store), or nil.
	Ready(ctx context.Context) error
	// Shared reports whether other replicas deliver from this queue too:
	// then what this replica leaves is theirs, and a shutdown need not
	// wait for it.
	Shared() bool
}

// A Receiver hands one sink's records out for delivery, a batch at a
// time, each leased to the caller until it is settled.
//
// Order: a Receiver never hands out a record while an earlier record of
// the same task (Record.Message.Key) is leased or waiting for a retry, so
// a task's events reach the sink in the order they were accepted, across
// retries; other tasks' records go on meanwhile. Records without a key are
// not ordered.
type Receiver interface {
	// Receive waits until records are due and returns up to max of them,
	// or ctx's error. Several goroutines may call it at once.
	Receive(ctx context.Context, max int) ([]Lease, error)
	// Close stops receiving, hands back to the queue every record handed
	// out but not settled, and waits until that is done.
	Close()
}

// A Lease is one record handed out for delivery. The caller settles it
// with Done, Retry or a Kill that succeeds, once.
type Lease interface {
	// Record is the record to deliver. It fails for a message the queue
	// holds but cannot read as a record (written by something else, or by
	// a newer hookbridge): kill it, so that it neither blocks its task
	// nor vanishes.
	Record() (*Record, error)
	// Attempt is which attempt at delivering the record this is, from 1.
	Attempt() int
	// Done removes the record: its sink confirmed it. It does not wait:
	// should the removal be lost (a crash), the record is delivered
	// again, a duplicate and never a loss.
	Done()
	// Retry keeps the record for another attempt no sooner than after
	// delay, recording that this one failed with cause. It settles the
	// lease even when it fails: the record then comes back as it was.
	Retry(delay time.Duration, cause error) error
	// Kill makes the record a dead letter, kept with reason until an
	// operator replays or drops it; forward, when not nil, is a copy for
	// the dead-letter sink, queued in the same step so that a crash can
	// neither lose nor repeat it. When Kill fails nothing changed, and
	// the lease is still to be settled (with Retry).
	Kill(reason string, forward *Record) error
}

// Stats describes a queue's content.
type Stats struct {
	// Pending is the number of records waiting for a sink.
	Pending int
	// PendingBytes is their size, as spool.max_bytes counts it.
	PendingBytes int64
	// Oldest is when the oldest waiting record's webhook was accepted,
	// zero if none waits.
	Oldest time.Time
	// Dead is the number of dead letters.
	Dead int
	// BySink counts the waiting records of each sink that has some.
	BySink map[string]int
}

// Admin is what `hookbridge spool ls|replay|drop` does on a queue. A
// record's Seq is its number in the queue (the local file's sequence, the
// stream sequence).
type Admin interface {
	// Stats counts what waits and the dead letters.
	Stats(ctx context.Context) (Stats, error)
	// Pending returns up to n records waiting for sink with Seq > after,
	// oldest first.
	Pending(ctx context.Context, sink string, after uint64, n int) ([]Record, error)
	// Dead returns up to n dead letters with Seq > after, oldest first.
	Dead(ctx context.Context, after uint64, n int) ([]Record, error)
	// Replay puts dead letters back in line for their sink, with their
	// attempts reset, and returns how many; seqs that are not dead
	// letters are skipped.
	Replay(ctx context.Context, seqs []uint64) (int, error)
	// Drop deletes dead letters and returns how many; other seqs are
	// skipped.
	Drop(ctx context.Context, seqs []uint64) (int, error)
	// DropPending deletes records waiting for sink and returns how many;
	// other seqs are skipped.
	DropPending(ctx context.Context, sink string, seqs []uint64) (int, error)
	// PurgePending deletes every record waiting for sink and returns how
	// many there were.
	PurgePending(ctx context.Context, sink string) (int, error)
	// Shared reports whether running replicas deliver from this queue
	// (see Queue.Shared): then a replayed record goes out at once.
	Shared() bool
	// Close releases what the admin holds.
	Close() error
}
