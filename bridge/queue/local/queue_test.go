package local

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/sinks"
)

func openQueue(t *testing.T) *Queue {
	t.Helper()
	q, err := OpenQueue(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func record(sink, task, id string) queue.Record {
	return queue.Record{Sink: sink, Message: sinks.Message{Key: task, ID: id}, Received: time.Now()}
}

// receive is Receive with a deadline, and the ids handed out.
func receive(t *testing.T, r queue.Receiver) ([]queue.Lease, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leases, err := r.Receive(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range leases {
		rec, err := l.Record()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.Message.ID)
	}
	return leases, ids
}

// TestReceiverOrder: a batch holds each task's first waiting record only;
// the next Receive waits until the batch is settled, and a record waiting
// for its retry holds its task's later records back.
func TestReceiverOrder(t *testing.T) {
	q := openQueue(t)
	if err := q.Append(context.Background(), []queue.Record{record("bus", "a", "a0"), record("bus", "a", "a1"), record("bus", "b", "b0")}); err != nil {
		t.Fatal(err)
	}
	r := q.Receiver("bus")
	leases, ids := receive(t, r)
	if !slices.Equal(ids, []string{"a0", "b0"}) {
		t.Fatalf("first batch %v, want [a0 b0]", ids)
	}
	next := make(chan []string)
	go func() {
		_, ids := receive(t, r)
		next <- ids
	}()
	leases[0].Done()
	select {
	case ids := <-next:
		t.Fatalf("a second batch %v while b0 is still leased", ids)
	case <-time.After(50 * time.Millisecond):
	}
	if err := leases[1].Retry(time.Hour, errors.New("down")); err != nil {
		t.Fatal(err)
	}
	if ids := <-next; !slices.Equal(ids, []string{"a1"}) {
		t.Errorf("second batch %v, want [a1]: b0 waits for its retry", ids)
	}
	// a0's removal rides along with the next commit, or one of its own
	// within removeDelay: a1 (leased) and b0 (waiting) stay.
	deadline := time.Now().Add(10 * time.Second)
	for st, _ := q.Stats(context.Background()); st.Pending != 2; st, _ = q.Stats(context.Background()) {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiting, want 2", st.Pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReceiverWakes: an idle Receive returns when a record for its sink
// is appended, or forwarded to it as a dead letter.
func TestReceiverWakes(t *testing.T) {
	q := openQueue(t)
	type batch struct {
		leases []queue.Lease
		ids    []string
	}
	wait := func(r queue.Receiver) <-chan batch {
		got := make(chan batch, 1)
		go func() {
			leases, ids := receive(t, r)
			got <- batch{leases, ids}
		}()
		return got
	}
	mainGot, deadGot := wait(q.Receiver("main")), wait(q.Receiver("dead"))
	time.Sleep(20 * time.Millisecond) // both asleep on an empty file
	if err := q.Append(context.Background(), []queue.Record{record("main", "t", "m0")}); err != nil {
		t.Fatal(err)
	}
	b := <-mainGot
	if !slices.Equal(b.ids, []string{"m0"}) {
		t.Fatalf("main woken with %v, want [m0]", b.ids)
	}
	forward := record("dead", "t", "m0-dead")
	if err := b.leases[0].Kill("refused", &forward); err != nil {
		t.Fatal(err)
	}
	if d := <-deadGot; !slices.Equal(d.ids, []string{"m0-dead"}) {
		t.Errorf("dead woken with %v, want [m0-dead]", d.ids)
	}
	st, _ := q.Stats(context.Background())
	if st.Dead != 1 || st.BySink["dead"] != 1 || st.BySink["main"] != 0 {
		t.Errorf("stats %+v, want one dead letter and the copy waiting for dead", st)
	}
}

// TestReadyWhileTheDiskFails: after an append fails to write (a full disk,
// injected), the queue is not ready; it stays so for failureHold, then
// probes with a small write each check and is ready again on the first
// that succeeds. A full spool (ErrFull) is a limit, not a disk failure.
func TestReadyWhileTheDiskFails(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano())
	q, err := OpenQueue(t.TempDir(), Options{Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	ctx := context.Background()
	enospc := fmt.Errorf("write spool.db: %w", syscall.ENOSPC)
	diskFull := atomic.Bool{}
	realAppend, realProbe := q.appendRecords, q.probe
	q.appendRecords = func(recs []queue.Record) error {
		if diskFull.Load() {
			return enospc
		}
		return realAppend(recs)
	}
	probes := 0
	q.probe = func() error {
		probes++
		if diskFull.Load() {
			return enospc
		}
		return realProbe()
	}

	if err := q.Ready(ctx); err != nil {
		t.Fatalf("a new queue: %v", err)
	}
	diskFull.Store(true)
	if err := q.Append(ctx, []queue.Record{record("bus", "t", "a")}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk: %v", err)
	}
	steps := []struct {
		advance  time.Duration
		diskFull bool
		ready    bool
		probed   int // probes so far
	}{
		{0, true, false, 0},            // within the hold: no probe
		{failureHold, true, false, 1},  // the probe fails: not ready, hold again
		{time.Second, false, false, 1}, // room again, but within the new hold
		{failureHold, false, true, 2},  // the probe succeeds: ready
		{0, false, true, 2},            // and stays so without probing
	}
	for i, s := range steps {
		now.Add(int64(s.advance))
		diskFull.Store(s.diskFull)
		err := q.Ready(ctx)
		if (err == nil) != s.ready || probes != s.probed {
			t.Fatalf("step %d: Ready = %v after %d probes; want ready %v after %d", i, err, probes, s.ready, s.probed)
		}
		if err != nil && !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("step %d: %v does not say why", i, err)
		}
	}

	// A successful append clears a failure at once.
	diskFull.Store(true)
	_ = q.Append(ctx, []queue.Record{record("bus", "t", "b")})
	diskFull.Store(false)
	if err := q.Append(ctx, []queue.Record{record("bus", "t", "c")}); err != nil {
		t.Fatal(err)
	}
	if err := q.Ready(ctx); err != nil {
		t.Errorf("after a successful append: %v", err)
	}

	// A full spool is not a failing disk: no hold once it drains.
	q.appendRecords = func([]queue.Record) error { return queue.ErrFull }
	_ = q.Append(ctx, []queue.Record{record("bus", "t", "d")})
	if q.failed.Load() != nil {
		t.Error("ErrFull was taken for a disk failure")
	}
}

// TestProbe writes to a real spool file, and fails once it is closed.
func TestProbe(t *testing.T) {
	q := openQueue(t)
	if err := q.store.Probe(); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := q.store.Probe(); !errors.Is(err, ErrClosed) {
		t.Errorf("Probe after Close: %v", err)
	}
}
