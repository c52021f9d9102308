package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// Queue is a Store behind the queue.Queue interface: appends wake the
// sink's receiver, and a receiver hands out due records in task order.
type Queue struct {
	store *Store
	// appendRecords and probe are the store's Append and Probe, apart so
	// that tests can make the disk fail.
	appendRecords func([]queue.Record) error
	probe         func() error
	// failed is the last append the store could not write (a full disk,
	// an I/O error), nil once one succeeds: readiness reports it.
	failed atomic.Pointer[appendFailure]

	mu        sync.Mutex
	receivers map[string]*receiver
}

// appendFailure is an append the store could not write.
type appendFailure struct {
	at  time.Time
	err error
}

// failureHold is how long after a failed write the queue reports itself
// not ready whatever a probe says, so that a disk with room for the small
// probe but not for appends does not flip readiness at every check.
const failureHold = 5 * time.Second

var _ queue.Queue = (*Queue)(nil)

// OpenQueue opens the spool file in dir (see Open) as a queue.
func OpenQueue(dir string, opts Options) (*Queue, error) {
	st, err := Open(dir, opts)
	if err != nil {
		return nil, err
	}
	return &Queue{store: st, appendRecords: st.Append, probe: st.Probe, receivers: map[string]*receiver{}}, nil
}

// Append implements queue.Queue: the records are fsynced (in a group
// commit with concurrent appends) when it returns.
func (q *Queue) Append(_ context.Context, recs []queue.Record) error {
	if err := q.appendRecords(recs); err != nil {
		if !errors.Is(err, queue.ErrFull) && !errors.Is(err, ErrClosed) {
			q.failed.Store(&appendFailure{at: q.store.now(), err: err})
		}
		return err
	}
	if q.failed.Load() != nil {
		q.failed.Store(nil)
	}
	for i := range recs {
		q.receiver(recs[i].Sink).wake()
	}
	return nil
}

// Receiver implements queue.Queue.
func (q *Queue) Receiver(sink string) queue.Receiver { return q.receiver(sink) }

func (q *Queue) receiver(sink string) *receiver {
	q.mu.Lock()
	defer q.mu.Unlock()
	r, ok := q.receivers[sink]
	if !ok {
		r = &receiver{q: q, store: q.store, sink: sink, woken: make(chan struct{}, 1), turn: make(chan struct{}, 1)}
		q.receivers[sink] = r
	}
	return r
}

// Stats implements queue.Queue.
func (q *Queue) Stats(context.Context) (queue.Stats, error) { return q.store.Stats() }

// Ready implements queue.Queue: the file must be readable, not full, and
// writable. After an append failed to write (a full disk, an I/O error),
// the queue is not ready for failureHold; then each check probes with a
// small write, and the first that succeeds makes it ready again, so a
// load balancer stops sending webhooks that would be answered 503 and
// sends them again once the disk has room.
func (q *Queue) Ready(context.Context) error {
	st, err := q.store.Stats()
	if err != nil {
		return err
	}
	if o := q.store.opts; (o.MaxEvents > 0 && st.Pending >= o.MaxEvents) || (o.MaxBytes > 0 && st.PendingBytes >= o.MaxBytes) {
		return fmt.Errorf("spool is full: %d messages, %d bytes waiting", st.Pending, st.PendingBytes)
	}
	f := q.failed.Load()
	if f == nil {
		return nil
	}
	now := q.store.now()
	if since := now.Sub(f.at); since < failureHold {
		return fmt.Errorf("spool cannot write (%s ago): %w", since.Round(time.Millisecond), f.err)
	}
	if err := q.probe(); err != nil {
		q.failed.Store(&appendFailure{at: now, err: err})
		return fmt.Errorf("spool cannot write: %w", err)
	}
	q.failed.CompareAndSwap(f, nil)
	return nil
}

// Shared implements queue.Queue: the file is this replica's alone.
func (q *Queue) Shared() bool { return false }

// Recovery reports what opening the log found.
func (q *Queue) Recovery() Recovery { return q.store.Recovery() }

// LogStats reports the log's size and commits.
func (q *Queue) LogStats() LogStats { return q.store.LogStats() }

// Close implements queue.Queue.
func (q *Queue) Close() error { return q.store.Close() }

// Limits of one Receive: how far the file is read looking for due
// records, in pages of scanPage.
const (
	maxScan  = 10000
	scanPage = 512
)

// receiver hands out one sink's due records. It hands out one batch at a
// time: the next Receive waits until every lease of the previous batch is
// settled, so a task's later record can never be handed out while its
// earlier one is in flight, and no lease needs tracking across batches.
type receiver struct {
	q     *Queue
	store *Store
	sink  string
	woken chan struct{} // an append for this sink, or a forwarded dead letter
	turn  chan struct{} // held from a Receive that returned records until its batch is settled

	mu   sync.Mutex
	open int      // leases of the current batch not yet settled
	done []uint64 // seqs of the current batch its sink confirmed
}

func (r *receiver) wake() {
	select {
	case r.woken <- struct{}{}:
	default:
	}
}

// Receive implements queue.Receiver.
func (r *receiver) Receive(ctx context.Context, n int) ([]queue.Lease, error) {
	select {
	case r.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		due, next, err := r.collect(n)
		if err != nil {
			<-r.turn
			return nil, err
		}
		if len(due) > 0 {
			leases := make([]queue.Lease, len(due))
			held := make([]lease, len(due)) // one allocation for the batch
			r.mu.Lock()
			r.open = len(due)
			for i := range due {
				held[i] = lease{r: r, rec: &due[i]}
				leases[i] = &held[i]
			}
			r.mu.Unlock()
			return leases, nil
		}
		var timer *time.Timer
		var timeout <-chan time.Time // nil: nothing waits, sleep until woken
		if !next.IsZero() {
			timer = time.NewTimer(max(next.Sub(r.store.now()), time.Millisecond))
			timeout = timer.C
		}
		select {
		case <-ctx.Done():
		case <-r.woken:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			<-r.turn
			return nil, ctx.Err()
		}
	}
}

// Close implements queue.Receiver: the records stay in the file.
func (r *receiver) Close() {}

// collect returns up to n records to publish now, and when the next
// waiting one is due (zero if none waits).
func (r *receiver) collect(n int) (due []queue.Record, next time.Time, err error) {
	now := r.store.now()
	taken := map[string]bool{} // task keys that have their first record in this round
	picked := 0
	choose := func(key string, nextTry time.Time) (take, stop bool) {
		if key != "" {
			if taken[key] {
				return false, false // an earlier record of this task goes first
			}
			taken[key] = true
		}
		if nextTry.After(now) {
			if next.IsZero() || nextTry.Before(next) {
				next = nextTry
			}
			return false, false
		}
		picked++
		return true, picked == n
	}
	var after uint64
	for scanned := 0; len(due) < n && scanned < maxScan; {
		recs, last, looked, err := r.store.PendingDue(r.sink, after, scanPage, choose)
		if err != nil {
			return nil, time.Time{}, err
		}
		if looked == 0 {
			break
		}
		if due == nil {
			due = recs
		} else {
			due = append(due, recs...)
		}
		after, scanned = last, scanned+looked
	}
	return due, next, nil
}

// settle counts one lease of the batch settled; the last one queues the
// batch's removals at once (they ride along with the next commit) and
// gives the turn to the next Receive.
func (r *receiver) settle(done bool, seq uint64) {
	r.mu.Lock()
	if done {
		r.done = append(r.done, seq)
	}
	r.open--
	last := r.open == 0
	var seqs []uint64
	if last {
		seqs, r.done = r.done, nil
	}
	r.mu.Unlock()
	if last {
		r.store.DoneLater(r.sink, seqs)
		<-r.turn
	}
}

// lease is one record of a receiver's batch.
type lease struct {
	r       *receiver
	rec     *queue.Record // in the batch's slice, the receiver's to hand out
	settled bool
}

func (l *lease) Record() (*queue.Record, error) { return l.rec, nil }

// Attempt implements queue.Lease: the record counts its failed attempts.
func (l *lease) Attempt() int { return l.rec.Attempts + 1 }

// Done implements queue.Lease.
func (l *lease) Done() { l.finish(true) }

// Retry implements queue.Lease: the record is rewritten with its attempt
// counted, its error and when it is due again.
func (l *lease) Retry(delay time.Duration, cause error) error {
	defer l.finish(false)
	return l.r.store.Retry(l.r.sink, l.rec.Seq, l.r.store.now().Add(delay), cause.Error())
}

// Kill implements queue.Lease: the dead letter and its forwarded copy are
// written in one transaction.
func (l *lease) Kill(reason string, forward *queue.Record) error {
	if err := l.r.store.Kill(l.r.sink, l.rec.Seq, reason, forward); err != nil {
		return err
	}
	l.finish(false)
	if forward != nil {
		l.r.q.receiver(forward.Sink).wake()
	}
	return nil
}

func (l *lease) finish(done bool) {
	if l.settled {
		panic("queue/local: a lease settled twice")
	}
	l.settled = true
	l.r.settle(done, l.rec.Seq)
}
